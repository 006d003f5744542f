"""The official `anthropic` client against a live `hearth serve` (started by
scripts/openai-client-test.sh with SmolLM2-135M as `smollm2` and Qwen2.5-Coder-0.5B-Instruct as
`qwen`): the Messages API, whole and streamed, a tool_use/tool_result round trip, count_tokens,
stop sequences, and errors in Anthropic's shape. The key goes as `x-api-key`, as the SDK sends it."""

import os

import anthropic
import jsonschema
import pytest

URL = os.environ["HEARTH_URL"]
KEY = os.environ["HEARTH_API_KEY"]
CHATS = ["smollm2", "qwen"]


@pytest.fixture(params=CHATS, scope="module")
def chat(request):
    return request.param


@pytest.fixture(scope="module")
def client():
    return anthropic.Anthropic(base_url=URL, api_key=KEY, max_retries=0, timeout=120)


ORDER_TOOL = {
    "name": "get_order_details",
    "description": "Look up an order by its id.",
    "input_schema": {
        "type": "object",
        "properties": {"order_id": {"type": "string", "pattern": "^#W[0-9]{7}$"}},
        "required": ["order_id"],
        "additionalProperties": False,
    },
}

QUESTION = [{"role": "user", "content": "Where is my order #W1234567?"}]


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


def test_messages_create_answers_with_a_text_block_and_usage(client, chat):
    message = client.messages.create(
        model=chat,
        max_tokens=24,
        temperature=0,
        system="You are a helpful assistant. Be brief.",
        messages=[{"role": "user", "content": "Say hello."}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == chat
    assert message.content and message.content[0].type == "text"
    assert text_of(message).strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0
    assert 0 < message.usage.output_tokens <= 24


def test_messages_stream_gives_the_same_text_as_the_whole_answer(client, chat):
    ask = dict(
        model=chat,
        max_tokens=32,
        temperature=0,
        messages=[{"role": "user", "content": "Name three colours."}],
    )
    whole = client.messages.create(**ask)
    with client.messages.stream(**ask) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1
    assert "".join(pieces) == text_of(whole)
    assert text_of(final) == text_of(whole)
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens


def test_count_tokens_is_the_prompt_the_answer_was_billed_for(client, chat):
    system = "You are a helpful assistant."
    counted = client.messages.count_tokens(model=chat, system=system, messages=QUESTION)
    message = client.messages.create(
        model=chat, max_tokens=4, temperature=0, system=system, messages=QUESTION
    )
    assert counted.input_tokens == message.usage.input_tokens > 0
    # Tools are part of the prompt.
    with_tools = client.messages.count_tokens(
        model=chat, system=system, messages=QUESTION, tools=[ORDER_TOOL]
    )
    assert with_tools.input_tokens > counted.input_tokens


def test_a_tool_use_and_tool_result_round_trip(client):
    message = client.messages.create(
        model="qwen",
        max_tokens=128,
        temperature=0,
        tools=[ORDER_TOOL],
        tool_choice={"type": "tool", "name": "get_order_details"},
        messages=QUESTION,
    )
    assert message.stop_reason == "tool_use"
    calls = [b for b in message.content if b.type == "tool_use"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_order_details"
    jsonschema.validate(call.input, ORDER_TOOL["input_schema"])
    answer = client.messages.create(
        model="qwen",
        max_tokens=64,
        temperature=0,
        tools=[ORDER_TOOL],
        messages=QUESTION
        + [
            {"role": "assistant", "content": message.content},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": call.id,
                        "content": "Order #W1234567 was delivered on Monday.",
                    },
                    {
                        "type": "text",
                        "text": "Thanks. On which day was it delivered? Answer in words.",
                    },
                ],
            },
        ],
    )
    assert answer.stop_reason in ("end_turn", "max_tokens")
    # Only the tool's result says Monday.
    assert "monday" in text_of(answer).lower()


def test_a_streamed_tool_call_arrives_as_input_json_deltas(client):
    with client.messages.stream(
        model="qwen",
        max_tokens=128,
        temperature=0,
        tools=[ORDER_TOOL],
        tool_choice={"type": "any"},
        messages=QUESTION,
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds
    calls = [b for b in final.content if b.type == "tool_use"]
    assert len(calls) == 1 and calls[0].name == "get_order_details"
    jsonschema.validate(calls[0].input, ORDER_TOOL["input_schema"])
    assert final.stop_reason == "tool_use"


def test_a_stop_sequence_is_named_in_the_answer(client):
    message = client.messages.create(
        model="smollm2",
        max_tokens=48,
        temperature=0,
        messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
        stop_sequences=["5"],
    )
    assert message.stop_reason == "stop_sequence", message
    assert message.stop_sequence == "5"
    assert "5" not in text_of(message) and "4" in text_of(message)


def test_errors_have_anthropics_shape_and_name_the_field(client):
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model="smollm2",
            max_tokens=8,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
                        },
                    ],
                }
            ],
        )
    body = refused.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "messages[0].content[1].type" in body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", max_tokens=8, messages=QUESTION)
    assert missing.value.body["error"]["type"] == "not_found_error"
    stranger = anthropic.Anthropic(base_url=URL, api_key="wrong-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as denied:
        stranger.messages.create(model="smollm2", max_tokens=8, messages=QUESTION)
    assert denied.value.body["error"]["type"] == "authentication_error"
