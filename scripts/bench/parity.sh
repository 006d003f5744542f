#!/usr/bin/env bash
# hearth beside llama.cpp built from the same tree with the same flags
# (scripts/bench/build-llama-peers.sh), on SmolLM2, Gemma 3 and Qwen2.5, alternating in one run:
#   1. llama-bench pp512/tg128 vs `hearth bench llm` (same engine settings: flash attention on);
#   2. one streaming client through the API with the official `openai` client:
#      llama-server vs hearth serve, both running, rounds alternating (scripts/bench/parity.py);
#   3. 8 streaming clients the same way (llama-server -np 8 -c 8192 vs hearth's 8 sequences).
# Prints JSON lines; docs/benchmarks.md quotes them. Needs nothing else running.
#   MODELS="smollm2 gemma qwen" ROUNDS=4 THREADS=2 scripts/bench/parity.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${THREADS:-2}
rounds=${ROUNDS:-4}
models_dir=$(scripts/fetch-test-models.sh)
peers=$(scripts/bench/build-llama-peers.sh)
venv=$(scripts/client-venv.sh)
cargo build --release --workspace --all-targets --quiet
bin="${CARGO_TARGET_DIR:-target}/release/hearth"
declare -A file=(
  [smollm2]="$models_dir/SmolLM2-135M-Instruct.Q4_1.gguf"
  [gemma]="$models_dir/gemma-3-270m-q4_k_m.gguf"
  [qwen]="$models_dir/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf"
)
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
echo "results in $out" >&2
date -u +"date: %Y-%m-%d %H:%M UTC"; nproc | sed 's/^/cores: /'; grep -m1 'model name' /proc/cpuinfo
data=$(mktemp -d)
trap 'kill ${spid:-} ${hpid:-} 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$data"' EXIT
source scripts/bench/common.sh

for name in ${MODELS:-smollm2 gemma qwen}; do
  m=${file[$name]}
  # 1. Engine, single stream: two alternating rounds.
  for rep in 1 2; do
    "$peers/llama-bench" -m "$m" -t "$threads" -fa on -p 512 -n 128 -r 3 -o json >"$out/llama-bench-$name-$rep.json"
    "$bin" --threads "$threads" bench llm "$m" --prompt-tokens 512 --gen-tokens 128 --repetitions 3 >"$out/hearth-llm-$name-$rep.json"
    python3 - "$name" "$out/llama-bench-$name-$rep.json" "$out/hearth-llm-$name-$rep.json" <<'PY'
import json, sys
peer = json.load(open(sys.argv[2])); ours = json.load(open(sys.argv[3]))
pp = next(r["avg_ts"] for r in peer if r["n_prompt"] > 0 and r["n_gen"] == 0)
tg = next(r["avg_ts"] for r in peer if r["n_gen"] > 0 and r["n_prompt"] == 0)
print(json.dumps({"label": sys.argv[1], "bench": "llama-bench vs hearth bench llm",
  "llama_bench_pp512": round(pp, 1), "hearth_pp512": round(ours["pp_tokens_per_second"], 1), "pp_ratio": round(ours["pp_tokens_per_second"] / pp, 3),
  "llama_bench_tg128": round(tg, 1), "hearth_tg128": round(ours["tg_tokens_per_second"], 1), "tg_ratio": round(ours["tg_tokens_per_second"] / tg, 3)}))
PY
  done
  # 2 and 3. Through the API: both servers up, idle while the other is measured.
  rm -rf "$data/hearth"; mkdir -p "$data/hearth"
  "$bin" --data-dir "$data/hearth" models import "$m" --name "$name" >/dev/null
  p=$(free_port)
  "$peers/llama-server" -m "$m" -t "$threads" -fa on -np 8 -c 8192 --host 127.0.0.1 --port "$p" >"$out/llama-server-$name.log" 2>&1 &
  spid=$!
  peer_url="http://127.0.0.1:$p"
  q=$(free_port)
  "$bin" --data-dir "$data/hearth" --threads "$threads" serve --listen "127.0.0.1:$q" --model "$name" >/dev/null 2>"$out/hearth-serve-$name.log" &
  hpid=$!
  hearth_url="http://127.0.0.1:$q"
  wait_healthy "$peer_url"; wait_healthy "$hearth_url"
  "$venv/bin/python" scripts/bench/parity.py --label "$name" --clients 1 --rounds "$rounds" \
    --server "llama-server=$peer_url=$name" --server "hearth=$hearth_url=$name"
  "$venv/bin/python" scripts/bench/parity.py --label "$name" --clients 8 --rounds "$rounds" \
    --server "llama-server=$peer_url=$name" --server "hearth=$hearth_url=$name"
  kill "$spid" "$hpid"; wait "$spid" "$hpid" 2>/dev/null || true
  spid=; hpid=
done
