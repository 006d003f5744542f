//! The privacy corpora: a generated and hand-written corpus of personal data in many
//! languages and styles (the detectors were tuned on it: every value must be found), a second,
//! hand-written corpus they were never tuned on (its recall is reported in
//! docs/benchmarks.md), and real benign text that must come out untouched.
//!
//! `cargo test -p hearth-gateway privacy::corpus -- --nocapture` prints the figures.

use super::*;

/// A deterministic generator (no dependency, the same corpus on every machine).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

use super::tests::{iban_with_check as iban, luhn_complete as luhn};

/// `s` in groups of `sizes` (the last repeated) joined by `seps` in turn.
fn grouped(s: &str, sizes: &[usize], seps: &[&str]) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut at = 0;
    let mut k = 0;
    while at < chars.len() {
        let size = sizes[k.min(sizes.len() - 1)];
        if at > 0 {
            out.push_str(seps[(k - 1) % seps.len()]);
        }
        out.extend(&chars[at..(at + size).min(chars.len())]);
        at += size;
        k += 1;
    }
    out
}

fn fullwidth_digits(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(0xFF10 + (c as u32 - '0' as u32)).unwrap(),
            c => c,
        })
        .collect()
}

fn nfd(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.nfd().collect()
}

/// One value to find: the text it is written in, the value as written, and its kind.
struct Case {
    text: String,
    value: String,
    kind: PiiKind,
}

const SENTENCES: &[&str] = &[
    "Please update my details: {}. Thanks!",
    "My info is {} if you need it",
    "{}",
    "Kannst du bitte {} prüfen?",
    "Voici mes coordonnées : {}, merci.",
    "Mis datos son {} (gracias)",
    "確認してください：{}。",
    "请核对 {} 谢谢",
    "Проверьте, пожалуйста: {}",
    "- {}\n- the rest of my order",
];

fn case(rng: &mut Lcg, value: String, kind: PiiKind) -> Case {
    let sentence = rng.pick(SENTENCES);
    Case {
        text: sentence.replace("{}", &value),
        value,
        kind,
    }
}

fn emails(rng: &mut Lcg, out: &mut Vec<Case>) {
    let locals = [
        "dave",
        "jane.doe",
        "j.o'brien",
        "mary_ann",
        "sam+orders",
        "li.wei88",
        "josé.garcía",
        "müller.anna",
        "françois",
        "zoë",
        "łukasz.nowak",
        "søren",
        "иван.петров",
        "张伟",
        "たろう",
        "αλέξης",
        "ömer.yılmaz",
        "ngọc.anh",
    ];
    let domains = [
        "example.com",
        "mail.example.org",
        "shop.co.uk",
        "münchen.de",
        "пример.рф",
        "例子.中国",
        "correo.es",
        "xn--bcher-kva.example",
        "uni.edu.au",
    ];
    let forms: &[fn(&str, &str) -> String] = &[
        |l, d| format!("{l}@{d}"),
        |l, d| format!("{l}@{d}").to_uppercase(),
        |l, d| format!("{l}(at){d}"),
        |l, d| format!("{l} (at) {d}"),
        |l, d| format!("{l}[at]{d}"),
        |l, d| format!("{l} [at] {}", d.replace('.', " [dot] ")),
        |l, d| format!("{l} at {}", d.replace('.', " dot ")),
        |l, d| format!("{l} AT {}", d.replace('.', " DOT ")),
        |l, d| format!("{l}{{at}}{d}"),
        |l, d| format!("{l} @ {d}"),
        |l, d| format!("{l}＠{d}"),
        |l, d| format!("{l}@{}", d.replace('.', "(dot)")),
        |l, d| format!("{l}\u{200b}@{d}"),
        |l, d| format!("{l}@{}", d.replace('.', "．")),
    ];
    for _ in 0..140 {
        let (l, d) = (rng.pick(&locals), rng.pick(&domains));
        let value = rng.pick(forms)(l, d);
        out.push(case(rng, value, PiiKind::Email));
    }
}

