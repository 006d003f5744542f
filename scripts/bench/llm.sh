#!/usr/bin/env bash
# LLM benchmarks, hearth beside llama.cpp's own tools, in one run on this machine:
#   1. single stream: llama-bench pp512/tg128 vs `hearth bench llm`, both GGUF test models;
#   2. 8 concurrent streaming clients: `hearth bench serve` against hearth serve and against
#      llama-server -np 8, plus llama-batched-bench at B=1,4,8 for reference;
#   3. time to first token with a cached 500-token system prompt vs cold;
#   4. RSS of hearth serve with the chat model and the embedder loaded.
# Prints JSON lines; docs/benchmarks.md quotes them. Needs nothing else running.
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${THREADS:-2}
models=$(scripts/fetch-test-models.sh)
peers=$(scripts/bench/build-llama-peers.sh)
export LD_LIBRARY_PATH="$peers:${LD_LIBRARY_PATH:-}"
cargo build --release -p hearth --quiet
bin="${CARGO_TARGET_DIR:-target}/release/hearth"
smol="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
gemma="$models/gemma-3-270m-q4_k_m.gguf"
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
echo "results in $out" >&2
date -u +"date: %Y-%m-%d %H:%M UTC"; nproc | sed 's/^/cores: /'; grep -m1 'model name' /proc/cpuinfo

for m in "$smol" "$gemma"; do
  for rep in 1 2; do   # alternate peer and hearth, twice
    "$peers/llama-bench" -m "$m" -t "$threads" -p 512 -n 128 -r 3 -o json >"$out/llama-bench-$(basename "$m")-$rep.json"
    "$bin" --threads "$threads" bench llm "$m" --prompt-tokens 512 --gen-tokens 128 --repetitions 3 >"$out/hearth-llm-$(basename "$m")-$rep.json"
    python3 - "$out/llama-bench-$(basename "$m")-$rep.json" "$out/hearth-llm-$(basename "$m")-$rep.json" <<'PY'
import json, sys
peer = json.load(open(sys.argv[1])); ours = json.load(open(sys.argv[2]))
pp = next(r["avg_ts"] for r in peer if r["n_prompt"] > 0 and r["n_gen"] == 0)
tg = next(r["avg_ts"] for r in peer if r["n_gen"] > 0 and r["n_prompt"] == 0)
print(json.dumps({"model": ours["model"].rsplit("/", 1)[-1],
  "llama_bench_pp512": round(pp, 1), "hearth_pp512": round(ours["pp_tokens_per_second"], 1), "pp_ratio": round(ours["pp_tokens_per_second"] / pp, 3),
  "llama_bench_tg128": round(tg, 1), "hearth_tg128": round(ours["tg_tokens_per_second"], 1), "tg_ratio": round(ours["tg_tokens_per_second"] / tg, 3)}))
PY
  done
done

# Batched decoding reference.
"$peers/llama-batched-bench" -m "$smol" -t "$threads" -c 4096 -b 512 -ub 512 -npp 32 -ntg 128 -npl 1,4,8 2>/dev/null | grep -E '^\|' || true

# 8 concurrent streaming clients: llama-server -np 8 vs hearth serve.
source scripts/bench/common.sh
data=$(mktemp -d)
trap 'kill ${spid:-} ${hpid:-} 2>/dev/null || true; rm -rf "$data"' EXIT
"$bin" --data-dir "$data" models import "$smol" --name smollm2 >/dev/null
"$bin" --data-dir "$data" models import "$models/all-MiniLM-L6-v2" --name minilm >/dev/null
for rep in 1 2; do
  p=$(free_port)
  "$peers/llama-server" -m "$smol" -t "$threads" -np 8 -c 8192 --host 127.0.0.1 --port "$p" >"$out/llama-server.log" 2>&1 &
  spid=$!
  wait_healthy "http://127.0.0.1:$p"
  "$bin" bench serve --url "http://127.0.0.1:$p" --model smollm2 --clients 8 --max-tokens 128 --rounds 3 | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"server":"llama-server -np 8","aggregate_tps":round(d["aggregate_tokens_per_second"],1),"median_ttft_s":round(d["median_ttft_seconds"],3)}))'
  kill $spid; wait $spid 2>/dev/null || true
  p=$(free_port)
  "$bin" --data-dir "$data" --threads "$threads" serve --listen "127.0.0.1:$p" --model smollm2 --model minilm >/dev/null 2>"$out/hearth-serve.log" &
  hpid=$!
  wait_healthy "http://127.0.0.1:$p"
  "$bin" bench serve --url "http://127.0.0.1:$p" --model smollm2 --clients 8 --max-tokens 128 --rounds 3 | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"server":"hearth serve","aggregate_tps":round(d["aggregate_tokens_per_second"],1),"median_ttft_s":round(d["median_ttft_seconds"],3)}))'
  echo "{\"hearth_serve_rss_mib\": $(( $(awk '/VmRSS/{print $2}' /proc/$hpid/status) / 1024 ))}"
  kill $hpid; wait $hpid 2>/dev/null || true
done
rm -rf "$data"

# Cached system prompt: time to first token, cached vs cold.
"$bin" --threads "$threads" bench prefix "$smol" --system-tokens 500 --repetitions 5 | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"prefix_cache_500":{"cold_s":round(d["ttft_cold_seconds"],3),"cached_s":round(d["ttft_cached_seconds"],4),"speedup":round(d["speedup"],1)}}))'
