"""Rerank and score over plain HTTP against the live server: `/v1/rerank` (Jina's and
Cohere's shape) on an embedder, a chat model judging yes/no and a cross-encoder; `/rerank` in
TEI's shape choosing the one cross-encoder when no model is named; `/v1/score`; the key
required on all three."""

import math

import httpx
import pytest

from conftest import KEY, URL

DOCS = [
    "Bananas are a yellow fruit.",
    "Paris is the capital and largest city of France.",
    "The train leaves at nine.",
]
QUERY = "What is the capital of France?"


def post(path, body, key=KEY):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{URL}{path}", json=body, headers=headers, timeout=120)


@pytest.mark.parametrize("model", ["minilm", "qwen", "tiny-ce"])
def test_rerank_orders_documents_best_first(model):
    r = post("/v1/rerank", {"model": model, "query": QUERY, "documents": DOCS, "top_n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == model
    results = body["results"]
    assert len(results) == 2
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    for x in results:
        assert x["document"]["text"] == DOCS[x["index"]]
    assert body["usage"]["total_tokens"] > 0
    if model != "tiny-ce":  # the random cross-encoder knows nothing of capitals
        assert results[0]["index"] == 1, body


def test_tei_rerank_uses_the_one_cross_encoder():
    r = post("/rerank", {"query": QUERY, "texts": DOCS, "raw_scores": True})
    assert r.status_code == 200, r.text
    ranks = r.json()
    assert sorted(x["index"] for x in ranks) == [0, 1, 2]
    raw = {x["index"]: x["score"] for x in ranks}
    jina = post("/v1/rerank", {"model": "tiny-ce", "query": QUERY, "documents": DOCS}).json()
    for x in jina["results"]:
        assert math.isclose(1 / (1 + math.exp(-raw[x["index"]])), x["relevance_score"], abs_tol=1e-6)


def test_score_one_against_many():
    r = post("/v1/score", {"model": "minilm", "text_1": QUERY, "text_2": DOCS})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2]
    assert max(data, key=lambda d: d["score"])["index"] == 1


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank", "/v1/score"])
def test_the_key_is_required(path):
    r = post(path, {"model": "minilm", "query": "q", "documents": ["d"]}, key=None)
    assert r.status_code == 401, r.text