fn phones(rng: &mut Lcg, out: &mut Vec<Case>) {
    for _ in 0..80 {
        let value = match rng.below(10) {
            0 => format!("+1 {} {}-{}", rng.digits(3), rng.digits(3), rng.digits(4)),
            1 => format!("(4{}) 555-{}", rng.digits(2), rng.digits(4)),
            2 => format!("+44 20 {} {}", rng.digits(4), rng.digits(4)),
            3 => format!("+49 30 {}", rng.digits(7)),
            4 => format!(
                "01 {} {} {} {}",
                rng.digits(2),
                rng.digits(2),
                rng.digits(2),
                rng.digits(2)
            ),
            5 => format!(
                "+33 6 {} {} {} {}",
                rng.digits(2),
                rng.digits(2),
                rng.digits(2),
                rng.digits(2)
            ),
            6 => format!("0044 20 {} {}", rng.digits(4), rng.digits(4)),
            7 => format!("+81 3-{}-{}", rng.digits(4), rng.digits(4)),
            8 => fullwidth_digits(&format!("+1 415 {} {}", rng.digits(3), rng.digits(4))),
            _ => format!(
                "+1\u{a0}415\u{a0}{}\u{2013}{}",
                rng.digits(3),
                rng.digits(4)
            ),
        };
        out.push(case(rng, value, PiiKind::Phone));
    }
}

fn cards(rng: &mut Lcg, out: &mut Vec<Case>) {
    let seps: &[&[&str]] = &[
        &[" "],
        &["-"],
        &["."],
        &["_"],
        &["/"],
        &[" ", "-"],
        &["\u{a0}"],
        &["\u{2013}"],
        &["  "],
        &["\u{200b}"],
        &[""],
    ];
    for _ in 0..120 {
        let (number, sizes): (String, &[usize]) = match rng.below(5) {
            0 => (luhn(&format!("4{}", rng.digits(14))), &[4]),
            1 => (luhn(&format!("5{}", rng.digits(14))), &[4]),
            2 => (luhn(&format!("37{}", rng.digits(12))), &[4, 6, 5]),
            3 => (luhn(&format!("6{}", rng.digits(17))), &[4]),
            _ => (luhn(&format!("4{}", rng.digits(14))), &[2]),
        };
        let sep: &[&str] = rng.pick::<&[&str]>(seps);
        let mut value = grouped(&number, sizes, sep);
        if rng.below(8) == 0 {
            value = fullwidth_digits(&value);
        }
        out.push(case(rng, value, PiiKind::Card));
    }
}

fn ibans(rng: &mut Lcg, out: &mut Vec<Case>) {
    for _ in 0..110 {
        let country = *rng.pick(&["DE", "GB", "FR", "ES", "IT", "NL", "BE", "CH", "PL", "SE"]);
        let bban = match country {
            "DE" => rng.digits(18),
            "GB" => format!("NWBK{}", rng.digits(14)),
            "FR" => rng.digits(23),
            "ES" => rng.digits(20),
            "IT" => format!("X{}", rng.digits(22)),
            "NL" => format!("ABNA{}", rng.digits(10)),
            "BE" => rng.digits(12),
            "CH" => rng.digits(17),
            "PL" => rng.digits(24),
            _ => rng.digits(20),
        };
        let compact = iban(country, &bban);
        let value = match rng.below(9) {
            0 => compact.clone(),
            1 => grouped(&compact, &[4], &[" "]),
            2 => grouped(&compact, &[4], &["-"]),
            3 => grouped(&compact, &[4], &["."]),
            4 => grouped(&compact, &[4], &[" "]).to_lowercase(),
            5 => grouped(&compact, &[2, 4], &[" "]),
            6 => grouped(&compact, &[4], &["\u{a0}"]),
            7 => grouped(&compact, &[4], &["  "]),
            _ => grouped(&compact, &[4, 3, 5], &[" ", "-"]),
        };
        out.push(case(rng, value, PiiKind::Iban));
    }
}

