"""The Responses API with the official `openai` client against a live `hearth serve` (see
test_openai.py for the models): `responses.create`, `responses.stream`, a two-turn
conversation by `previous_response_id`, a function call round trip, `json_schema` output,
retrieve and delete."""

import json

import jsonschema
import openai
import pytest


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


def test_create_answers_with_output_text_and_usage(client, chat):
    response = client.responses.create(
        model=chat,
        instructions="You are brief.",
        input="Say hello.",
        max_output_tokens=16,
        temperature=0,
    )
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status in ("completed", "incomplete")
    assert response.output_text.strip()
    assert response.output[0].type == "message"
    assert response.usage.input_tokens > 0
    assert 0 < response.usage.output_tokens <= 16
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_out_of_tokens_is_incomplete(client, chat):
    response = client.responses.create(
        model=chat, input="Tell me a long story about a dragon.", max_output_tokens=5, temperature=0
    )
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 5


def test_stream_gives_the_documented_events_and_the_same_text(client, chat):
    ask = dict(model=chat, input="Name three colours.", max_output_tokens=200, temperature=0)
    whole = client.responses.create(**ask)
    with client.responses.stream(**ask) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for kind in [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]:
        assert kind in kinds, kinds
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == whole.output_text


def test_previous_response_id_continues_the_conversation(client):
    first = client.responses.create(
        model="qwen", input="My name is Ada. Reply with OK.", max_output_tokens=8, temperature=0
    )
    second = client.responses.create(
        model="qwen",
        previous_response_id=first.id,
        input="What is my name? Answer with the name only.",
        max_output_tokens=8,
        temperature=0,
    )
    assert "ada" in second.output_text.lower()
    assert second.previous_response_id == first.id
    alone = client.responses.create(
        model="qwen", input="What is my name? Answer with the name only.", max_output_tokens=8,
        temperature=0,
    )
    assert "ada" not in alone.output_text.lower()


def test_a_function_call_round_trip(client):
    response = client.responses.create(
        model="qwen",
        input="What's the weather in Paris?",
        tools=[WEATHER],
        tool_choice="required",
        temperature=0,
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    answer = client.responses.create(
        model="qwen",
        previous_response_id=response.id,
        input=[
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 24 C"},
            {"role": "user", "content": "So how is it? Answer in words."},
        ],
        tools=[WEATHER],
        temperature=0,
        max_output_tokens=40,
    )
    assert "sunny" in answer.output_text.lower()


def test_a_streamed_function_call_arrives_as_argument_deltas(client):
    with client.responses.stream(
        model="qwen",
        input="What's the weather in Paris?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        temperature=0,
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    call = [item for item in final.output if item.type == "function_call"][0]
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])


def test_json_schema_output(client, chat):
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
        "required": ["colour"],
        "additionalProperties": False,
    }
    response = client.responses.create(
        model=chat,
        input="Pick a colour.",
        text={"format": {"type": "json_schema", "name": "pick", "schema": schema}},
        temperature=0,
    )
    jsonschema.validate(json.loads(response.output_text), schema)


def test_retrieve_and_delete_a_stored_response(client):
    response = client.responses.create(model="smollm2", input="Hi", max_output_tokens=4)
    again = client.responses.retrieve(response.id)
    assert again.id == response.id and again.output_text == response.output_text
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    unstored = client.responses.create(model="smollm2", input="Hi", max_output_tokens=4, store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model="smollm2",
            input=[{"role": "user", "content": [{"type": "input_image", "image_url": "data:,"}]}],
        )
    assert refused.value.body["param"] == "input[0].content[0].type"
