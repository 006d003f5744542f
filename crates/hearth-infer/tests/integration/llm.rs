//! The LLM engine on the real test models (SmolLM2-135M-Instruct Q4_1, Gemma-3-270M Q4_K_M).
//! Run one test at a time (`--test-threads=1`): they share 2 cores.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hearth_infer::llm::{
    Constraint, FinishReason, FlashAttention, GenerateRequest, LlmHandle, LlmOptions,
    SamplingParams,
};
use hearth_infer::InferError;
use hearth_testdata::models_dir;
use hearth_types::ChatMessage;

fn smollm(options: LlmOptions) -> LlmHandle {
    LlmHandle::spawn(
        "smollm2",
        &models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        options,
    )
    .unwrap()
}

fn greedy(max_tokens: u32) -> SamplingParams {
    SamplingParams {
        max_tokens: Some(max_tokens),
        temperature: 0.0,
        ..Default::default()
    }
}

fn chat_prompt(engine: &LlmHandle, system: &str, user: &str) -> Vec<u32> {
    let text = engine
        .template()
        .render(
            &[
                ChatMessage::new("system", system),
                ChatMessage::new("user", user),
            ],
            None,
            true,
        )
        .unwrap();
    engine.tokenize_chat(&text)
}

async fn run(
    engine: &LlmHandle,
    prompt: Vec<u32>,
    params: SamplingParams,
) -> (String, hearth_infer::llm::GenerationSummary) {
    engine
        .generate(GenerateRequest {
            prompt,
            params,
            constraint: None,
            ..Default::default()
        })
        .unwrap()
        .collect()
        .await
        .unwrap()
}

#[tokio::test]
async fn smollm_uses_its_own_chat_template_and_answers() {
    let engine = smollm(LlmOptions::default());
    assert!(engine.info().has_chat_template);
    assert_eq!(engine.info().architecture.as_deref(), Some("llama"));
    // Without a system message, SmolLM2's own template adds its default one.
    let default = engine
        .template()
        .render(&[ChatMessage::new("user", "Hi")], None, true)
        .unwrap();
    assert!(
        default.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
        "{default}"
    );
    let text = engine
        .template()
        .render(
            &[
                ChatMessage::new("system", "You are a helpful assistant."),
                ChatMessage::new("user", "What is the capital of France? Answer in one word."),
            ],
            None,
            true,
        )
        .unwrap();
    assert!(
        text.contains(
            "<|im_start|>user\nWhat is the capital of France? Answer in one word.<|im_end|>"
        ),
        "{text}"
    );
    assert!(text.ends_with("<|im_start|>assistant\n"), "{text}");
    let (answer, summary) = run(&engine, engine.tokenize_chat(&text), greedy(32)).await;
    assert!(answer.to_lowercase().contains("paris"), "{answer}");
    assert_eq!(summary.finish_reason, FinishReason::Stop);
    assert!(summary.completion_tokens > 0 && summary.completion_tokens < 32);
}

#[tokio::test]
async fn greedy_generation_is_deterministic_and_max_tokens_is_exact() {
    let engine = smollm(LlmOptions::default());
    let prompt = chat_prompt(
        &engine,
        "You are a storyteller.",
        "Tell me a long story about a fox.",
    );
    let (a, sa) = run(&engine, prompt.clone(), greedy(20)).await;
    let (b, sb) = run(&engine, prompt, greedy(20)).await;
    assert_eq!(a, b);
    assert_eq!(sa.finish_reason, FinishReason::Length);
    assert_eq!(sa.completion_tokens, 20);
    assert_eq!(sb.completion_tokens, 20);
}

