//! Personal data in chat text: finding it, masking it for logs, and swapping it for stable
//! placeholders before a request leaves for an upstream model API (routes with privacy policy
//! `redact`), then putting the originals back into the answer, streamed or whole.
//!
//! [`detect`] finds e-mail addresses, phone numbers, payment cards (Luhn-checked), IBANs
//! (registered country length and mod-97 checked), IPv4/IPv6 addresses, and the names and
//! postal addresses a customer record supplies ([`KnownPii`]). [`mask`] blanks them for logs
//! (`[email]`); a [`Redactor`] replaces them by numbered placeholders (`[EMAIL_1]`) that stay the
//! same for the whole conversation, and restores them with [`Redactor::restore`] or, chunk by
//! chunk, with a [`StreamRestorer`].
//!
//! Detection reads a folded copy of the text, so another way of writing a value is still the
//! value: Unicode compatibility forms (NFKC: fullwidth digits and `＠`, ligatures; composed and
//! decomposed accents alike), every dash as `-`, every space as ` `, invisible characters
//! (zero-width spaces and joiners, soft hyphens) dropped. Spans are reported in the original.
//! E-mail addresses may be internationalised or written out (`dave(at)example.com`, `dave at
//! example dot com`); cards and IBANs may use any separators and grouping; customer names
//! match in any case and order (`Johnson, Alice`, `A. Johnson`) and addresses with the usual
//! abbreviations (`St`/`Street`) and without their commas or city.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use regex::{Captures, Regex};

/// What kind of personal data a span is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PiiKind {
    /// An e-mail address.
    Email,
    /// A phone number, international or national.
    Phone,
    /// A payment card number (Luhn-valid).
    Card,
    /// An international bank account number (mod-97-valid).
    Iban,
    /// An IPv4 or IPv6 address.
    Ip,
    /// A customer name from [`KnownPii::names`].
    Name,
    /// A postal address from [`KnownPii::addresses`].
    Address,
}

impl PiiKind {
    /// Every kind, in declaration order.
    pub const ALL: [PiiKind; 7] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Card,
        PiiKind::Iban,
        PiiKind::Ip,
        PiiKind::Name,
        PiiKind::Address,
    ];

    /// Upper-case label used in placeholders: EMAIL, PHONE, CARD, IBAN, IP, NAME, ADDRESS.
    pub fn label(self) -> &'static str {
        match self {
            PiiKind::Email => "EMAIL",
            PiiKind::Phone => "PHONE",
            PiiKind::Card => "CARD",
            PiiKind::Iban => "IBAN",
            PiiKind::Ip => "IP",
            PiiKind::Name => "NAME",
            PiiKind::Address => "ADDRESS",
        }
    }

    /// Lower-case name for logs and JSON: email, phone, card, iban, ip, name, address.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Card => "card",
            PiiKind::Iban => "iban",
            PiiKind::Ip => "ip",
            PiiKind::Name => "name",
            PiiKind::Address => "address",
        }
    }

    /// Which kind wins when two candidates of the same length overlap (lower wins): literal
    /// customer values first, then the checksummed and structured kinds, phones last.
    fn rank(self) -> u8 {
        match self {
            PiiKind::Address => 0,
            PiiKind::Name => 1,
            PiiKind::Email => 2,
            PiiKind::Iban => 3,
            PiiKind::Card => 4,
            PiiKind::Ip => 5,
            PiiKind::Phone => 6,
        }
    }
}

/// Values a customer record supplies (names, postal addresses): matched literally,
/// case-insensitively, whitespace-tolerant (any run of whitespace in the value matches any run
/// of whitespace in the text). Empty values are ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KnownPii {
    /// Customer names, e.g. "Alice Johnson".
    pub names: Vec<String>,
    /// Postal addresses, e.g. "221B Baker Street, London".
    pub addresses: Vec<String>,
}

/// One piece of personal data in a text: byte offsets `start..end` and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset just past the last byte.
    pub end: usize,
    /// What the span is.
    pub kind: PiiKind,
}

/// Every PII span in `text`, sorted, non-overlapping (on overlap the longer span wins, and
/// between equally long ones the more specific kind; a card always beats a phone number).
pub fn detect(text: &str, known: &KnownPii) -> Vec<Span> {
    detect_with(text, &known_matchers(known))
}

/// `text` with each span replaced by `[email]`, `[phone]`, … (for logs).
pub fn mask(text: &str, known: &KnownPii) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for span in detect(text, known) {
        out.push_str(&text[last..span.start]);
        out.push('[');
        out.push_str(span.kind.as_str());
        out.push(']');
        last = span.end;
    }
    out.push_str(&text[last..]);
    out
}

/// Replaces PII by placeholders `[EMAIL_1]`, `[PHONE_2]`, … and puts the originals back.
///
/// Numbering is per kind, by first appearance. The same value (phones, cards and IBANs compared
/// on their digits/letters only, a leading `00` counting as `+`; e-mails and customer values
/// case-insensitively; IPs by address) always gets the same placeholder within one `Redactor`,
/// across any number of [`Redactor::redact`] calls, so one `Redactor` per request keeps a whole
/// conversation's placeholders stable.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    known: Vec<(PiiKind, Regex)>,
    /// (kind, normalised value) → placeholder without brackets (`EMAIL_1`).
    assigned: HashMap<(PiiKind, String), String>,
    /// Placeholder without brackets → the first original text seen for it.
    originals: Arc<HashMap<String, String>>,
    next: BTreeMap<PiiKind, usize>,
    counts: BTreeMap<PiiKind, usize>,
}

impl Redactor {
    /// A redactor that also looks for the given customer names and addresses.
    pub fn new(known: KnownPii) -> Self {
        Redactor {
            known: known_matchers(&known),
            ..Redactor::default()
        }
    }

    /// `text` with every PII span replaced by its placeholder.
    pub fn redact(&mut self, text: &str) -> String {
        let spans = detect_with(text, &self.known);
        if spans.is_empty() {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for span in spans {
            out.push_str(&text[last..span.start]);
            let original = &text[span.start..span.end];
            let key = (span.kind, normalize(span.kind, original));
            let placeholder = match self.assigned.get(&key) {
                Some(p) => p.clone(),
                None => {
                    let n = self.next.entry(span.kind).or_insert(0);
                    *n += 1;
                    let p = format!("{}_{}", span.kind.label(), n);
                    Arc::make_mut(&mut self.originals).insert(p.clone(), original.to_owned());
                    self.assigned.insert(key, p.clone());
                    p
                }
            };
            *self.counts.entry(span.kind).or_insert(0) += 1;
            out.push('[');
            out.push_str(&placeholder);
            out.push(']');
            last = span.end;
        }
        out.push_str(&text[last..]);
        out
    }

    /// Replacements made so far per kind (every occurrence counts).
    pub fn counts(&self) -> BTreeMap<PiiKind, usize> {
        self.counts.clone()
    }

    /// Replacements made so far, all kinds together.
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }

    /// Placeholders back to their originals (the first original text seen for that
    /// placeholder). Unknown placeholders are left as they are; case inside the brackets does
    /// not matter (`[email_1]` restores like `[EMAIL_1]`).
    pub fn restore(&self, text: &str) -> String {
        restore_with(&self.originals, text)
    }

    /// A restorer for a streamed answer. It knows the placeholders made so far; later
    /// [`Redactor::redact`] calls do not reach it.
    pub fn stream_restorer(&self) -> StreamRestorer {
        StreamRestorer {
            originals: Arc::clone(&self.originals),
            pending: String::new(),
        }
    }
}

/// Restores placeholders in a streamed answer: feed chunks to [`StreamRestorer::push`], get
/// restored text out as early as possible. Only a tail that could still become a placeholder
/// (`[EM`, `[EMAIL_`, `[EMAIL_1`) is held back until the next chunk or [`StreamRestorer::finish`].
/// The concatenated output equals [`Redactor::restore`] of the whole text, however it is split.
#[derive(Debug, Clone)]
pub struct StreamRestorer {
    originals: Arc<HashMap<String, String>>,
    pending: String,
}

