#!/usr/bin/env bash
# Overload, measured: N concurrent streams (all sent at once) against `hearth serve` with
# SmolLM2-135M, with the queue wait unbounded (how hearth behaved before `[llm]
# max_queue_wait_ms`), at the default 10 s, and at 2 s, in one run. Prints one JSON line per
# (wait, N) from scripts/bench/overload.py.
# Usage: scripts/bench/overload.sh [MAX_TOKENS] [N ...]   (defaults: 32, 64 200)
set -euo pipefail
cd "$(dirname "$0")/../.."
HEARTH=${HEARTH:-target/release/hearth}
MODELS=${HEARTH_TEST_MODELS:-$(scripts/fetch-test-models.sh)}
max_tokens=${1:-32}
shift || true
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(64 200)
source scripts/bench/common.sh
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$HEARTH" --data-dir "$work" models import "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" --name smollm2 > /dev/null
for wait_ms in 3600000 10000 2000; do
    port=$(free_port)
    printf '[llm]\nmax_queue_wait_ms = %s\n' "$wait_ms" > "$work/hearth.toml"
    HEARTH_LOG=warn "$HEARTH" --data-dir "$work" --config "$work/hearth.toml" serve \
        --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
    pid=$!
    wait_healthy "http://127.0.0.1:$port"
    # Load the model before measuring.
    curl -sf "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
        -d '{"model":"smollm2","messages":[{"role":"user","content":"hi"}],"max_tokens":1}' > /dev/null
    for n in "${counts[@]}"; do
        printf '{"max_queue_wait_ms": %s, "max_tokens": %s, ' "$wait_ms" "$max_tokens"
        python3 scripts/bench/overload.py "http://127.0.0.1:$port" smollm2 "$n" "$max_tokens" | sed 's/^{//'
    done
    kill "$pid"
    wait "$pid" 2>/dev/null || true
done
