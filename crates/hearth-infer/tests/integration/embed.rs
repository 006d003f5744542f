//! The embedding engine against the real all-MiniLM-L6-v2 and sentence-transformers' own
//! vectors (tests/fixtures/minilm_reference.json, written by scripts/make-embedding-fixture.py).
//!
//! The model comes from `$HEARTH_TEST_MODELS/all-MiniLM-L6-v2` (default
//! `~/.cache/hearth/test-models`); `scripts/fetch-test-models.sh` puts it there. A missing model
//! fails the tests: it never skips them.

use std::path::PathBuf;
use std::sync::OnceLock;

use hearth_infer::embed::{EmbedHandle, EmbedInput, EmbedOptions, EmbeddingModel, Embeddings};
use hearth_infer::InferError;
use serde::Deserialize;

fn model_dir() -> PathBuf {
    let root = std::env::var_os("HEARTH_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
                .join(".cache/hearth/test-models")
        });
    let dir = root.join("all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file() && dir.join("tokenizer.json").is_file(),
        "the test model all-MiniLM-L6-v2 is missing from {}: run scripts/fetch-test-models.sh \
         (or point HEARTH_TEST_MODELS at a directory holding it)",
        dir.display()
    );
    dir
}

fn model() -> &'static EmbeddingModel {
    static MODEL: OnceLock<EmbeddingModel> = OnceLock::new();
    MODEL.get_or_init(|| EmbeddingModel::load(&model_dir()).expect("load all-MiniLM-L6-v2"))
}

#[derive(Deserialize)]
struct Fixture {
    max_seq_length: usize,
    dims: usize,
    sentences: Vec<Reference>,
}

#[derive(Deserialize)]
struct Reference {
    text: String,
    tokens: usize,
    vector: Vec<f32>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/minilm_reference.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).expect("read fixture"))
            .expect("parse fixture")
    })
}