impl StreamRestorer {
    /// Takes the next chunk; returns the restored text that is certain by now.
    pub fn push(&mut self, chunk: &str) -> String {
        if self.originals.is_empty() {
            return chunk.to_owned();
        }
        self.pending.push_str(chunk);
        let hold = match self.pending.rfind('[') {
            Some(i) if could_become_placeholder(&self.pending[i..]) => i,
            _ => self.pending.len(),
        };
        let tail = self.pending.split_off(hold);
        let ready = std::mem::replace(&mut self.pending, tail);
        restore_with(&self.originals, &ready)
    }

    /// Ends the stream: returns whatever was held back, restored.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        restore_with(&self.originals, &rest)
    }
}

// ---------------------------------------------------------------------------------------------
// Placeholders

/// `[LABEL_n]`, any case, n of 1–9 digits. ASCII-only matching so that the streaming check in
/// [`could_become_placeholder`] agrees with it exactly.
static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i-u)\[(EMAIL|PHONE|CARD|IBAN|IP|NAME|ADDRESS)_([0-9]{1,9})\]")
        .expect("placeholder pattern")
});

const MAX_PLACEHOLDER_DIGITS: usize = 9;

fn restore_with(originals: &HashMap<String, String>, text: &str) -> String {
    if originals.is_empty() || !text.contains('[') {
        return text.to_owned();
    }
    PLACEHOLDER
        .replace_all(text, |caps: &Captures| {
            let key = format!("{}_{}", caps[1].to_ascii_uppercase(), &caps[2]);
            originals
                .get(&key)
                .cloned()
                .unwrap_or_else(|| caps[0].to_owned())
        })
        .into_owned()
}

/// Whether `s` (starting with `[`) is an incomplete placeholder that more text could finish.
fn could_become_placeholder(s: &str) -> bool {
    let rest = &s.as_bytes()[1..];
    PiiKind::ALL.iter().any(|kind| {
        let label = kind.label().as_bytes();
        if rest.len() <= label.len() {
            rest.eq_ignore_ascii_case(&label[..rest.len()])
        } else {
            let digits = &rest[label.len() + 1..];
            rest[..label.len()].eq_ignore_ascii_case(label)
                && rest[label.len()] == b'_'
                && digits.len() <= MAX_PLACEHOLDER_DIGITS
                && digits.iter().all(u8::is_ascii_digit)
        }
    })
}

/// The form two occurrences are compared in to decide whether they are the same value.
fn normalize(kind: PiiKind, s: &str) -> String {
    match kind {
        PiiKind::Email => folded(s).to_lowercase(),
        PiiKind::Phone => {
            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
            match digits.strip_prefix("00") {
                Some(rest) if !s.trim_start().starts_with('+') => rest.to_owned(),
                _ => digits,
            }
        }
        PiiKind::Card => s.chars().filter(char::is_ascii_digit).collect(),
        PiiKind::Iban => s
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect(),
        PiiKind::Ip => s
            .parse::<IpAddr>()
            .map(|ip| ip.to_string())
            .unwrap_or_else(|_| s.to_lowercase()),
        PiiKind::Name | PiiKind::Address => folded(s)
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(" "),
    }
}

// ---------------------------------------------------------------------------------------------
// Whole requests

/// Keys whose string values are structure, not text: never redacted. (`name` is structure
/// only inside a `function` object: a tool's or a call's name; a message's `name` is text.)
fn structural(parent: Option<&str>, key: &str) -> bool {
    matches!(
        key,
        "model" | "role" | "type" | "$schema" | "$ref" | "format" | "encoding_format"
    ) || (key == "name" && parent == Some("function"))
        || (key == "tool_choice")
}

/// Every text of a JSON request, whatever field carries it (message contents and names,
/// tool call ids and arguments, tool descriptions and parameter schemas with their enum
/// values, response-format schemas, stop strings, the end-user id), with its PII replaced by
/// `redactor`'s placeholders. Object keys and the structural fields above stay as they are.
pub fn redact_json(value: &mut serde_json::Value, redactor: &mut Redactor) {
    walk_strings(value, &mut |_, s| *s = redactor.redact(s));
}

/// The first text of a JSON request holding PII of one of `kinds`: its field's path (such as
/// `messages[1].content`) and the kind.
pub fn find_kinds(
    mut value: serde_json::Value,
    known: &KnownPii,
    kinds: &[PiiKind],
) -> Option<(String, PiiKind)> {
    let matchers = known_matchers(known);
    let mut found = None;
    walk_strings(&mut value, &mut |path, s| {
        if found.is_none() {
            if let Some(span) = detect_with(s, &matchers)
                .into_iter()
                .find(|span| kinds.contains(&span.kind))
            {
                found = Some((path.to_owned(), span.kind));
            }
        }
    });
    found
}

/// Calls `visit` with the path and text of every string of `value` that is not structure.
fn walk_strings(value: &mut serde_json::Value, visit: &mut dyn FnMut(&str, &mut String)) {
    fn go(
        value: &mut serde_json::Value,
        path: &str,
        parent: Option<&str>,
        visit: &mut dyn FnMut(&str, &mut String),
    ) {
        match value {
            serde_json::Value::String(s) => visit(path, s),
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    go(item, &format!("{path}[{i}]"), parent, visit);
                }
            }
            serde_json::Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    if item.is_string() && structural(parent, key) {
                        continue;
                    }
                    let at = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    go(item, &at, Some(key), visit);
                }
            }
            _ => {}
        }
    }
    go(value, "", None, visit);
}

// ---------------------------------------------------------------------------------------------
// Detection

fn detect_with(text: &str, known: &[(PiiKind, Regex)]) -> Vec<Span> {
    let Some(folded) = fold(text) else {
        return detect_raw(text, known);
    };
    let mut out: Vec<Span> = Vec::new();
    for span in detect_raw(&folded.text, known) {
        let start = folded.starts[span.start];
        let end = folded.ends[span.end - 1];
        // Two spans from the pieces of one folded character would overlap: keep the first.
        if out.last().is_some_and(|last| last.end > start) {
            continue;
        }
        out.push(Span {
            start,
            end,
            kind: span.kind,
        });
    }
    out
}

fn detect_raw(text: &str, known: &[(PiiKind, Regex)]) -> Vec<Span> {
    let mut candidates = Vec::new();
    for (kind, re) in known {
        for m in re.find_iter(text) {
            if !m.is_empty() {
                candidates.push(Span {
                    start: m.start(),
                    end: m.end(),
                    kind: *kind,
                });
            }
        }
    }
    emails(text, &mut candidates);
    ibans(text, &mut candidates);
    ipv4s(text, &mut candidates);
    ipv6s(text, &mut candidates);
    numbers(text, &mut candidates);
    resolve(candidates)
}

/// A text as detection reads it, with the original byte span of each of its bytes.
struct Folded {
    text: String,
    starts: Vec<usize>,
    ends: Vec<usize>,
}

/// Characters that hide inside a value without showing: dropped before detection.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
    )
}

/// The folded text, or `None` when folding changes nothing (plain ASCII).
fn fold(text: &str) -> Option<Folded> {
    use unicode_normalization::char::is_combining_mark;
    use unicode_normalization::UnicodeNormalization;
    if text.is_ascii() {
        return None;
    }
    let mut folded = Folded {
        text: String::with_capacity(text.len()),
        starts: Vec::with_capacity(text.len()),
        ends: Vec::with_capacity(text.len()),
    };
    fn push(f: &mut Folded, piece: &str, start: usize, end: usize) {
        f.text.push_str(piece);
        f.starts.extend(std::iter::repeat_n(start, piece.len()));
        f.ends.extend(std::iter::repeat_n(end, piece.len()));
    }
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        // A character with the combining marks that follow it, normalised together.
        let mut end = start + c.len_utf8();
        while let Some(&(i, m)) = chars.peek() {
            if !is_combining_mark(m) {
                break;
            }
            end = i + m.len_utf8();
            chars.next();
        }
        match c {
            c if invisible(c) && end == start + c.len_utf8() => {}
            '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{FF0D}' => {
                push(&mut folded, "-", start, end)
            }
            '\n' | '\r' | '\t' => push(&mut folded, &text[start..end], start, end),
            c if c.is_whitespace() => push(&mut folded, " ", start, end),
            _ => {
                let piece: String = text[start..end]
                    .chars()
                    .filter(|&c| !invisible(c))
                    .nfkc()
                    .collect();
                push(&mut folded, &piece, start, end);
            }
        }
    }
    Some(folded)
}

