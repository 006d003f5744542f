#!/usr/bin/env bash
# Installs (once) playwright-core, which the console's browser tests (tests/console) use to drive
# the system's Chromium; outside the repository. Prints the node_modules directory (NODE_PATH).
set -euo pipefail
dir="${XDG_CACHE_HOME:-$HOME/.cache}/hearth/browser-client"
if [ ! -f "$dir/node_modules/playwright-core/package.json" ]; then
  command -v npm >/dev/null || { echo "browser-client: npm not found (install Node.js 18+)" >&2; exit 1; }
  mkdir -p "$dir"
  npm install --prefix "$dir" --silent --no-audit --no-fund 'playwright-core@^1.49' >&2
fi
echo "$dir/node_modules"
