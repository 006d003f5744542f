#!/usr/bin/env python3
"""Fails when a crate's dependencies break the layering ARCHITECTURE.md states.

Reads every workspace crate's dependencies from `cargo metadata` and checks them against the
table below (the same table as ARCHITECTURE.md's "Dependency direction"):
- a crate's normal dependencies on hearth crates must be in its allowed set;
- dev-dependencies may add hearth-testdata and any hearth crate in a lower layer (tests may
  build what the code below them is made of), never one in the same or a higher layer;
- hearth-testdata is never a normal dependency;
- the framework crates that mark a boundary (axum, clap, rusqlite, llama-cpp-2 …) appear as
  normal dependencies only in the crates that own that boundary.

`--self-test` checks that the checker itself catches each kind of break.
"""

import json
import subprocess
import sys

# Layer of each crate: a crate may depend only on crates in lower layers.
LAYERS = {
    "hearth-types": 0,
    "hearth-testdata": 0,
    "hearth-store": 1,
    "hearth-index": 1,
    "hearth-infer": 1,
    "hearth-gateway": 2,
    "hearth-recs": 3,
    "hearth-support": 3,
    "hearth-core": 4,
    "hearth-server": 5,
    "hearth": 6,
}

# Normal dependencies on hearth crates each crate may have.
ALLOWED = {
    "hearth-types": set(),
    "hearth-testdata": set(),
    "hearth-store": {"hearth-types"},
    "hearth-index": {"hearth-types"},
    "hearth-infer": {"hearth-types"},
    "hearth-gateway": {"hearth-types", "hearth-infer", "hearth-store"},
    # Apps reach models only through the gateway, never hearth-infer, and never each other.
    "hearth-recs": {"hearth-types", "hearth-gateway", "hearth-store", "hearth-index"},
    "hearth-support": {"hearth-types", "hearth-gateway", "hearth-store", "hearth-index"},
    "hearth-core": {
        "hearth-types",
        "hearth-infer",
        "hearth-gateway",
        "hearth-recs",
        "hearth-support",
        "hearth-store",
        "hearth-index",
    },
    "hearth-server": {"hearth-types", "hearth-infer", "hearth-gateway", "hearth-core"},
    "hearth": {
        "hearth-types",
        "hearth-infer",
        "hearth-gateway",
        "hearth-core",
        "hearth-server",
        "hearth-index",
        "hearth-store",
    },
}

# Framework crates and the only hearth crates that may use them as normal dependencies.
OWNERS = {
    "axum": {"hearth-server", "hearth"},  # the binary serves the demo shop and `serve`
    "clap": {"hearth"},
    "indicatif": {"hearth"},
    "rusqlite": {"hearth-store"},
    "llama-cpp-2": {"hearth-infer"},
    "candle-core": {"hearth-infer"},
    "tokenizers": {"hearth-infer"},
    "tantivy": {"hearth-index"},
    "usearch": {"hearth-index"},
}


def check(crates):
    """crates: {name: [(dep_name, kind)]} with kind None (normal), "dev" or "build"."""
    problems = []
    for name in sorted(crates):
        if name not in LAYERS:
            problems.append(
                f"{name}: not in scripts/check-layering.py's table; add it there and to ARCHITECTURE.md"
            )
            continue
        for dep, kind in crates[name]:
            if dep in LAYERS:
                if kind == "dev":
                    ok = dep == "hearth-testdata" or LAYERS[dep] < LAYERS[name] or dep in ALLOWED[name]
                    if not ok:
                        problems.append(
                            f"{name} dev-depends on {dep}, which is not below it"
                        )
                elif dep not in ALLOWED[name]:
                    why = (
                        "hearth-testdata is for tests only"
                        if dep == "hearth-testdata"
                        else f"allowed: {', '.join(sorted(ALLOWED[name])) or 'none'}"
                    )
                    problems.append(f"{name} depends on {dep} ({why})")
            elif dep in OWNERS and kind != "dev" and name not in OWNERS[dep]:
                problems.append(
                    f"{name} depends on {dep}, which only {', '.join(sorted(OWNERS[dep]))} may use"
                )
    return problems


def workspace():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    meta = json.loads(out)
    return {
        p["name"]: [(d["name"], d["kind"]) for d in p["dependencies"]]
        for p in meta["packages"]
    }


def self_test():
    good = {
        "hearth-types": [],
        "hearth-gateway": [("hearth-infer", None), ("hearth-testdata", "dev")],
        "hearth-recs": [("hearth-gateway", None), ("hearth-infer", "dev")],
    }
    assert check(good) == [], check(good)
    breaks = {
        "upward": {"hearth-infer": [("hearth-gateway", None)]},
        "app to engine": {"hearth-recs": [("hearth-infer", None)]},
        "app to app": {"hearth-support": [("hearth-recs", None)]},
        "app to app in tests": {"hearth-support": [("hearth-recs", "dev")]},
        "testdata in the build": {"hearth-core": [("hearth-testdata", None)]},
        "framework outside its owner": {"hearth-recs": [("axum", None)]},
        "unknown crate": {"hearth-new": []},
    }
    for what, crates in breaks.items():
        assert check(crates), f"the checker missed: {what}"
    print("check-layering: self-test passed")


def main():
    if "--self-test" in sys.argv:
        self_test()
        return 0
    problems = check(workspace())
    for p in problems:
        print(f"check-layering: {p}", file=sys.stderr)
    if problems:
        print(
            "check-layering: the crate graph breaks ARCHITECTURE.md's direction (see above)",
            file=sys.stderr,
        )
        return 1
    print("check-layering: every crate's dependencies follow ARCHITECTURE.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
