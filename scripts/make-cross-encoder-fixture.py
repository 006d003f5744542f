#!/usr/bin/env python3
"""Writes tiny random cross-encoders and the reference scores the reranker parity test compares against.

Two checkpoints, each under crates/hearth-infer/tests/fixtures/cross-encoders/:

    bert/          BertForSequenceClassification + a WordPiece tokenizer (token type ids 0/1)
    xlm-roberta/   XLMRobertaForSequenceClassification + a Unigram tokenizer (positions from 2)

Both tokenizers are trained here on a small embedded corpus, both models are randomly initialised
with fixed seeds (hidden 32, 2 layers, 4 heads, vocabulary about 600, every bias and LayerNorm
randomised so that a loader which drops one fails parity), and both folders use the
sentence-transformers CrossEncoder layout: config.json (with "architectures" and the
"sentence_transformers" activation entry), weights.json (the recipe hearth-testdata writes
model.safetensors from: the weights are not committed), tokenizer.json,
tokenizer_config.json, special_tokens_map.json, plus the modules.json,
sentence_bert_config.json and config_sentence_transformers.json that CrossEncoder.save writes.

Next to each model, reference.json holds the model's settings and, per (query, document) pair,
the input_ids and token_type_ids transformers fed the model, the raw logit and its sigmoid
score, both rounded to 6 decimals. Pairs are tokenized as CrossEncoder.predict does:
tokenizer(query, document, truncation="longest_first", max_length=64), one pair per forward
pass, no padding. The script loads each folder back with CrossEncoder, checks that predict
reproduces the scores to 1e-5, and checks that tokenizers.Tokenizer.from_file on the written
tokenizer.json, with truncation enabled at max_length 64 and strategy longest_first, gives the
same ids as transformers.

With --bench-model [DIR] it writes only a random cross-encoder of the
cross-encoder/ms-marco-MiniLM-L6-v2 shape (hidden 384, 6 layers, 12 heads, intermediate 1536,
512 positions) with the tokenizer of the local all-MiniLM-L6-v2 (vocabulary 30522), into DIR
(default $HEARTH_TEST_MODELS/random-cross-encoder-minilm-l6). Its weights are random and only
serve throughput benchmarks.

Needs sentence-transformers in a venv outside the repository (several GB of torch wheels):

    python3 -m venv ~/.cache/hearth/venv-st
    ~/.cache/hearth/venv-st/bin/pip install torch transformers sentence-transformers tokenizers safetensors
    ~/.cache/hearth/venv-st/bin/python scripts/make-cross-encoder-fixture.py
    scripts/fetch-test-models.sh   # only for --bench-model
    ~/.cache/hearth/venv-st/bin/python scripts/make-cross-encoder-fixture.py --bench-model

The all-MiniLM-L6-v2 directory comes from HEARTH_TEST_MODELS (default
~/.cache/hearth/test-models), as in the tests. Nothing is downloaded (HF_HUB_OFFLINE=1).
"""

import argparse
import json
import math
import os
import pathlib
import shutil
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sentence_transformers  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import CrossEncoder  # noqa: E402
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers  # noqa: E402
from tokenizers.processors import TemplateProcessing  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
    XLMRobertaTokenizerFast,
)

REPO = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = REPO / "crates/hearth-infer/tests/fixtures/cross-encoders"
GENERATOR = "scripts/make-cross-encoder-fixture.py"
SEED = 20240305
MAX_LENGTH = 64
VOCAB_SIZE = 600
SIGMOID = "torch.nn.modules.activation.Sigmoid"
# Files CrossEncoder.save writes besides the model and tokenizer ones.
ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")

