#!/usr/bin/env bash
# Writes the test LoRA adapters (see scripts/make-lora-adapters.py) into MODELS_DIR/adapters,
# with gguf and numpy from a cached venv. Deterministic and idempotent.
#
#   scripts/make-lora-adapters.sh [MODELS_DIR]   # default $HEARTH_TEST_MODELS or the cache
set -euo pipefail
cd "$(dirname "$0")/.."
models="${1:-${HEARTH_TEST_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/test-models}}"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/hearth/venv-gguf"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import gguf, numpy' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check 'gguf==0.17.1' 'numpy>=1.26,<3' >&2
fi
exec "$venv/bin/python" scripts/make-lora-adapters.py "$models/adapters" "$models"
