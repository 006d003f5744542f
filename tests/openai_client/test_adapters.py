"""LoRA adapters through the official `openai` client, by model name: `qwen-tuned` (a random
adapter) and `qwen-zero` (an all-zero one), both on `qwen` (scripts/make-lora-adapters.sh)."""

from concurrent.futures import ThreadPoolExecutor

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]

def answer(client, model, messages=QUESTION):
    reply = client.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0)
    assert reply.model == model
    return reply.choices[0].message.content

def test_adapters_are_listed_with_their_base(client):
    models = {m.id: m for m in client.models.list()}
    assert models["qwen-tuned"].model_extra["parent"] == "qwen"
    assert models["qwen-zero"].model_extra["parent"] == "qwen"
    assert "parent" not in (models["qwen"].model_extra or {})
    assert client.models.retrieve("qwen-tuned").model_extra["parent"] == "qwen"

def test_an_adapter_is_chosen_by_model_name(client):
    base = answer(client, "qwen")
    assert answer(client, "qwen-zero") == base, "an all-zero adapter changed the answer"
    tuned = answer(client, "qwen-tuned")
    assert tuned != base
    # Streaming and the Responses API take the same name.
    stream = client.chat.completions.create(
        model="qwen-tuned", messages=QUESTION, max_tokens=24, temperature=0, stream=True
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == tuned
    response = client.responses.create(
        model="qwen-tuned", input=QUESTION[0]["content"], max_output_tokens=24, temperature=0, store=False
    )
    assert response.model == "qwen-tuned"
    assert response.output_text == tuned

def test_concurrent_requests_on_the_base_and_its_adapters_each_get_their_own(client):
    # The base, the random adapter and the zero adapter at once, in turn over three questions:
    # each answered under its own name, the random adapter's answer unlike the base's and the
    # zero adapter's. Answers are not compared exactly here: on a server that has served other
    # requests, llama.cpp's attention sums round by where each sequence's KV cells lie, so a
    # near-tie (Qwen's "The" or "A" as the first word) can flip between runs. The exact,
    # bit-for-bit comparison runs where the engine's state is controlled: the Rust test
    # lora::concurrent_requests_on_different_adapters_each_get_their_own_answer.
    questions = ["Name a primary colour.", "What do bees make?", "What colour is the sky?"]
    models = ("qwen", "qwen-tuned", "qwen-zero")
    for turn in range(len(questions)):
        question = [{"role": "user", "content": questions[turn]}]
        with ThreadPoolExecutor(len(models)) as pool:
            together = list(pool.map(lambda model: answer(client, model, question), models))
        base, tuned, zero = together
        assert tuned != base and tuned != zero, "the adapter did not change the answer"
        assert tuned != answer(client, "qwen", question)
