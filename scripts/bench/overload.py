#!/usr/bin/env python3
"""N concurrent streaming chat requests against a running `hearth serve`, all sent at once.

For each: the status, when the response started (headers), when the first token came and
when the stream ended. Prints one JSON line: how many were served (200 and a whole stream),
refused (503 with Retry-After, before any 200) or failed otherwise, with time-to-first-token
percentiles of the served ones and time-to-refusal of the refused ones.

Usage: overload.py URL MODEL N [MAX_TOKENS]   (standard library only)
"""
import json
import sys
import threading
import time
import http.client
import urllib.parse


def one(url, model, max_tokens, out, i):
    u = urllib.parse.urlparse(url)
    body = json.dumps({
        "model": model,
        "messages": [{"role": "user", "content": "Count from one to twenty."}],
        "max_tokens": max_tokens,
        "stream": True,
    })
    start = time.monotonic()
    rec = {"status": None, "headers_s": None, "ttft_s": None, "end_s": None, "retry_after": None,
           "done": False, "error_event": False}
    try:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        rec["status"] = resp.status
        rec["headers_s"] = time.monotonic() - start
        rec["retry_after"] = resp.getheader("Retry-After")
        if resp.status == 200:
            for raw in resp:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    rec["done"] = True
                    break
                event = json.loads(data)
                if "error" in event:
                    rec["error_event"] = True
                choices = event.get("choices") or []
                if rec["ttft_s"] is None and choices and choices[0].get("delta", {}).get("content"):
                    rec["ttft_s"] = time.monotonic() - start
        else:
            resp.read()
        rec["end_s"] = time.monotonic() - start
    except Exception as e:  # noqa: BLE001 - a failure is a figure here
        rec["exception"] = repr(e)
    out[i] = rec


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return round(values[k], 3)


def main():
    url, model, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    max_tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 16
    out = [None] * n
    threads = [threading.Thread(target=one, args=(url, model, max_tokens, out, i)) for i in range(n)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    served = [r for r in out if r["status"] == 200 and r["done"] and not r["error_event"]]
    refused = [r for r in out if r["status"] == 503 and r["retry_after"]]
    other = n - len(served) - len(refused)
    ttft = [r["ttft_s"] for r in served if r["ttft_s"] is not None]
    refusal = [r["headers_s"] for r in refused]
    print(json.dumps({
        "n": n,
        "served": len(served),
        "refused_503": len(refused),
        "other": other,
        "served_ttft_p50_s": pct(ttft, 50),
        "served_ttft_p99_s": pct(ttft, 99),
        "served_ttft_max_s": pct(ttft, 100),
        "refusal_p50_s": pct(refusal, 50),
        "refusal_max_s": pct(refusal, 100),
        "wall_s": round(wall, 2),
    }))


if __name__ == "__main__":
    main()
