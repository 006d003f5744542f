#!/usr/bin/env bash
# Recommendation benchmarks on MovieLens-100K, hearth beside the `implicit` library (pip) in one
# run on this machine: `hearth recs eval` (random and temporal protocols, every model, grid
# search) writes its split, then implicit's ALS with the parameters hearth's search kept, and a
# numpy EASE, train and rank on exactly that split. Prints the tables and JSON lines;
# docs/benchmarks.md quotes them. Needs nothing else running.
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${THREADS:-2}
ml=$(scripts/fetch-movielens.sh)
models=$(scripts/fetch-test-models.sh)
venv="${XDG_CACHE_HOME:-$HOME/.cache}/hearth/venv-recs"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet implicit==0.7.2 numpy scipy threadpoolctl
fi
cargo build --release -p hearth --quiet
bin="${CARGO_TARGET_DIR:-target}/release/hearth"
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
"$bin" --data-dir "$data" models import "$models/all-MiniLM-L6-v2" --name minilm >/dev/null
date -u +"date: %Y-%m-%d %H:%M UTC"; nproc | sed 's/^/cores: /'; grep -m1 'model name' /proc/cpuinfo
for protocol in random temporal; do
  HEARTH_LOG=warn "$bin" --data-dir "$data" --threads "$threads" recs eval --data "$ml" --protocol "$protocol" \
    --seed 42 --embedding-model minilm --save-split "$data/split-$protocol" --json >"$data/$protocol.json"
  python3 - "$data/$protocol.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"## {r['protocol']} (seed {r['seed']})")
for m in sorted(r["results"], key=lambda m: -m["ndcg"]):
    print(json.dumps({"model": m["model"], "ndcg": round(m["ndcg"], 4), "precision": round(m["precision"], 4),
                      "recall": round(m["recall"], 4), "hit_rate": round(m["hit_rate"], 4), "map": round(m["map"], 4),
                      "coverage": round(m["coverage"], 3), "train_s": round(m["train_seconds"], 3),
                      "params": {k: v for k, v in m["params"].items() if k != "model"}}))
PY
  pick() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps(next(m["params"] for m in r["results"] if m["model"]==sys.argv[2])))' "$data/$protocol.json" "$1"; }
  als=$(pick als)
  ease=$(pick ease)
  read -r f reg alpha iters <<<"$(python3 -c 'import json,sys; p=json.loads(sys.argv[1]); print(p["factors"], p["regularization"], p["alpha"], p["iterations"])' "$als")"
  lambda=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["lambda"])' "$ease")
  # ALS training time side by side, alternating, three times each.
  for rep in 1 2 3; do
    OPENBLAS_NUM_THREADS=1 "$venv/bin/python" scripts/bench/recs_peer.py "$data/split-$protocol" --factors "$f" \
      --regularization "$reg" --alpha "$alpha" --iterations "$iters" --ease-lambda "$lambda" --threads "$threads"
    HEARTH_LOG=warn "$bin" --data-dir "$data" --threads "$threads" recs eval --data "$ml" --protocol "$protocol" \
      --seed 42 --params "$als" --params "$ease" --json \
      | python3 -c 'import json,sys; r=json.load(sys.stdin); [print(json.dumps({"hearth": m["model"], "train_seconds": round(m["train_seconds"],3), "ndcg": round(m["ndcg"],4)})) for m in r["results"]]'
  done
done