/// `text` folded as detection reads it.
fn folded(text: &str) -> String {
    fold(text)
        .map(|f| f.text)
        .unwrap_or_else(|| text.to_owned())
}

/// Picks non-overlapping spans: cards remove the phone candidates they overlap, then longest
/// first (ties by kind rank, then position).
fn resolve(mut candidates: Vec<Span>) -> Vec<Span> {
    let cards: Vec<(usize, usize)> = candidates
        .iter()
        .filter(|s| s.kind == PiiKind::Card)
        .map(|s| (s.start, s.end))
        .collect();
    candidates.retain(|s| {
        s.start < s.end
            && (s.kind != PiiKind::Phone
                || !cards.iter().any(|&(cs, ce)| cs < s.end && s.start < ce))
    });
    candidates.sort_by(|a, b| {
        (b.end - b.start)
            .cmp(&(a.end - a.start))
            .then(a.kind.rank().cmp(&b.kind.rank()))
            .then(a.start.cmp(&b.start))
    });
    let mut taken: BTreeMap<usize, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for span in candidates {
        if let Some((_, &end)) = taken.range(..span.end).next_back() {
            if end > span.start {
                continue;
            }
        }
        taken.insert(span.start, span.end);
        out.push(span);
    }
    out.sort_by_key(|s| s.start);
    out
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn char_before(text: &str, i: usize) -> Option<char> {
    text[..i].chars().next_back()
}

fn char_after(text: &str, i: usize) -> Option<char> {
    text[i..].chars().next()
}

/// Words that addresses write in more than one way; a word of an address matches any
/// spelling of its families.
const ADDRESS_WORDS: &[&[&str]] = &[
    &["street", "st", "str"],
    &["straße", "strasse", "str"],
    &["saint", "st"],
    &["avenue", "ave", "av"],
    &["road", "rd"],
    &["boulevard", "blvd", "bd", "bvd"],
    &["drive", "dr"],
    &["lane", "ln"],
    &["court", "ct"],
    &["place", "pl"],
    &["square", "sq"],
    &["terrace", "ter", "terr"],
    &["highway", "hwy"],
    &["parkway", "pkwy"],
    &["crescent", "cres"],
    &["close", "cl"],
    &["apartment", "apt"],
    &["suite", "ste"],
    &["building", "bldg"],
    &["floor", "fl"],
    &["north", "n"],
    &["south", "s"],
    &["east", "e"],
    &["west", "w"],
    &["mount", "mt"],
    &["fort", "ft"],
    &["number", "no", "nr"],
];

/// The pattern of one address word: itself or any other spelling of its families, with an
/// optional abbreviation dot.
fn address_word(word: &str) -> String {
    let bare = word.trim_end_matches('.').to_lowercase();
    // German compounds: "Hauptstraße" is also "Hauptstrasse" and "Hauptstr.".
    for suffix in ["straße", "strasse"] {
        if let Some(stem) = bare.strip_suffix(suffix).filter(|s| !s.is_empty()) {
            return format!(r"{}(?:straße|strasse|str\.?)", regex::escape(stem));
        }
    }
    let mut spellings: Vec<&str> = ADDRESS_WORDS
        .iter()
        .filter(|family| family.contains(&bare.as_str()))
        .flat_map(|family| family.iter().copied())
        .collect();
    if spellings.is_empty() {
        return regex::escape(word);
    }
    spellings.sort_unstable();
    spellings.dedup();
    // Longest first, so "street" is not cut to "st".
    spellings.sort_by_key(|s| std::cmp::Reverse(s.len()));
    format!(
        r"(?:{})\.?",
        spellings
            .iter()
            .map(|s| regex::escape(s))
            .collect::<Vec<_>>()
            .join("|")
    )
}

/// `(?i)` + `body`, bounded by word boundaries where `first`/`last` are word characters.
fn bounded(body: &str, first: &str, last: &str) -> Option<Regex> {
    let open = first.chars().next().is_some_and(is_word);
    let close = last.chars().next_back().is_some_and(is_word);
    Regex::new(&format!(
        "(?i){}(?:{}){}",
        if open { r"\b" } else { "" },
        body,
        if close { r"\b" } else { "" }
    ))
    .ok()
}

/// The ways a name is written: in order, surname first (`Johnson, Alice`, `Johnson Alice`),
/// initial and surname (`A. Johnson`), first and last without the middle names.
fn name_patterns(parts: &[&str]) -> Vec<(String, String, String)> {
    let esc: Vec<String> = parts.iter().map(|p| regex::escape(p)).collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    let mut out = vec![(esc.join(r"\s+"), first.to_owned(), last.to_owned())];
    if parts.len() >= 2 {
        let rest = esc[..esc.len() - 1].join(r"\s+");
        out.push((
            format!(r"{}(?:\s*,\s*|\s+){rest}", esc[esc.len() - 1]),
            last.to_owned(),
            parts[parts.len() - 2].to_owned(),
        ));
        let initial: String = first.chars().take(1).collect();
        if initial.chars().all(char::is_alphabetic) {
            out.push((
                format!(r"{}\.?\s*{}", regex::escape(&initial), esc[esc.len() - 1]),
                initial.clone(),
                last.to_owned(),
            ));
        }
        if parts.len() >= 3 {
            out.push((
                format!(r"{}\s+{}", esc[0], esc[esc.len() - 1]),
                first.to_owned(),
                last.to_owned(),
            ));
        }
    }
    out
}

/// Matchers for the customer's values, read as detection reads the text (folded): names in
/// any case and order, addresses with any spelling of their street words, with or without
/// their commas, and their first line (before the first comma) alone.
fn known_matchers(known: &KnownPii) -> Vec<(PiiKind, Regex)> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for value in &known.names {
        let value = folded(value);
        let parts: Vec<&str> = value
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|p| !p.is_empty())
            .collect();
        if parts.is_empty() || !seen.insert((PiiKind::Name, normalize(PiiKind::Name, &value))) {
            continue;
        }
        for (body, first, last) in name_patterns(&parts) {
            if let Some(re) = bounded(&body, &first, &last) {
                out.push((PiiKind::Name, re));
            }
        }
    }
    for value in &known.addresses {
        let value = folded(value);
        if !seen.insert((PiiKind::Address, normalize(PiiKind::Address, &value))) {
            continue;
        }
        let mut lines = vec![value.as_str()];
        if let Some((street, _)) = value.split_once(',') {
            if street.split_whitespace().count() >= 2 && street.chars().any(|c| c.is_ascii_digit())
            {
                lines.push(street);
            }
        }
        for line in lines {
            let words: Vec<&str> = line
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|p| !p.is_empty())
                .collect();
            let (Some(first), Some(last)) = (words.first(), words.last()) else {
                continue;
            };
            let body = words
                .iter()
                .map(|w| address_word(w))
                .collect::<Vec<_>>()
                .join(r"(?:\s*,\s*|\s+)");
            if let Some(re) = bounded(&body, first, last.trim_end_matches('.')) {
                out.push((PiiKind::Address, re));
            }
        }
    }
    out
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)[\p{L}\p{N}][\p{L}\p{N}._%+\-'_]*@(?:[\p{L}\p{N}](?:[\p{L}\p{N}\-]*[\p{L}\p{N}])?\.)+(?:\p{L}{2,24}|xn--[a-z0-9\-]{1,59})\b",
    )
    .expect("email pattern")
});

/// An address written out to get past filters: `dave(at)example.com`, `dave [at] example
/// [dot] com`, `dave @ example . com`, `dave at example dot com`. The `at` and `dot` words
/// count only with at least one of them bracketed or both spelled out, so that "look at
/// example.com" stays prose.
static OBFUSCATED_EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    let label = r"[\p{L}\p{N}](?:[\p{L}\p{N}\-]*[\p{L}\p{N}])?";
    let at = r"(?P<at>\s*[\(\[\{<]\s*(?:at|@)\s*[\)\]\}>]\s*|\s+@\s*|\s*@\s+|\s+at\s+|@)";
    let dot = r"(?:\s*[\(\[\{<]\s*(?:dot|\.)\s*[\)\]\}>]\s*|\s+dot\s+|\s+\.\s+|\.)";
    Regex::new(&format!(
        r"(?i)\b[\p{{L}}\p{{N}}][\p{{L}}\p{{N}}._%+\-'_]*{at}(?P<domain>(?:{label}{dot})+\p{{L}}{{2,24}})\b"
    ))
    .expect("obfuscated email pattern")
});

