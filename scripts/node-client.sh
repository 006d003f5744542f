#!/usr/bin/env bash
# Installs (once) the Node packages the tests use, outside the repository: the official `openai`
# JS SDK (tests/openai_js) and playwright-core, which drives the system's Chromium in the
# console's browser tests (tests/console). Prints the node_modules directory (for NODE_PATH).
set -euo pipefail
dir="${XDG_CACHE_HOME:-$HOME/.cache}/hearth/node-client"
if [ ! -f "$dir/node_modules/openai/package.json" ] || [ ! -f "$dir/node_modules/playwright-core/package.json" ]; then
  command -v npm >/dev/null || { echo "node-client: npm not found (install Node.js 18+)" >&2; exit 1; }
  mkdir -p "$dir"
  npm install --prefix "$dir" --silent --no-audit --no-fund 'openai@^6' 'playwright-core@^1.49' >&2
fi
echo "$dir/node_modules"