CORPUS = [
    "Where is my order? It shipped on 2024-03-05 and the tracking number is 1Z999AA10123456784.",
    "Your order has been dispatched from our warehouse and should arrive within 3-5 business days.",
    "How do I return a product that arrived damaged?",
    "Returns are accepted within 30 days of delivery if the item is unused and in its original box.",
    "Refunds are issued to the original payment method within 5 to 7 business days.",
    "I was charged twice for the same order, can I get a refund for the duplicate payment?",
    "Standard shipping is free on orders over $50; express shipping costs $12.99.",
    "We ship to Canada, Mexico, the United Kingdom, France, Germany and Japan.",
    "The package was left at the front door but I never received it.",
    "Can I change the shipping address after the order was placed?",
    "Orders can be cancelled free of charge until they leave the warehouse.",
    "My refund is still pending after two weeks, what should I do?",
    "Please include the return label and the order number inside the parcel.",
    "The product page says the jacket is waterproof, but it leaked in the rain.",
    "This blender has a 2-year warranty covering the motor and the glass jar.",
    "Exchanges for a different size are free; we send the new item once the return is scanned.",
    "Gift cards cannot be refunded or exchanged for cash.",
    "Customs duties for international shipments are paid by the recipient.",
    "Track your parcel online with the link in the confirmation e-mail.",
    "The courier attempted delivery on Monday; the parcel is waiting at the local post office.",
    "Products bought on sale can be returned for store credit only.",
    "Our support team answers e-mails within 24 hours, Monday to Friday.",
    "The headphones I ordered were the wrong colour: I asked for black, not white.",
    "A restocking fee of 15% applies to opened electronics.",
    "Le colis est arrivé abîmé, je voudrais un remboursement s'il vous plaît.",
    "Café crème, crème brûlée et pâtisseries livrées à domicile à Montréal.",
    "Die Rücksendung ist innerhalb von 30 Tagen kostenlos; Straße und Hausnummer bitte angeben.",
    "El pedido llegó tarde y la caja estaba rota; ¿cómo solicito la devolución?",
    "Naïve façade, coöperate, résumé, jalapeño, Ångström and Øresund are spelled with accents.",
    "東京への配送は2日かかります。返品は30日以内です。",
    "注文の返金は5日以内に処理されます。",
    "Fast shipping 🚀 and easy returns 📦 for every order!",
    "Rate your delivery: ⭐⭐⭐⭐⭐ excellent, ⭐ poor.",
    "Order #W2611340 was split into two shipments: the shoes first, the socks later.",
    "The discount code SAVE10 takes 10% off the subtotal before tax.",
    "Prices include VAT; the invoice is attached to the shipping confirmation.",
    "Replacement parts for the coffee machine are shipped separately.",
    "I would like to return the laptop because the battery lasts only one hour.",
    "Your return has been received and your refund has been approved.",
    "We are sorry that the product did not meet your expectations.",
    "The mattress comes with a 100-night trial and free pickup for returns.",
    "Shipping to P.O. boxes is not available for large items such as furniture.",
    "Can I pay with PayPal, Apple Pay or a bank transfer?",
    "The order status shows delivered, but the parcel is nowhere to be found.",
    "Please allow an extra day for deliveries to rural areas and islands.",
    "Kitchen knives, batteries and perfumes cannot be shipped by air.",
    "Size guide: the shoes run small, so we recommend ordering half a size up.",
    "Thank you for shopping with us, see you soon!",
    "Your subscription renews automatically every month unless you cancel it beforehand.",
    "The warehouse in Rotterdam handles all European orders and returns.",
    "Which carrier delivers my parcel: DHL, UPS, FedEx or the national post?",
    "Out-of-stock products are restocked weekly; sign up to be notified by e-mail.",
    "The refund was credited to my account, but the amount is missing the shipping fee.",
    "Assembly instructions for the bookshelf are printed inside the lid of the box.",
    "Pre-orders are charged when the item ships, not when the order is placed.",
    "Damaged in transit? Send us photos of the packaging and the product within 48 hours.",
    "Loyalty points expire after twelve months and cannot be transferred.",
    "We recommend insured delivery for valuable jewellery and watches.",
    "Ölflecken auf dem Sofa? Unser Kundendienst hilft gerne weiter.",
    "Envío gratuito en pedidos superiores a 40 €; devoluciones sin coste.",
    "Commande validée : livraison prévue jeudi entre 8 h et 12 h.",
    "Wireless chargers, phone cases and cables ship in recyclable packaging.",
    "Invoices can be downloaded as PDF from the account page under Orders.",
]

SHIPPING_POLICY = (
    "Shipping policy: orders placed before 2 p.m. ship the same business day from our "
    "warehouse; standard delivery takes 3-5 business days, express delivery takes 1-2. "
    "Tracking numbers are sent by e-mail once the parcel leaves the warehouse. "
    "Returns are accepted within 30 days, refunds are issued within 5 to 7 business days. "
)
LONG_QUERY = (
    "I ordered a waterproof jacket, a pair of running shoes and two packs of socks on Monday, "
    "paid for express shipping, and the tracking page still says the parcel is in the warehouse: "
    "can I cancel the order and get a refund for the shipping cost?"
)

