#!/usr/bin/env python3
"""Writes small LoRA adapters for the test models, in llama.cpp's LoRA GGUF layout.

    make-lora-adapters.py OUT_DIR [MODELS_DIR]

MODELS_DIR defaults to $HEARTH_TEST_MODELS, else ~/.cache/hearth/test-models (the directory
scripts/fetch-test-models.sh fills). Needs the `gguf` and `numpy` packages; the wrapper
scripts/make-lora-adapters.sh makes a venv with them and runs this with OUT_DIR =
MODELS_DIR/adapters.

Every adapter has rank 32 and targets blk.N.attn_q.weight and blk.N.attn_v.weight of every
block N, with the metadata convert_lora_to_gguf.py writes (general.architecture = the base's,
general.type = "adapter", adapter.type = "lora", adapter.lora.alpha = 16.0). Both matrices
are stored Q4_1 (hence rank 32, a Q4_1 block): llama.cpp's CPU products then take the same
kernel for one token as for a batch (its tinyBLAS path, from two tokens on, takes F32, F16,
BF16 and Q8_0 but not Q4_1), so an adapter's greedy output does not depend on what shares its
batch and tests can compare answers exactly, as flash attention makes them comparable for the
base.
In ggml's ne order, for a base weight of ne [n_in, n_out] lora_a has ne [n_in, r] and lora_b
ne [r, n_out] (see llama.cpp src/llama-adapter.cpp); gguf writes numpy shapes reversed, so the
numpy arrays are lora_a (r, n_in) and lora_b (n_out, r).

Shapes of the real bases are read from their GGUF headers, never written down here:

    smollm2-zero.gguf / qwen05-zero.gguf   lora_b all zeros: output identical to the base
    smollm2-a.gguf / qwen05-a.gguf         random (seeded): greedy output changes
    smollm2-b.gguf / qwen05-b.gguf         random, another seed: differs from base and from a
    smollm2-360m-shape.gguf                architecture "llama" with SmolLM2-360M's shapes
                                           (hidden 960, 32 blocks, kv width 320): llama.cpp
                                           refuses it against the 135M base (shape mismatch)

Deterministic: the same bytes on every run. A file whose bytes would not change is left as it
is (mtime included); a changed or missing one is written to a temporary file and renamed.
"""

import os
import pathlib
import sys

import gguf
import gguf.quants
import numpy as np

RANK = 32
ALPHA = 16.0
TARGETS = ("attn_q", "attn_v")
# Standard deviation of the random lora_a / lora_b entries of the "a" and "b" adapters. With
# alpha/rank = 0.5 this changes greedy text clearly while it stays (mostly) words.
STD_A = 0.15
STD_B = 0.15

BASES = {
    # prefix: file name in MODELS_DIR (as scripts/fetch-test-models.sh lays it out)
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen05": "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf",
}
# Fixed, distinct seeds per (base, variant).
SEEDS = {
    ("smollm2", "zero"): 1000,
    ("smollm2", "a"): 1001,
    ("smollm2", "b"): 1002,
    ("qwen05", "zero"): 2000,
    ("qwen05", "a"): 2001,
    ("qwen05", "b"): 2002,
    ("smollm2-360m", "shape"): 3000,
}
# SmolLM2-360M: hidden 960, 32 blocks, 15 query heads and 5 kv heads of 64.
SHAPE_360M = {"arch": "llama", "blocks": 32, "q": (960, 960), "v": (960, 320)}


def base_layout(path):
    """(architecture, {target tensor name: (n_in, n_out)}) from a base GGUF's header."""
    reader = gguf.GGUFReader(path)
    arch = reader.fields["general.architecture"].contents()
    targets = {}
    for t in reader.tensors:
        parts = t.name.split(".")
        if len(parts) == 4 and parts[0] == "blk" and parts[2] in TARGETS and parts[3] == "weight":
            ne = [int(n) for n in t.shape]
            if len(ne) != 2:
                raise SystemExit(f"{path}: {t.name} has ne {ne}, expected 2 dimensions")
            targets[t.name] = (ne[0], ne[1])
    if not targets:
        raise SystemExit(f"{path}: no blk.N.attn_q/attn_v weights found")
    return arch, targets


def synthetic_layout(spec):
    targets = {}
    for n in range(spec["blocks"]):
        for kind in TARGETS:
            targets[f"blk.{n}.{kind}.weight"] = spec["q" if kind == "attn_q" else "v"]
    return spec["arch"], targets


def block_order(name):
    parts = name.split(".")
    return (int(parts[1]), TARGETS.index(parts[2]))


def write_adapter(path, arch, targets, seed, zero_b, label):
    rng = np.random.default_rng(seed)
    tmp = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(tmp, arch)
    writer.add_name(f"hearth test LoRA {label}")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, ALPHA)
    for name in sorted(targets, key=block_order):
        n_in, n_out = targets[name]
        a = rng.standard_normal((RANK, n_in), dtype=np.float32) * np.float32(STD_A)
        if zero_b:
            b = np.zeros((n_out, RANK), dtype=np.float32)
        else:
            b = rng.standard_normal((n_out, RANK), dtype=np.float32) * np.float32(STD_B)
        writer.add_tensor(
            f"{name}.lora_a",
            gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q4_1),
            raw_dtype=gguf.GGMLQuantizationType.Q4_1,
        )
        writer.add_tensor(
            f"{name}.lora_b",
            gguf.quants.quantize(b, gguf.GGMLQuantizationType.Q4_1),
            raw_dtype=gguf.GGMLQuantizationType.Q4_1,
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if path.exists() and path.read_bytes() == tmp.read_bytes():
        tmp.unlink()
        return False
    os.replace(tmp, path)
    return True


def main():
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__.split("\n\n")[1])
    out = pathlib.Path(sys.argv[1])
    if len(sys.argv) == 3:
        models = pathlib.Path(sys.argv[2])
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        models = pathlib.Path(os.environ.get("HEARTH_TEST_MODELS") or os.path.join(cache, "hearth/test-models"))
    out.mkdir(parents=True, exist_ok=True)

    jobs = []
    for prefix, file_name in BASES.items():
        base = models / file_name
        if not base.is_file():
            raise SystemExit(f"make-lora-adapters: base model {base} not found (run scripts/fetch-test-models.sh)")
        arch, targets = base_layout(base)
        for variant in ("zero", "a", "b"):
            jobs.append((f"{prefix}-{variant}", arch, targets, SEEDS[(prefix, variant)], variant == "zero"))
    arch, targets = synthetic_layout(SHAPE_360M)
    jobs.append(("smollm2-360m-shape", arch, targets, SEEDS[("smollm2-360m", "shape")], False))

    for label, arch, targets, seed, zero_b in jobs:
        path = out / f"{label}.gguf"
        changed = write_adapter(path, arch, targets, seed, zero_b, label)
        state = "wrote" if changed else "up to date"
        print(f"make-lora-adapters: {state} {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
