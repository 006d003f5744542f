#!/usr/bin/env bash
# Schemathesis (PyPI) against the live API, every operation in /openapi.json: a fresh data
# directory with the small test models, an admin key, a short context so generation stays
# bounded. Prints Schemathesis' report; exits non-zero on any failure it finds.
# Usage: scripts/schemathesis.sh [extra `st run` flags, e.g. --max-examples 50]
set -euo pipefail
cd "$(dirname "$0")/.."
HEARTH=${HEARTH:-target/release/hearth}
MODELS=${HEARTH_TEST_MODELS:-$(scripts/fetch-test-models.sh)}
VENV=${SCHEMATHESIS_VENV:-$HOME/.cache/hearth/venv-schemathesis}
if [ ! -x "$VENV/bin/st" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "schemathesis==4.32.5"
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$HEARTH" --data-dir "$work" models import "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" --name smollm2 > /dev/null
"$HEARTH" --data-dir "$work" models import "$MODELS/all-MiniLM-L6-v2" --name minilm > /dev/null
key=$("$HEARTH" --data-dir "$work" keys create schemathesis --scope admin | grep -o 'hk-[A-Za-z0-9_-]*' | head -1)
# Every operation in a state to answer: a small catalogue with a trained model, a support policy.
for i in 1 2 3 4 5 6; do
    echo "{\"id\":\"$i\",\"title\":\"Item $i\",\"categories\":[\"c$((i % 2))\"],\"price\":$i}"
done > "$work/items.jsonl"
{ echo "user_id,item_id,timestamp"; for u in 1 2 3 4; do for i in 1 2 3 4 5 6; do
    [ $(((u + i) % 3)) -ne 0 ] && echo "u$u,$i,$((1000 + u * 10 + i))"; done; done; } > "$work/events.csv"
printf 'Be brief and polite. Answer only questions about orders.\n' > "$work/policy.md"
# Bodies up to 64 MiB reach the handlers, so an oversize list gets its own 400 (Schemathesis
# does not count 413 as a refusal).
cat > "$work/hearth.toml" <<TOML
[server]
max_body_bytes = 67108864
[llm]
context_length = 2048
max_queue_wait_ms = 5000
[recs]
embedding_model = "minilm"
[support]
policy = "$work/policy.md"
TOML
"$HEARTH" --data-dir "$work" --config "$work/hearth.toml" recs import --items "$work/items.jsonl" \
    --events "$work/events.csv" > /dev/null
"$HEARTH" --data-dir "$work" --config "$work/hearth.toml" recs train --models popularity > /dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HEARTH_LOG=warn "$HEARTH" --data-dir "$work" --config "$work/hearth.toml" serve \
    --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/health" > /dev/null && break
    sleep 0.2
done
cd "$work"
# SPEC: another copy of the document to test the server against (while editing it).
"$VENV/bin/st" run "${SPEC:-http://127.0.0.1:$port/openapi.json}" --url "http://127.0.0.1:$port" \
    -H "Authorization: Bearer $key" \
    --workers 1 --request-timeout 60 "$@"
