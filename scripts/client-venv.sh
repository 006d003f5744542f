#!/usr/bin/env bash
# Makes (once) the virtual environment with the official `openai` and `anthropic` Python
# clients that the client test suites and the API benchmarks use, outside the repository; prints its path.
set -euo pipefail
venv="${XDG_CACHE_HOME:-$HOME/.cache}/hearth/venv-client"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import openai, anthropic, jsonschema' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check 'openai>=1.50,<3' 'anthropic>=0.40,<1' 'jsonschema>=4' 'pytest>=8' >&2
fi
echo "$venv"