#[tokio::test]
async fn seeded_sampling_repeats_and_different_seeds_differ() {
    // The second run reuses the first one's cached prompt; only with flash attention are its
    // logits bit-identical to a full recompute on every CPU (on AVX-512 Xeons they are not
    // without it, and at temperature 1.2 that changes the sample).
    let engine = smollm(LlmOptions {
        flash_attention: FlashAttention::On,
        ..LlmOptions::default()
    });
    let prompt = chat_prompt(&engine, "You are creative.", "Invent a name for a cat.");
    let params = |seed| SamplingParams {
        max_tokens: Some(24),
        temperature: 1.2,
        seed: Some(seed),
        ..Default::default()
    };
    let (a, _) = run(&engine, prompt.clone(), params(7)).await;
    let (b, _) = run(&engine, prompt.clone(), params(7)).await;
    assert_eq!(a, b);
    let mut others = Vec::new();
    for seed in 8..12 {
        others.push(run(&engine, prompt.clone(), params(seed)).await.0);
    }
    assert!(
        others.iter().any(|o| *o != a),
        "five seeds gave one answer: {a}"
    );
}

#[tokio::test]
async fn stop_strings_end_generation_and_are_not_emitted() {
    let engine = smollm(LlmOptions::default());
    let prompt = chat_prompt(
        &engine,
        "You are helpful.",
        "Count from 1 to 10, separated by commas.",
    );
    let (full, _) = run(&engine, prompt.clone(), greedy(40)).await;
    assert!(full.contains('5'), "{full}");
    let params = SamplingParams {
        stop: vec!["5".into()],
        ..greedy(40)
    };
    let (cut, summary) = run(&engine, prompt, params).await;
    assert_eq!(summary.finish_reason, FinishReason::Stop);
    assert!(!cut.contains('5'));
    assert!(
        full.starts_with(&cut),
        "{cut:?} is not a prefix of {full:?}"
    );
}

