//! The privacy corpora (hearth_testdata::pii) against the detectors: every value of the
//! tuning corpus must be found, the held-out corpus' recall is reported (docs/benchmarks.md),
//! and real benign text must come out untouched.
//!
//! `cargo test -p hearth-gateway privacy::corpus -- --nocapture` prints the figures.

use super::*;
use hearth_testdata::pii;

fn kind(name: &str) -> PiiKind {
    PiiKind::ALL
        .into_iter()
        .find(|k| k.as_str() == name)
        .expect("a known kind")
}

fn known(k: pii::Known) -> KnownPii {
    KnownPii {
        names: k.names,
        addresses: k.addresses,
    }
}

/// Whether `value` (as written inside `text`) is covered by spans of `kind` (placeholders
/// hide every character of it but separators).
fn covered(text: &str, value: &str, kind: PiiKind, known: &KnownPii) -> bool {
    let Some(at) = text.find(value) else {
        panic!("{value:?} is not in {text:?}");
    };
    let spans = detect(text, known);
    let end = at + value.len();
    text[at..end].char_indices().all(|(i, c)| {
        let i = at + i;
        !c.is_alphanumeric()
            || spans
                .iter()
                .any(|s| s.kind == kind && s.start <= i && i < s.end)
    })
}

#[test]
fn every_value_of_the_tuning_corpus_is_found() {
    let (record, cases) = pii::tuning_corpus();
    let known = known(record);
    assert!(cases.len() >= 500, "{} values", cases.len());
    let missed: Vec<String> = cases
        .iter()
        .filter(|c| !covered(&c.text, &c.value, kind(c.kind), &known))
        .map(|c| format!("{:?} {:?} in {:?}", c.kind, c.value, c.text))
        .collect();
    println!(
        "tuning corpus: {}/{} values found",
        cases.len() - missed.len(),
        cases.len()
    );
    assert!(
        missed.is_empty(),
        "{} missed:\n{}",
        missed.len(),
        missed.join("\n")
    );
}

#[test]
fn the_held_out_corpus_recall_is_reported() {
    let (record, cases) = pii::held_out_corpus();
    let known = known(record);
    let missed: Vec<String> = cases
        .iter()
        .filter(|(text, value, k)| !covered(text, value, kind(k), &known))
        .map(|(text, value, kind)| format!("{kind:?} {value:?} in {text:?}"))
        .collect();
    let recall = 1.0 - missed.len() as f64 / cases.len() as f64;
    println!(
        "held-out corpus: {}/{} values found (recall {:.1} %); missed:\n{}",
        cases.len() - missed.len(),
        cases.len(),
        recall * 100.0,
        missed.join("\n")
    );
    assert!(recall >= 0.85, "held-out recall {recall:.3}: {missed:#?}");
}

#[test]
fn real_benign_text_comes_out_untouched() {
    let data = hearth_testdata::shared_data_dir();
    let mut texts: Vec<String> = Vec::new();
    for file in ["banking77/train.csv", "banking77/test.csv"] {
        let mut reader = csv::Reader::from_path(data.join(file)).unwrap();
        for record in reader.records() {
            texts.push(record.unwrap()[0].to_owned());
        }
    }
    let products: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("retail/products.json")).unwrap())
            .unwrap();
    fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    // Item and product ids are long digit runs by design; prices are amounts.
                    if !k.ends_with("_id") && !k.ends_with("id") {
                        strings(x, out)
                    }
                }
            }
            _ => {}
        }
    }
    let mut product_texts = Vec::new();
    strings(&products, &mut product_texts);
    texts.extend(product_texts);
    let known = KnownPii::default();
    let flagged: Vec<String> = texts
        .iter()
        .filter_map(|t| {
            let spans = detect(t, &known);
            (!spans.is_empty()).then(|| {
                let found: Vec<String> = spans
                    .iter()
                    .map(|s| format!("{:?} {:?}", s.kind, &t[s.start..s.end]))
                    .collect();
                format!("{t:?}: {}", found.join(", "))
            })
        })
        .collect();
    println!("benign texts: {} of {} flagged", flagged.len(), texts.len());
    assert!(texts.len() > 13_000);
    assert!(flagged.is_empty(), "{}", flagged.join("\n"));
}