/// Names and addresses as the customer record has them, and as the customer writes them.
fn known_values() -> (KnownPii, Vec<(String, PiiKind)>) {
    let known = KnownPii {
        names: vec![
            "Alice Johnson".into(),
            "José García".into(),
            "Anna Maria Müller".into(),
            "Søren Kierkegaard".into(),
            "Nguyễn Văn An".into(),
            "Zoë O'Neill".into(),
        ],
        addresses: vec![
            "221B Baker Street, London".into(),
            "12 Rue de Rivoli, Paris".into(),
            "Hauptstraße 5, 10115 Berlin".into(),
            "1600 Pennsylvania Avenue NW, Washington".into(),
            "4 Privet Drive, Little Whinging".into(),
            "350 Fifth Ave Apt 12, New York".into(),
        ],
    };
    let written = [
        ("Alice Johnson", PiiKind::Name),
        ("alice johnson", PiiKind::Name),
        ("ALICE JOHNSON", PiiKind::Name),
        ("Johnson, Alice", PiiKind::Name),
        ("Johnson Alice", PiiKind::Name),
        ("A. Johnson", PiiKind::Name),
        ("Alice  Johnson", PiiKind::Name),
        ("José García", PiiKind::Name),
        ("García, José", PiiKind::Name),
        ("JOSÉ GARCÍA", PiiKind::Name),
        ("J. García", PiiKind::Name),
        ("Anna Müller", PiiKind::Name),
        ("Müller, Anna Maria", PiiKind::Name),
        ("Anna Maria Müller", PiiKind::Name),
        ("Søren Kierkegaard", PiiKind::Name),
        ("Kierkegaard, Søren", PiiKind::Name),
        ("Nguyễn Văn An", PiiKind::Name),
        ("Zoë O'Neill", PiiKind::Name),
        ("O'Neill, Zoë", PiiKind::Name),
        ("Z. O'Neill", PiiKind::Name),
        ("221B Baker Street, London", PiiKind::Address),
        ("221B Baker Street London", PiiKind::Address),
        ("221b baker st", PiiKind::Address),
        ("221B Baker St., London", PiiKind::Address),
        ("221B Baker Street", PiiKind::Address),
        ("12 Rue de Rivoli, Paris", PiiKind::Address),
        ("12 rue de rivoli", PiiKind::Address),
        ("Hauptstraße 5, 10115 Berlin", PiiKind::Address),
        ("Hauptstrasse 5, 10115 Berlin", PiiKind::Address),
        ("Hauptstr. 5", PiiKind::Address),
        ("1600 Pennsylvania Ave NW, Washington", PiiKind::Address),
        ("1600 Pennsylvania Avenue NW", PiiKind::Address),
        ("4 Privet Dr, Little Whinging", PiiKind::Address),
        ("4 Privet Drive", PiiKind::Address),
        ("350 Fifth Avenue Apartment 12, New York", PiiKind::Address),
        ("350 Fifth Ave Apt. 12", PiiKind::Address),
    ];
    let mut values: Vec<(String, PiiKind)> = Vec::new();
    for (v, kind) in written {
        values.push((v.to_owned(), kind));
        // The same, decomposed (NFD), as macOS and some keyboards write accents.
        if nfd(v) != v {
            values.push((nfd(v), kind));
        }
    }
    (known, values)
}

fn tuning_corpus() -> (KnownPii, Vec<Case>) {
    let mut rng = Lcg(42);
    let mut cases = Vec::new();
    emails(&mut rng, &mut cases);
    phones(&mut rng, &mut cases);
    cards(&mut rng, &mut cases);
    ibans(&mut rng, &mut cases);
    let (known, values) = known_values();
    for (value, kind) in values {
        for _ in 0..2 {
            cases.push(case(&mut rng, value.clone(), kind));
        }
    }
    (known, cases)
}