fn emails(text: &str, out: &mut Vec<Span>) {
    for m in EMAIL.find_iter(text) {
        out.push(Span {
            start: m.start(),
            end: m.end(),
            kind: PiiKind::Email,
        });
    }
    for caps in OBFUSCATED_EMAIL.captures_iter(text) {
        let whole = caps.get(0).expect("match");
        let at_raw = &caps["at"];
        let at = at_raw.trim().to_ascii_lowercase();
        let domain = caps["domain"].to_ascii_lowercase();
        let spelled_dot = domain.contains(" dot ") || domain.contains(['(', '[', '{', '<']);
        let spaced_dot = domain.contains(" . ");
        // A bare "@" is EMAIL's unless the dots are written out; a bare "at" needs a spelled
        // or bracketed dot; a bracketed or spaced "@" is a sign in itself.
        let ok = if at_raw == "@" {
            spelled_dot || spaced_dot
        } else if at == "at" {
            spelled_dot
        } else {
            true
        };
        if ok {
            out.push(Span {
                start: whole.start(),
                end: whole.end(),
                kind: PiiKind::Email,
            });
        }
    }
}

// --- IBAN ------------------------------------------------------------------------------------

/// Country code and check digits, not glued to a letter or digit before them (an underscore
/// may come before: `call_GB82WEST…`).
static IBAN_START: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:^|[^\p{L}\p{N}])([a-z]{2}[ \-.]?[0-9]{2})").expect("iban pattern")
});

/// Registered IBAN length per country (ISO 13616 registry).
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "FK" | "FO" | "GL" | "NL" | "SD" => 18,
        "MK" | "SI" => 19,
        "AT" | "BA" | "EE" | "KZ" | "LT" | "LU" | "MN" | "XK" => 20,
        "CH" | "HR" | "LI" | "LV" => 21,
        "BG" | "BH" | "CR" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" | "VA" => 22,
        "AE" | "GI" | "IL" | "IQ" | "OM" | "SO" | "TL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "LY" | "PT" | "ST" => 25,
        "IS" | "TR" => 26,
        "BI" | "DJ" | "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "BY" | "CY" | "DO" | "GT" | "HN" | "HU" | "LB" | "NI" | "PL" | "SV" => 28,
        "BR" | "EG" | "PS" | "QA" | "UA" => 29,
        "JO" | "KW" | "MU" | "YE" => 30,
        "MT" | "SC" => 31,
        "LC" => 32,
        "RU" => 33,
        _ => return None,
    })
}

fn ibans(text: &str, out: &mut Vec<Span>) {
    for caps in IBAN_START.captures_iter(text) {
        let start = caps.get(1).expect("group").start();
        let country = text[start..start + 2].to_ascii_uppercase();
        let Some(len) = iban_length(&country) else {
            continue;
        };
        let Some(end) = iban_extent(text, start, len) else {
            continue;
        };
        let compact: Vec<u8> = text[start..end]
            .bytes()
            .filter(u8::is_ascii_alphanumeric)
            .collect();
        if iban_checksum_ok(&compact) {
            out.push(Span {
                start,
                end,
                kind: PiiKind::Iban,
            });
        }
    }
}

/// End of an IBAN of `len` characters starting at `start`: letters and digits in groups of
/// any size, separated by one space, dash, dot or underscore (or two or three spaces), the
/// last group ending exactly at `len` characters and not running into a word.
fn iban_extent(text: &str, start: usize, len: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut pos = start;
    let mut count = 0;
    loop {
        let group_start = pos;
        while b.get(pos).is_some_and(u8::is_ascii_alphanumeric) {
            pos += 1;
        }
        count += pos - group_start;
        if pos == group_start || count > len {
            return None;
        }
        if count == len {
            break;
        }
        match b.get(pos) {
            Some(b' ') => {
                let spaces = b[pos..].iter().take_while(|&&c| c == b' ').count();
                if spaces > 3 {
                    return None;
                }
                pos += spaces;
            }
            Some(b'-' | b'.' | b'_') => pos += 1,
            _ => return None,
        }
    }
    if char_after(text, pos).is_some_and(char::is_alphanumeric) {
        return None;
    }
    Some(pos)
}

/// ISO 7064 mod 97-10 over the rearranged IBAN (letters as 10–35) must leave 1.
fn iban_checksum_ok(compact: &[u8]) -> bool {
    if compact.len() < 5 {
        return false;
    }
    let mut r: u32 = 0;
    for &c in compact[4..].iter().chain(&compact[..4]) {
        let c = c.to_ascii_uppercase();
        if c.is_ascii_digit() {
            r = (r * 10 + u32::from(c - b'0')) % 97;
        } else if c.is_ascii_uppercase() {
            r = (r * 100 + u32::from(c - b'A' + 10)) % 97;
        } else {
            return false;
        }
    }
    r == 1
}

// --- IP addresses ----------------------------------------------------------------------------

static IPV4: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b").expect("ipv4 pattern"));

static HEX_COLON: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[0-9A-Fa-f:.]+").expect("ipv6 pattern"));

fn ipv4s(text: &str, out: &mut Vec<Span>) {
    for m in IPV4.find_iter(text) {
        let (start, end) = (m.start(), m.end());
        // Part of a longer dotted number (a version such as 1.2.3.4.5)?
        let before = text[..start].chars().rev().take(2).collect::<Vec<_>>();
        if before.len() == 2 && before[0] == '.' && before[1].is_ascii_digit() {
            continue;
        }
        let mut after = text[end..].chars();
        if after.next() == Some('.') && after.next().is_some_and(|c| c.is_ascii_digit()) {
            continue;
        }
        if m.as_str().parse::<Ipv4Addr>().is_ok() {
            out.push(Span {
                start,
                end,
                kind: PiiKind::Ip,
            });
        }
    }
}

fn ipv6s(text: &str, out: &mut Vec<Span>) {
    for m in HEX_COLON.find_iter(text) {
        if m.as_str().bytes().filter(|&c| c == b':').count() < 2 {
            continue;
        }
        let (mut start, mut end) = (m.start(), m.end());
        // A token glued to a word ("note:fe80::1", "std::io") starts after its first colon.
        if char_before(text, start).is_some_and(is_word) {
            match text[start..end].find(':') {
                Some(i) => start += i + 1,
                None => continue,
            }
        }
        while end > start && text[start..end].ends_with('.') {
            end -= 1;
        }
        if text[start..end].ends_with(':') && !text[start..end].ends_with("::") {
            end -= 1;
        }
        if end <= start || char_after(text, end).is_some_and(is_word) {
            continue;
        }
        let candidate = &text[start..end];
        if candidate.bytes().filter(|&c| c == b':').count() < 2
            || !candidate.bytes().any(|c| c.is_ascii_digit())
        {
            continue;
        }
        if candidate.parse::<Ipv6Addr>().is_ok() {
            out.push(Span {
                start,
                end,
                kind: PiiKind::Ip,
            });
        }
    }
}

// --- Phone numbers and payment cards ---------------------------------------------------------
//
// Both are found in "numeric runs": digit groups (optionally `+` on the first, or in
// parentheses) joined by single separators. A candidate is a contiguous slice of a run's groups;
// slices may only be cut at a space, so "2024-05-01 415-555-2671" yields the phone but
// "1.2.3.4.5" or "4111-1111-1111-1111-2024" never yield a piece.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sep {
    Space,
    Dash,
    Dot,
    /// `_`, `/`, or two or three spaces: only cards are written so.
    Under,
    Slash,
    Wide,
    /// Nothing between a parenthesised group and its neighbour: "(0)20", "+1(415)555".
    Tight,
}

#[derive(Debug, Clone)]
struct Group {
    start: usize,
    end: usize,
    digits: Range<usize>,
    plus: bool,
    paren: bool,
    /// Separator before this group (`None` for the run's first group).
    sep: Option<Sep>,
}

