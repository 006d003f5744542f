#!/usr/bin/env python3
"""Renders the chat-template conformance suite with Python's jinja2: the reference hearth's
renderer must equal byte for byte.

    scripts/chat-template-reference.sh            # writes expected.json (sets up a venv)
    scripts/chat-template-reference.sh --check    # fails if expected.json is out of date

The suite lives in crates/hearth-infer/tests/chat-templates/:
  templates/*.jinja   real chat templates as their authors published them (see templates.json)
  templates.json      each template's source, sha256, and the bos/eos tokens its tokenizer passes
  conversations.json  the conversations, as OpenAI chat requests
  expected.json       what this script renders: {template: {case: {"text": ...} | {"error": ...}}}

The environment is Hugging Face's `apply_chat_template` (transformers 5,
chat_template_utils._cached_compile_jinja_template): trim_blocks and lstrip_blocks, the
loopcontrols extension, `tojson` as `json.dumps(ensure_ascii=False, ...)`, `raise_exception`,
`strftime_now`, and a sandbox. One difference, on purpose: transformers' sandbox is immutable,
which refuses `list.append` and `list.pop`; Kimi K2's templates call both on a namespace's list
for every tool call, so the reference uses jinja2's (mutable) SandboxedEnvironment.

Messages reach the template as transformers passes them (keys whose value is null dropped; the
reasoning under both `reasoning_content` and `thinking`), after the steps an OpenAI request takes
in hearth, which this script repeats:
  - tool-call arguments, JSON text in the API, become objects;
  - content given as parts becomes one string (text parts joined by "\\n") unless the template
    renders typed content but not string content;
  - an assistant turn with tool calls and null content gets "" (templates that render calls
    often read the content);
  - a template that does not render a role or a feature gets the same text another way:
    tools it does not describe are described in the system message, tool calls it does not
    render become JSON text, tool results it does not render become one user turn
    ("Function result: ..." lines), a developer
    message becomes a system message, and a system message it refuses is folded into the next
    message ("\\n" between them).
What a template renders is found by rendering probe conversations, not by reading its source.
`strftime_now` sees a fixed clock (2026-07-26 12:00 UTC) so that the file does not change daily.
"""

import datetime
import hashlib
import json
import sys
from pathlib import Path

import jinja2
import jinja2.ext
from jinja2.sandbox import SandboxedEnvironment

SUITE = Path(__file__).resolve().parent.parent / "crates/hearth-infer/tests/chat-templates"
FIXED_NOW = datetime.datetime(2026, 7, 26, 12, 0, 0)

# Must equal hearth_infer::llm::chat::tool_instructions.
TOOL_INTRO = (
    "You can call these functions. To call one, answer with only a JSON object "
    '{"name": <function name>, "arguments": <arguments object>}.\n'
)


def compact(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def tool_instructions(tools):
    text = TOOL_INTRO
    for tool in tools:
        f = tool["function"]
        params = compact(f["parameters"]) if "parameters" in f else "{}"
        text += f"- {f['name']}: {f.get('description', '')} Parameters: {params}\n"
    return text


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    def strftime_now(fmt):
        return FIXED_NOW.strftime(fmt)

    env = SandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(template, messages, tools, add_generation_prompt, tokens, kwargs):
    # As transformers does: drop null keys, alias the reasoning.
    chat = []
    for message in messages:
        message = {k: v for k, v in message.items() if v is not None}
        if "reasoning_content" in message:
            message = {"thinking": message["reasoning_content"], **message}
        chat.append(message)
    return template.render(
        messages=chat,
        tools=tools,
        documents=None,
        add_generation_prompt=add_generation_prompt,
        bos_token=tokens["bos_token"],
        eos_token=tokens["eos_token"],
        **kwargs,
    )


PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "probe_tool_name",
        "description": "probe",
        "parameters": {
            "type": "object",
            "properties": {"arg": {"type": "string"}},
            "required": ["arg"],
        },
    },
}


def renders(template, tokens, messages, needle):
    # A tool is declared in every probe: some templates (Hermes' tool_use) need one.
    try:
        text = render(template, messages, [PROBE_TOOL], False, tokens, {})
    except Exception:
        return False
    # A list printed whole (its repr) is not typed content rendered.
    return needle in text and "'type': 'text'" not in text


def capabilities(template, tokens):
    """What the template renders, found as hearth finds it (hearth_infer::llm::chat)."""
    user = {"role": "user", "content": "probe"}
    call = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "A1b2C3d4E",
                "type": "function",
                "function": {"name": "probe_call_name", "arguments": {"arg": "v"}},
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": "A1b2C3d4E", "content": "probe_result_text"}
    long_id = "call_0123456789abcdef0123"
    long_call = json.loads(json.dumps(call))
    long_call["tool_calls"][0]["id"] = long_id
    long_result = dict(result, tool_call_id=long_id)
    tool_results = renders(template, tokens, [user, call, result], "probe_result_text")
    return {
        "system": renders(
            template, tokens, [{"role": "system", "content": "probe_system_text"}, user],
            "probe_system_text",
        ),
        "developer": renders(
            template, tokens, [{"role": "developer", "content": "probe_developer_text"}, user],
            "probe_developer_text",
        ),
        "tools": renders(template, tokens, [user], "probe_tool_name"),
        "tool_calls": renders(template, tokens, [user, call], "probe_call_name"),
        "tool_results": tool_results,
        # Refused only where the same conversation with nine-character ids renders.
        "any_call_ids": not tool_results
        or renders(template, tokens, [user, long_call, long_result], "probe_result_text"),
        "string_content": renders(
            template, tokens, [{"role": "user", "content": "probe_string_text"}],
            "probe_string_text",
        ),
        "typed_content": renders(
            template, tokens,
            [{"role": "user", "content": [{"type": "text", "text": "probe_typed_text"}]}],
            "probe_typed_text",
        ),
    }


