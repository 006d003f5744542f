"""The `implicit` library's ALS (and a numpy EASE) on a split written by
`hearth recs eval --save-split DIR`: training time and NDCG@K with the same full-ranking
protocol (every item the user has not interacted with in training is a candidate).

usage: recs_peer.py DIR --factors F --regularization R --alpha A --iterations N [--k 10]
Prints one JSON line per model. Run with scripts/bench/recs.sh (it makes the venv).
"""
import argparse, json, time

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits


def read(path):
    users, items = [], []
    with open(path) as f:
        next(f)
        for line in f:
            u, i, *_ = line.rstrip("\n").split("\t")
            users.append(u)
            items.append(i)
    return users, items


def ndcg_at_k(ranked, held, k):
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    total = 0.0
    for u, h in held.items():
        hits = np.array([i in h for i in ranked[u][:k]], dtype=float)
        total += (hits * discounts).sum() / discounts[: min(len(h), k)].sum()
    return total / len(held)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--regularization", type=float, default=0.01)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--ease-lambda", type=float, default=500.0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    tu, ti = read(f"{args.dir}/train.tsv")
    su, si = read(f"{args.dir}/test.tsv")
    uid = {u: n for n, u in enumerate(sorted(set(tu) | set(su)))}
    iid = {i: n for n, i in enumerate(sorted(set(ti) | set(si)))}
    rows = np.array([uid[u] for u in tu])
    cols = np.array([iid[i] for i in ti])
    X = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(uid), len(iid)))
    held = {}
    for u, i in zip(su, si):
        held.setdefault(uid[u], set()).add(iid[i])
    users = np.array(sorted(held))

    from implicit.als import AlternatingLeastSquares
    from implicit.cpu.als import AlternatingLeastSquares as CpuAls  # noqa: F401  (CPU build)

    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(
            factors=args.factors, regularization=args.regularization, alpha=args.alpha,
            iterations=args.iterations, calculate_training_loss=False, random_state=42,
            num_threads=args.threads, use_gpu=False,
        )
        start = time.perf_counter()
        model.fit(X, show_progress=False)
        als_seconds = time.perf_counter() - start
    ids, _ = model.recommend(users, X[users], N=args.k, filter_already_liked_items=True)
    ranked = {u: list(r) for u, r in zip(users, ids)}
    print(json.dumps({"peer": "implicit ALS", "factors": args.factors, "regularization": args.regularization,
                      "alpha": args.alpha, "iterations": args.iterations,
                      "train_seconds": round(als_seconds, 3), "ndcg": round(ndcg_at_k(ranked, held, args.k), 4)}))

    start = time.perf_counter()
    G = (X.T @ X).toarray().astype(np.float64)
    G[np.diag_indices_from(G)] += args.ease_lambda
    P = np.linalg.inv(G)
    B = -P / np.diag(P)
    B[np.diag_indices_from(B)] = 0.0
    ease_seconds = time.perf_counter() - start
    scores = np.asarray(X[users] @ B)
    scores[X[users].nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1)[:, : args.k]
    ranked = {u: list(r) for u, r in zip(users, top)}
    print(json.dumps({"peer": "numpy EASE", "lambda": args.ease_lambda, "train_seconds": round(ease_seconds, 3),
                      "ndcg": round(ndcg_at_k(ranked, held, args.k), 4)}))


if __name__ == "__main__":
    main()
