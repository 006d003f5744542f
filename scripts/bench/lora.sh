#!/usr/bin/env bash
# Decode throughput with LoRA adapters under concurrent load, against the base model alone:
# hearth serve and llama-server (built from the same llama.cpp tree, scripts/bench/build-llama-peers.sh)
# both up, each with Qwen2.5-Coder-0.5B and the two random rank-8 adapters of
# scripts/make-lora-adapters.sh. Eight streaming clients (the official `openai` client, 128
# tokens each, ignore_eos) on the base alone, split over the two adapters, and split over the
# base and both adapters; rounds alternate (scripts/bench/parity.py). Prints JSON lines.
#   ROUNDS=4 THREADS=2 CLIENTS=8 MODEL=qwen scripts/bench/lora.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${THREADS:-2}
rounds=${ROUNDS:-4}
clients=${CLIENTS:-8}
models_dir=$(scripts/fetch-test-models.sh)
peers=$(scripts/bench/build-llama-peers.sh)
venv=$(scripts/client-venv.sh)
cargo build --release --workspace --all-targets --quiet
bin="${CARGO_TARGET_DIR:-target}/release/hearth"
case "${MODEL:-qwen}" in
  qwen) m="$models_dir/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf"; prefix=qwen05 ;;
  smollm2) m="$models_dir/SmolLM2-135M-Instruct.Q4_1.gguf"; prefix=smollm2 ;;
  *) echo "MODEL is qwen or smollm2" >&2; exit 2 ;;
esac
a="$models_dir/adapters/$prefix-a.gguf"
b="$models_dir/adapters/$prefix-b.gguf"
date -u +"date: %Y-%m-%d %H:%M UTC"; nproc | sed 's/^/cores: /'; grep -m1 'model name' /proc/cpuinfo
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
echo "logs in $out" >&2
data=$(mktemp -d)
trap 'kill ${spid:-} ${hpid:-} 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$data"' EXIT
source scripts/bench/common.sh
"$bin" --data-dir "$data" models import "$m" --name base >/dev/null 2>&1
"$bin" --data-dir "$data" models import "$a" --base base --name tuned-a >/dev/null 2>&1
"$bin" --data-dir "$data" models import "$b" --base base --name tuned-b >/dev/null 2>&1
p=$(free_port)
"$peers/llama-server" -m "$m" --lora "$a" --lora "$b" --lora-init-without-apply -t "$threads" -fa on -np 8 -c 8192 \
  --host 127.0.0.1 --port "$p" >"$out/llama-server.log" 2>&1 &
spid=$!
q=$(free_port)
"$bin" --data-dir "$data" --threads "$threads" serve --listen "127.0.0.1:$q" --model base >/dev/null 2>"$out/hearth-serve.log" &
hpid=$!
wait_healthy "http://127.0.0.1:$p"; wait_healthy "http://127.0.0.1:$q"
"$venv/bin/python" scripts/bench/parity.py --label "lora-$prefix" --clients "$clients" --rounds "$rounds" \
  --server "hearth-base=http://127.0.0.1:$q=base" \
  --server "hearth-2-adapters=http://127.0.0.1:$q=tuned-a,tuned-b" \
  --server "hearth-base+2-adapters=http://127.0.0.1:$q=base,tuned-a,tuned-b" \
  --server "llama-server-base=http://127.0.0.1:$p=lora:-1" \
  --server "llama-server-2-adapters=http://127.0.0.1:$p=lora:0,lora:1" \
  --server "llama-server-base+2-adapters=http://127.0.0.1:$p=lora:-1,lora:0,lora:1"
