#!/usr/bin/env python3
"""Writes the reference vectors the embedding parity test compares against.

Runs sentence-transformers (PyTorch, CPU) once on a fixed list of sentences with the local
all-MiniLM-L6-v2 and writes crates/hearth-infer/tests/fixtures/minilm_reference.json:
the model's settings, and per sentence its text, its token count after truncation (special
tokens included) and its vector rounded to 6 decimals.

Needs sentence-transformers in a venv outside the repository (several GB of torch wheels):

    python3 -m venv ~/.cache/hearth/venv-st
    ~/.cache/hearth/venv-st/bin/pip install sentence-transformers
    scripts/fetch-test-models.sh
    ~/.cache/hearth/venv-st/bin/python scripts/make-embedding-fixture.py

The model directory comes from HEARTH_TEST_MODELS (default ~/.cache/hearth/test-models), as in
the tests. Nothing is downloaded (HF_HUB_OFFLINE=1).
"""

import json
import os
import pathlib
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import sentence_transformers  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
OUT = REPO / "crates/hearth-infer/tests/fixtures/minilm_reference.json"

LONG_PARAGRAPH = (
    "Hearth runs open-weight models on a company's own machines. "
    "It pulls models from the Hub, keeps a local registry, serves an OpenAI-compatible API, "
    "and meters every call so that the savings against proprietary APIs are a number. "
)

SENTENCES = [
    # short
    "Hello!",
    "I am still waiting on my card?",
    "What can I do if my card still hasn't arrived after 2 weeks?",
    "refund",
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog.",
    # punctuation, numbers, casing, code-ish text
    "Order #W2611340 — shipped 2024-03-05, ETA: 3–5 business days (maybe).",
    "WHY IS MY TRANSFER PENDING???",
    "e-mail: support@example.com; phone: +44 (0)20 7946 0958...",
    "fn main() { println!(\"{}\", 1 + 2); } // Rust",
    "   leading and trailing spaces   ",
    # unicode: accents, CJK, emoji, RTL, combining marks
    "Café crème brûlée à la française, s'il vous plaît.",
    "東京は日本の首都です。",
    "Я люблю машинное обучение.",
    "مرحبا بالعالم",
    "I ❤️ embeddings 🚀🔥 — naïve façade coöperate",
    "Straße, Ærø, Øresund, Ångström, ﬁne ligature",
    # medium
    "Sentence embeddings map a piece of text to a fixed-size vector so that texts with "
    "similar meanings end up close to each other, which makes semantic search, clustering "
    "and deduplication straightforward.",
    # long: more than 256 tokens, exercises truncation to max_seq_length
    LONG_PARAGRAPH * 8,
    "word " * 400,
]


def main() -> int:
    root = pathlib.Path(
        os.environ.get("HEARTH_TEST_MODELS", pathlib.Path.home() / ".cache/hearth/test-models")
    )
    model_dir = root / "all-MiniLM-L6-v2"
    if not (model_dir / "model.safetensors").is_file():
        print(f"{model_dir} is missing: run scripts/fetch-test-models.sh", file=sys.stderr)
        return 1

    torch.manual_seed(0)
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.eval()

    tokenizer = model.tokenizer
    token_counts = [
        len(tokenizer(s, truncation=True, max_length=model.max_seq_length)["input_ids"])
        for s in SENTENCES
    ]
    assert max(token_counts) == model.max_seq_length, "no sentence exercises truncation"

    # One sentence at a time: no padding anywhere, the plainest reference.
    vectors = [
        model.encode([s], batch_size=1, convert_to_numpy=True, normalize_embeddings=False)[0]
        for s in SENTENCES
    ]

    fixture = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "generator": "scripts/make-embedding-fixture.py",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "max_seq_length": model.max_seq_length,
        "dims": len(vectors[0]),
        "sentences": [
            {
                "text": text,
                "tokens": count,
                "vector": [round(float(v), 6) for v in vector],
            }
            for text, count, vector in zip(SENTENCES, token_counts, vectors)
        ],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # One sentence per line: readable diffs without a line per float.
    sentences = fixture.pop("sentences")
    header = json.dumps(fixture, ensure_ascii=False, indent=1)[:-2]
    lines = ",\n  ".join(json.dumps(s, ensure_ascii=False) for s in sentences)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(f'{header},\n "sentences": [\n  {lines}\n ]\n}}\n')
    print(f"wrote {OUT} ({len(SENTENCES)} sentences, {fixture['dims']} dims)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
