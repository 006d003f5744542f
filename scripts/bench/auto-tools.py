#!/usr/bin/env python3
"""Tool calls the model chooses to make (tool_choice "auto"), with and without hearth holding a
started call to its tool's schema, alternating request by request in one run.

The requests: the retail domain's 14 tools (examples/retail/tools.toml) and, per task of
shared/data/retail, the customer's situation told in the first person (the task's instruction
with "you" turned into "I"). Each answer is a valid call (hearth returns tool_calls only when
they parse and match their schemas; checked again here with jsonschema), a call attempt that
came back as text (it names a tool in the JSON or tag shape of a call), or plain text.

Usage: auto-tools.py ON_URL OFF_URL MODEL TASKS.json [LIMIT]   (prints a JSON line per server)
"""
import json
import re
import sys
import tomllib
import urllib.request

import jsonschema

on_url, off_url, model, tasks_path = sys.argv[1:5]
limit = int(sys.argv[5]) if len(sys.argv) > 5 else None

with open("examples/retail/tools.toml", "rb") as f:
    declared = tomllib.load(f)["tools"]
tools = [
    {"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters")}}
    for t in declared
]
schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}

FIRST_PERSON = [
    (r"\bYour\b", "My"), (r"\byour\b", "my"), (r"\bYou are\b", "I am"), (r"\byou are\b", "I am"),
    (r"\bYou've\b", "I've"), (r"\byou've\b", "I've"), (r"\byou'd\b", "I'd"), (r"\bYou'd\b", "I'd"),
    (r"\byou'll\b", "I'll"), (r"\bYou'll\b", "I'll"), (r"\bYou do't\b", "I don't"),
    (r"\bYou\b", "I"), (r"\byou\b", "me"), (r"\byourself\b", "myself"),
]


def first_person(text):
    for pattern, replacement in FIRST_PERSON:
        text = re.sub(pattern, replacement, text)
    return text


def ask(url, message):
    body = {
        "model": model, "temperature": 0, "max_tokens": 256, "tools": tools,
        "messages": [
            {"role": "system", "content": "You are the customer service agent of an online "
             "retail store. Use the tools to look things up and to act for the customer."},
            {"role": "user", "content": message},
        ],
    }
    request = urllib.request.Request(
        f"{url}/v1/chat/completions", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.load(response)["choices"][0]["message"]


def looks_like_a_call(text):
    names = "|".join(re.escape(n) for n in schemas)
    return bool(re.search(r'<tool_call>|"name"\s*:\s*"(%s)"' % names, text or ""))


tasks = json.load(open(tasks_path))[:limit]
counts = {url: {"valid_calls": 0, "invalid_calls": 0, "answers_with_calls": 0,
                "call_attempts_as_text": 0, "text": 0} for url in (on_url, off_url)}
for task in tasks:
    message = first_person(task["instruction"])
    for url in (on_url, off_url):
        answer = ask(url, message)
        c = counts[url]
        calls = answer.get("tool_calls") or []
        if calls:
            c["answers_with_calls"] += 1
            for call in calls:
                name = call["function"]["name"]
                try:
                    args = json.loads(call["function"]["arguments"])
                    jsonschema.validate(args, schemas[name])
                    c["valid_calls"] += 1
                except Exception:
                    c["invalid_calls"] += 1
        elif looks_like_a_call(answer.get("content")):
            c["call_attempts_as_text"] += 1
        else:
            c["text"] += 1
for url, label in ((on_url, "constrained"), (off_url, "unconstrained")):
    c = counts[url]
    attempts = c["answers_with_calls"] + c["call_attempts_as_text"]
    c["validity"] = round(c["answers_with_calls"] / attempts, 3) if attempts else None
    print(json.dumps({"auto_tool_calls": label, "tasks": len(tasks), **c}))
