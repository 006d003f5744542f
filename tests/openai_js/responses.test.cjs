// The Responses API with the official `openai` JS SDK against a live `hearth serve`
// (scripts/openai-client-test.sh starts it with Qwen2.5-Coder-0.5B-Instruct as `qwen`):
// responses.create, responses.stream, a two-turn conversation by previous_response_id, and a
// function call round trip. Run with `node --test`.
const test = require("node:test");
const assert = require("node:assert/strict");
const OpenAI = require("openai");

const client = new OpenAI({
  baseURL: `${process.env.HEARTH_URL}/v1`,
  apiKey: process.env.HEARTH_API_KEY,
  maxRetries: 0,
  timeout: 120000,
});

const WEATHER = {
  type: "function",
  name: "get_weather",
  description: "The weather in a city.",
  parameters: {
    type: "object",
    properties: { city: { type: "string" } },
    required: ["city"],
    additionalProperties: false,
  },
};

test("responses.create answers with output_text and usage", async () => {
  const response = await client.responses.create({
    model: "qwen",
    instructions: "You are brief.",
    input: "Say hello.",
    max_output_tokens: 16,
    temperature: 0,
  });
  assert.match(response.id, /^resp_/);
  assert.ok(response.output_text.trim().length > 0);
  assert.ok(response.usage.input_tokens > 0);
});

test("responses.stream gives the same text as the whole answer", async () => {
  const ask = { model: "qwen", input: "Name three colours.", max_output_tokens: 200, temperature: 0 };
  const whole = await client.responses.create(ask);
  const stream = client.responses.stream(ask);
  const kinds = [];
  let deltas = "";
  for await (const event of stream) {
    kinds.push(event.type);
    if (event.type === "response.output_text.delta") deltas += event.delta;
  }
  const final = await stream.finalResponse();
  assert.equal(kinds[0], "response.created");
  assert.equal(kinds[kinds.length - 1], "response.completed");
  assert.equal(deltas, whole.output_text);
  assert.equal(final.output_text, whole.output_text);
});

test("previous_response_id continues the conversation", async () => {
  const first = await client.responses.create({
    model: "qwen", input: "My name is Ada. Reply with OK.", max_output_tokens: 8, temperature: 0,
  });
  const second = await client.responses.create({
    model: "qwen", previous_response_id: first.id,
    input: "What is my name? Answer with the name only.", max_output_tokens: 8, temperature: 0,
  });
  assert.match(second.output_text.toLowerCase(), /ada/);
});

test("a function call round trip", async () => {
  const response = await client.responses.create({
    model: "qwen", input: "What's the weather in Paris?", tools: [WEATHER],
    tool_choice: "required", temperature: 0,
  });
  const call = response.output.find((item) => item.type === "function_call");
  assert.ok(call, JSON.stringify(response.output));
  assert.equal(call.name, "get_weather");
  assert.equal(typeof JSON.parse(call.arguments).city, "string");
  const answer = await client.responses.create({
    model: "qwen", previous_response_id: response.id, tools: [WEATHER], temperature: 0,
    max_output_tokens: 40,
    input: [
      { type: "function_call_output", call_id: call.call_id, output: "Sunny, 24 C" },
      { role: "user", content: "So how is it? Answer in words." },
    ],
  });
  assert.match(answer.output_text.toLowerCase(), /sunny/);
});
