#!/usr/bin/env bash
# Builds llama.cpp's own llama-bench, llama-batched-bench and llama-server from the
# llama-cpp-python sdist's vendored llama.cpp (the peer for the LLM benchmarks), outside the
# repository. Prints the directory holding the binaries. Idempotent.
set -euo pipefail
root="${XDG_CACHE_HOME:-$HOME/.cache}/hearth/llama-peers"
bin="$root/build/bin"
if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-batched-bench" ] && [ -x "$bin/llama-server" ]; then
  echo "$bin"; exit 0
fi
mkdir -p "$root"
if [ ! -d "$root/src" ]; then
  python3 -m pip download --quiet --no-deps --no-binary :all: -d "$root/sdist" llama-cpp-python >&2
  mkdir -p "$root/src"
  tar -xzf "$root"/sdist/llama_cpp_python-*.tar.gz -C "$root/src" --strip-components=1
fi
cmake -S "$root/src/vendor/llama.cpp" -B "$root/build" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=ON >&2
cmake --build "$root/build" -j"$(nproc)" --target llama-bench llama-batched-bench llama-server >&2
echo "$bin"
