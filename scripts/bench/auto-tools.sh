#!/usr/bin/env bash
# tool_choice "auto" on the retail domain, with `[gateway] constrain_auto_tool_calls` on and off,
# two servers alternating request by request in one run (scripts/bench/auto-tools.py).
# Usage: scripts/bench/auto-tools.sh [GGUF] [TASKS.json] [LIMIT]
#   (defaults: Qwen2.5-Coder-0.5B-Instruct, shared/data/retail/tasks_dev.json, all)
set -euo pipefail
cd "$(dirname "$0")/../.."
HEARTH=${HEARTH:-target/release/hearth}
MODELS=${HEARTH_TEST_MODELS:-$(scripts/fetch-test-models.sh)}
gguf=${1:-$MODELS/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf}
tasks=${2:-../shared/data/retail/tasks_dev.json}
limit=${3:-}
source scripts/bench/common.sh
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$HEARTH" --data-dir "$work" models import "$gguf" --name model > /dev/null
urls=()
for on in true false; do
    port=$(free_port)
    printf '[llm]\ncontext_length = 8192\nmax_sequences = 1\n[gateway]\nconstrain_auto_tool_calls = %s\n' "$on" > "$work/$on.toml"
    HEARTH_LOG=warn "$HEARTH" --data-dir "$work" --config "$work/$on.toml" serve \
        --listen "127.0.0.1:$port" > "$work/serve-$on.log" 2>&1 &
    wait_healthy "http://127.0.0.1:$port"
    urls+=("http://127.0.0.1:$port")
done
python3 scripts/bench/auto-tools.py "${urls[0]}" "${urls[1]}" model "$tasks" $limit
