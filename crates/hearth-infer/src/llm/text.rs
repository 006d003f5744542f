//! Turning a token stream into text a client can be sent: UTF-8 boundaries and stop strings.

/// Accumulates token pieces (bytes) and yields only complete UTF-8 characters, so a
/// multi-byte character split across tokens is never emitted half.
#[derive(Debug, Default)]
pub struct Utf8Decoder {
    carry: Vec<u8>,
}

impl Utf8Decoder {
    /// Adds a token's bytes; returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.carry.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.carry) {
                Ok(text) => {
                    out.push_str(text);
                    self.carry.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.carry[..valid]).expect("validated"));
                    match e.error_len() {
                        // Incomplete sequence at the end: wait for the next token.
                        None => {
                            self.carry.drain(..valid);
                            return out;
                        }
                        // Invalid bytes: replace them, as lossy decoding would, and go on.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.carry.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left at the end of generation (an incomplete character) as replacement text.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.carry).into_owned();
        self.carry.clear();
        out
    }
}

/// Holds back text that might be the start of a stop string, and cuts at the first stop.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    /// The stop string that ended the text, once one has.
    matched: Option<String>,
}

/// What to send after a push.
#[derive(Debug, PartialEq, Eq)]
pub struct StopOutcome {
    pub emit: String,
    pub stopped: bool,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            matched: None,
        }
    }

    pub fn push(&mut self, text: &str) -> StopOutcome {
        self.held.push_str(text);
        if let Some((at, stop)) = self
            .stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()).map(|at| (at, stop)))
            .min_by_key(|(at, _)| *at)
        {
            self.matched = Some(stop.clone());
            let emit = self.held[..at].to_owned();
            self.held.clear();
            return StopOutcome {
                emit,
                stopped: true,
            };
        }
        // Keep the longest suffix that is a proper prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .map(|stop| longest_suffix_prefix(&self.held, stop))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let emit = self.held[..cut].to_owned();
        self.held.drain(..cut);
        StopOutcome {
            emit,
            stopped: false,
        }
    }

    /// The stop string that ended the text, if one did.
    pub fn matched(&self) -> Option<&str> {
        self.matched.as_deref()
    }

    /// Text held back when generation ended for another reason.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length in bytes of the longest suffix of `text` that is a proper prefix of `stop`, on char
/// boundaries.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&n| {
            let start = text.len() - n;
            text.is_char_boundary(start) && stop.starts_with(&text[start..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multibyte_characters_split_across_tokens_are_never_emitted_half() {
        let mut d = Utf8Decoder::default();
        let snowman = "☃".as_bytes(); // 3 bytes
        assert_eq!(d.push(&snowman[..1]), "");
        assert_eq!(d.push(&snowman[1..2]), "");
        assert_eq!(d.push(&[snowman[2], b'!']), "☃!");
        assert_eq!(d.push(&[0xff, b'a']), "\u{fffd}a");
        assert_eq!(d.push(&"é".as_bytes()[..1]), "");
        assert_eq!(d.finish(), "\u{fffd}");
    }

    #[test]
    fn stop_strings_cut_output_even_across_pushes() {
        let mut m = StopMatcher::new(vec!["END".into(), "\n\n".into()]);
        assert_eq!(
            m.push("hello E"),
            StopOutcome {
                emit: "hello ".into(),
                stopped: false
            }
        );
        assert_eq!(
            m.push("N"),
            StopOutcome {
                emit: "".into(),
                stopped: false
            }
        );
        assert_eq!(
            m.push("Xtra EN"),
            StopOutcome {
                emit: "ENXtra ".into(),
                stopped: false
            }
        );
        assert_eq!(
            m.push("D tail"),
            StopOutcome {
                emit: "".into(),
                stopped: true
            }
        );
    }

    #[test]
    fn held_text_is_released_at_the_end() {
        let mut m = StopMatcher::new(vec!["<|im_end|>".into()]);
        assert_eq!(m.push("ok <|im").emit, "ok ");
        assert_eq!(m.finish(), "<|im");
        let mut none = StopMatcher::new(vec![]);
        assert_eq!(none.push("abc").emit, "abc");
    }
}
