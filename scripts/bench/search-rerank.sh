#!/usr/bin/env bash
# What a rerank stage buys the apps' retrieval, on labelled queries from the retail tasks
# (shared/data/retail): catalogue search (`hearth recs search-eval`, the retail store's 591
# product variants, the item each customer asks for) and the knowledge base (`hearth support
# kb eval`, policy.md, the policy section each task needs). Every reranker the test models
# give (MiniLM's cosine, Qwen2.5-Coder 0.5B and Gemma 3 270M judging yes/no) replaces the
# hybrid order, then is fused with it (reciprocal rank). One JSON report per line on stdout.
#
#   scripts/bench/search-rerank.sh [RERANKERS]   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/../.."
models="${HEARTH_TEST_MODELS:-$HOME/.cache/hearth/test-models}"
data="${HEARTH_SHARED_DATA:-../shared/data}/retail"
hearth="$PWD/target/release/hearth"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export HEARTH_DATA_DIR="$work/data" HEARTH_CONFIG="$work/hearth.toml"
: > "$HEARTH_CONFIG"
cargo build --release -p hearth >&2
"$hearth" models import "$models/all-MiniLM-L6-v2" --name minilm >&2
"$hearth" models import "$models/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf" --name qwen-0.5b >&2
"$hearth" models import "$models/gemma-3-270m-q4_k_m.gguf" --name gemma-270m >&2
rerankers="${1:-minilm qwen-0.5b gemma-270m}"

scripts/bench/catalogue-labels.py "$data" "$work/dev" --tasks tasks_dev.json
scripts/bench/catalogue-labels.py "$data" "$work/train" --tasks tasks_train.json --limit 40
"$hearth" recs import --items "$work/dev/items.jsonl" --events "$work/dev/events.jsonl" >&2
"$hearth" recs train --embedding-model minilm >&2
"$hearth" support kb add "$data/policy.md" --embedding-model minilm >&2
scripts/bench/kb-labels.py "$data/tasks_dev.json" > "$work/kb-dev.jsonl"
scripts/bench/kb-labels.py "$data/tasks_train.json" --limit 40 > "$work/kb-train.jsonl"

tag() { python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); r.update(json.loads(sys.argv[1])); print(json.dumps(r))' "$1"; }
for set in dev train; do
  "$hearth" recs search-eval "$work/$set/labels-item.jsonl" --json | tag "{\"app\":\"catalogue\",\"set\":\"$set\"}"
  "$hearth" support kb eval "$work/kb-$set.jsonl" --json | tag "{\"app\":\"kb\",\"set\":\"$set\",\"fused\":false}"
  for model in $rerankers; do
    for fuse in "" --rerank-fuse; do
      "$hearth" recs search-eval "$work/$set/labels-item.jsonl" --rerank "$model" $fuse --json \
        | tag "{\"app\":\"catalogue\",\"set\":\"$set\"}"
      # The chat judges read the knowledge base's long passages for seconds per search: the
      # human-written dev tasks only.
      [[ $set == train && $model != minilm ]] && continue
      "$hearth" support kb eval "$work/kb-$set.jsonl" --rerank "$model" --rerank-depth 20 $fuse --json \
        | tag "{\"app\":\"kb\",\"set\":\"$set\",\"fused\":$([[ -n $fuse ]] && echo true || echo false)}"
    done
  done
done
