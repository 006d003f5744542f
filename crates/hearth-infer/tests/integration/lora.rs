//! LoRA adapters on the real test models, with the adapters scripts/make-lora-adapters.sh
//! writes (rank 32 on every block's attn_q and attn_v; `zero` has lora_b all zeros).

use std::sync::atomic::Ordering;
use std::time::Duration;

use hearth_infer::llm::{FlashAttention, GenerateRequest, LlmHandle, LlmOptions, SamplingParams};
use hearth_infer::InferError;
use hearth_testdata::models_dir;
use hearth_types::ChatMessage;

fn adapter(name: &str) -> std::path::PathBuf {
    models_dir().join("adapters").join(format!("{name}.gguf"))
}

fn smollm() -> LlmHandle {
    // Flash attention: the same answer whatever shares the batch (see llm.rs).
    LlmHandle::spawn(
        "smollm2",
        &models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        LlmOptions {
            max_sequences: 4,
            flash_attention: FlashAttention::On,
            ..Default::default()
        },
    )
    .unwrap()
}

fn prompt(engine: &LlmHandle, user: &str) -> Vec<u32> {
    let text = engine
        .template()
        .render(
            &[
                ChatMessage::new("system", "Answer in one short sentence."),
                ChatMessage::new("user", user),
            ],
            None,
            true,
        )
        .unwrap();
    engine.tokenize_chat(&text)
}

fn request(prompt: Vec<u32>) -> GenerateRequest {
    GenerateRequest {
        prompt,
        params: SamplingParams {
            max_tokens: Some(20),
            temperature: 0.0,
            ..Default::default()
        },
        constraint: None,
        ..Default::default()
    }
}

async fn answer(engine: &LlmHandle, prompt: Vec<u32>) -> String {
    engine
        .generate(request(prompt))
        .unwrap()
        .collect()
        .await
        .unwrap()
        .0
}