PAIRS = [
    ("refund", "How do I get a refund for my order?"),
    ("Where is my order?", "Your order shipped on 2024-03-05 and should arrive in 3-5 business days."),
    ("Order #W2611340 — status?", "Order #W2611340: shipped, tracking 1Z999AA10123456784 (2 parcels)."),
    ("Can I return shoes after 30 days?", "Returns are accepted within 30 days of delivery."),
    ("How long does shipping take?", "How long does shipping take?"),
    ("   WHY IS MY REFUND PENDING???   ", "Refunds take 5–7 business days; pending ≠ lost."),
    ("remboursement colis abîmé", "Le colis est arrivé abîmé, je voudrais un remboursement."),
    ("Straße Ærø", "Naïve façade, coöperate, Ångström, ﬁne ligature."),
    ("東京への配送", "東京への配送は2日かかります。"),
    ("I ❤️ fast shipping 🚀", "Fast shipping 🚀🔥 is free over $50!"),
    ("возврат заказа", "مرحبا — returns are free."),
    ("warranty", ""),
    ("What is the return policy?", SHIPPING_POLICY * 3),
    (LONG_QUERY, "Yes, express shipping is refunded."),
    (LONG_QUERY, SHIPPING_POLICY * 2),
]


def bert_pipeline(tok: Tokenizer) -> Tokenizer:
    # The pipeline transformers' BertTokenizer builds around a vocabulary, so that the
    # tokenizer.json read by the tokenizers library and the one transformers rebuilds agree.
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def bert_tokenizer() -> Tokenizer:
    """WordPiece vocabulary learnt by byte-pair merges over the corpus words.

    This is the procedure of tokenizers' WordPieceTrainer, written out because that trainer breaks
    ties between equally frequent pairs in hash-map order, which changes from run to run; here
    ties go to the lexicographically smallest pair.
    """
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    probe = bert_pipeline(Tokenizer(models.WordPiece(unk_token="[UNK]")))
    counts: dict[str, int] = {}
    for line in CORPUS:
        normalized = probe.normalizer.normalize_str(line)
        for word, _ in probe.pre_tokenizer.pre_tokenize_str(normalized):
            counts[word] = counts.get(word, 0) + 1
    words = {w: [w[0]] + ["##" + c for c in w[1:]] for w in counts}
    vocab = specials + sorted({s for symbols in words.values() for s in symbols})
    known = set(vocab)
    while len(vocab) < VOCAB_SIZE:
        pairs: dict[tuple[str, str], int] = {}
        for w, symbols in words.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] = pairs.get(pair, 0) + counts[w]
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merged = best[0] + best[1][2:]
        for w, symbols in words.items():
            i, out = 0, []
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            words[w] = out
        if merged not in known:
            known.add(merged)
            vocab.append(merged)
    tok = bert_pipeline(
        Tokenizer(
            models.WordPiece(
                {t: i for i, t in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100
            )
        )
    )
    tok.add_special_tokens(specials)
    tok.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return tok


def xlm_roberta_pipeline(tok: Tokenizer) -> Tokenizer:
    # As transformers' XLMRobertaTokenizer builds it (no Precompiled charsmap here, so no
    # normalizer): whitespace split, then Metaspace with a prepended "▁".
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return tok


def xlm_roberta_tokenizer() -> Tokenizer:
    """Unigram vocabulary from tokenizers' UnigramTrainer, put in a canonical order.

    Two things in the trainer's output change from run to run: scores vary in the last bits, and
    the characters it has to add because pruning dropped them get the scores lowest + k * 1e-4
    in hash-set order. Those characters take the same scores here in text order, every score is
    rounded to 6 decimals, and pieces are sorted by score, then text.
    """
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trained = xlm_roberta_pipeline(Tokenizer(models.Unigram()))
    trained.train_from_iterator(
        CORPUS,
        trainers.UnigramTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials, unk_token="<unk>"),
    )
    pieces = json.loads(trained.to_str())["model"]["vocab"]
    assert [p for p, _ in pieces[: len(specials)]] == specials, pieces[:8]
    rest = pieces[len(specials) :]
    lowest = min(score for _, score in rest)

    def added_char(piece: str, score: float) -> bool:
        steps = (score - lowest) / 1e-4
        return len(piece) == 1 and abs(steps - round(steps)) < 1e-4

    added = sorted(p for p, s in rest if added_char(p, s))
    added_scores = sorted((s for p, s in rest if added_char(p, s)), reverse=True)
    rescored = dict(zip(added, added_scores))
    rest = sorted(
        ((p, round(rescored.get(p, s), 6)) for p, s in rest), key=lambda ps: (-ps[1], ps[0])
    )
    vocab = [(p, 0.0) for p in specials] + rest
    tok = xlm_roberta_pipeline(Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False)))
    tok.add_special_tokens(specials)
    # "<s> A </s></s> B </s>", token type ids all 0, as RobertaProcessing lays a pair out.
    tok.post_processor = TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    return tok