fn texts() -> Vec<EmbedInput> {
    fixture()
        .sentences
        .iter()
        .map(|s| EmbedInput::Text(s.text.clone()))
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn embed_one(model: &EmbeddingModel, input: EmbedInput) -> Embeddings {
    model.embed(&[input]).expect("embed")
}

fn tokenizer() -> tokenizers::Tokenizer {
    let mut tokenizer =
        tokenizers::Tokenizer::from_file(model_dir().join("tokenizer.json")).expect("tokenizer");
    tokenizer.with_padding(None);
    tokenizer.with_truncation(None).expect("no truncation");
    tokenizer
}

#[test]
fn model_reports_its_shape() {
    let model = model();
    assert_eq!(model.dims(), fixture().dims);
    assert_eq!(model.dims(), 384);
    assert_eq!(model.max_tokens(), fixture().max_seq_length);
    assert_eq!(model.max_tokens(), 256);
}

#[test]
fn matches_sentence_transformers_reference() {
    let model = model();
    for reference in &fixture().sentences {
        let out = embed_one(model, EmbedInput::Text(reference.text.clone()));
        assert_eq!(
            out.prompt_tokens, reference.tokens,
            "token count of {:?} differs from sentence-transformers'",
            reference.text
        );
        let similarity = cosine(&out.vectors[0], &reference.vector);
        assert!(
            similarity >= 0.999,
            "cosine {similarity} < 0.999 against sentence-transformers for {:?}",
            reference.text
        );
        let diff = max_abs_diff(&out.vectors[0], &reference.vector);
        assert!(diff < 1e-4, "max |diff| {diff} for {:?}", reference.text);
    }
}

#[test]
fn batched_results_equal_single_results_in_input_order() {
    let inputs = texts();
    let singles: Vec<Vec<f32>> = inputs
        .iter()
        .map(|input| embed_one(model(), input.clone()).vectors.remove(0))
        .collect();
    let single_tokens: usize = fixture().sentences.iter().map(|s| s.tokens).sum();

    // All 20 in one forward pass, and in batches of 3 (several passes, mixed lengths).
    let small_batches = EmbeddingModel::load_with_options(
        &model_dir(),
        &EmbedOptions {
            max_batch: 3,
            threads: 1,
            ..EmbedOptions::default()
        },
    )
    .expect("load");
    for out in [
        model().embed(&inputs).expect("embed"),
        small_batches.embed(&inputs).expect("embed"),
    ] {
        assert_eq!(out.vectors.len(), inputs.len());
        assert_eq!(out.prompt_tokens, single_tokens);
        for (i, (batched, single)) in out.vectors.iter().zip(&singles).enumerate() {
            let diff = max_abs_diff(batched, single);
            assert!(
                diff < 1e-5,
                "input {i}: batched differs from single by {diff}"
            );
        }
    }

    // Reversed order gives the same vectors, reversed.
    let mut reversed = inputs.clone();
    reversed.reverse();
    let out = model().embed(&reversed).expect("embed");
    for (batched, single) in out.vectors.iter().rev().zip(&singles) {
        assert!(max_abs_diff(batched, single) < 1e-5);
    }
}

#[test]
fn vectors_have_unit_norm() {
    let out = model().embed(&texts()).expect("embed");
    for vector in &out.vectors {
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
}

#[test]
fn token_arrays_equal_text() {
    let tokenizer = tokenizer();
    let model = model();
    for reference in fixture().sentences.iter().take(18) {
        let text = embed_one(model, EmbedInput::Text(reference.text.clone()));
        let with_special = tokenizer
            .encode(reference.text.as_str(), true)
            .expect("encode");
        let without_special = tokenizer
            .encode(reference.text.as_str(), false)
            .expect("encode");
        assert_ne!(with_special.get_ids(), without_special.get_ids());
        for ids in [with_special.get_ids(), without_special.get_ids()] {
            let tokens = embed_one(model, EmbedInput::Tokens(ids.to_vec()));
            assert_eq!(
                tokens.prompt_tokens, text.prompt_tokens,
                "{:?}",
                reference.text
            );
            let diff = max_abs_diff(&tokens.vectors[0], &text.vectors[0]);
            assert!(
                diff < 1e-6,
                "{:?}: tokens differ from text by {diff}",
                reference.text
            );
        }
    }
}

#[test]
fn long_inputs_are_truncated_to_max_tokens() {
    let model = model();
    let long = "word ".repeat(400);
    let text = embed_one(model, EmbedInput::Text(long.clone()));
    assert_eq!(text.prompt_tokens, model.max_tokens());

    // The same text cut by hand to what fits (254 words + [CLS] + [SEP]) gives the same vector.
    let cut = "word ".repeat(model.max_tokens() - 2);
    let cut = embed_one(model, EmbedInput::Text(cut));
    assert_eq!(cut.prompt_tokens, model.max_tokens());
    assert!(max_abs_diff(&text.vectors[0], &cut.vectors[0]) < 1e-6);

    // A token array longer than the model's window is truncated the same way.
    let ids = tokenizer().encode(long.as_str(), true).expect("encode");
    assert!(ids.get_ids().len() > model.max_tokens());
    let tokens = embed_one(model, EmbedInput::Tokens(ids.get_ids().to_vec()));
    assert_eq!(tokens.prompt_tokens, model.max_tokens());
    assert!(max_abs_diff(&tokens.vectors[0], &text.vectors[0]) < 1e-6);
}

fn assert_invalid_input(result: Result<Embeddings, InferError>, needle: &str) {
    match result {
        Err(InferError::InvalidParameter { param, message }) => {
            assert_eq!(param, "input");
            assert!(
                message.contains(needle),
                "message {message:?} lacks {needle:?}"
            );
        }
        other => panic!("expected InvalidParameter(input), got {other:?}"),
    }
}

#[test]
fn invalid_inputs_are_rejected_naming_input() {
    let model = model();
    assert_invalid_input(model.embed(&[]), "must not be empty");
    assert_invalid_input(
        model.embed(&[EmbedInput::from("fine"), EmbedInput::from("")]),
        "input[1] is an empty string",
    );
    assert_invalid_input(
        model.embed(&[EmbedInput::Tokens(vec![])]),
        "input[0] is an empty token array",
    );
    assert_invalid_input(
        model.embed(&[EmbedInput::Tokens(vec![101, 30522, 102])]),
        "token id 30522",
    );
    let err = model.embed(&[]).unwrap_err();
    assert_eq!(err.code(), "invalid_request");
}

#[test]
fn missing_model_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = EmbeddingModel::load(dir.path()).unwrap_err();
    assert_eq!(err.code(), "invalid_model");
    assert!(err.to_string().contains("config.json is missing"), "{err}");
}

#[test]
fn handle_embeds_from_async_code() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let expected = model().embed(&texts()).expect("embed").vectors;
    runtime.block_on(async {
        let handle = EmbedHandle::spawn(&model_dir(), EmbedOptions::default()).expect("spawn");
        assert_eq!(handle.dims(), 384);
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let handle = handle.clone();
                tokio::spawn(async move { handle.embed(texts()).await })
            })
            .collect();
        for task in tasks {
            let out = task.await.expect("join").expect("embed");
            for (got, want) in out.vectors.iter().zip(&expected) {
                assert!(max_abs_diff(got, want) < 1e-5);
            }
        }
        let err = handle.embed(vec![]).await.unwrap_err();
        assert!(
            matches!(err, InferError::InvalidParameter { .. }),
            "{err:?}"
        );
    });
}

