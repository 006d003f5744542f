"""The official `openai` client against a live `hearth serve` (started by
scripts/openai-client-test.sh with SmolLM2-135M as `smollm2`, Qwen2.5-Coder-0.5B-Instruct as `qwen`,
the same Qwen under a template that opens a thinking block as `qwen-think`, and all-MiniLM-L6-v2
as `minilm`). Every chat check runs on both chat models."""

import base64
import json
import math
import struct
import os

import httpx
import jsonschema
import openai
import pytest

URL = os.environ["HEARTH_URL"]
KEY = os.environ["HEARTH_API_KEY"]
CHATS = ["smollm2", "qwen"]
EMBED = "minilm"


ORDER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_order_details",
        "description": "Look up an order by its id.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "pattern": "^#W[0-9]{7}$"}},
            "required": ["order_id"],
            "additionalProperties": False,
        },
    },
}
CANCEL_TOOL = {
    "type": "function",
    "function": {
        "name": "cancel_order",
        "description": "Cancel a pending order.",
        "parameters": {
            "type": "object",
            "properties": {
                # The store's ids look like #W1234567; a free string lets a 135M model ramble.
                "order_id": {"type": "string", "pattern": "^#W[0-9]{7}$"},
                "reason": {"type": "string", "enum": ["no longer needed", "ordered by mistake"]},
            },
            "required": ["order_id", "reason"],
            "additionalProperties": False,
        },
    },
}


def test_models_lists_every_model(client):
    ids = {m.id for m in client.models.list().data}
    assert {*CHATS, "qwen-think", EMBED} <= ids


def test_chat_completion(client, chat):
    r = client.chat.completions.create(
        model=chat,
        messages=[{"role": "system", "content": "You are a helpful assistant."},
                  {"role": "user", "content": "What is the capital of France? Answer in one word."}],
        max_tokens=24, temperature=0,
    )
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 10 and 0 < r.usage.completion_tokens <= 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert "paris" in choice.message.content.lower()


def test_max_tokens_gives_length(client, chat):
    r = client.chat.completions.create(
        model=chat, messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=5, temperature=0,
    )
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5


def test_streaming_matches_non_streaming_and_reports_usage(client, chat):
    messages = [{"role": "user", "content": "Name three colours."}]
    full = client.chat.completions.create(model=chat, messages=messages, max_tokens=30, temperature=0)
    stream = client.chat.completions.create(
        model=chat, messages=messages, max_tokens=30, temperature=0,
        stream=True, stream_options={"include_usage": True},
    )
    text, finish, usage, chunks = "", None, None, 0
    for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    assert chunks > 3
    assert text == full.choices[0].message.content
    assert finish == full.choices[0].finish_reason
    assert usage is not None and usage.completion_tokens == full.usage.completion_tokens


def test_stop_sequence(client, chat):
    r = client.chat.completions.create(
        model=chat, messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
        max_tokens=40, temperature=0, stop=["5"],
    )
    assert "5" not in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("attempt", range(3))
def test_forced_tool_call_is_schema_valid(client, chat, attempt):
    r = client.chat.completions.create(
        model=chat,
        messages=[{"role": "user", "content": "Where is my order #W2611340?"}],
        tools=[ORDER_TOOL, CANCEL_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_order_details"}},
        temperature=0.8, seed=attempt, max_tokens=60,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id
    assert call.function.name == "get_order_details"
    jsonschema.validate(json.loads(call.function.arguments), ORDER_TOOL["function"]["parameters"])


def test_required_tool_call_picks_a_declared_tool(client, chat):
    r = client.chat.completions.create(
        model=chat,
        messages=[{"role": "user", "content": "Please cancel order #W1234567, I ordered it by mistake."}],
        tools=[ORDER_TOOL, CANCEL_TOOL], tool_choice="required", temperature=0, max_tokens=60,
    )
    call = r.choices[0].message.tool_calls[0]
    tool = {t["function"]["name"]: t for t in (ORDER_TOOL, CANCEL_TOOL)}[call.function.name]
    jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])


def test_tool_call_streams_as_deltas(client, chat):
    stream = client.chat.completions.create(
        model=chat,
        messages=[{"role": "user", "content": "Cancel #W7654321, no longer needed."}],
        tools=[CANCEL_TOOL], tool_choice="required", temperature=0, max_tokens=60, stream=True,
    )
    name, args, finish, pieces = "", "", None, 0
    for chunk in stream:
        for c in chunk.choices:
            for d in c.delta.tool_calls or []:
                assert d.index == 0
                name += d.function.name or ""
                args += d.function.arguments or ""
                pieces += bool(d.function.arguments)
            finish = c.finish_reason or finish
    assert name == "cancel_order" and finish == "tool_calls"
    assert pieces > 1, "the arguments arrived in one piece, not streamed"
    jsonschema.validate(json.loads(args), CANCEL_TOOL["function"]["parameters"])


