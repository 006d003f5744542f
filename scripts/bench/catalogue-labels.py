#!/usr/bin/env python3
"""Writes the retail store (shared/data/retail) as a recommendation catalogue with labelled
search queries, for `hearth recs import` and `hearth recs search-eval`.

OUT/items.jsonl: one item per product variant, titled "Product (option: value, ...)", in the
product's category, with price and availability. OUT/events.jsonl: every ordered item as a
purchase by the order's user. OUT/labels-item.jsonl and OUT/labels-product.jsonl: one query
per task that asks for other items (an exchange, or a change of a pending order's items): the
task's instruction without the persona, in the first person (as kb-labels.py writes it),
labelled with the items the customer asks for (item level), or with every variant of their
products (product level).

    scripts/bench/catalogue-labels.py DATA_DIR OUT [--tasks tasks_dev.json,...] [--limit N]
"""

import argparse
import importlib.util
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("kb_labels", os.path.join(here, "kb-labels.py"))
kb_labels = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kb_labels)


def title_of(name, options):
    return f"{name} ({', '.join(f'{k}: {v}' for k, v in options.items())})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--tasks", default="tasks_dev.json")
    parser.add_argument("--limit", type=int, help="most queries per tasks file")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    products = json.load(open(os.path.join(args.data, "products.json"), encoding="utf-8"))
    product_of = {}
    with open(os.path.join(args.out, "items.jsonl"), "w", encoding="utf-8") as out:
        for product in products.values():
            for variant in product["variants"].values():
                product_of[variant["item_id"]] = product["product_id"]
                out.write(json.dumps({
                    "id": variant["item_id"],
                    "title": title_of(product["name"], variant["options"]),
                    "categories": product["name"],
                    "price": variant["price"],
                    "available": variant["available"],
                }) + "\n")
    variants = {}
    for item, product in product_of.items():
        variants.setdefault(product, []).append(item)
    orders = json.load(open(os.path.join(args.data, "orders.json"), encoding="utf-8"))
    events = 0
    with open(os.path.join(args.out, "events.jsonl"), "w", encoding="utf-8") as out:
        for order in orders.values():
            for n, item in enumerate(order["items"]):
                out.write(json.dumps({
                    "id": f"{order['order_id']}/{n}",
                    "user_id": order["user_id"],
                    "item_id": item["item_id"],
                    "type": "purchase",
                }) + "\n")
                events += 1
    queries = 0
    with open(os.path.join(args.out, "labels-item.jsonl"), "w", encoding="utf-8") as by_item, \
            open(os.path.join(args.out, "labels-product.jsonl"), "w", encoding="utf-8") as by_product:
        for name in args.tasks.split(","):
            tasks = json.load(open(os.path.join(args.data, name), encoding="utf-8"))
            written = 0
            for task in tasks:
                wanted = sorted({i for a in task["actions"]
                                 for i in a["kwargs"].get("new_item_ids", [])
                                 if i in product_of})
                query = kb_labels.query_of(task["instruction"])
                if not wanted or not query:
                    continue
                same = sorted({v for i in wanted for v in variants[product_of[i]]})
                by_item.write(json.dumps({"query": query, "items": wanted}, ensure_ascii=False) + "\n")
                by_product.write(json.dumps({"query": query, "items": same}, ensure_ascii=False) + "\n")
                written += 1
                if args.limit and written >= args.limit:
                    break
            queries += written
    print(f"catalogue-labels: {len(product_of)} items, {events} purchases, {queries} labelled queries",
          file=sys.stderr)


if __name__ == "__main__":
    main()
