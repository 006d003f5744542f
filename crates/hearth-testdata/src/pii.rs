//! Personal data corpora for the privacy tests (hearth-gateway's detectors and the gateway's
//! HTTP path): a generated and hand-written tuning corpus of 500+ values in many languages
//! and styles, and a hand-written held-out corpus the detectors were never tuned on.

/// Names and addresses a customer record supplies (`known_pii`).
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub names: Vec<String>,
    pub addresses: Vec<String>,
}

/// Whether `digits` passes the Luhn check.
pub fn luhn_ok(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(k, c)| {
            let d = u32::from(c - b'0');
            if k % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// `body` completed with its Luhn check digit.
pub fn luhn(body: &str) -> String {
    (0..10)
        .map(|d| format!("{body}{d}"))
        .find(|n| luhn_ok(n))
        .expect("one check digit fits")
}

/// A valid IBAN for `country` (upper case) with `bban`.
pub fn iban(country: &str, bban: &str) -> String {
    let mut r: u32 = 0;
    for c in bban.bytes().chain(country.bytes()).chain(*b"00") {
        r = if c.is_ascii_digit() {
            (r * 10 + u32::from(c - b'0')) % 97
        } else {
            (r * 100 + u32::from(c.to_ascii_uppercase() - b'A' + 10)) % 97
        };
    }
    format!("{country}{:02}{bban}", 98 - r)
}

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
pub struct Case {
    pub text: String,
    pub value: String,
    pub kind: &'static str,
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

fn case(rng: &mut Lcg, value: String, kind: &'static str) -> Case {
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
        out.push(case(rng, value, "email"));
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
        out.push(case(rng, value, "phone"));
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
        out.push(case(rng, value, "card"));
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
        out.push(case(rng, value, "iban"));
    }
}

/// Names and addresses as the customer record has them, and as the customer writes them.
fn known_values() -> (Known, Vec<(String, &'static str)>) {
    let known = Known {
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
        ("Alice Johnson", "name"),
        ("alice johnson", "name"),
        ("ALICE JOHNSON", "name"),
        ("Johnson, Alice", "name"),
        ("Johnson Alice", "name"),
        ("A. Johnson", "name"),
        ("Alice  Johnson", "name"),
        ("José García", "name"),
        ("García, José", "name"),
        ("JOSÉ GARCÍA", "name"),
        ("J. García", "name"),
        ("Anna Müller", "name"),
        ("Müller, Anna Maria", "name"),
        ("Anna Maria Müller", "name"),
        ("Søren Kierkegaard", "name"),
        ("Kierkegaard, Søren", "name"),
        ("Nguyễn Văn An", "name"),
        ("Zoë O'Neill", "name"),
        ("O'Neill, Zoë", "name"),
        ("Z. O'Neill", "name"),
        ("221B Baker Street, London", "address"),
        ("221B Baker Street London", "address"),
        ("221b baker st", "address"),
        ("221B Baker St., London", "address"),
        ("221B Baker Street", "address"),
        ("12 Rue de Rivoli, Paris", "address"),
        ("12 rue de rivoli", "address"),
        ("Hauptstraße 5, 10115 Berlin", "address"),
        ("Hauptstrasse 5, 10115 Berlin", "address"),
        ("Hauptstr. 5", "address"),
        ("1600 Pennsylvania Ave NW, Washington", "address"),
        ("1600 Pennsylvania Avenue NW", "address"),
        ("4 Privet Dr, Little Whinging", "address"),
        ("4 Privet Drive", "address"),
        ("350 Fifth Avenue Apartment 12, New York", "address"),
        ("350 Fifth Ave Apt. 12", "address"),
    ];
    let mut values: Vec<(String, &'static str)> = Vec::new();
    for (v, kind) in written {
        values.push((v.to_owned(), kind));
        // The same, decomposed (NFD), as macOS and some keyboards write accents.
        if nfd(v) != v {
            values.push((nfd(v), kind));
        }
    }
    (known, values)
}

/// The tuning corpus: the customer record it assumes and its cases (542).
pub fn tuning_corpus() -> (Known, Vec<Case>) {
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
/// The held-out corpus: its customer record and (text, value, kind) triples.
pub fn held_out_corpus() -> (Known, Vec<(&'static str, &'static str, &'static str)>) {
    let known = Known {
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
            "email",
        ),
        (
            "Contact: support-team@help.example.net.",
            "support-team@help.example.net",
            "email",
        ),
        ("<mailto:ops@example.io>", "ops@example.io", "email"),
        (
            "email me at rob dot smith at gmail dot com",
            "rob dot smith at gmail dot com",
            "email",
        ),
        (
            "reach me: peter [at] example [dot] org",
            "peter [at] example [dot] org",
            "email",
        ),
        ("mi correo es maría@correo.es", "maría@correo.es", "email"),
        ("adresse: ÉLODIE@EXEMPLE.FR", "ÉLODIE@EXEMPLE.FR", "email"),
        ("почта: ольга@почта.рф", "ольга@почта.рф", "email"),
        (
            "my mail, tom{at}example{dot}com, is old",
            "tom{at}example{dot}com",
            "email",
        ),
        (
            "anna (at) firma (dot) de",
            "anna (at) firma (dot) de",
            "email",
        ),
        ("jan＠example．nl please", "jan＠example．nl", "email"),
        (
            "b.o.b@sub.domain.example.com",
            "b.o.b@sub.domain.example.com",
            "email",
        ),
        ("user%tag@example.com", "user%tag@example.com", "email"),
        ("x@y.museum", "x@y.museum", "email"),
        ("Call +1-202-555-0143 tonight", "+1-202-555-0143", "phone"),
        ("tel. +34 612 34 56 78", "+34 612 34 56 78", "phone"),
        ("Ruf an: 030 12345678", "030 12345678", "phone"),
        ("my cell is (212) 555 0199", "(212) 555 0199", "phone"),
        ("+61 2 9374 4000 (office)", "+61 2 9374 4000", "phone"),
        ("電話 03-1234-5678 まで", "03-1234-5678", "phone"),
        ("+7 (495) 123-45-67", "+7 (495) 123-45-67", "phone"),
        ("+39 06 6982 1234", "+39 06 6982 1234", "phone"),
        ("phone: 415.555.2671", "415.555.2671", "phone"),
        ("whatsapp +4915112345678", "+4915112345678", "phone"),
        (
            "+1 ４１５ ５５５ ２６７１",
            "+1 ４１５ ５５５ ２６７１",
            "phone",
        ),
        (
            "card 4242 4242 4242 4242 exp 12/28",
            "4242 4242 4242 4242",
            "card",
        ),
        ("Visa: 4012888888881881", "4012888888881881", "card"),
        ("amex 3782 822463 10005", "3782 822463 10005", "card"),
        ("MC 5555-5555-5555-4444!", "5555-5555-5555-4444", "card"),
        (
            "number is 6011.1111.1111.1117",
            "6011.1111.1111.1117",
            "card",
        ),
        (
            "4000_0566_5566_5556 is the debit one",
            "4000_0566_5566_5556",
            "card",
        ),
        (
            "carte 4970 1012 3456 7890 127",
            "4970 1012 3456 7890 127",
            "card",
        ),
        ("JCB 3530111333300000", "3530111333300000", "card"),
        ("tarjeta 5105 1051 0510 5100", "5105 1051 0510 5100", "card"),
        (
            "card: ４２４２４２４２４２４２４２４２",
            "４２４２４２４２４２４２４２４２",
            "card",
        ),
        (
            "4242\u{00a0}4242\u{00a0}4242\u{00a0}4242",
            "4242\u{00a0}4242\u{00a0}4242\u{00a0}4242",
            "card",
        ),
        (
            "4 2 4 2 4 2 4 2 4 2 4 2 4 2 4 2",
            "4 2 4 2 4 2 4 2 4 2 4 2 4 2 4 2",
            "card",
        ),
        (
            "IBAN DE89 3704 0044 0532 0130 00",
            "DE89 3704 0044 0532 0130 00",
            "iban",
        ),
        (
            "GB29NWBK60161331926819 please",
            "GB29NWBK60161331926819",
            "iban",
        ),
        (
            "fr76 3000 6000 0112 3456 7890 189",
            "fr76 3000 6000 0112 3456 7890 189",
            "iban",
        ),
        (
            "ES91-2100-0418-4502-0005-1332",
            "ES91-2100-0418-4502-0005-1332",
            "iban",
        ),
        ("NL91ABNA0417164300.", "NL91ABNA0417164300", "iban"),
        (
            "CH93 0076 2011 6238 5295 7",
            "CH93 0076 2011 6238 5295 7",
            "iban",
        ),
        (
            "conto IT60 X054 2811 1010 0000 0123 456",
            "IT60 X054 2811 1010 0000 0123 456",
            "iban",
        ),
        ("BE68.5390.0754.7034", "BE68.5390.0754.7034", "iban"),
        (
            "PL61 1090 1014 0000 0712 1981 2874",
            "PL61 1090 1014 0000 0712 1981 2874",
            "iban",
        ),
        ("my server is 203.0.113.54", "203.0.113.54", "ip"),
        (
            "ip 2001:db8::8a2e:370:7334",
            "2001:db8::8a2e:370:7334",
            "ip",
        ),
        ("Marguerite Duras wrote this", "Marguerite Duras", "name"),
        ("signed, DURAS Marguerite", "DURAS Marguerite", "name"),
        ("M. Duras", "M. Duras", "name"),
        ("Ulvaeus, Björn", "Ulvaeus, Björn", "name"),
        ("bjorn? no: björn ulvaeus", "björn ulvaeus", "name"),
        ("Chen Jie here", "Chen Jie", "name"),
        ("Jie Chen here", "Jie Chen", "name"),
        (
            "ship to 77 Sunset Blvd, Los Angeles",
            "77 Sunset Blvd, Los Angeles",
            "address",
        ),
        ("77 sunset boulevard", "77 sunset boulevard", "address"),
        (
            "77 Sunset Blvd. Los Angeles",
            "77 Sunset Blvd. Los Angeles",
            "address",
        ),
        (
            "Calle Mayor 10, Madrid",
            "Calle Mayor 10, Madrid",
            "address",
        ),
        ("calle mayor 10 madrid", "calle mayor 10 madrid", "address"),
    ];
    (known, cases)
}
