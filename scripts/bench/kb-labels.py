#!/usr/bin/env python3
"""Writes labelled knowledge-base queries from the retail tasks (shared/data/retail), for
`hearth support kb eval`.

Each task becomes one query: its instruction without the persona (name, zip code or e-mail,
character traits), told in the first person, as the customer would write it. Its label is the
policy sections (titles as `hearth support kb search` prints them for policy.md) of the
consequential actions the task expects: a return needs "Return delivered order", a change of
items "Modify pending order › Modify items", and so on. Tasks that need no such action are
left out.

    scripts/bench/kb-labels.py DATA_DIR/tasks_dev.json [--limit N] > labels.jsonl
"""

import argparse
import json
import re
import sys

ROOT = "Retail agent policy"
SECTIONS = {
    "cancel_pending_order": f"{ROOT} › Cancel pending order",
    "modify_pending_order_address": f"{ROOT} › Modify pending order",
    "modify_pending_order_items": f"{ROOT} › Modify pending order › Modify items",
    "modify_pending_order_payment": f"{ROOT} › Modify pending order › Modify payment",
    "return_delivered_order_items": f"{ROOT} › Return delivered order",
    "exchange_delivered_order_items": f"{ROOT} › Exchange delivered order",
}

PERSONA = [
    r"^Your name is [^.]*? and your (zip code|email) is \S+?\.(?=\s|$)\s*",
    r"^You are [a-z ,]+\.\s*",
]

FIRST_PERSON = [
    (r"\bYour\b", "My"), (r"\byour\b", "my"), (r"\bYou are\b", "I am"), (r"\byou are\b", "I am"),
    (r"\bYou've\b", "I've"), (r"\byou've\b", "I've"), (r"\byou'd\b", "I'd"), (r"\bYou'd\b", "I'd"),
    (r"\byou'll\b", "I'll"), (r"\byou're\b", "I'm"), (r"\bYou're\b", "I'm"), (r"\bYou'll\b", "I'll"), (r"\bYou do't\b", "I don't"),
    (r"\byou (?=(won't|will|want|would|wo|can|cannot|don't|do|did|realize|realized|have|are|were"
     r"|need|simply|also|just|prefer|think|know|like|wish|only|received|ordered|bought|placed"
     r"|decided|return|get|see|feel|remember|forgot|changed|moved|live|had|may|might|must"
     r"|should|could|used|accidentally|started|decide|initially|make)\b)", "I "),
    (r"\bYou\b", "I"), (r"\byou\b", "me"), (r"\byourself\b", "myself"),
]


def query_of(instruction):
    text = instruction.strip()
    for pattern in PERSONA:
        text = re.sub(pattern, "", text)
    for pattern, replacement in FIRST_PERSON:
        text = re.sub(pattern, replacement, text)
    return text.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks")
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    tasks = json.load(open(args.tasks, encoding="utf-8"))
    written = 0
    for task in tasks:
        titles = sorted({SECTIONS[a["name"]] for a in task["actions"] if a["name"] in SECTIONS})
        query = query_of(task["instruction"])
        if not titles or not query:
            continue
        print(json.dumps({"query": query, "titles": titles}, ensure_ascii=False))
        written += 1
        if args.limit and written >= args.limit:
            break
    print(f"kb-labels: {written} labelled queries", file=sys.stderr)


if __name__ == "__main__":
    main()
