#!/usr/bin/env bash
# Obtains MovieLens-100K (943 users, 1,682 movies, 100,000 ratings) from the recbole 1.2.1
# wheel on PyPI, which ships it as RecBole atomic files, and caches it outside the repository.
# GroupLens' terms forbid redistributing the data: never commit it. Idempotent.
#
#   scripts/fetch-movielens.sh     # -> prints the directory (ml-100k.inter, .item, .user)
set -euo pipefail

cache="${XDG_CACHE_HOME:-$HOME/.cache}/hearth"
dir="${HEARTH_MOVIELENS:-$cache/data/ml-100k}"
wheel_sha=9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407
log() { printf 'fetch-movielens: %s\n' "$*" >&2; }

if [ ! -s "$dir/ml-100k.inter" ] || [ ! -s "$dir/ml-100k.item" ] || [ ! -s "$dir/ml-100k.user" ]; then
  wheels="$cache/wheels"
  mkdir -p "$wheels" "$dir"
  wheel="$wheels/recbole-1.2.1-py3-none-any.whl"
  if [ ! -f "$wheel" ] || [ "$(sha256sum "$wheel" | cut -d' ' -f1)" != "$wheel_sha" ]; then
    log "downloading recbole==1.2.1 from PyPI"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$wheels" recbole==1.2.1 >&2
  fi
  [ "$(sha256sum "$wheel" | cut -d' ' -f1)" = "$wheel_sha" ] || { log "checksum mismatch for $wheel"; exit 1; }
  python3 - "$wheel" "$dir" <<'PY'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for ext in ("inter", "item", "user"):
        tmp = os.path.join(dest, f".ml-100k.{ext}.partial")
        with z.open(f"recbole/dataset_example/ml-100k/ml-100k.{ext}") as src, open(tmp, "wb") as dst:
            dst.write(src.read())
        os.replace(tmp, os.path.join(dest, f"ml-100k.{ext}"))
PY
fi
printf '%s\n' "$dir"