# The weights come from a generator simple enough to write again in any language, so the
# checkpoints need not be committed: weights.json records, per tensor, its name, shape and
# (offset, scale), and hearth-testdata writes the same model.safetensors bit for bit.
#   u_i   = (splitmix64(seed(name) + (i + 1) * 0x9E3779B97F4A7C15) >> 40) / 2**24 * 2 - 1
#   value = float32(offset + scale * u_i)            (in float64, then rounded to float32)
#   seed(name) = FNV-1a 64 of the name's UTF-8 bytes, XOR SEED
GOLDEN = 0x9E3779B97F4A7C15
MASK64 = (1 << 64) - 1


def fnv1a64(text: str) -> int:
    h = 0xCBF29CE484222325
    for b in text.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & MASK64
    return h


def portable_uniform(name: str, count: int) -> "numpy.ndarray":
    import numpy

    with numpy.errstate(over="ignore"):
        seed = numpy.uint64(fnv1a64(name) ^ SEED)
        z = seed + (numpy.arange(1, count + 1, dtype=numpy.uint64) * numpy.uint64(GOLDEN))
        z = (z ^ (z >> numpy.uint64(30))) * numpy.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> numpy.uint64(27))) * numpy.uint64(0x94D049BB133111EB)
        z = z ^ (z >> numpy.uint64(31))
    return (z >> numpy.uint64(40)).astype(numpy.float64) / float(1 << 24) * 2.0 - 1.0


def recipe_of(name: str) -> tuple[float, float]:
    """(offset, scale) of a parameter: every bias and LayerNorm moved off its default (0 or 1)
    so that a loader which drops one fails parity."""
    if "LayerNorm.weight" in name:
        return 1.0, 0.3
    if name.endswith("bias"):
        return 0.0, 0.2
    return 0.0, 0.5


def randomise(model: torch.nn.Module) -> list[dict]:
    """Sets every parameter from the portable generator; returns the recipe."""
    recipe = []
    with torch.no_grad():
        for name, param in model.named_parameters():
            offset, scale = recipe_of(name)
            values = (offset + scale * portable_uniform(name, param.numel())).astype("float32")
            param.copy_(torch.from_numpy(values).reshape(param.shape))
            recipe.append({"name": name, "shape": list(param.shape), "offset": offset, "scale": scale})
    return recipe


def write_recipe(out: pathlib.Path, recipe: list[dict]) -> None:
    """weights.json for the tensors model.safetensors holds, checked against the file."""
    from safetensors import safe_open

    by_name = {r["name"]: r for r in recipe}
    saved = []
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        for key in sorted(f.keys()):
            tensor = f.get_tensor(key)
            entry = by_name[key]
            assert list(tensor.shape) == entry["shape"], key
            again = (entry["offset"] + entry["scale"] * portable_uniform(key, tensor.numel())).astype("float32")
            assert (tensor.flatten().numpy() == again).all(), f"{key} is not its recipe"
            saved.append(entry)
    lines = ",\n ".join(json.dumps(e) for e in saved)
    (out / "weights.json").write_text(
        f'{{"seed": {SEED}, "generator": "{GENERATOR}", "tensors": [\n {lines}\n]}}\n',
        encoding="utf-8",
    )
    # The weights themselves stay out of the repository: hearth-testdata writes them again.
    (out / "model.safetensors").unlink()