impl Group {
    fn len(&self) -> usize {
        self.digits.len()
    }
}

struct NumRun {
    groups: Vec<Group>,
    /// Whether the run's first group may start a candidate (not glued to a word, an amount, a
    /// longer number or an id marker such as `#`).
    open_start: bool,
    open_end: bool,
}

impl NumRun {
    /// Whether a candidate from group `i` to group `j` (inclusive) has clean edges.
    fn edges_ok(&self, i: usize, j: usize) -> bool {
        let apart = |sep: Option<Sep>| {
            matches!(sep, Some(Sep::Space | Sep::Wide | Sep::Slash | Sep::Under))
        };
        let start_ok = if i == 0 {
            self.open_start
        } else {
            apart(self.groups[i].sep)
        };
        let end_ok = if j + 1 == self.groups.len() {
            self.open_end
        } else {
            apart(self.groups[j + 1].sep)
        };
        start_ok && end_ok
    }

    fn digits(&self, text: &str, i: usize, j: usize) -> String {
        self.groups[i..=j]
            .iter()
            .map(|g| &text[g.digits.clone()])
            .collect()
    }
}

fn digits_end(b: &[u8], from: usize) -> usize {
    let mut e = from;
    while b.get(e).is_some_and(u8::is_ascii_digit) {
        e += 1;
    }
    e
}

fn parse_group(b: &[u8], p: usize, first: bool) -> Option<Group> {
    let group = |start, end, digits, plus, paren| Group {
        start,
        end,
        digits,
        plus,
        paren,
        sep: None,
    };
    match *b.get(p)? {
        b'+' if first => {
            let e = digits_end(b, p + 1);
            (e > p + 1).then(|| group(p, e, p + 1..e, true, false))
        }
        b'(' => {
            let e = digits_end(b, p + 1);
            let n = e - (p + 1);
            ((1..=5).contains(&n) && b.get(e) == Some(&b')'))
                .then(|| group(p, e + 1, p + 1..e, false, true))
        }
        c if c.is_ascii_digit() => {
            let e = digits_end(b, p);
            Some(group(p, e, p..e, false, false))
        }
        _ => None,
    }
}

fn taints_before(text: &str, i: usize) -> bool {
    let mut it = text[..i].chars().rev();
    match it.next() {
        None => false,
        Some(c) if is_word(c) => true,
        Some('#' | '$' | '€' | '£' | '¥' | '@' | '/' | '\\') => true,
        Some('.' | ',' | ':') => it.next().is_some_and(|c| c.is_ascii_digit()),
        Some('-') => it.next().is_some_and(is_word),
        Some(_) => false,
    }
}

fn taints_after(text: &str, i: usize) -> bool {
    let mut it = text[i..].chars();
    match it.next() {
        None => false,
        Some(c) if is_word(c) => true,
        Some('%' | '$' | '€' | '£' | '¥' | '@') => true,
        Some('.' | ',' | ':' | '/') => it.next().is_some_and(|c| c.is_ascii_digit()),
        Some('-') => it.next().is_some_and(is_word),
        Some(_) => false,
    }
}

fn numeric_runs(text: &str) -> Vec<NumRun> {
    let b = text.as_bytes();
    let mut runs = Vec::new();
    let mut p = 0;
    while p < b.len() {
        let Some(first) = parse_group(b, p, true) else {
            p += 1;
            continue;
        };
        let mut groups = vec![first];
        loop {
            let last = &groups[groups.len() - 1];
            let e = last.end;
            let (sep, at) = match b.get(e) {
                Some(b' ') => {
                    let mut k = e;
                    while b.get(k) == Some(&b' ') && k - e < 3 {
                        k += 1;
                    }
                    (if k - e == 1 { Sep::Space } else { Sep::Wide }, k)
                }
                Some(b'_') => (Sep::Under, e + 1),
                Some(b'/') => (Sep::Slash, e + 1),
                Some(b'-') => (Sep::Dash, e + 1),
                Some(b'.') => (Sep::Dot, e + 1),
                Some(b'(') => (Sep::Tight, e),
                Some(c) if c.is_ascii_digit() && last.paren => (Sep::Tight, e),
                _ => break,
            };
            match parse_group(b, at, false) {
                Some(mut g) if !(g.paren && sep == Sep::Dot) => {
                    g.sep = Some(sep);
                    groups.push(g);
                }
                _ => break,
            }
        }
        let start = groups[0].start;
        let end = groups[groups.len() - 1].end;
        runs.push(NumRun {
            groups,
            open_start: !taints_before(text, start),
            open_end: !taints_after(text, end),
        });
        p = end;
    }
    runs
}

fn numbers(text: &str, out: &mut Vec<Span>) {
    for run in numeric_runs(text) {
        scan_run(text, &run, 15, PiiKind::Phone, phone_ok, out);
        scan_run(text, &run, 19, PiiKind::Card, card_ok, out);
    }
}

/// Left to right, the longest valid candidate starting at each group; at most `max_groups`
/// groups (every group has at least one digit).
fn scan_run(
    text: &str,
    run: &NumRun,
    max_groups: usize,
    kind: PiiKind,
    valid: fn(&str, &NumRun, usize, usize) -> bool,
    out: &mut Vec<Span>,
) {
    let n = run.groups.len();
    let mut i = 0;
    while i < n {
        let last = n.min(i + max_groups);
        match (i..last).rev().find(|&j| valid(text, run, i, j)) {
            Some(j) => {
                out.push(Span {
                    start: run.groups[i].start,
                    end: run.groups[j].end,
                    kind,
                });
                i = j + 1;
            }
            None => i += 1,
        }
    }
}

fn is_year(text: &str, g: &Group) -> bool {
    let d = &text[g.digits.clone()];
    d.len() == 4 && (d.starts_with("19") || d.starts_with("20"))
}

/// yyyy-mm-dd or dd-mm-yyyy (with `-`, `.` or spaces) anywhere among the groups.
fn has_date(text: &str, gs: &[Group]) -> bool {
    gs.windows(3).any(|w| {
        let plain = w.iter().all(|g| !g.plus && !g.paren);
        let same_sep =
            w[1].sep == w[2].sep && matches!(w[1].sep, Some(Sep::Dash | Sep::Dot | Sep::Space));
        plain
            && same_sep
            && ((is_year(text, &w[0]) && w[1].len() <= 2 && w[2].len() <= 2)
                || (w[0].len() <= 2 && w[1].len() <= 2 && is_year(text, &w[2])))
    })
}

fn phone_ok(text: &str, run: &NumRun, i: usize, j: usize) -> bool {
    if !run.edges_ok(i, j) {
        return false;
    }
    let gs = &run.groups[i..=j];
    let first = &gs[0];
    let digits = run.digits(text, i, j);
    // "0044 20 …": an international prefix, then a country code (never starting with 0); it
    // must open its run, not continue a longer space-grouped number such as an IBAN's digits.
    let via_00 = i == 0
        && !first.plus
        && !first.paren
        && (3..=5).contains(&first.len())
        && digits.starts_with("00")
        && digits.as_bytes().get(2).is_some_and(|&c| c != b'0');
    let international = first.plus || via_00;
    let count = if via_00 {
        digits.len() - 2
    } else {
        digits.len()
    };
    if !(7..=15).contains(&count) || has_date(text, gs) {
        return false;
    }
    if gs.len() == 1 {
        // E.164 ("+14155552671"), or a bare run of 10–15 digits.
        return first.plus || (!first.paren && (10..=15).contains(&digits.len()));
    }
    let seps: Vec<Sep> = gs[1..].iter().filter_map(|g| g.sep).collect();
    if seps
        .iter()
        .any(|s| matches!(s, Sep::Under | Sep::Slash | Sep::Wide))
    {
        return false;
    }
    if seps.contains(&Sep::Dot) {
        // 415.555.2671 / 01.23.45.67.89, never a decimal or a version such as 10.0.19041.
        let short = gs
            .iter()
            .enumerate()
            .any(|(k, g)| (k > 0 || !international) && g.len() < 2);
        if seps.iter().any(|&s| s != Sep::Dot) || gs.len() < 3 || short {
            return false;
        }
    }
    if international {
        return gs.iter().filter(|g| g.len() == 1).count() <= 2;
    }
    // National numbers: 9–12 digits, one separator style, optional leading "(area)".
    if !(9..=12).contains(&count) || gs[1..].iter().any(|g| g.paren || g.plus) {
        return false;
    }
    let rest = if first.paren { &seps[1..] } else { &seps[..] };
    if rest.contains(&Sep::Tight) || rest.windows(2).any(|w| w[0] != w[1]) {
        return false;
    }
    let style = rest.first().copied().unwrap_or(seps[0]);
    if style == Sep::Space && !(i == 0 && j + 1 == run.groups.len()) {
        // Space-grouped numbers must be the whole run, or "4111 1111 1111 1112" would
        // yield a phone number from its first twelve digits.
        return false;
    }
    let thousands = !first.paren
        && matches!(style, Sep::Space | Sep::Dot)
        && first.len() <= 3
        && !digits.starts_with('0')
        && gs[1..].iter().all(|g| g.len() == 3);
    !thousands
}