/// One client's many waiting requests do not keep another's behind them all: the engine takes
/// waiting requests in turn by owner.
#[test]
fn waiting_requests_are_taken_in_turn_by_owner() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // One request per round, so the order of rounds is the order of service.
        let handle = EmbedHandle::spawn(
            &model_dir(),
            EmbedOptions {
                max_batch: 1,
                threads: 1,
                ..EmbedOptions::default()
            },
        )
        .expect("spawn");
        let text = "a long enough sentence about kettles, mugs and teapots ".repeat(8);
        let finished = std::sync::Mutex::new(Vec::new());
        let owners = ["greedy"; 6].into_iter().chain(["other"]);
        // Submitted in this order (join_all polls each once, in order, before any answer).
        let requests = owners.map(|owner| {
            let (handle, text, finished) = (&handle, text.clone(), &finished);
            async move {
                handle
                    .embed_for(vec![EmbedInput::Text(text)], owner)
                    .await
                    .expect("embed");
                finished.lock().unwrap().push(owner);
            }
        });
        futures::future::join_all(requests).await;
        let order = finished.into_inner().unwrap();
        let other = order.iter().position(|&o| o == "other").unwrap();
        // In arrival order it would be last (7th); in turns it is served second or third.
        assert!(other <= 2, "{order:?}");
    });
}

#[test]
fn full_queue_answers_overloaded_and_the_rest_complete() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let inputs = texts();
    let expected = model().embed(&inputs).expect("embed").vectors;
    runtime.block_on(async {
        let handle = EmbedHandle::spawn(
            &model_dir(),
            EmbedOptions {
                queue_capacity: 1,
                ..EmbedOptions::default()
            },
        )
        .expect("spawn");
        // 16 requests submitted in one poll: each `embed` tries to enqueue at once, while a
        // forward pass takes milliseconds, so the one-slot queue must overflow.
        let requests = (0..16).map(|_| handle.embed(inputs.clone()));
        let results = futures::future::join_all(requests).await;
        let mut overloaded = 0;
        let mut completed = 0;
        for result in results {
            match result {
                Err(InferError::Overloaded { capacity }) => {
                    assert_eq!(capacity, 1);
                    overloaded += 1;
                }
                Ok(out) => {
                    completed += 1;
                    assert_eq!(out.vectors.len(), expected.len());
                    for (got, want) in out.vectors.iter().zip(&expected) {
                        assert!(max_abs_diff(got, want) < 1e-5);
                    }
                }
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
        assert!(overloaded >= 1, "no request was answered Overloaded");
        assert!(completed >= 1, "no request completed");
        // Once the queue drains, the engine takes requests again.
        let out = handle
            .embed(inputs.clone())
            .await
            .expect("embed after overload");
        assert_eq!(out.vectors.len(), inputs.len());
    });
}

#[test]
fn queued_requests_share_forward_passes_and_each_gets_its_own_answer() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let inputs = texts();
    let expected = model().embed(&inputs).expect("embed").vectors;
    runtime.block_on(async {
        let handle = EmbedHandle::spawn(&model_dir(), EmbedOptions::default()).expect("spawn");
        // Submitted in one poll: all but the first wait in the queue and are served as a group.
        let mut requests: Vec<Vec<EmbedInput>> = inputs.iter().map(|i| vec![i.clone()]).collect();
        requests.push(vec![
            inputs[19].clone(),
            inputs[0].clone(),
            inputs[5].clone(),
        ]);
        requests.push(vec![EmbedInput::from("fine"), EmbedInput::from("")]);
        let results =
            futures::future::join_all(requests.into_iter().map(|r| handle.embed(r))).await;

        let (invalid, results) = results.split_last().expect("results");
        assert!(
            matches!(invalid, Err(InferError::InvalidParameter { param, .. }) if param == "input"),
            "{invalid:?}"
        );
        let (three, singles) = results.split_last().expect("results");
        for (i, result) in singles.iter().enumerate() {
            let out = result.as_ref().expect("embed");
            assert_eq!(out.vectors.len(), 1);
            assert_eq!(out.prompt_tokens, fixture().sentences[i].tokens);
            assert!(
                max_abs_diff(&out.vectors[0], &expected[i]) < 1e-5,
                "request {i}"
            );
        }
        let three = three.as_ref().expect("embed");
        for (got, i) in three.vectors.iter().zip([19, 0, 5]) {
            assert!(max_abs_diff(got, &expected[i]) < 1e-5);
        }
        let tokens: usize = [19, 0, 5]
            .iter()
            .map(|&i| fixture().sentences[i].tokens)
            .sum();
        assert_eq!(three.prompt_tokens, tokens);
    });
}
