#!/usr/bin/env bash
# The console's spend view on a year of requests (docs/benchmarks.md): fills a ledger with
# ROWS synthetic requests over 365 days, times the view from the daily rollups beside the same
# figures computed from every row (`hearth bench spend`), then serves that ledger and times
# the spend API over HTTP and the page's first render in headless Chromium.
set -euo pipefail
. "$(dirname "$0")/../lib/wait-for-serve.sh"
cd "$(dirname "$0")/../.."
rows=${ROWS:-10000000}
cargo build --release -p hearth --quiet
bin="${CARGO_TARGET_DIR:-target}/release/hearth"
node_modules=$(scripts/node-client.sh)
dir=$(mktemp -d)
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait "${pid:-}" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
export HEARTH_LOG=warn
"$bin" bench spend --rows "$rows" --into "$dir/data"
password="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$password" | "$bin" --data-dir "$dir/data" users create bench --role viewer >/dev/null
"$bin" --data-dir "$dir/data" serve --listen 127.0.0.1:0 >"$dir/stdout" 2>"$dir/log" &
pid=$!
wait_for_serve "$pid" "$dir/stdout" "$dir/log"
HEARTH_URL="$url" HEARTH_CONSOLE_USER=bench HEARTH_CONSOLE_PASSWORD="$password" \
  NODE_PATH="$node_modules" node scripts/bench/console-render.mjs