fn card_ok(text: &str, run: &NumRun, i: usize, j: usize) -> bool {
    if !run.edges_ok(i, j) {
        return false;
    }
    let gs = &run.groups[i..=j];
    if gs.iter().any(|g| g.plus || g.paren) {
        return false;
    }
    // Any grouping and any separators but a parenthesis: the length and the Luhn check
    // decide ("4111.1111.1111.1111", "4111 1111-1111 1111", "41 11 11 11 11 11 11 11").
    if gs[1..].iter().any(|g| g.sep == Some(Sep::Tight))
        || (gs.len() > 1 && gs.iter().any(|g| g.len() > 8))
    {
        return false;
    }
    let digits = run.digits(text, i, j);
    // No card number starts with 0 (ISO/IEC 7812 issuer identifiers).
    (13..=19).contains(&digits.len()) && !digits.starts_with('0') && luhn_ok(&digits)
}

fn luhn_ok(digits: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kinds(text: &str) -> Vec<(String, PiiKind)> {
        kinds_with(text, &KnownPii::default())
    }

    fn kinds_with(text: &str, known: &KnownPii) -> Vec<(String, PiiKind)> {
        detect(text, known)
            .into_iter()
            .map(|s| (text[s.start..s.end].to_owned(), s.kind))
            .collect()
    }

    /// `value` embedded in a sentence is detected as exactly one span of `kind` covering it.
    fn assert_found(value: &str, kind: PiiKind) {
        let text = format!("Please note: {value}. Thanks!");
        assert_eq!(kinds(&text), vec![(value.to_owned(), kind)], "in {text:?}");
    }

    fn assert_clean(text: &str) {
        assert_eq!(kinds(text), vec![], "in {text:?}");
    }

    #[test]
    fn labels_and_names() {
        let labels: Vec<_> = PiiKind::ALL.iter().map(|k| k.label()).collect();
        let names: Vec<_> = PiiKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            labels,
            ["EMAIL", "PHONE", "CARD", "IBAN", "IP", "NAME", "ADDRESS"]
        );
        assert_eq!(
            names,
            ["email", "phone", "card", "iban", "ip", "name", "address"]
        );
    }

    #[test]
    fn emails_are_found() {
        assert_found("jane.doe@example.com", PiiKind::Email);
        assert_found("J.Smith+orders@Mail.Example.co.uk", PiiKind::Email);
        assert_found("a_b-c%d@sub-domain.example.org", PiiKind::Email);
        assert_eq!(
            kinds("mailto:bob@example.com, ok"),
            vec![("bob@example.com".into(), PiiKind::Email)]
        );
        assert_clean("user@localhost and @handle and a @ mention");
        // Spaced out to get past filters, it is still an address.
        assert_eq!(
            kinds("write to a @ b.com"),
            vec![("a @ b.com".into(), PiiKind::Email)]
        );
    }

    #[test]
    fn phones_in_international_and_national_formats() {
        for phone in [
            "+44 20 7946 0958",
            "+1 (415) 555-2671",
            "+1-415-555-2671",
            "(415) 555-2671",
            "415.555.2671",
            "415-555-2671",
            "+33 1 23 45 67 89",
            "+49 30 1234567",
            "0044 20 7946 0958",
            "+14155552671",
            "+81-3-1234-5678",
            "+44 (0)20 7946 0958",
            "020 7946 0958",
            "01.23.45.67.89",
            "4155552671",
        ] {
            assert_found(phone, PiiKind::Phone);
        }
    }

    #[test]
    fn phone_next_to_other_numbers() {
        assert_eq!(
            kinds("On 2024-05-01 415-555-2671 called."),
            vec![("415-555-2671".into(), PiiKind::Phone)]
        );
        assert_eq!(
            kinds("Call 2023 (415) 555-2671 now"),
            vec![("(415) 555-2671".into(), PiiKind::Phone)]
        );
    }

    #[test]
    fn phone_digit_limits() {
        assert_clean("+123456 is short");
        assert_clean("+1234567890123456 is long");
        assert_eq!(
            kinds("+1234567 is ok"),
            vec![("+1234567".into(), PiiKind::Phone)]
        );
        // Bare digits need 10–15 and must not be glued to letters.
        assert_clean("ticket 123456789 and 1234567890123456");
        assert_clean("ref AB4155552671 and 4155552671XY");
        assert_clean("short 555-2671 and 12-34");
    }

    #[test]
    fn things_that_are_not_pii() {
        for text in [
            "Order #W2611340 has shipped.",
            "Order #2611340123 has shipped.",
            "That costs $1,234.56 or €1.234,56 or $1234567890.",
            "Delivered on 2024-05-01, or 01/05/2024, or 01.05.2024, or 05-01-2024.",
            "Meet at 10:30 or 12:30:45, see 2024-05-01T10:30:45Z.",
            "Update from 1.2.3 to 10.0.19041.1234 and 1.2.3.4.5 please.",
            "In 2023 we sold 150 units, then 10 000 000 units, then 1 000 000 000.",
            "Pi is 3.14159265358979 and e is 2.718281828.",
            "Use std::io::Result and Vec::new in Rust.",
            "MAC 00:1a:2b:3c:4d:5e is not an IP.",
            "Totals: 1234 5678 9012 3456 7890.",
            "Invalid card 4111 1111 1111 1112 and 4111-1111-1111-1112.",
            "Wrong checksum DE88 3704 0044 0532 0130 00 and GB00 NWBK 6016 1331 9268 19.",
            "Version 256.1.1.1 or 1.2.3.999 is fine.",
        ] {
            assert_clean(text);
        }
    }

    #[test]
    fn cards_are_found_and_checked() {
        for card in [
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "4111111111111111",
            "5500 0000 0000 0004",
            "378282246310005",
            "3782 822463 10005",
            "6011 0009 9013 9424",
            "4222222222222",
        ] {
            assert_found(card, PiiKind::Card);
        }
        assert_clean("number 4111111111111112 is not Luhn-valid");
        // A Luhn-valid number written like a phone is still a card (cards win).
        assert_eq!(
            kinds("call 378282246310005"),
            vec![("378282246310005".into(), PiiKind::Card)]
        );
        // A year in front does not join a dash-grouped card.
        assert_eq!(
            kinds("2023 4111-1111-1111-1111"),
            vec![("4111-1111-1111-1111".into(), PiiKind::Card)]
        );
    }

    #[test]
    fn ibans_are_found_and_checked() {
        for iban in [
            "DE89 3704 0044 0532 0130 00",
            "DE89370400440532013000",
            "de89 3704 0044 0532 0130 00",
            "GB29 NWBK 6016 1331 9268 19",
            "gb29nwbk60161331926819",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91 ABNA 0417 1643 00",
            "NO93 8601 1117 947",
            "BE68539007547034",
        ] {
            assert_found(iban, PiiKind::Iban);
        }
        // Right checksum, wrong length for the country, or a group split wrongly.
        assert_eq!(
            kinds("DE89 3704 0044 0532 0130 0 x")
                .iter()
                .filter(|(_, k)| *k == PiiKind::Iban)
                .count(),
            0
        );
        // Any grouping counts: the registered length and the checksum decide.
        assert_eq!(
            kinds("DE89 37040044 0532013000 ok"),
            vec![("DE89 37040044 0532013000".into(), PiiKind::Iban)]
        );
    }

    #[test]
    fn ip_addresses() {
        for ip in [
            "192.168.1.1",
            "8.8.8.8",
            "10.0.0.255",
            "2001:db8::1",
            "fe80::1ff:fe23:4567:890a",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            "::1",
            "::ffff:192.0.2.128",
        ] {
            assert_found(ip, PiiKind::Ip);
        }
        assert_eq!(
            kinds("host:fe80::1 and [2001:db8::2]:8080 and 10.1.2.3:443"),
            vec![
                ("fe80::1".into(), PiiKind::Ip),
                ("2001:db8::2".into(), PiiKind::Ip),
                ("10.1.2.3".into(), PiiKind::Ip),
            ]
        );
        assert_clean("v1.2.3.4 and 1.2.3.4.5 and 01.2.3.4 and 300.1.1.1 and cafe::beef");
    }

    fn known() -> KnownPii {
        KnownPii {
            names: vec![
                "Alice Johnson".into(),
                "Ann".into(),
                String::new(),
                "   ".into(),
            ],
            addresses: vec!["221B Baker Street,  London".into()],
        }
    }

    #[test]
    fn known_names_and_addresses() {
        let k = known();
        assert_eq!(
            kinds_with(
                "Dear ALICE\n  johnson, we ship to 221b baker street, london.",
                &k
            ),
            vec![
                ("ALICE\n  johnson".into(), PiiKind::Name),
                ("221b baker street, london".into(), PiiKind::Address),
            ]
        );
        // Whole words only; empty values match nothing.
        assert_eq!(
            kinds_with("Annual report by Ann, Joanna and Anne.", &k),
            vec![("Ann".into(), PiiKind::Name)]
        );
        assert!(detect("   ", &k).is_empty());
    }

    #[test]
    fn overlaps_keep_the_longest() {
        let k = KnownPii {
            names: vec!["Johnson".into()],
            addresses: vec![],
        };
        assert_eq!(
            kinds_with("write to alice.johnson@example.com", &k),
            vec![("alice.johnson@example.com".into(), PiiKind::Email)]
        );
        // The IBAN contains a phone-shaped and a card-shaped piece; the IBAN wins.
        assert_eq!(
            kinds("NL91 ABNA 0417 1643 00"),
            vec![("NL91 ABNA 0417 1643 00".into(), PiiKind::Iban)]
        );
        let spans = detect("a@b.io 4111111111111111 8.8.8.8", &KnownPii::default());
        assert!(spans.windows(2).all(|w| w[0].end <= w[1].start));
    }

    #[test]
    fn mask_for_logs() {
        assert_eq!(
            mask(
                "Alice Johnson <alice@example.com>, +1 (415) 555-2671, from 10.0.0.1",
                &known()
            ),
            "[name] <[email]>, [phone], from [ip]"
        );
    }

    #[test]
    fn redactor_numbers_per_kind_and_keeps_placeholders_stable() {
        let mut r = Redactor::new(known());
        let a = r.redact("Mail alice@example.com or bob@example.com, call +1 415-555-2671.");
        assert_eq!(a, "Mail [EMAIL_1] or [EMAIL_2], call [PHONE_1].");
        // Same values in another message, written differently: same placeholders.
        let b = r.redact("ALICE@example.COM again; +1 (415) 555 2671; Alice Johnson.");
        assert_eq!(b, "[EMAIL_1] again; [PHONE_1]; [NAME_1].");
        let c = r.redact("Also 0044 20 7946 0958 and +44 20 7946 0958.");
        assert_eq!(c, "Also [PHONE_2] and [PHONE_2].");
        let counts = r.counts();
        assert_eq!(counts.get(&PiiKind::Email), Some(&3));
        assert_eq!(counts.get(&PiiKind::Phone), Some(&4));
        assert_eq!(counts.get(&PiiKind::Name), Some(&1));
        assert_eq!(counts.get(&PiiKind::Card), None);
        assert_eq!(r.total(), 8);
    }

    #[test]
    fn restore_puts_originals_back() {
        let mut r = Redactor::new(KnownPii::default());
        let red = r.redact("Write to Jane@Example.com, then jane@example.com.");
        assert_eq!(red, "Write to [EMAIL_1], then [EMAIL_1].");
        // First original seen; any case inside the brackets; unknown ones stay.
        assert_eq!(
            r.restore("Sent to [email_1] and [Email_1], not [EMAIL_2] or [EMAIL_1 ]."),
            "Sent to Jane@Example.com and Jane@Example.com, not [EMAIL_2] or [EMAIL_1 ]."
        );
        assert_eq!(Redactor::default().restore("[EMAIL_1]"), "[EMAIL_1]");
    }

    #[test]
    fn stream_restorer_holds_only_possible_placeholders() {
        let mut r = Redactor::new(KnownPii::default());
        r.redact("card 4111 1111 1111 1111, mail a@b.io");
        let mut s = r.stream_restorer();
        assert_eq!(s.push("Your card [CA"), "Your card ");
        assert_eq!(s.push("RD_"), "");
        assert_eq!(s.push("1"), "");
        assert_eq!(
            s.push("] and [x] and [EMAIL"),
            "4111 1111 1111 1111 and [x] and "
        );
        assert_eq!(s.push("_1]!"), "a@b.io!");
        assert_eq!(s.push(" [IP_7"), " ");
        assert_eq!(s.push("] [ema"), "[IP_7] ");
        assert_eq!(s.finish(), "[ema");
        assert_eq!(s.finish(), "");

        let mut plain = Redactor::default().stream_restorer();
        assert_eq!(plain.push("text [EM"), "text [EM");
        assert_eq!(plain.finish(), "");
    }

    #[test]
    fn stream_restorer_is_owned() {
        fn owned<T: Send + 'static>(_: &T) {}
        let s = Redactor::new(known()).stream_restorer();
        owned(&s);
    }

    // --- property tests ------------------------------------------------------------------

    const NAMES: [&str; 5] = [
        "Alice Johnson",
        "Bob O'Neil",
        "María García",
        "Jean-Luc Picard",
        "Li Wei",
    ];
    const ADDRESSES: [&str; 4] = [
        "221B Baker Street, London",
        "1600 Amphitheatre Parkway, Mountain View",
        "Hauptstraße 5, 10115 Berlin",
        "12 rue de la Paix",
    ];
    const FILLER: [&str; 9] = [
        "Thanks for your help.",
        "Order #W2611340 costs $1,234.56.",
        "It shipped on 2024-05-01 at 10:30.",
        "We run version 1.2.3 since 2023.",
        "Please send 3 boxes by 01/05/2024.",
        "The meeting is at 12:30:45 today.",
        "Build 10.0.19041.1234 is installed.",
        "About 10 000 000 units were sold.",
        "Ping me in Rust via std::io::stdin.",
    ];

    fn prop_known() -> KnownPii {
        KnownPii {
            names: NAMES.iter().map(|s| s.to_string()).collect(),
            addresses: ADDRESSES.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn luhn_complete(body: &str) -> String {
        hearth_testdata::pii::luhn(body)
    }

    fn iban_with_check(country: &str, bban: &str) -> String {
        hearth_testdata::pii::iban(country, bban)
    }

    fn grouped(s: &str, size: usize, sep: &str) -> String {
        s.as_bytes()
            .chunks(size)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect::<Vec<_>>()
            .join(sep)
    }

    fn email() -> impl Strategy<Value = String> {
        (
            "[a-z][a-z0-9]{1,8}",
            proptest::option::of("[a-z0-9]{1,5}"),
            "[a-z][a-z0-9]{1,8}",
            prop::sample::select(vec!["com", "org", "de", "co.uk", "io"]),
        )
            .prop_map(|(local, extra, domain, tld)| match extra {
                Some(x) => format!("{local}.{x}@{domain}.{tld}"),
                None => format!("{local}@{domain}.{tld}"),
            })
    }

    fn phone() -> impl Strategy<Value = String> {
        prop_oneof![
            ("[1-9][0-9]{0,2}", "[1-9][0-9]{0,2}", "[0-9]{4}", "[0-9]{4}")
                .prop_map(|(c, a, b, d)| format!("+{c} {a} {b} {d}")),
            ("[2-9][0-9]{2}", "[2-9][0-9]{2}", "[0-9]{4}")
                .prop_map(|(a, b, c)| format!("+1 ({a}) {b}-{c}")),
            ("[2-9][0-9]{2}", "[2-9][0-9]{2}", "[0-9]{4}")
                .prop_map(|(a, b, c)| format!("+1-{a}-{b}-{c}")),
            ("[2-9][0-9]{2}", "[2-9][0-9]{2}", "[0-9]{4}")
                .prop_map(|(a, b, c)| format!("({a}) {b}-{c}")),
            ("[2-9][0-9]{2}", "[2-9][0-9]{2}", "[0-9]{4}")
                .prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
            ("[2-9][0-9]{2}", "[2-9][0-9]{2}", "[0-9]{4}")
                .prop_map(|(a, b, c)| format!("{a}-{b}-{c}")),
            ("[1-9]", "[0-9]{2}", "[0-9]{2}", "[0-9]{2}", "[0-9]{2}")
                .prop_map(|(a, b, c, d, e)| format!("+33 {a} {b} {c} {d} {e}")),
            ("[1-9][0-9]", "[0-9]{7}").prop_map(|(a, b)| format!("+49 {a} {b}")),
            ("[1-9][0-9]", "[1-9][0-9]", "[0-9]{4}", "[0-9]{4}")
                .prop_map(|(c, a, b, d)| format!("00{c} {a} {b} {d}")),
            "[1-9][0-9]{10}".prop_map(|d| format!("+{d}")),
            ("[1-9]", "[0-9]{4}", "[0-9]{4}").prop_map(|(a, b, c)| format!("+81-{a}-{b}-{c}")),
        ]
    }

    fn card() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["4", "51", "37", "6011"]),
            prop::sample::select(vec![13usize, 15, 16, 19]),
            "[0-9]{18}",
            prop::sample::select(vec!["", " ", "-"]),
        )
            .prop_map(|(prefix, len, body, sep)| {
                let body = format!("{prefix}{body}");
                let number = luhn_complete(&body[..len - 1]);
                if sep.is_empty() || len % 4 == 1 {
                    number
                } else {
                    grouped(&number, 4, sep)
                }
            })
    }

    fn iban() -> impl Strategy<Value = String> {
        let bban = prop_oneof![
            "[0-9]{18}".prop_map(|b| ("DE", b)),
            "[A-Z]{4}[0-9]{14}".prop_map(|b| ("GB", b)),
            "[0-9]{10}[0-9A-Z]{11}[0-9]{2}".prop_map(|b| ("FR", b)),
            "[A-Z]{4}[0-9]{10}".prop_map(|b| ("NL", b)),
        ];
        (bban, any::<bool>(), any::<bool>()).prop_map(|((country, bban), spaced, lower)| {
            let iban = iban_with_check(country, &bban);
            let iban = if spaced { grouped(&iban, 4, " ") } else { iban };
            if lower {
                iban.to_lowercase()
            } else {
                iban
            }
        })
    }

    fn ip() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
            (0x2000u16..0x3000, any::<[u16; 7]>(), any::<bool>()).prop_map(|(a, rest, full)| {
                let mut segs = [a; 8];
                segs[1..].copy_from_slice(&rest);
                if full {
                    segs.iter()
                        .map(|s| format!("{s:x}"))
                        .collect::<Vec<_>>()
                        .join(":")
                } else {
                    Ipv6Addr::from(segs).to_string()
                }
            }),
            // Compressed forms with a long zero run, as people write them.
            (0x2000u16..0x3000, 1u16..0xffff).prop_map(|(a, b)| format!("{a:x}:db8::{b:x}")),
        ]
    }

    fn item() -> impl Strategy<Value = (PiiKind, String)> {
        prop_oneof![
            email().prop_map(|v| (PiiKind::Email, v)),
            phone().prop_map(|v| (PiiKind::Phone, v)),
            card().prop_map(|v| (PiiKind::Card, v)),
            iban().prop_map(|v| (PiiKind::Iban, v)),
            ip().prop_map(|v| (PiiKind::Ip, v)),
            prop::sample::select(NAMES.to_vec()).prop_map(|v| (PiiKind::Name, v.to_owned())),
            prop::sample::select(ADDRESSES.to_vec()).prop_map(|v| (PiiKind::Address, v.to_owned())),
        ]
    }

    fn sentence(kind: PiiKind, value: &str) -> String {
        format!("My {} is {value}.", kind.as_str())
    }

    /// Items embedded in filler sentences; the first item appears a second time at the end.
    fn document() -> impl Strategy<Value = (Vec<(PiiKind, String)>, String)> {
        (
            prop::collection::vec(item(), 1..6),
            prop::collection::vec(prop::sample::select(FILLER.to_vec()), 6),
        )
            .prop_map(|(items, filler)| {
                let mut parts = Vec::new();
                for (k, (kind, value)) in items.iter().enumerate() {
                    parts.push(filler[k].to_owned());
                    parts.push(sentence(*kind, value));
                }
                parts.push(filler[5].to_owned());
                parts.push(sentence(items[0].0, &items[0].1));
                (items, parts.join(" "))
            })
    }

    fn floor_boundary(s: &str, mut i: usize) -> usize {
        i = i.min(s.len());
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn redacted_text_holds_no_originals((items, text) in document()) {
            let mut r = Redactor::new(prop_known());
            let red = r.redact(&text);
            for (kind, value) in &items {
                prop_assert!(!red.contains(value.as_str()), "{kind:?} {value:?} left in {red:?}");
                if matches!(kind, PiiKind::Phone | PiiKind::Card | PiiKind::Iban) {
                    let compact: String =
                        value.chars().filter(char::is_ascii_digit).collect();
                    prop_assert!(!red.contains(&compact), "{value:?} digits left in {red:?}");
                }
            }
            prop_assert!(r.total() > items.len());
        }

        #[test]
        fn restore_inverts_redact((_items, text) in document()) {
            let mut r = Redactor::new(prop_known());
            let red = r.redact(&text);
            prop_assert_eq!(r.restore(&red), text);
        }

        #[test]
        fn streaming_equals_whole_restore(
            (_items, text) in document(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let mut r = Redactor::new(prop_known());
            let red = r.redact(&text);
            let mut points: Vec<usize> =
                cuts.iter().map(|c| floor_boundary(&red, c.index(red.len() + 1))).collect();
            points.sort_unstable();
            let mut s = r.stream_restorer();
            let mut out = String::new();
            let mut last = 0;
            for p in points.into_iter().chain([red.len()]) {
                out.push_str(&s.push(&red[last..p]));
                last = p;
            }
            out.push_str(&s.finish());
            prop_assert_eq!(&out, &r.restore(&red));
            prop_assert_eq!(out, text);
        }

        #[test]
        fn same_value_same_placeholder((items, text) in document()) {
            let mut r = Redactor::new(prop_known());
            let red = r.redact(&text);
            let (kind, value) = &items[0];
            // Redacting the value again, in a later call, gives the placeholder it already has,
            // and that placeholder stands for both occurrences in the document.
            let again = r.redact(&sentence(*kind, value));
            let placeholder = again
                .strip_prefix(&format!("My {} is ", kind.as_str()))
                .and_then(|s| s.strip_suffix('.'))
                .expect("placeholder sentence")
                .to_owned();
            prop_assert!(PLACEHOLDER.is_match(&placeholder), "{again:?}");
            prop_assert!(red.matches(&placeholder).count() >= 2, "{placeholder} in {red:?}");
        }

        #[test]
        fn each_generated_value_is_detected_as_its_kind((kind, value) in item()) {
            let text = sentence(kind, &value);
            let found = kinds_with(&text, &prop_known());
            prop_assert_eq!(found, vec![(value, kind)]);
        }

        #[test]
        fn filler_is_not_pii(filler in prop::collection::vec(prop::sample::select(FILLER.to_vec()), 1..8)) {
            let text = filler.join(" ");
            prop_assert_eq!(detect(&text, &prop_known()), vec![]);
        }
    }
}

#[cfg(test)]
#[path = "privacy_corpus.rs"]
mod corpus;
