#!/usr/bin/env python3
"""The reranking peer: sentence-transformers CrossEncoder (PyTorch, CPU).

Reads (query, document) pairs from a JSONL file, one {"query": ..., "document": ...} per line,
scores all of them once to warm up, then times --rounds passes of CrossEncoder.predict over all
pairs with --batch-size. Prints one JSON line:

    {"peer": "sentence-transformers", "pairs": 512, "seconds": [...], "pairs_per_s": ...}

pairs_per_s uses the median round. Usage (sentence-transformers lives in a venv outside the
repository, see scripts/make-cross-encoder-fixture.py):

    ~/.cache/hearth/venv-st/bin/python scripts/bench/rerank_peer.py \\
        --model DIR --pairs PAIRS.jsonl [--batch-size 32] [--threads 2] [--rounds 5]
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> int:
    models = pathlib.Path(
        os.environ.get("HEARTH_TEST_MODELS", pathlib.Path.home() / ".cache/hearth/test-models")
    )
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(models / "random-cross-encoder-minilm-l6"))
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    # Thread counts must be fixed before torch starts its pools.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["MKL_NUM_THREADS"] = str(args.threads)
    import torch
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(args.threads)

    with open(args.pairs, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    pairs = [[row["query"], row["document"]] for row in rows]
    if not pairs:
        print(f"no pairs in {args.pairs}", file=sys.stderr)
        return 1

    model = CrossEncoder(args.model, device="cpu")

    def run():
        return model.predict(pairs, batch_size=args.batch_size, show_progress_bar=False)

    scores = run()  # warm-up
    assert len(scores) == len(pairs)
    seconds = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        run()
        seconds.append(round(time.perf_counter() - start, 4))
    print(
        json.dumps(
            {
                "peer": "sentence-transformers",
                "pairs": len(pairs),
                "seconds": seconds,
                "pairs_per_s": round(len(pairs) / statistics.median(seconds), 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
