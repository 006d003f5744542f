#!/usr/bin/env python3
"""The peer of crates/hearth-infer/examples/bench_embed.rs: sentence-transformers (PyTorch, CPU).

Same protocol on both sides: the first N texts of banking77's train.csv (column `text`),
batch size 32, a fixed thread count, one warm-up pass, then the best of R timed passes over
all N texts. Prints one line:

    peer=sentence-transformers texts=512 chars=... tokens=... threads=2 batch=32 best_s=... texts_per_s=...

Usage (sentence-transformers lives in a venv outside the repository, see
scripts/make-embedding-fixture.py):

    ~/.cache/hearth/venv-st/bin/python scripts/bench/embed_peer.py \
        [--model DIR] [--data CSV] [--n 512] [--batch 32] [--threads 2] [--repeats 5]
"""

import argparse
import csv
import os
import pathlib
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = pathlib.Path(__file__).resolve().parents[2]


def main() -> int:
    models = pathlib.Path(
        os.environ.get("HEARTH_TEST_MODELS", pathlib.Path.home() / ".cache/hearth/test-models")
    )
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(models / "all-MiniLM-L6-v2"))
    parser.add_argument(
        "--data", default=str(REPO.parent / "shared/data/banking77/train.csv")
    )
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    # Thread counts must be fixed before torch starts its pools.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["MKL_NUM_THREADS"] = str(args.threads)
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)

    with open(args.data, newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)][: args.n]
    if len(texts) < args.n:
        print(f"only {len(texts)} texts in {args.data}", file=sys.stderr)
        return 1

    model = SentenceTransformer(args.model, device="cpu")
    model.eval()
    tokens = sum(
        len(ids)
        for ids in model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)[
            "input_ids"
        ]
    )

    def run():
        with torch.inference_mode():
            return model.encode(texts, batch_size=args.batch, convert_to_numpy=True)

    vectors = run()  # warm-up
    assert vectors.shape == (len(texts), 384) or vectors.shape[0] == len(texts)
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    print(
        f"peer=sentence-transformers texts={len(texts)} chars={sum(len(t) for t in texts)} "
        f"tokens={tokens} threads={args.threads} batch={args.batch} "
        f"best_s={best:.4f} texts_per_s={len(texts) / best:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