def save_cross_encoder(model, tokenizer, special_tokens: dict, out: pathlib.Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # transformers 5 no longer writes special_tokens_map.json; older loaders read it.
    with open(out / "special_tokens_map.json", "w", encoding="utf-8") as f:
        f.write(json.dumps(special_tokens, indent=2) + "\n")
    # config.json carries the activation as sentence-transformers v4 and v5 write it.
    config_path = out / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    assert config.get("architectures"), config
    config["sentence_transformers"] = {"activation_fn": SIGMOID}
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    # The sentence-transformers module files, as CrossEncoder.save writes them.
    with tempfile.TemporaryDirectory() as tmp:
        CrossEncoder(str(out), device="cpu").save(tmp, create_model_card=False)
        for name in ST_FILES:
            shutil.copyfile(pathlib.Path(tmp) / name, out / name)


def write_reference(out: pathlib.Path, fixture: dict) -> None:
    # One pair per line: readable diffs without a line per id.
    pairs = fixture.pop("pairs")
    header = json.dumps(fixture, ensure_ascii=False, indent=1)[:-2]
    lines = ",\n  ".join(json.dumps(p, ensure_ascii=False) for p in pairs)
    with open(out, "w", encoding="utf-8") as f:
        f.write(f'{header},\n "pairs": [\n  {lines}\n ]\n}}\n')


def build_fixture(name: str, model, fast_tokenizer, special_tokens: dict, recipe: list) -> None:
    out = FIXTURES / name
    model.eval()
    save_cross_encoder(model, fast_tokenizer, special_tokens, out)

    # What CrossEncoder.predict tokenizes with: the tokenizer as transformers loads it back.
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert tokenizer.model_max_length == MAX_LENGTH, tokenizer.model_max_length
    rust_side = Tokenizer.from_file(str(out / "tokenizer.json"))
    rust_side.enable_truncation(MAX_LENGTH, strategy="longest_first")

    records = []
    untruncated = []
    with torch.inference_mode():
        for query, document in PAIRS:
            # A batch of one pair, as predict passes it: called with a single pair, transformers
            # would drop an empty document instead of encoding "[CLS] q [SEP] [SEP]".
            enc = tokenizer(
                [[query, document]],
                truncation="longest_first",
                max_length=MAX_LENGTH,
                return_tensors="pt",
            )
            ids = enc["input_ids"][0].tolist()
            if "token_type_ids" in enc:
                type_ids = enc["token_type_ids"][0].tolist()
            else:  # XLM-RoBERTa: the model falls back to type 0 everywhere
                type_ids = [0] * len(ids)
            logit = float(model(**enc).logits[0, 0])
            records.append(
                {
                    "query": query,
                    "document": document,
                    "input_ids": ids,
                    "token_type_ids": type_ids,
                    "logit": round(logit, 6),
                    "score": round(1.0 / (1.0 + math.exp(-logit)), 6),
                }
            )
            untruncated.append(len(tokenizer([[query, document]], verbose=False)["input_ids"][0]))

            rust = rust_side.encode(query, document)
            assert rust.ids == ids, (name, query, rust.ids, ids)
            assert rust.type_ids == type_ids, (name, query, rust.type_ids, type_ids)
    assert max(len(r["input_ids"]) for r in records) == MAX_LENGTH
    assert sum(n > MAX_LENGTH for n in untruncated) >= 3, "too few pairs exercise truncation"

    # Loaded back from disk, CrossEncoder.predict must give the recorded scores, one pair per
    # batch (no padding) and all in one padded batch.
    cross_encoder = CrossEncoder(str(out), device="cpu")
    assert cross_encoder.max_seq_length == MAX_LENGTH
    expected = torch.tensor([r["score"] for r in records], dtype=torch.float64)
    for batch_size in (1, len(PAIRS)):
        scores = cross_encoder.predict([list(p) for p in PAIRS], batch_size=batch_size)
        diff = (torch.tensor(scores, dtype=torch.float64) - expected).abs().max().item()
        assert diff < 1e-5, (name, batch_size, diff)
    spread = max(r["score"] for r in records) - min(r["score"] for r in records)
    assert spread > 0.05, f"scores barely differ ({spread}): the model is too close to constant"

    fixture = {
        "model": f"random {model.config.architectures[0]} ({name}), seed {SEED}",
        "generator": GENERATOR,
        "architecture": model.config.architectures[0],
        "max_length": MAX_LENGTH,
        "num_labels": model.config.num_labels,
        "activation": "sigmoid",
        "truncation": "longest_first",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "pairs": records,
    }
    write_reference(out / "reference.json", fixture)
    size = (out / "model.safetensors").stat().st_size
    write_recipe(out, recipe)
    print(
        f"wrote {out.relative_to(REPO)} ({len(records)} pairs, vocab {rust_side.get_vocab_size()}, "
        f"model.safetensors {size} bytes)"
    )


def tiny_bert() -> None:
    torch.manual_seed(SEED)
    tok = bert_tokenizer()
    fast = BertTokenizerFast(tokenizer_object=tok, model_max_length=MAX_LENGTH)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=MAX_LENGTH,
        type_vocab_size=2,
        hidden_act="gelu",
        initializer_range=0.3,
        pad_token_id=0,
        num_labels=1,
        architectures=["BertForSequenceClassification"],
    )
    model = BertForSequenceClassification(config)
    recipe = randomise(model)
    specials = {
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
        "pad_token": "[PAD]",
        "sep_token": "[SEP]",
        "unk_token": "[UNK]",
    }
    build_fixture("bert", model, fast, specials, recipe)


