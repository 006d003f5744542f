#!/usr/bin/env bash
# Runs the official `openai` and `anthropic` Python packages and the `openai` JS SDK against a
# live `hearth serve` on loopback (tests/openai_client, tests/anthropic_client, tests/openai_js).
set -euo pipefail
. "$(dirname "$0")/lib/wait-for-serve.sh"
cd "$(dirname "$0")/.."
models=${HEARTH_TEST_MODELS:-$(scripts/fetch-test-models.sh)}
venv=$(scripts/client-venv.sh)
# Same flags as scripts/test.sh, so this reuses its build instead of making another.
cargo build --release --workspace --all-targets --quiet
bin="${CARGO_TARGET_DIR:-target}/release/hearth"
data=$(mktemp -d)
log="$data/server.log"
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait "${pid:-}" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
# Flash attention on: only then is greedy output the same whether a prompt's prefix was
# cached or not (the streamed/whole comparison sends one prompt twice), on every CPU.
# qwen-think: Qwen under its own template with the generation prompt opening a thinking block,
# as DeepSeek-R1's distills and QwQ do (no small reasoning GGUF ships in a registry package).
sed "s/{{- '<|im_start|>assistant\\\\n' }}/{{- '<|im_start|>assistant\\\\n<think>\\\\n' }}/" \
  crates/hearth-infer/tests/chat-templates/templates/Qwen-Qwen2.5-7B-Instruct.jinja >"$data/think.jinja"
grep -q "<think>" "$data/think.jinja"
printf '[llm]\nflash_attention = "on"\nchat_templates = { qwen-think = "think.jinja" }\n' >"$data/hearth.toml"
"$bin" --data-dir "$data" models import "$models/SmolLM2-135M-Instruct.Q4_1.gguf" --name smollm2 >/dev/null
"$bin" --data-dir "$data" models import "$models/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf" --name qwen >/dev/null
"$bin" --data-dir "$data" models import "$models/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf" --name qwen-think >/dev/null
"$bin" --data-dir "$data" models import "$models/all-MiniLM-L6-v2" --name minilm >/dev/null
"$bin" --data-dir "$data" models import "$models/adapters/qwen05-a.gguf" --base qwen --name qwen-tuned >/dev/null
"$bin" --data-dir "$data" models import "$models/adapters/qwen05-zero.gguf" --base qwen --name qwen-zero >/dev/null
"$bin" --data-dir "$data" models import "$("${CARGO_TARGET_DIR:-target}/release/hearth-test-fixture" cross-encoder bert)" --name tiny-ce >/dev/null
"$bin" --data-dir "$data" serve --listen 127.0.0.1:0 --api-key test-key --model smollm2 --model qwen --model qwen-think --model minilm >"$data/stdout" 2>"$log" &
pid=$!
wait_for_serve "$pid" "$data/stdout" "$log"
HEARTH_URL="$url" HEARTH_API_KEY=test-key "$venv/bin/python" -m pytest -q tests/openai_client/ tests/anthropic_client/ -p no:cacheprovider
# The Responses API with the official JS SDK too.
node_modules=$(scripts/node-client.sh)
HEARTH_URL="$url" HEARTH_API_KEY=test-key NODE_PATH="$node_modules" node --test tests/openai_js/
