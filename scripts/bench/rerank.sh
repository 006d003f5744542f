#!/usr/bin/env bash
# Cross-encoder throughput, hearth against sentence-transformers' CrossEncoder, alternating in
# one run (these machines are noisy): the same 512 (query, document) pairs, batches of 32, two
# threads each. Queries are banking77 messages, documents five other messages joined (about
# 70 tokens): the shape of a reranked search.
#
# The model is a randomly initialised cross-encoder of cross-encoder/ms-marco-MiniLM-L6-v2's
# shape (6 layers, hidden 384, its 30522-token tokenizer): throughput does not depend on the
# weights, and no cross-encoder ships in a package this machine can fetch. Make it and the
# peer's venv with scripts/make-cross-encoder-fixture.py --bench-model (see its docstring).
#
#   scripts/bench/rerank.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-3}"
models="${HEARTH_TEST_MODELS:-$HOME/.cache/hearth/test-models}"
model="$models/random-cross-encoder-minilm-l6"
venv="${HEARTH_ST_VENV:-$HOME/.cache/hearth/venv-st}"
[[ -d "$model" ]] || { echo "rerank.sh: $model is missing: run scripts/make-cross-encoder-fixture.py --bench-model" >&2; exit 1; }
pairs="$(mktemp)"
trap 'rm -f "$pairs"' EXIT
python3 - "$pairs" <<'PY'
import csv, json, sys
rows = [r["text"] for r in csv.DictReader(open("../shared/data/banking77/train.csv", encoding="utf-8"))]
with open(sys.argv[1], "w", encoding="utf-8") as out:
    for i in range(512):
        doc = " ".join(rows[1000 + 5 * i + j] for j in range(5))
        out.write(json.dumps({"query": rows[i], "document": doc}) + "\n")
PY
cargo build --release --example bench_rerank >&2
for round in $(seq "$rounds"); do
  echo "round $round" >&2
  target/release/examples/bench_rerank --model "$model" --pairs "$pairs" --threads 2 --rounds 5
  "$venv/bin/python" scripts/bench/rerank_peer.py --model "$model" --pairs "$pairs" --threads 2 --rounds 5
done