def nine_character_id(call_id):
    """The stand-in hearth gives a call id where a template takes only nine letters and digits."""
    if len(call_id) == 9 and call_id.isascii() and call_id.isalnum():
        return call_id
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    digest = hashlib.sha256(call_id.encode("utf-8")).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:9])


def text_of(content):
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if p.get("type") == "text")
    return content or ""


def prepare(messages, tools, caps):
    """The request's messages as hearth hands them to the template."""
    out = []
    for message in messages:
        message = dict(message)
        content = message.get("content")
        if isinstance(content, list):
            if caps["string_content"] or not caps["typed_content"]:
                message["content"] = text_of(content)
        elif isinstance(content, str) and caps["typed_content"] and not caps["string_content"]:
            message["content"] = [{"type": "text", "text": content}]
        if "tool_calls" in message:
            calls = []
            for call in message["tool_calls"]:
                call = json.loads(json.dumps(call))
                try:
                    call["function"]["arguments"] = json.loads(call["function"]["arguments"])
                except (ValueError, TypeError):
                    pass
                calls.append(call)
            message["tool_calls"] = calls
        out.append(message)

    if tools and not caps["tools"]:
        instructions = tool_instructions(tools)
        if out and out[0]["role"] in ("system", "developer"):
            out[0]["content"] = f"{text_of(out[0].get('content'))}\n\n{instructions}"
        else:
            out.insert(0, {"role": "system", "content": instructions})
        tools = None
    if not caps["tool_calls"]:
        for message in out:
            if message.get("tool_calls"):
                lines = [
                    compact({"name": c["function"]["name"], "arguments": c["function"]["arguments"]})
                    for c in message.pop("tool_calls")
                ]
                text = text_of(message.get("content"))
                message["content"] = "\n".join(([text] if text else []) + lines)
    else:
        # Templates that render calls often read the content too: null becomes "".
        for message in out:
            if message.get("tool_calls") and message.get("content") is None:
                message["content"] = ""
            if not caps["any_call_ids"]:
                for call in message.get("tool_calls") or []:
                    if isinstance(call.get("id"), str):
                        call["id"] = nine_character_id(call["id"])
                if isinstance(message.get("tool_call_id"), str):
                    message["tool_call_id"] = nine_character_id(message["tool_call_id"])
    if not caps["tool_results"]:
        merged = []
        for message in out:
            if message["role"] == "tool":
                text = f"Function result: {text_of(message.get('content'))}"
                if merged and merged[-1].get("from_tools"):
                    merged[-1]["content"] += "\n" + text
                else:
                    merged.append({"role": "user", "content": text, "from_tools": True})
            else:
                merged.append(message)
        out = [{k: v for k, v in m.items() if k != "from_tools"} for m in merged]
    if not caps["developer"]:
        for message in out:
            if message["role"] == "developer":
                message["role"] = "system"
    if not caps["system"] and out and out[0]["role"] == "system":
        first = out.pop(0)
        if out:
            out[0]["content"] = f"{text_of(first.get('content'))}\n{text_of(out[0].get('content'))}"
    return out, tools


def main():
    args = sys.argv[1:]
    check = "--check" in args
    # --tokens BOS EOS OUT: render with another model's bos/eos text instead of each
    # template's own, into OUT (for comparing a server that serves some other GGUF).
    override = args[args.index("--tokens") + 1 : args.index("--tokens") + 4] if "--tokens" in args else None
    manifest = json.loads((SUITE / "templates.json").read_text())
    corpus = json.loads((SUITE / "conversations.json").read_text())
    env = environment()
    expected = {}
    for name, entry in manifest["templates"].items():
        source = (SUITE / "templates" / f"{name}.jinja").read_bytes()
        digest = hashlib.sha256(source).hexdigest()
        if digest != entry["sha256"]:
            sys.exit(f"templates/{name}.jinja: sha256 {digest}, templates.json says {entry['sha256']}")
        template = env.from_string(source.decode("utf-8"))
        tokens = {"bos_token": entry["bos_token"], "eos_token": entry["eos_token"]}
        if override:
            tokens = {"bos_token": override[0], "eos_token": override[1]}
        caps = capabilities(template, tokens)
        cases = {}
        for case, conversation in corpus["cases"].items():
            tools = corpus["tools"] if conversation.get("tools") else None
            messages, tools = prepare(conversation["messages"], tools, caps)
            kwargs = conversation.get("chat_template_kwargs", {})
            try:
                cases[case] = {"text": render(template, messages, tools, True, tokens, kwargs)}
            except Exception as error:  # the template refused: hearth must refuse too
                cases[case] = {"error": f"{type(error).__name__}: {error}"}
        expected[name] = {"capabilities": caps, "cases": cases}
    text = json.dumps(expected, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    path = SUITE / "expected.json"
    if override:
        Path(override[2]).write_text(text)
    elif check:
        if path.read_text() != text:
            sys.exit("expected.json is out of date: run scripts/chat-template-reference.sh")
        print(f"expected.json is current ({len(expected)} templates)")
    else:
        path.write_text(text)
        rendered = sum("text" in c for t in expected.values() for c in t["cases"].values())
        total = sum(len(t["cases"]) for t in expected.values())
        print(f"wrote {path}: {len(expected)} templates, {rendered} of {total} cases rendered")


if __name__ == "__main__":
    main()
