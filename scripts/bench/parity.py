"""Streaming generation through the API with the official `openai` client, two servers side by
side, alternating round by round in one run (this machine is noisy: only ratios mean much).

    parity.py --server NAME=URL=MODEL --server NAME=URL=MODEL --clients 1 --rounds 4

MODEL may be several, comma-separated: the clients take them in turn (LoRA adapters under
concurrent load). An item `lora:N` asks llama-server for its adapter N (`--lora` order,
loaded with `--lora-init-without-apply`; `lora:-1` the base) with the per-request `lora`
field, which names all LORA_COUNT of them.

Every request streams `max_tokens` tokens (ignore_eos, temperature 0) from a distinct prompt. Per
round and server it reports, for one client, the decode rate (tokens after the first / time
after the first) and the time to the first token; for several clients the aggregate rate
(all generated tokens / wall time, prefill included). Prints one JSON line per round and server
and a summary line with the medians and ratios to the first server.
"""

import argparse
import concurrent.futures
import json
import statistics
import time

import openai

# Adapters llama-server was started with (`lora:N` models).
LORA_COUNT = 2

WORDS = ["Amber", "Birch", "Cedar", "Dune", "Ember", "Fjord", "Grove", "Heath", "Isle", "Jade"]


def one_stream(client, model, max_tokens, tag):
    started = time.perf_counter()
    first = None
    usage = None
    chunks = 0
    extra = {"ignore_eos": True}
    if model.startswith("lora:"):
        # lora:-1: the base model. Every adapter is named: llama-server keeps a slot's
        # previous adapters for a request that sends none.
        adapter = int(model[5:])
        extra["lora"] = [{"id": i, "scale": 1.0 if i == adapter else 0.0} for i in range(LORA_COUNT)]
        model = "default"
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": f"{tag}: write a long story about a lighthouse keeper."}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=extra,
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter()
            chunks += 1
    tokens = usage if usage is not None else chunks
    total = time.perf_counter() - started
    ttft = (first or time.perf_counter()) - started
    # A token whose text is empty (an end-of-turn token a base model writes under ignore_eos)
    # sends no content: time the decode from the first content to the end of the stream.
    return {"tokens": tokens, "ttft": ttft, "decode": total - ttft if total > ttft else None, "total": total}


def one_round(client, model, clients, max_tokens, tag):
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=clients) as pool:
        models = model.split(",")
        results = list(pool.map(lambda c: one_stream(client, models[c % len(models)], max_tokens, f"{tag} client {c}"), range(clients)))
    wall = time.perf_counter() - started
    tokens = sum(r["tokens"] for r in results)
    row = {"aggregate_tps": tokens / wall, "median_ttft_s": statistics.median(r["ttft"] for r in results)}
    if clients == 1:
        r = results[0]
        row["decode_tps"] = (r["tokens"] - 1) / r["decode"] if r["decode"] else None
    return row


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", action="append", required=True, help="NAME=URL=MODEL")
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--requests", type=int, default=3, help="requests per round (one client)")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--label", default="")
    args = p.parse_args()
    servers = []
    for spec in args.server:
        name, url, model = spec.split("=", 2)
        client = openai.OpenAI(base_url=url.rstrip("/") + "/v1", api_key="unused", timeout=600, max_retries=0)
        for m in model.split(","):
            one_stream(client, m, 8, "warm-up")
        servers.append((name, client, model))
    key = "decode_tps" if args.clients == 1 else "aggregate_tps"
    figures = {name: [] for name, _, _ in servers}
    ttfts = {name: [] for name, _, _ in servers}
    n = 0
    for rnd in range(args.rounds):
        # Alternate which server goes first, so neither always follows the other.
        order = servers if rnd % 2 == 0 else servers[::-1]
        for name, client, model in order:
            reps = args.requests if args.clients == 1 else 1
            rows = []
            for _ in range(reps):
                n += 1
                rows.append(one_round(client, model, args.clients, args.max_tokens, f"{WORDS[n % len(WORDS)]} {n}"))
            value = statistics.median(r[key] for r in rows)
            ttft = statistics.median(r["median_ttft_s"] for r in rows)
            figures[name].append(value)
            ttfts[name].append(ttft)
            print(json.dumps({"label": args.label, "round": rnd + 1, "server": name, "clients": args.clients,
                              key: round(value, 1), "ttft_s": round(ttft, 3)}), flush=True)
    base = servers[0][0]
    summary = {"label": args.label, "clients": args.clients, "metric": key}
    for name in figures:
        summary[name] = round(statistics.median(figures[name]), 1)
        summary[f"{name}_ttft_s"] = round(statistics.median(ttfts[name]), 3)
    for name in list(figures)[1:]:
        ratios = [b / a for a, b in zip(figures[base], figures[name])]
        summary[f"{name}_ratio"] = round(statistics.median(ratios), 3)
        summary[f"{name}_ratio_range"] = [round(min(ratios), 3), round(max(ratios), 3)]
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
