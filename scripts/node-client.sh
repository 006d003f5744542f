#!/usr/bin/env bash
# Installs (once) the official `openai` JS SDK that tests/openai_js uses, outside the
# repository; prints the node_modules directory (for NODE_PATH).
set -euo pipefail
dir="${XDG_CACHE_HOME:-$HOME/.cache}/hearth/node-client"
if [ ! -f "$dir/node_modules/openai/package.json" ]; then
  command -v npm >/dev/null || { echo "node-client: npm not found (install Node.js 18+)" >&2; exit 1; }
  mkdir -p "$dir"
  npm install --prefix "$dir" --silent --no-audit --no-fund 'openai@^6' >&2
fi
echo "$dir/node_modules"