#[tokio::test]
async fn concurrent_requests_are_batched_and_do_not_interfere() {
    // Bit-identical output whatever else shares the batch needs llama.cpp's flash-attention
    // kernel: without it (the CPU default, for speed) the attention products of a lone token
    // and of a batch are computed by different kernels, and a near-tie in greedy decoding can
    // flip.
    let engine = smollm(LlmOptions {
        max_sequences: 4,
        flash_attention: FlashAttention::On,
        ..Default::default()
    });
    let questions = [
        "What is the capital of France?",
        "Name a primary colour.",
        "What do bees make?",
        "How many legs does a spider have?",
    ];
    let prompts: Vec<_> = questions
        .iter()
        .map(|q| chat_prompt(&engine, "Answer in one short sentence.", q))
        .collect();
    let mut alone = Vec::new();
    for p in &prompts {
        alone.push(run(&engine, p.clone(), greedy(24)).await.0);
    }
    let streams: Vec<_> = prompts
        .iter()
        .map(|p| {
            engine
                .generate(GenerateRequest {
                    prompt: p.clone(),
                    params: greedy(24),
                    constraint: None,
                    ..Default::default()
                })
                .unwrap()
        })
        .collect();
    let gauges_engine = engine.clone();
    let watcher = tokio::spawn(async move {
        let mut most = 0;
        for _ in 0..400 {
            most = most.max(
                gauges_engine
                    .gauges()
                    .active_sequences
                    .load(Ordering::Relaxed),
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        most
    });
    let mut together = Vec::new();
    for s in streams {
        together.push(s.collect().await.unwrap().0);
    }
    let most_active = watcher.await.unwrap();
    assert!(
        most_active >= 2,
        "requests never overlapped (max {most_active} active)"
    );
    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(a, t, "request {i} changed when batched");
    }
}

#[tokio::test]
async fn a_shared_system_prompt_is_reused_from_the_cache() {
    let engine = smollm(LlmOptions::default());
    let system = "You are the support assistant of an online store. ".repeat(20);
    let first = chat_prompt(&engine, &system, "Where is my order?");
    let second = chat_prompt(&engine, &system, "Can I return a lamp?");
    let shared = first
        .iter()
        .zip(&second)
        .take_while(|(a, b)| a == b)
        .count();
    assert!(shared > 200, "prompts share only {shared} tokens");
    let (_, cold) = run(&engine, first, greedy(4)).await;
    assert_eq!(cold.cached_prompt_tokens, 0);
    let (warm_text, warm) = run(&engine, second.clone(), greedy(8)).await;
    assert_eq!(warm.cached_prompt_tokens, shared);
    // Reuse must not change the answer: a fresh engine computes the same text.
    let fresh = smollm(LlmOptions::default());
    let (fresh_text, fresh_summary) = run(&fresh, second, greedy(8)).await;
    assert_eq!(fresh_summary.cached_prompt_tokens, 0);
    assert_eq!(warm_text, fresh_text);
}

#[tokio::test]
async fn a_dropped_stream_frees_its_sequence() {
    let engine = smollm(LlmOptions {
        max_sequences: 1,
        ..Default::default()
    });
    let prompt = chat_prompt(
        &engine,
        "You are a storyteller.",
        "Tell me a very long story.",
    );
    let mut stream = engine
        .generate(GenerateRequest {
            prompt: prompt.clone(),
            params: greedy(2000),
            constraint: None,
            ..Default::default()
        })
        .unwrap();
    // Wait for the first text, then hang up.
    match stream.next().await.unwrap() {
        hearth_infer::llm::GenerateEvent::Text(_) => {}
        other => panic!("unexpected {other:?}"),
    }
    drop(stream);
    // The only sequence must come free for the next request well before 2000 tokens.
    let next = tokio::time::timeout(Duration::from_secs(30), run(&engine, prompt, greedy(3)));
    let (_, summary) = next.await.expect("the cancelled sequence was never freed");
    assert_eq!(summary.completion_tokens, 3);
    assert_eq!(engine.gauges().active_sequences.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn overflowing_the_context_is_an_error_not_a_truncation() {
    let engine = smollm(LlmOptions {
        context_length: 512,
        ..Default::default()
    });
    let long = engine.tokenize(&"hello ".repeat(600), true);
    let err = engine
        .generate(GenerateRequest {
            prompt: long,
            params: greedy(10),
            constraint: None,
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            InferError::ContextOverflow {
                context_length: 512,
                ..
            }
        ),
        "{err}"
    );
    let err = engine
        .generate(GenerateRequest {
            prompt: vec![1, 2, 3],
            params: greedy(600),
            constraint: None,
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.code(), "context_length_exceeded");
}

#[tokio::test]
async fn a_full_queue_is_refused_at_once() {
    let engine = smollm(LlmOptions {
        max_sequences: 1,
        queue_capacity: 2,
        ..Default::default()
    });
    let prompt = engine.tokenize("Once upon a time", true);
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        match engine.generate(GenerateRequest {
            prompt: prompt.clone(),
            params: greedy(16),
            constraint: None,
            ..Default::default()
        }) {
            Ok(s) => accepted.push(s),
            Err(InferError::Overloaded { capacity: 2 }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        refused >= 5,
        "only {refused} of 8 refused with 1 running and 2 queued"
    );
    for s in accepted {
        let (_, summary) = s.collect().await.unwrap();
        assert_eq!(summary.completion_tokens, 16);
    }
}

/// One client's many waiting requests do not keep another's behind them all: waiting requests
/// are taken in turn by owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_requests_are_taken_in_turn_by_owner() {
    let engine = smollm(LlmOptions {
        max_sequences: 1,
        ..Default::default()
    });
    let prompt = engine.tokenize("Once upon a time", true);
    let submit = |owner: &str| {
        engine
            .generate_for(
                GenerateRequest {
                    prompt: prompt.clone(),
                    params: greedy(8),
                    constraint: None,
                    ..Default::default()
                },
                owner,
            )
            .unwrap()
    };
    // One client queues six requests, then a second client one.
    let mut streams: Vec<(&str, _)> = (0..6).map(|_| ("greedy", submit("greedy"))).collect();
    streams.push(("other", submit("other")));
    let finished = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|(owner, stream)| {
            let finished = finished.clone();
            tokio::spawn(async move {
                stream.collect().await.unwrap();
                finished.lock().unwrap().push(owner);
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let order = finished.lock().unwrap().clone();
    let other = order.iter().position(|&o| o == "other").unwrap();
    // In arrival order it would be last (7th); in turns it is served second or third.
    assert!(other <= 2, "{order:?}");
}

#[tokio::test]
async fn json_schema_constraint_always_yields_valid_json() {
    let engine = smollm(LlmOptions::default());
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"const": "get_order_details"},
            "arguments": {
                "type": "object",
                "properties": {"order_id": {"type": "string", "pattern": "^#W[0-9]{7}$"}},
                "required": ["order_id"],
                "additionalProperties": false
            }
        },
        "required": ["name", "arguments"],
        "additionalProperties": false
    });
    let prompt = chat_prompt(&engine, "Call a function.", "Where is my order #W2611340?");
    for seed in 0..3 {
        let (text, summary) = engine
            .generate(GenerateRequest {
                prompt: prompt.clone(),
                params: SamplingParams {
                    temperature: 0.8,
                    seed: Some(seed),
                    max_tokens: Some(80),
                    ..Default::default()
                },
                constraint: Some(Constraint::JsonSchema(schema.clone())),
                ..Default::default()
            })
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(summary.finish_reason, FinishReason::Stop, "{text}");
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(value["name"], "get_order_details");
        let id = value["arguments"]["order_id"].as_str().unwrap();
        assert!(
            id.len() == 9 && id.starts_with("#W") && id[2..].chars().all(|c| c.is_ascii_digit()),
            "{id}"
        );
        assert_eq!(value["arguments"].as_object().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn gemma3_base_model_loads_and_completes_text() {
    let engine = LlmHandle::spawn(
        "gemma3",
        &models_dir().join("gemma-3-270m-q4_k_m.gguf"),
        LlmOptions::default(),
    )
    .unwrap();
    assert_eq!(engine.info().architecture.as_deref(), Some("gemma3"));
    let prompt = engine.tokenize("The capital of France is", true);
    let (text, summary) = run(&engine, prompt, greedy(8)).await;
    assert!(!text.trim().is_empty());
    assert!(summary.completion_tokens >= 1);
}

/// Gemma-3-270M ships no chat template, so the fallback's end-of-turn text is a stop string
/// there; under `ignore_eos` the answer goes past it as it goes past the end-of-generation
/// tokens (llama-server has no such stop and generates the full length).
#[tokio::test]
async fn ignore_eos_goes_past_the_fallback_templates_end_of_turn() {
    let engine = LlmHandle::spawn(
        "gemma3",
        &models_dir().join("gemma-3-270m-q4_k_m.gguf"),
        LlmOptions::default(),
    )
    .unwrap();
    assert!(engine.template().is_fallback());
    assert_eq!(engine.template().implied_stops(), vec!["<|im_end|>"]);
    // A few-shot text whose greedy continuation writes the end-of-turn marker.
    let shots = "A: hi<|im_end|>\nB: hello<|im_end|>\n".repeat(4);
    let prompt = engine.tokenize(&format!("{shots}A: hi"), true);
    let (short, summary) = run(&engine, prompt.clone(), greedy(48)).await;
    assert_eq!(summary.finish_reason, FinishReason::Stop, "{short:?}");
    assert!(summary.completion_tokens < 48, "{short:?}");
    let (long, summary) = run(
        &engine,
        prompt,
        SamplingParams {
            ignore_eos: true,
            ..greedy(48)
        },
    )
    .await;
    assert_eq!(summary.finish_reason, FinishReason::Length, "{long:?}");
    assert_eq!(summary.completion_tokens, 48);
    assert!(long.contains("<|im_end|>"), "{long:?}");
    assert!(long.starts_with(&short), "{long:?} vs {short:?}");
}

/// A grammar whose token masks overrun llguidance's item limit with Qwen's 151k-token
/// vocabulary (every ordered choice of five candidates an alternative of its own, made of
/// short lexemes; the shopping assistant's grammar was once like this). llama-cpp-2's sampler
/// stops masking when a mask fails; the engine must then stop the answer, not let it go on
/// unconstrained.
#[tokio::test]
async fn an_answer_that_leaves_its_constraint_is_stopped() {
    let engine = LlmHandle::spawn(
        "qwen",
        &models_dir().join("Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf"),
        LlmOptions {
            context_length: 2048,
            ..Default::default()
        },
    )
    .unwrap();
    let titles = [
        "Electric kettle",
        "Glass teapot",
        "Garden hose",
        "Cast iron pan",
        "Chef knife",
    ];
    let pick = |i: usize| format!("\"- \" n{i} \": \" REASON \"\\n\"");
    let n = titles.len();
    let mut picks = Vec::new();
    for a in 0..n {
        picks.push(pick(a));
        for b in (0..n).filter(|&b| b != a) {
            picks.push(format!("{} {}", pick(a), pick(b)));
            for c in (0..n).filter(|&c| c != a && c != b) {
                picks.push(format!("{} {} {}", pick(a), pick(b), pick(c)));
            }
        }
    }
    let mut grammar = format!(
        "start: INTRO \"\\n\" picks\npicks: {}\n",
        picks.join("\n     | ")
    );
    for (i, t) in titles.iter().enumerate() {
        grammar.push_str(&format!("n{i}: \"[i{i}] {t}\"\n"));
    }
    grammar.push_str("INTRO: /[^\\n\\[\\]]{8,160}/\nREASON: /[^\\n]{3,100}/\n");
    let listing: Vec<String> = titles
        .iter()
        .enumerate()
        .map(|(i, t)| format!("- [i{i}] {t}"))
        .collect();
    let prompt = chat_prompt(
        &engine,
        "Answer with one short sentence, then up to three lines '- [id] title: reason'.",
        &format!(
            "I want to boil water for tea. Candidates:\n{}",
            listing.join("\n")
        ),
    );
    let outcome = engine
        .generate(GenerateRequest {
            prompt,
            params: greedy(200),
            constraint: Some(Constraint::Lark(grammar.clone())),
            ..Default::default()
        })
        .unwrap()
        .collect()
        .await;
    // The masks do overrun here (llguidance 1.9's limit of 50,000 items a step); so the
    // answer must end in the engine's error, not in text the grammar does not allow.
    match outcome {
        Err(InferError::Engine(message)) => {
            assert!(message.contains("left its constraint"), "{message}")
        }
        Ok((text, _)) => panic!("an answer outside its constraint came through: {text:?}"),
        Err(other) => panic!("{other}"),
    }
}

/// A lazy constraint: the answer is free until a trigger matches, then held to the grammar
/// from the match on. Free, SmolLM2 writes some text; with its third piece as the trigger and
/// a grammar that must go on with " forty-two", the answer is the free text up to the
/// trigger, then exactly that, and it ends there (the grammar is complete).
#[tokio::test]
async fn a_lazy_constraint_holds_the_answer_from_its_trigger_on() {
    let engine = smollm(LlmOptions::default());
    let prompt = engine.tokenize("Once upon a time", true);
    let mut free = engine
        .generate(GenerateRequest {
            prompt: prompt.clone(),
            params: greedy(12),
            ..Default::default()
        })
        .unwrap();
    let mut pieces = Vec::new();
    while let Some(event) = free.next().await {
        match event {
            hearth_infer::llm::GenerateEvent::Text(t) => pieces.push(t),
            hearth_infer::llm::GenerateEvent::Done(_) => break,
            hearth_infer::llm::GenerateEvent::Logprobs(_) => panic!("logprobs unasked"),
            hearth_infer::llm::GenerateEvent::Failed(e) => panic!("{e}"),
        }
    }
    // The first piece from the third on that does not occur earlier: it triggers only there.
    let (at, trigger) = (2..pieces.len())
        .map(|i| (i, pieces[i].clone()))
        .find(|(i, p)| !p.trim().is_empty() && !pieces[..*i].concat().contains(p.as_str()))
        .expect("a piece that is new");
    let before = pieces[..at].concat();
    let grammar = format!(
        "start: {} \" forty-two\"\n",
        serde_json::to_string(&trigger).unwrap()
    );
    let ask = |triggers: Vec<String>, constraint: Option<Constraint>| GenerateRequest {
        prompt: prompt.clone(),
        params: greedy(40),
        constraint,
        triggers,
        preserve: Vec::new(),
        score: Vec::new(),
    };
    let (text, summary) = engine
        .generate(ask(
            vec![regex::escape(&trigger)],
            Some(Constraint::Lark(grammar.clone())),
        ))
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(text, format!("{before}{trigger} forty-two"), "{pieces:?}");
    assert_eq!(summary.finish_reason, FinishReason::Stop);

    // Triggers need a constraint, and must be regular expressions.
    for (triggers, constraint, why) in [
        (vec!["x".to_owned()], None, "need a constraint"),
        (
            vec!["(".to_owned()],
            Some(Constraint::Lark(grammar)),
            "regex parse error",
        ),
    ] {
        match engine.generate(ask(triggers, constraint)) {
            Err(InferError::InvalidParameter { param, message }) => {
                assert_eq!(param, "triggers");
                assert!(message.contains(why), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}

/// The same greedy request, and the same seeded one, give the same answer whatever the cache
/// holds and whatever shares the batch: computed cold, with its prompt's prefix from the
/// cache, and three at once. Qwen2.5 (unlike SmolLM2) answers differently from a cached
/// prefix without flash attention, which the default turns on for CPU builds.
#[tokio::test]
async fn greedy_and_seeded_answers_repeat_cold_cached_and_batched() {
    let engine = LlmHandle::spawn(
        "qwen",
        &models_dir().join("Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf"),
        LlmOptions {
            context_length: 2048,
            ..LlmOptions::default()
        },
    )
    .unwrap();
    for (question, params) in [
        ("Write a short poem about green tea.", greedy(60)),
        (
            "Write a short poem about black coffee.",
            SamplingParams {
                max_tokens: Some(60),
                temperature: 0.8,
                seed: Some(7),
                ..Default::default()
            },
        ),
    ] {
        let prompt = chat_prompt(
            &engine,
            "You are a helpful assistant for a shop that sells tea, coffee and kitchen goods.",
            question,
        );
        let (cold, first) = run(&engine, prompt.clone(), params.clone()).await;
        // The system prompt may come from the cache; the question is new.
        assert!(first.cached_prompt_tokens + 1 < prompt.len(), "{first:?}");
        let (cached, again) = run(&engine, prompt.clone(), params.clone()).await;
        assert!(again.cached_prompt_tokens > 0, "{again:?}");
        assert_eq!(cached, cold, "{params:?}");
        let batched =
            futures::future::join_all((0..3).map(|_| run(&engine, prompt.clone(), params.clone())))
                .await;
        for (text, _) in batched {
            assert_eq!(text, cold, "{params:?}");
        }
    }
}

/// `ignore_eos` goes on past the model's end of turn in text, as llama-server does: the
/// end-of-generation tokens are never sampled, so every generated token writes something
/// (before, the end-of-turn token was sampled again and again, writing nothing).
#[tokio::test]
async fn ignore_eos_goes_on_in_text_past_the_end_of_turn() {
    let engine = smollm(LlmOptions::default());
    let prompt = chat_prompt(&engine, "You are brief.", "Reply with one word: yes or no?");
    let (short, summary) = run(&engine, prompt.clone(), greedy(64)).await;
    assert_eq!(summary.finish_reason, FinishReason::Stop, "{short:?}");
    let wanted = summary.completion_tokens + 24;
    let mut events = engine
        .generate(GenerateRequest {
            prompt,
            params: SamplingParams {
                ignore_eos: true,
                ..greedy(wanted as u32)
            },
            ..Default::default()
        })
        .unwrap();
    let (mut pieces, mut done) = (Vec::new(), None);
    while let Some(event) = events.next().await {
        match event {
            hearth_infer::llm::GenerateEvent::Text(t) => pieces.push(t),
            hearth_infer::llm::GenerateEvent::Logprobs(_) => panic!("logprobs unasked"),
            hearth_infer::llm::GenerateEvent::Done(s) => {
                done = Some(s);
                break;
            }
            hearth_infer::llm::GenerateEvent::Failed(e) => panic!("{e}"),
        }
    }
    let done = done.expect("a summary");
    assert_eq!(done.finish_reason, FinishReason::Length);
    assert_eq!(done.completion_tokens, wanted);
    let text = pieces.concat();
    assert!(text.starts_with(short.trim_end()), "{text:?} vs {short:?}");
    // English text from a 49k vocabulary: one piece per token, none empty.
    assert!(
        pieces.len() + 2 >= wanted,
        "{} pieces for {wanted} tokens: {text:?}",
        pieces.len()
    );
}

#[tokio::test]
async fn scoring_answers_the_next_tokens_log_probabilities() {
    let engine = smollm(LlmOptions::default());
    let prompt = chat_prompt(
        &engine,
        "Answer with one word.",
        "Is Paris the capital of France? Answer yes or no.",
    );
    // The token greedy decoding picks first.
    let first = engine
        .generate(GenerateRequest {
            prompt: prompt.clone(),
            params: greedy(1),
            ..Default::default()
        })
        .unwrap()
        .collect()
        .await
        .unwrap()
        .0;
    let chosen = engine.tokenize(&first, false)[0];
    let others: Vec<u32> = ["yes", "no", "Paris", "banana"]
        .iter()
        .map(|w| engine.tokenize(w, false)[0])
        .filter(|&t| t != chosen)
        .collect();
    let mut candidates = vec![chosen];
    candidates.extend(&others);
    let score = |candidates: Vec<u32>| {
        let engine = engine.clone();
        let prompt = prompt.clone();
        async move {
            engine
                .generate(GenerateRequest {
                    prompt,
                    params: greedy(1),
                    score: candidates,
                    ..Default::default()
                })
                .unwrap()
                .logprobs()
                .await
                .unwrap()
        }
    };
    let (logprobs, summary) = score(candidates.clone()).await;
    assert_eq!(logprobs.len(), candidates.len());
    assert_eq!(summary.completion_tokens, 0, "scoring generates nothing");
    assert_eq!(summary.prompt_tokens, prompt.len());
    assert!(
        logprobs.iter().all(|&lp| lp <= 0.0 && lp.is_finite()),
        "{logprobs:?}"
    );
    let mass: f32 = logprobs.iter().map(|lp| lp.exp()).sum();
    assert!(mass <= 1.0 + 1e-4, "probabilities sum to {mass}");
    assert!(
        logprobs[1..].iter().all(|&lp| lp <= logprobs[0]),
        "greedy's token {chosen} ({first:?}) must be the likeliest: {logprobs:?}"
    );
    // Again, now from the prefix cache, and in another order: the same values.
    let mut reversed = candidates.clone();
    reversed.reverse();
    let (again, cached) = score(reversed).await;
    assert!(cached.cached_prompt_tokens > 0);
    for (a, b) in logprobs.iter().zip(again.iter().rev()) {
        assert!((a - b).abs() < 1e-4, "{logprobs:?} vs {again:?}");
    }
    // A token outside the vocabulary is refused by name.
    let err = engine
        .generate(GenerateRequest {
            prompt,
            params: greedy(1),
            score: vec![u32::MAX],
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("score"), "{err}");
}
