#!/usr/bin/env python3
"""The chat-template conformance suite run against llama-server, for docs/benchmarks.md.

    LLAMA_SERVER=path/to/llama-server MODEL=path/to/any.gguf \\
        python3 scripts/bench-chat-templates-peer.py

For each template of crates/hearth-infer/tests/chat-templates it starts llama-server with
`--jinja --chat-template-file`, sends each conversation to POST /apply-template (the prompt
llama-server would give the model) and compares it with expected.json, as hearth's test does:
equal text, or a refusal where Python refused. llama-server reads the real clock, so its
rendering of today's date is put back to the reference's fixed date before comparing; and it
gives every template the served GGUF's bos/eos text, so the reference is rendered again with
those (scripts/chat-template-reference.sh --tokens).
Prints a table per case and the total.
"""

import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "crates/hearth-infer/tests/chat-templates"
FIXED = datetime.datetime(2026, 7, 26, 12, 0, 0)
DATE_FORMATS = ["%Y-%m-%d", "%d %b %Y", "%B %d, %Y"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def post_get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return json.loads(response.read())


def wait_ready(port, process):
    for _ in range(600):
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return True
        except Exception:
            pass
        time.sleep(0.1)
    return False


def main():
    server, model = os.environ["LLAMA_SERVER"], os.environ["MODEL"]
    corpus = json.loads((SUITE / "conversations.json").read_text())
    expected = json.loads((SUITE / "expected.json").read_text())
    today = datetime.datetime.now()
    prompts, tokens = {}, None
    for name in sorted(expected):
        port = free_port()
        process = subprocess.Popen(
            [server, "-m", model, "--jinja", "--chat-template-file",
             str(SUITE / "templates" / f"{name}.jinja"), "--host", "127.0.0.1",
             "--port", str(port), "-c", "2048", "-t", "1", "-np", "1", "--no-webui", "--no-warmup"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            prompts[name] = {}
            if not wait_ready(port, process):
                continue
            if tokens is None:
                props = post_get(port, "/props")
                tokens = (props.get("bos_token", ""), props.get("eos_token", ""))
            for case, conversation in corpus["cases"].items():
                body = {"messages": conversation["messages"]}
                if conversation.get("tools"):
                    body["tools"] = corpus["tools"]
                if "chat_template_kwargs" in conversation:
                    body["chat_template_kwargs"] = conversation["chat_template_kwargs"]
                status, answer = post(port, "/apply-template", body)
                if status != 200 or "prompt" not in answer:
                    prompts[name][case] = None
                    continue
                prompt = answer["prompt"]
                for fmt in DATE_FORMATS:
                    prompt = prompt.replace(today.strftime(fmt), FIXED.strftime(fmt))
                prompts[name][case] = prompt
                if os.environ.get("DUMP"):
                    dump = Path(os.environ["DUMP"])
                    dump.mkdir(parents=True, exist_ok=True)
                    (dump / f"{name}.{case}.txt").write_text(prompt)
        finally:
            process.terminate()
            process.wait()
    # llama-server gives every template the served model's bos/eos text, not the template's
    # own model's: the reference is rendered again by the same script with those.
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "expected.json"
        subprocess.run(
            ["bash", str(ROOT / "scripts/chat-template-reference.sh"),
             "--tokens", tokens[0], tokens[1], str(out)],
            check=True,
        )
        reference = json.loads(out.read_text())
    results = {}
    for name in sorted(expected):
        results[name] = {}
        for case in corpus["cases"]:
            want = reference[name]["cases"][case]
            if case not in prompts[name]:
                results[name][case] = "no start" if "text" in want else "ok"
            elif prompts[name][case] is None:
                results[name][case] = "refused" if "text" in want else "ok"
            elif "text" not in want:
                results[name][case] = "rendered"
            else:
                results[name][case] = "ok" if prompts[name][case] == want["text"] else "differs"
    cases = list(corpus["cases"])
    print("| template | " + " | ".join(cases) + " |")
    print("|---|" + "---|" * len(cases))
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(row[c] for c in cases) + " |")
    ok = sum(v == "ok" for row in results.values() for v in row.values())
    total = sum(len(row) for row in results.values())
    print(f"\nllama-server: {ok} of {total} cases equal to the reference")
    per_case = {c: sum(results[n][c] == "ok" for n in results) for c in cases}
    print("per case: " + ", ".join(f"{c} {v}/{len(results)}" for c, v in per_case.items()))


if __name__ == "__main__":
    sys.exit(main())
