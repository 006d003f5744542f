#!/usr/bin/env bash
# Builds llama.cpp's own llama-bench, llama-batched-bench and llama-server (the peers of the LLM
# benchmarks) from the very llama.cpp tree that hearth's llama-cpp-sys-2 compiles, with the
# CMake options llama-cpp-sys-2 gives it for hearth's build (static libraries, GGML_NATIVE,
# OpenMP, Release, the same C/C++ flags), so that a comparison measures hearth's own code and
# nothing else: ggml, llama and common are the same files built the same way.
#
# The crate ships no sources for llama.cpp's tools. The front ends of those three (tools/server,
# tools/llama-bench, tools/batched-bench, tools/ui, scripts/ui-assets.cmake) come from the
# nearest published tree that has them, the llama-cpp-python 0.3.36 sdist's vendored
# llama.cpp (ggml 0.25.3 beside the crate's 0.26.0); they build against the crate's libraries
# with two lines changed (below). Prints the directory holding the binaries. Idempotent; the
# build is keyed by the crate's version.
set -euo pipefail
cd "$(dirname "$0")/../.."
crate=$(cargo metadata --format-version 1 --locked 2>/dev/null | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "llama-cpp-sys-2":
        print(p["version"], p["manifest_path"].rsplit("/", 1)[0]); break')
version=${crate%% *}
crate_dir=${crate#* }
[ -d "$crate_dir/llama.cpp/ggml" ] || { echo "llama-cpp-sys-2 sources not found (cargo fetch first)" >&2; exit 1; }
root="${XDG_CACHE_HOME:-$HOME/.cache}/hearth/peer/llama.cpp-sys-$version-$(sha256sum .cargo/config.toml | cut -c1-8)"
bin="$root/build/bin"
if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-batched-bench" ] && [ -x "$bin/llama-server" ]; then
  echo "$bin"; exit 0
fi
tools_version=0.3.36
tools="${XDG_CACHE_HOME:-$HOME/.cache}/hearth/peer/llama-cpp-python-$tools_version"
if [ ! -d "$tools/vendor/llama.cpp/tools/server" ]; then
  rm -rf "$tools"; mkdir -p "$tools"
  python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tools/sdist" "llama-cpp-python==$tools_version" >&2
  tar -xzf "$tools"/sdist/llama_cpp_python-*.tar.gz -C "$tools" --strip-components=1
fi
rm -rf "$root/src"; mkdir -p "$root"
cp -r "$crate_dir/llama.cpp" "$root/src"
for t in server llama-bench batched-bench ui; do
  rm -rf "$root/src/tools/$t"
  cp -r "$tools/vendor/llama.cpp/tools/$t" "$root/src/tools/$t"
done
mkdir -p "$root/src/scripts"
cp "$tools/vendor/llama.cpp/scripts/ui-assets.cmake" "$root/src/scripts/"
# The two lines the server needs changed to build against the crate's libraries, neither
# on a path the benchmarks take: the multimodal projector's memory estimate (its result type
# changed) and the opening of an MCP config file (a helper the crate's common lacks).
server="$root/src/tools/server"
sed -i 's/mtmd_get_memory_usage(mmproj_path.c_str(), mparams);/mtmd_get_memory_usage(mmproj_path.c_str(), mparams).backend_mem_usage;/' "$server/server-context.cpp"
sed -i 's/std::ifstream f = fs_open_ifstream(params.mcp_servers_config, std::ios::in);/std::ifstream f(params.mcp_servers_config, std::ios::in);/' "$server/server-mcp.cpp"
grep -q 'mparams).backend_mem_usage;' "$server/server-context.cpp"
grep -q 'std::ifstream f(params.mcp_servers_config' "$server/server-mcp.cpp"
cat >"$root/src/tools/CMakeLists.txt" <<'EOF'
# The benchmark peers only: the crate ships no sources for llama.cpp's other tools.
find_package(Threads REQUIRED)
llama_add_compile_flags()
add_subdirectory(batched-bench)
add_subdirectory(llama-bench)
add_subdirectory(ui)
add_subdirectory(server)
add_subdirectory(mtmd)
EOF
# llama-cpp-sys-2's build.rs: BUILD_SHARED_LIBS off, GGML_NATIVE on for target-cpu=native
# (.cargo/config.toml), LLAMA_CURL off, the profile LLAMA_LIB_PROFILE names (Release), the
# flags the cc crate adds (-ffunction-sections -fdata-sections -fPIC -m64) and the ones
# .cargo/config.toml gives it (no AMX kernels).
flags="-ffunction-sections -fdata-sections -fPIC -m64"
if [ "$(uname -m)" = x86_64 ]; then
  extra=$(sed -n 's/^CFLAGS_x86_64_unknown_linux_gnu = "\(.*\)"$/\1/p' .cargo/config.toml)
  flags="$flags $extra"
fi
cmake -S "$root/src" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_BUILD_UI=OFF "-DCMAKE_C_FLAGS=$flags" "-DCMAKE_CXX_FLAGS=$flags" >&2
cmake --build "$root/build" -j"$(nproc)" --target llama-bench llama-batched-bench llama-server >&2
echo "$bin"