/// Written by hand, in styles and languages the generators above do not produce; the
/// detectors were never adjusted to it.
fn held_out_corpus() -> (KnownPii, Vec<(&'static str, &'static str, PiiKind)>) {
    let known = KnownPii {
        names: vec![
            "Marguerite Duras".into(),
            "Björn Ulvaeus".into(),
            "Chen Jie".into(),
        ],
        addresses: vec![
            "77 Sunset Boulevard, Los Angeles".into(),
            "Calle Mayor 10, Madrid".into(),
        ],
    };
    let cases = vec![
        (
            "write to kim.lee@posteo.de about it",
            "kim.lee@posteo.de",
            PiiKind::Email,
        ),
        (
            "Contact: support-team@help.example.net.",
            "support-team@help.example.net",
            PiiKind::Email,
        ),
        ("<mailto:ops@example.io>", "ops@example.io", PiiKind::Email),
        (
            "email me at rob dot smith at gmail dot com",
            "rob dot smith at gmail dot com",
            PiiKind::Email,
        ),
        (
            "reach me: peter [at] example [dot] org",
            "peter [at] example [dot] org",
            PiiKind::Email,
        ),
        (
            "mi correo es maría@correo.es",
            "maría@correo.es",
            PiiKind::Email,
        ),
        (
            "adresse: ÉLODIE@EXEMPLE.FR",
            "ÉLODIE@EXEMPLE.FR",
            PiiKind::Email,
        ),
        ("почта: ольга@почта.рф", "ольга@почта.рф", PiiKind::Email),
        (
            "my mail, tom{at}example{dot}com, is old",
            "tom{at}example{dot}com",
            PiiKind::Email,
        ),
        (
            "anna (at) firma (dot) de",
            "anna (at) firma (dot) de",
            PiiKind::Email,
        ),
        (
            "jan＠example．nl please",
            "jan＠example．nl",
            PiiKind::Email,
        ),
        (
            "b.o.b@sub.domain.example.com",
            "b.o.b@sub.domain.example.com",
            PiiKind::Email,
        ),
        (
            "user%tag@example.com",
            "user%tag@example.com",
            PiiKind::Email,
        ),
        ("x@y.museum", "x@y.museum", PiiKind::Email),
        (
            "Call +1-202-555-0143 tonight",
            "+1-202-555-0143",
            PiiKind::Phone,
        ),
        ("tel. +34 612 34 56 78", "+34 612 34 56 78", PiiKind::Phone),
        ("Ruf an: 030 12345678", "030 12345678", PiiKind::Phone),
        (
            "my cell is (212) 555 0199",
            "(212) 555 0199",
            PiiKind::Phone,
        ),
        (
            "+61 2 9374 4000 (office)",
            "+61 2 9374 4000",
            PiiKind::Phone,
        ),
        ("電話 03-1234-5678 まで", "03-1234-5678", PiiKind::Phone),
        ("+7 (495) 123-45-67", "+7 (495) 123-45-67", PiiKind::Phone),
        ("+39 06 6982 1234", "+39 06 6982 1234", PiiKind::Phone),
        ("phone: 415.555.2671", "415.555.2671", PiiKind::Phone),
        ("whatsapp +4915112345678", "+4915112345678", PiiKind::Phone),
        (
            "+1 ４１５ ５５５ ２６７１",
            "+1 ４１５ ５５５ ２６７１",
            PiiKind::Phone,
        ),
        (
            "card 4242 4242 4242 4242 exp 12/28",
            "4242 4242 4242 4242",
            PiiKind::Card,
        ),
        ("Visa: 4012888888881881", "4012888888881881", PiiKind::Card),
        ("amex 3782 822463 10005", "3782 822463 10005", PiiKind::Card),
        (
            "MC 5555-5555-5555-4444!",
            "5555-5555-5555-4444",
            PiiKind::Card,
        ),
        (
            "number is 6011.1111.1111.1117",
            "6011.1111.1111.1117",
            PiiKind::Card,
        ),
        (
            "4000_0566_5566_5556 is the debit one",
            "4000_0566_5566_5556",
            PiiKind::Card,
        ),
        (
            "carte 4970 1012 3456 7890 127",
            "4970 1012 3456 7890 127",
            PiiKind::Card,
        ),
        ("JCB 3530111333300000", "3530111333300000", PiiKind::Card),
        (
            "tarjeta 5105 1051 0510 5100",
            "5105 1051 0510 5100",
            PiiKind::Card,
        ),
        (
            "card: ４２４２４２４２４２４２４２４２",
            "４２４２４２４２４２４２４２４２",
            PiiKind::Card,
        ),
        (
            "4242\u{00a0}4242\u{00a0}4242\u{00a0}4242",
            "4242\u{00a0}4242\u{00a0}4242\u{00a0}4242",
            PiiKind::Card,
        ),
        (
            "4 2 4 2 4 2 4 2 4 2 4 2 4 2 4 2",
            "4 2 4 2 4 2 4 2 4 2 4 2 4 2 4 2",
            PiiKind::Card,
        ),
        (
            "IBAN DE89 3704 0044 0532 0130 00",
            "DE89 3704 0044 0532 0130 00",
            PiiKind::Iban,
        ),
        (
            "GB29NWBK60161331926819 please",
            "GB29NWBK60161331926819",
            PiiKind::Iban,
        ),
        (
            "fr76 3000 6000 0112 3456 7890 189",
            "fr76 3000 6000 0112 3456 7890 189",
            PiiKind::Iban,
        ),
        (
            "ES91-2100-0418-4502-0005-1332",
            "ES91-2100-0418-4502-0005-1332",
            PiiKind::Iban,
        ),
        ("NL91ABNA0417164300.", "NL91ABNA0417164300", PiiKind::Iban),
        (
            "CH93 0076 2011 6238 5295 7",
            "CH93 0076 2011 6238 5295 7",
            PiiKind::Iban,
        ),
        (
            "conto IT60 X054 2811 1010 0000 0123 456",
            "IT60 X054 2811 1010 0000 0123 456",
            PiiKind::Iban,
        ),
        ("BE68.5390.0754.7034", "BE68.5390.0754.7034", PiiKind::Iban),
        (
            "PL61 1090 1014 0000 0712 1981 2874",
            "PL61 1090 1014 0000 0712 1981 2874",
            PiiKind::Iban,
        ),
        ("my server is 203.0.113.54", "203.0.113.54", PiiKind::Ip),
        (
            "ip 2001:db8::8a2e:370:7334",
            "2001:db8::8a2e:370:7334",
            PiiKind::Ip,
        ),
        (
            "Marguerite Duras wrote this",
            "Marguerite Duras",
            PiiKind::Name,
        ),
        (
            "signed, DURAS Marguerite",
            "DURAS Marguerite",
            PiiKind::Name,
        ),
        ("M. Duras", "M. Duras", PiiKind::Name),
        ("Ulvaeus, Björn", "Ulvaeus, Björn", PiiKind::Name),
        ("bjorn? no: björn ulvaeus", "björn ulvaeus", PiiKind::Name),
        ("Chen Jie here", "Chen Jie", PiiKind::Name),
        ("Jie Chen here", "Jie Chen", PiiKind::Name),
        (
            "ship to 77 Sunset Blvd, Los Angeles",
            "77 Sunset Blvd, Los Angeles",
            PiiKind::Address,
        ),
        (
            "77 sunset boulevard",
            "77 sunset boulevard",
            PiiKind::Address,
        ),
        (
            "77 Sunset Blvd. Los Angeles",
            "77 Sunset Blvd. Los Angeles",
            PiiKind::Address,
        ),
        (
            "Calle Mayor 10, Madrid",
            "Calle Mayor 10, Madrid",
            PiiKind::Address,
        ),
        (
            "calle mayor 10 madrid",
            "calle mayor 10 madrid",
            PiiKind::Address,
        ),
    ];
    (known, cases)
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
    let (known, cases) = tuning_corpus();
    assert!(cases.len() >= 500, "{} values", cases.len());
    let missed: Vec<String> = cases
        .iter()
        .filter(|c| !covered(&c.text, &c.value, c.kind, &known))
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
    let (known, cases) = held_out_corpus();
    let missed: Vec<String> = cases
        .iter()
        .filter(|(text, value, kind)| !covered(text, value, *kind, &known))
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
