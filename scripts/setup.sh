#!/usr/bin/env bash
# Installs what building hearth needs on a fresh Debian/Ubuntu machine: cmake and clang/libclang
# (llama.cpp is compiled from source by llama-cpp-sys-2; bindgen needs libclang) and Python's
# venv module (test tooling), PostgreSQL's server and client (tests on PostgreSQL), openssl (test certificates), Chromium (the console's browser tests). Idempotent; does nothing when everything is there.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v clang >/dev/null || need+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
command -v c++ >/dev/null || need+=(g++)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# The tests run every store-level test on PostgreSQL too: its server binaries and psql.
command -v psql >/dev/null || need+=(postgresql-client)
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# The TLS tests make a certificate authority and a server certificate with it.
command -v openssl >/dev/null || need+=(openssl)
# The console's end-to-end tests drive a real headless Chromium (Playwright, through its path).
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust from rustup.rs" >&2; exit 1; }