def tiny_xlm_roberta() -> None:
    torch.manual_seed(SEED)
    tok = xlm_roberta_tokenizer()
    fast = XLMRobertaTokenizerFast(tokenizer_object=tok, model_max_length=MAX_LENGTH)
    config = XLMRobertaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        # Positions start at padding_idx + 1 = 2, so 64 tokens need 66 rows.
        max_position_embeddings=MAX_LENGTH + 2,
        type_vocab_size=1,
        hidden_act="gelu",
        initializer_range=0.3,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=1,
        architectures=["XLMRobertaForSequenceClassification"],
    )
    model = XLMRobertaForSequenceClassification(config)
    recipe = randomise(model)
    specials = {
        "bos_token": "<s>",
        "cls_token": "<s>",
        "eos_token": "</s>",
        "mask_token": "<mask>",
        "pad_token": "<pad>",
        "sep_token": "</s>",
        "unk_token": "<unk>",
    }
    build_fixture("xlm-roberta", model, fast, specials, recipe)


def test_models() -> pathlib.Path:
    return pathlib.Path(
        os.environ.get("HEARTH_TEST_MODELS", pathlib.Path.home() / ".cache/hearth/test-models")
    )


def bench_model(out: pathlib.Path) -> int:
    source = test_models() / "all-MiniLM-L6-v2"
    if not (source / "tokenizer.json").is_file():
        print(f"{source} is missing: run scripts/fetch-test-models.sh", file=sys.stderr)
        return 1
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    # The all-MiniLM tokenizer.json bakes in truncation and padding to 128: drop both, so the
    # cross-encoder truncates at its own 512 like ms-marco-MiniLM-L6-v2 does.
    tok = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    tok["truncation"] = None
    tok["padding"] = None
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    for name in ("vocab.txt", "special_tokens_map.json"):
        shutil.copyfile(source / name, out / name)
    tok_config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
    tok_config["model_max_length"] = 512
    tok_config.pop("name_or_path", None)
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")

    torch.manual_seed(SEED)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
        type_vocab_size=2,
        hidden_act="gelu",
        pad_token_id=0,
        num_labels=1,
        architectures=["BertForSequenceClassification"],
    )
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    config_path = out / "config.json"
    config_json = json.loads(config_path.read_text(encoding="utf-8"))
    config_json["sentence_transformers"] = {"activation_fn": SIGMOID}
    config_path.write_text(json.dumps(config_json, indent=2, sort_keys=True) + "\n")

    cross_encoder = CrossEncoder(str(out), device="cpu")
    assert cross_encoder.max_seq_length == 512, cross_encoder.max_seq_length
    scores = cross_encoder.predict([list(p) for p in PAIRS])
    assert len(scores) == len(PAIRS)
    size = (out / "model.safetensors").stat().st_size
    print(f"wrote {out} (random ms-marco-MiniLM-L6-v2 shape, model.safetensors {size} bytes)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--bench-model",
        nargs="?",
        const=str(test_models() / "random-cross-encoder-minilm-l6"),
        default=None,
        metavar="DIR",
        help="write only the benchmark-sized random cross-encoder into DIR",
    )
    args = parser.parse_args()
    if args.bench_model is not None:
        out = pathlib.Path(args.bench_model).expanduser().resolve()
        if REPO in out.parents or out == REPO:
            print(f"{out} is inside the repository: pick a folder outside it", file=sys.stderr)
            return 1
        return bench_model(out)
    tiny_bert()
    tiny_xlm_roberta()
    return 0


if __name__ == "__main__":
    sys.exit(main())
