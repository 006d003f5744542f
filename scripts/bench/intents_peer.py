#!/usr/bin/env python3
"""The peers of `hearth support intents train/eval` on BANKING77, with scikit-learn.

Three classifiers on the same train/test files, same 2 threads:
- TF-IDF (word 1-2-grams + char_wb 2-5-grams, sublinear tf) + LinearSVC(C=0.5);
- all-MiniLM-L6-v2 frozen sentence vectors + LogisticRegression(C=10);
- both feature sets side by side (sentence vectors × 2) + LinearSVC(C=0.5) — the recipe
  hearth implements (its SVM solver is the same dual coordinate descent as LIBLINEAR).
Prints accuracy, macro-F1 and seconds (embedding included where used) for each.

Usage (sentence-transformers and scikit-learn in a venv outside the repository):

    ~/.cache/hearth/venv-st/bin/pip install scikit-learn
    ~/.cache/hearth/venv-st/bin/python scripts/bench/intents_peer.py [--data DIR]
"""

import argparse
import csv
import os
import pathlib
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO = pathlib.Path(__file__).resolve().parents[2]


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def main() -> int:
    models = pathlib.Path(
        os.environ.get("HEARTH_TEST_MODELS", pathlib.Path.home() / ".cache/hearth/test-models")
    )
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/banking77"))
    parser.add_argument("--model", default=str(models / "all-MiniLM-L6-v2"))
    args = parser.parse_args()

    import numpy as np
    import torch
    from scipy.sparse import csr_matrix, hstack
    from sentence_transformers import SentenceTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.svm import LinearSVC

    torch.set_num_threads(2)
    train_x, train_y = load(pathlib.Path(args.data) / "train.csv")
    test_x, test_y = load(pathlib.Path(args.data) / "test.csv")

    def report(name, predicted, seconds):
        acc = accuracy_score(test_y, predicted)
        f1 = f1_score(test_y, predicted, average="macro")
        print(f"peer={name} accuracy={acc:.4f} macro_f1={f1:.4f} seconds={seconds:.1f}")

    t = time.time()
    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
    a = hstack([words.fit_transform(train_x), chars.fit_transform(train_x)]).tocsr()
    b = hstack([words.transform(test_x), chars.transform(test_x)]).tocsr()
    svm = LinearSVC(C=0.5).fit(a, train_y)
    report("tfidf+linearsvc", svm.predict(b), time.time() - t)
    tfidf_seconds = time.time() - t

    t = time.time()
    model = SentenceTransformer(args.model, device="cpu")
    e_train = model.encode(train_x, batch_size=64, normalize_embeddings=True)
    e_test = model.encode(test_x, batch_size=64, normalize_embeddings=True)
    embed_seconds = time.time() - t
    lr = LogisticRegression(C=10, max_iter=1000).fit(e_train, train_y)
    report("minilm+logreg", lr.predict(e_test), time.time() - t)

    t = time.time()
    a2 = hstack([a, csr_matrix(np.asarray(e_train) * 2.0)]).tocsr()
    b2 = hstack([b, csr_matrix(np.asarray(e_test) * 2.0)]).tocsr()
    both = LinearSVC(C=0.5).fit(a2, train_y)
    report("tfidf+minilm+linearsvc", both.predict(b2), time.time() - t + embed_seconds + tfidf_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
