//! The chat-template conformance suite: real templates as their authors published them, a
//! corpus of conversations, and the text Python's jinja2 renders under Hugging Face's
//! conventions (tests/chat-templates/expected.json, written by
//! scripts/chat-template-reference.sh). hearth's rendering must equal it byte for byte, and a
//! conversation the reference refuses must be refused with a 400-class error naming the model
//! and the template's line.

use std::path::PathBuf;

use hearth_infer::llm::ChatTemplate;
use hearth_infer::InferError;
use hearth_types::{ChatMessage, Tool};
use serde_json::{Map, Value};

/// The clock the reference's `strftime_now` reads: 2026-07-26 12:00 UTC.
const FIXED_NOW: i64 = 1_785_067_200;

fn suite() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/chat-templates")
}

fn read_json(name: &str) -> Value {
    let path = suite().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first line where two texts differ, shown with both versions, for a failure message.
fn first_difference(got: &str, want: &str) -> String {
    let (got_lines, want_lines): (Vec<_>, Vec<_>) =
        (got.split('\n').collect(), want.split('\n').collect());
    for i in 0..got_lines.len().max(want_lines.len()) {
        let (g, w) = (got_lines.get(i), want_lines.get(i));
        if g != w {
            return format!("line {}:\n  hearth: {:?}\n  python: {:?}", i + 1, g, w);
        }
    }
    "same lines (a trailing difference)".to_owned()
}

#[test]
fn every_template_renders_every_conversation_as_python_jinja2_does() {
    let manifest = read_json("templates.json");
    let corpus = read_json("conversations.json");
    let expected = read_json("expected.json");
    let tools: Vec<Tool> = serde_json::from_value(corpus["tools"].clone()).unwrap();
    let templates = manifest["templates"].as_object().unwrap();
    assert!(
        templates.len() >= 24,
        "the suite has {} templates",
        templates.len()
    );

    let mut failures = Vec::new();
    let mut cases = 0;
    let mut refusals = 0;
    for (name, entry) in templates {
        let source = std::fs::read_to_string(suite().join(format!("templates/{name}.jinja")))
            .unwrap_or_else(|e| panic!("templates/{name}.jinja: {e}"));
        let template = ChatTemplate::new(
            Some(&source),
            entry["bos_token"].as_str().unwrap(),
            entry["eos_token"].as_str().unwrap(),
        )
        .unwrap_or_else(|e| panic!("{name} does not compile: {e}"))
        .for_model(name.as_str());
        template.set_clock(FIXED_NOW);
        let want = &expected[name.as_str()];
        let caps = serde_json::to_value(template.capabilities()).unwrap();
        if caps != want["capabilities"] {
            failures.push(format!(
                "{name}: capabilities {caps} where the reference found {}",
                want["capabilities"]
            ));
        }
        for (case, conversation) in corpus["cases"].as_object().unwrap() {
            cases += 1;
            let messages: Vec<ChatMessage> =
                serde_json::from_value(conversation["messages"].clone()).unwrap();
            let offered = conversation["tools"].as_bool().unwrap_or(false);
            let kwargs: Option<Map<String, Value>> = conversation
                .get("chat_template_kwargs")
                .and_then(|k| k.as_object().cloned());
            let got = template.render_with(
                &messages,
                offered.then_some(tools.as_slice()),
                true,
                kwargs.as_ref(),
            );
            let reference = &want["cases"][case.as_str()];
            match (got, reference["text"].as_str()) {
                (Ok(text), Some(expected)) if text == expected => {}
                (Ok(text), Some(expected)) => failures.push(format!(
                    "{name} / {case}: differs at {}",
                    first_difference(&text, expected)
                )),
                (Ok(_), None) => failures.push(format!(
                    "{name} / {case}: rendered, where Python refused ({})",
                    reference["error"]
                )),
                (Err(InferError::InvalidParameter { param, message }), None) => {
                    refusals += 1;
                    assert_eq!(param, "messages", "{name} / {case}");
                    assert!(
                        message.contains(&format!("`{name}`")) && message.contains("line "),
                        "{name} / {case}: the refusal should name the model and the template's \
                         line: {message}"
                    );
                }
                (Err(e), _) => failures.push(format!("{name} / {case}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ from Python's jinja2:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The corpus holds conversations some templates refuse (Llama 3.x takes one call per turn).
    assert!(refusals > 0 && refusals < cases / 10, "{refusals} refusals");
}

#[test]
fn the_reference_file_matches_the_templates_it_was_rendered_from() {
    // expected.json is only a reference while the templates are the ones it was rendered from.
    use sha2::{Digest, Sha256};
    let manifest = read_json("templates.json");
    let expected = read_json("expected.json");
    for (name, entry) in manifest["templates"].as_object().unwrap() {
        let bytes = std::fs::read(suite().join(format!("templates/{name}.jinja"))).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            entry["sha256"].as_str().unwrap(),
            "templates/{name}.jinja changed: run scripts/chat-template-reference.sh"
        );
        assert!(
            expected.get(name.as_str()).is_some(),
            "{name} has no reference"
        );
    }
}

/// Call ids in OpenAI's form (`call_…`, as a client that talked to another server keeps them)
/// render in every template. Mistral's templates take only nine letters and digits: there each
/// id gets a stand-in of that form, the same for a call and its result, and nothing else in
/// the text changes; everywhere else the ids render as given.
#[test]
fn call_ids_of_any_form_render_and_mistral_gets_nine_character_stand_ins() {
    let manifest = read_json("templates.json");
    let corpus = read_json("conversations.json");
    let expected = read_json("expected.json");
    let tools: Vec<Tool> = serde_json::from_value(corpus["tools"].clone()).unwrap();
    let short_ids = ["A1b2C3d4E", "F5g6H7i8J"];
    let long_ids = ["call_9f2c6d0a1b7e4c3f8a5d", "call_0e4b8c2d6f1a9e7b3c5d"];
    let original = serde_json::to_string(&corpus["cases"]["tool_calls"]["messages"]).unwrap();
    assert!(short_ids.iter().all(|id| original.contains(id)));
    let mut replaced = original.clone();
    for (short, long) in short_ids.iter().zip(long_ids) {
        replaced = replaced.replace(short, long);
    }
    let messages: Vec<ChatMessage> = serde_json::from_str(&replaced).unwrap();
    let mut stand_ins_seen = 0;
    for (name, entry) in manifest["templates"].as_object().unwrap() {
        let Some(reference) = expected[name.as_str()]["cases"]["tool_calls"]["text"].as_str()
        else {
            continue; // The reference refuses the conversation itself (one call per turn).
        };
        let source =
            std::fs::read_to_string(suite().join(format!("templates/{name}.jinja"))).unwrap();
        let template = ChatTemplate::new(
            Some(&source),
            entry["bos_token"].as_str().unwrap(),
            entry["eos_token"].as_str().unwrap(),
        )
        .unwrap()
        .for_model(name.as_str());
        template.set_clock(FIXED_NOW);
        let got = template
            .render_with(&messages, Some(&tools), true, None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if template.capabilities().any_call_ids {
            let mut want = reference.to_owned();
            for (short, long) in short_ids.iter().zip(long_ids) {
                want = want.replace(short, long);
            }
            assert_eq!(got, want, "{name}: {}", first_difference(&got, &want));
            continue;
        }
        // Same length, differing only where the reference has an id, each id always replaced
        // by the same nine letters and digits.
        assert!(long_ids.iter().all(|id| !got.contains(id)), "{name}: {got}");
        assert_eq!(got.len(), reference.len(), "{name}: {got}");
        let mut stand_ins: Vec<Option<String>> = vec![None; short_ids.len()];
        let mut at = 0;
        while at < reference.len() {
            if let Some(i) = short_ids
                .iter()
                .position(|id| reference.as_bytes()[at..].starts_with(id.as_bytes()))
            {
                let stand_in = got
                    .get(at..at + 9)
                    .expect("nine characters where an id was");
                assert!(
                    stand_in.bytes().all(|b| b.is_ascii_alphanumeric()),
                    "{name}"
                );
                let known = stand_ins[i].get_or_insert_with(|| stand_in.to_owned());
                assert_eq!(
                    known, stand_in,
                    "{name}: id {} has two stand-ins",
                    short_ids[i]
                );
                at += 9;
            } else {
                assert_eq!(
                    got.as_bytes()[at],
                    reference.as_bytes()[at],
                    "{name}: {}",
                    first_difference(&got, reference)
                );
                at += 1;
            }
        }
        assert!(stand_ins.iter().all(Option::is_some), "{name}: {got}");
        assert_ne!(stand_ins[0], stand_ins[1], "{name}");
        stand_ins_seen += 1;
    }
    assert_eq!(
        stand_ins_seen, 2,
        "the suite's two Mistral templates with tool results"
    );
}