async fn wait_for_adapters(engine: &LlmHandle, n: usize) {
    for _ in 0..500 {
        if engine.gauges().loaded_adapters.load(Ordering::Relaxed) == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the engine holds {} adapters, expected {n}",
        engine.gauges().loaded_adapters.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn a_zero_adapter_answers_as_the_base_and_a_trained_one_differently() {
    let base = smollm();
    let q = prompt(&base, "What is the capital of France?");
    let plain = answer(&base, q.clone()).await;
    let zero = base
        .load_adapter("zero", &adapter("smollm2-zero"), 1.0)
        .unwrap();
    let a = base.load_adapter("a", &adapter("smollm2-a"), 1.0).unwrap();
    let b = base.load_adapter("b", &adapter("smollm2-b"), 1.0).unwrap();
    assert_eq!(base.gauges().loaded_adapters.load(Ordering::Relaxed), 3);
    assert_eq!(a.adapter_name(), Some("a"));
    let info = a.adapter().unwrap();
    assert_eq!((info.header.rank, info.header.alpha), (32, Some(16.0)));
    assert_eq!(info.header.architecture, "llama");
    assert!(base.adapter().is_none());

    assert_eq!(
        answer(&zero, q.clone()).await,
        plain,
        "a zero adapter changed the answer"
    );
    let under_a = answer(&a, q.clone()).await;
    let under_b = answer(&b, q.clone()).await;
    assert_ne!(under_a, plain, "adapter a did not change the answer");
    assert_ne!(under_b, plain, "adapter b did not change the answer");
    assert_ne!(under_a, under_b, "two different adapters answered the same");
    // Each again, after the others ran (the cached prefix of one is never reused by another),
    // and the base after all of them.
    assert_eq!(answer(&a, q.clone()).await, under_a);
    assert_eq!(answer(&b, q.clone()).await, under_b);
    assert_eq!(answer(&base, q.clone()).await, plain);
    // Scale 0: the adapter applies nothing.
    let off = base
        .load_adapter("a-off", &adapter("smollm2-a"), 0.0)
        .unwrap();
    assert_eq!(answer(&off, q).await, plain);
}

/// The base and three adapters loaded into one fresh engine.
fn four_groups() -> [LlmHandle; 4] {
    let base = smollm();
    let a = base.load_adapter("a", &adapter("smollm2-a"), 1.0).unwrap();
    let b = base.load_adapter("b", &adapter("smollm2-b"), 1.0).unwrap();
    let zero = base
        .load_adapter("zero", &adapter("smollm2-zero"), 1.0)
        .unwrap();
    [base, a, b, zero]
}

#[tokio::test]
async fn concurrent_requests_on_different_adapters_each_get_their_own_answer() {
    // Four requests at once, one per adapter group (the base, a, b, the zero adapter), against
    // each run alone. Different adapters never share a batch, so each request decodes as it
    // does alone, bit for bit, given what llama.cpp's CPU kernels need for that:
    // - flash attention (see llm.rs);
    // - adapter weights whose products take one kernel for one token and for several: the
    //   test adapters are Q4_1 (llama.cpp's tinyBLAS path, from two tokens on, takes F32,
    //   F16, BF16 and Q8_0), see scripts/make-lora-adapters.py; two requests on one adapter
    //   do share a batch, and with such weights (or SmolLM2's Q8_0 output head, for two base
    //   requests) a near-tie may flip;
    // - each sequence's KV cells in position order, and fewer than 512 cells in view (from
    //   512 on, a lone token's attention is split across threads at cell boundaries): so
    //   both runs start from a fresh engine and stay within 256 cells.
    let questions = [
        "What is the capital of France?",
        "Name a primary colour.",
        "What do bees make?",
        "How many legs does a spider have?",
    ];
    for round in 0..2 {
        let jobs: Vec<usize> = (0..4).map(|i| (i + round) % questions.len()).collect();
        let alone_engines = four_groups();
        let prompts: Vec<_> = jobs
            .iter()
            .map(|&q| prompt(&alone_engines[0], questions[q]))
            .collect();
        let mut alone = Vec::new();
        for (engine, p) in alone_engines.iter().zip(&prompts) {
            alone.push(answer(engine, p.clone()).await);
        }
        let base_answer = answer(&alone_engines[0], prompts[1].clone()).await;
        let zero_as_base = answer(&alone_engines[0], prompts[3].clone()).await;
        drop(alone_engines);

        let engines = four_groups();
        let streams: Vec<_> = engines
            .iter()
            .zip(&prompts)
            .map(|(engine, p)| engine.generate(request(p.clone())).unwrap())
            .collect();
        let watcher = {
            let base = engines[0].clone();
            tokio::spawn(async move {
                let mut most = 0;
                for _ in 0..400 {
                    most = most.max(base.gauges().active_sequences.load(Ordering::Relaxed));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                most
            })
        };
        let mut together = Vec::new();
        for s in streams {
            together.push(s.collect().await.unwrap().0);
        }
        let most = watcher.await.unwrap();
        assert!(most >= 2, "requests never overlapped (max {most} active)");
        for (i, (alone, together)) in alone.iter().zip(&together).enumerate() {
            assert_eq!(
                alone, together,
                "round {round}, request {i} changed when run beside other adapters"
            );
        }
        // The adapter changed its answer, so the comparison means something; the zero
        // adapter did not.
        assert_ne!(alone[1], base_answer);
        assert_eq!(alone[3], zero_as_base);
    }
}

#[tokio::test]
async fn an_adapter_for_another_base_is_refused_naming_both_shapes() {
    let base = smollm();
    // SmolLM2-360M's shapes (hidden 960) against the 135M base (hidden 576).
    let err = base
        .load_adapter("big", &adapter("smollm2-360m-shape"), 1.0)
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, InferError::InvalidModel { .. }), "{err:?}");
    assert!(message.contains("blk.0.attn_q.weight"), "{message}");
    assert!(
        message.contains("[576, 576]"),
        "base shape missing: {message}"
    );
    assert!(
        message.contains("[960, 32]"),
        "adapter shape missing: {message}"
    );
    // Qwen's adapter: another architecture, named with the base's.
    let err = base
        .load_adapter("qwen", &adapter("qwen05-a"), 1.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("'qwen2'") && err.contains("'llama'"), "{err}");
    // A model file is not an adapter.
    let err = base
        .load_adapter(
            "model",
            &models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf"),
            1.0,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("adapter"), "{err}");
    // An adapter on an adapter.
    let a = base.load_adapter("a", &adapter("smollm2-a"), 1.0).unwrap();
    let err = a
        .load_adapter("b", &adapter("smollm2-b"), 1.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("itself an adapter"), "{err}");
    // None of these were loaded; the base still answers.
    assert_eq!(base.gauges().loaded_adapters.load(Ordering::Relaxed), 1);
    assert!(!answer(&base, prompt(&base, "Hi")).await.is_empty());
}

#[tokio::test]
async fn an_adapter_is_freed_when_its_last_handle_and_request_are_gone() {
    let base = smollm();
    let q = prompt(&base, "What do bees make?");
    let plain = answer(&base, q.clone()).await;
    let a = base.load_adapter("a", &adapter("smollm2-a"), 1.0).unwrap();
    let under_a = answer(&a, q.clone()).await;
    let copy = a.clone();
    // A request in flight keeps it loaded after every handle is dropped.
    let stream = a.generate(request(q.clone())).unwrap();
    drop(a);
    drop(copy);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(base.gauges().loaded_adapters.load(Ordering::Relaxed), 1);
    assert_eq!(stream.collect().await.unwrap().0, under_a);
    wait_for_adapters(&base, 0).await;
    // The base is untouched, and the adapter loads again.
    assert_eq!(answer(&base, q.clone()).await, plain);
    let again = base.load_adapter("a", &adapter("smollm2-a"), 1.0).unwrap();
    assert_eq!(answer(&again, q).await, under_a);
}