def test_json_schema_response_format(client, chat):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population_millions": {"type": "number"},
                       "landmarks": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
        "required": ["city", "population_millions", "landmarks"],
        "additionalProperties": False,
    }
    r = client.chat.completions.create(
        model=chat, messages=[{"role": "user", "content": "Describe Paris as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
        temperature=0.7, seed=1, max_tokens=120,
    )
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)


def test_json_object_response_format(client, chat):
    r = client.chat.completions.create(
        model=chat, messages=[{"role": "system", "content": "You answer in JSON."},
                              {"role": "user", "content": "Give me a JSON object with a cat's name and age."}],
        response_format={"type": "json_object"}, temperature=0, max_tokens=300,
    )
    assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_text_completion(client, chat):
    r = client.completions.create(model=chat, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert r.choices[0].text.strip()
    assert r.usage.completion_tokens <= 8


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in one city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
# Qwen2.5-Coder makes one call per answer unless shown how to make several.
TWO_CALLS = (
    "When the user asks about several cities, call get_weather once per city, all calls in one "
    "answer. Example: for Oslo and Lima you answer\n<tool_call>\n"
    '{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n<tool_call>\n'
    '{"name": "get_weather", "arguments": {"city": "Lima"}}\n</tool_call>'
)


def test_auto_mode_call_comes_back_as_a_tool_call(client):
    r = client.chat.completions.create(
        model="qwen", messages=[{"role": "user", "content": "What is the weather in Rome?"}],
        tools=[WEATHER_TOOL], temperature=0, max_tokens=100,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message
    assert choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Rome"}


@pytest.mark.parametrize("parallel", [True, False])
def test_two_calls_in_one_answer_unless_parallel_calls_are_off(client, parallel):
    messages = [{"role": "system", "content": TWO_CALLS},
                {"role": "user", "content": "What is the weather in Paris and in Rome?"}]
    r = client.chat.completions.create(
        model="qwen", messages=messages, tools=[WEATHER_TOOL], temperature=0, max_tokens=120,
        parallel_tool_calls=parallel,
    )
    calls = r.choices[0].message.tool_calls
    cities = [json.loads(c.function.arguments)["city"] for c in calls]
    assert cities == (["Paris", "Rome"] if parallel else ["Paris"])
    assert len({c.id for c in calls}) == len(calls)
    # Streamed: one entry per call, by index.
    stream = client.chat.completions.create(
        model="qwen", messages=messages, tools=[WEATHER_TOOL], temperature=0, max_tokens=120,
        parallel_tool_calls=parallel, stream=True,
    )
    args = {}
    for chunk in stream:
        for c in chunk.choices:
            for d in c.delta.tool_calls or []:
                args[d.index] = args.get(d.index, "") + (d.function.arguments or "")
    assert [json.loads(args[i])["city"] for i in sorted(args)] == cities


def test_reasoning_comes_back_as_reasoning_content(client):
    messages = [{"role": "system", "content": "First think step by step, then close your "
                 "thoughts with </think> and give the answer."},
                {"role": "user", "content": "What is 17 + 25?"}]
    r = client.chat.completions.create(model="qwen-think", messages=messages, temperature=0,
                                       max_tokens=100)
    message = r.choices[0].message
    # Not in the client's model, but kept as an extra field, as for DeepSeek's and vLLM's.
    thought = message.model_extra["reasoning_content"]
    assert "42" in thought
    assert thought.strip() not in (message.content or "")
    assert "<think>" not in (message.content or "") and "</think>" not in (message.content or "")
    details = r.usage.completion_tokens_details
    assert 0 < details.reasoning_tokens <= r.usage.completion_tokens
    stream = client.chat.completions.create(model="qwen-think", messages=messages, temperature=0,
                                            max_tokens=100, stream=True)
    streamed, content = "", ""
    for chunk in stream:
        for c in chunk.choices:
            streamed += (c.delta.model_extra or {}).get("reasoning_content") or ""
            content += c.delta.content or ""
    assert streamed == thought
    assert content == (message.content or "")


def test_embeddings_every_input_form(client):
    one = client.embeddings.create(model=EMBED, input="I lost my card")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 384
    assert math.isclose(sum(v * v for v in one.data[0].embedding), 1.0, rel_tol=1e-3)
    many = client.embeddings.create(model=EMBED, input=["I lost my card", "what is my balance?"])
    assert [d.index for d in many.data] == [0, 1]
    assert many.data[0].embedding == pytest.approx(one.data[0].embedding, abs=1e-5)
    tokens = client.embeddings.create(model=EMBED, input=[[101, 1045, 2439, 2026, 4003, 102]])
    assert len(tokens.data[0].embedding) == 384
    assert tokens.usage.prompt_tokens == 6
    # Asked for explicitly, base64 comes back raw: little-endian f32, the same vector.
    b64 = client.embeddings.create(model=EMBED, input="I lost my card", encoding_format="base64")
    decoded = struct.unpack("<384f", base64.b64decode(b64.data[0].embedding))
    assert list(decoded) == pytest.approx(one.data[0].embedding, abs=1e-6)


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "model_not_found"


def test_invalid_parameter_names_the_field(client, chat):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=chat, messages=[{"role": "user", "content": "hi"}], temperature=5)
    assert e.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=chat, messages=[{"role": "wizard", "content": "hi"}])
    assert e.value.param == "messages[0].role"


def test_context_overflow_is_a_clear_400(client, chat):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=chat, messages=[{"role": "user", "content": "hello " * 9000}], max_tokens=10)
    assert e.value.code == "context_length_exceeded"


def test_embedding_model_cannot_chat(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=EMBED, messages=[{"role": "user", "content": "hi"}])
    assert e.value.param == "model"


def test_api_key_is_required_but_health_is_public():
    bad = openai.OpenAI(base_url=f"{URL}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert httpx.get(f"{URL}/health").status_code == 200


def test_malformed_and_oversize_bodies():
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    r = httpx.post(f"{URL}/v1/chat/completions", content=b"{not json", headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(f"{URL}/v1/embeddings", content=b"x" * (5 * 1024 * 1024), headers=headers)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


def test_metrics_and_openapi():
    headers = {"Authorization": f"Bearer {KEY}"}
    metrics = httpx.get(f"{URL}/metrics", headers=headers).text
    for name in ("hearth_http_requests_total", "hearth_completion_tokens_total",
                 "hearth_time_to_first_token_seconds", "hearth_queue_depth", "hearth_active_sequences"):
        assert name in metrics, name
    doc = httpx.get(f"{URL}/openapi.json").json()
    assert "/v1/chat/completions" in doc["paths"]
