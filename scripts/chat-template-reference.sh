#!/usr/bin/env bash
# Renders the chat-template conformance suite's expected texts with Python's jinja2
# (scripts/render-chat-templates.py says how). Pass --check to verify the committed file instead.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${HEARTH_CACHE:-$HOME/.cache/hearth}/venv-templates"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import jinja2, sys; sys.exit(jinja2.__version__ != "3.1.6")' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'jinja2==3.1.6'
fi
exec "$venv/bin/python" scripts/render-chat-templates.py "$@"
