//! TF-IDF features of short texts: word unigrams and bigrams, and character 2–5-grams inside
//! word boundaries (robust to typos and inflections: "recieved", "transfers"). Sublinear term
//! frequency, smoothed idf, each block L2-normalised — the classic strong baseline for intent
//! classification, and a good complement to sentence embeddings, which blur rare keywords.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One sparse row: (column, value), columns ascending.
pub(crate) type SparseRow = Vec<(u32, f32)>;

const CHAR_GRAMS: std::ops::RangeInclusive<usize> = 2..=5;
/// Character n-grams seen in fewer training texts than this are dropped (noise, typos).
const CHAR_MIN_DF: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Vocabulary {
    index: HashMap<String, u32>,
    idf: Vec<f32>,
}

impl Vocabulary {
    fn fit(docs: impl Iterator<Item = Vec<String>>, min_df: u32) -> Vocabulary {
        let mut df: HashMap<String, u32> = HashMap::new();
        let mut n = 0u32;
        for terms in docs {
            n += 1;
            let mut seen: Vec<String> = terms;
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                *df.entry(t).or_default() += 1;
            }
        }
        let mut kept: Vec<(String, u32)> = df.into_iter().filter(|(_, d)| *d >= min_df).collect();
        // Sorted so that a model trained twice on the same data is the same model.
        kept.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let idf = kept
            .iter()
            .map(|(_, d)| ((1.0 + n as f32) / (1.0 + *d as f32)).ln() + 1.0)
            .collect();
        let index = kept
            .into_iter()
            .enumerate()
            .map(|(i, (t, _))| (t, i as u32))
            .collect();
        Vocabulary { index, idf }
    }

    fn len(&self) -> usize {
        self.idf.len()
    }

    /// Appends the L2-normalised TF-IDF vector of `terms` to `row`, columns offset by `base`.
    fn transform(&self, terms: &[String], base: u32, row: &mut SparseRow) {
        let mut counts: HashMap<u32, f32> = HashMap::new();
        for t in terms {
            if let Some(&i) = self.index.get(t) {
                *counts.entry(i).or_default() += 1.0;
            }
        }
        let mut entries: Vec<(u32, f32)> = counts
            .into_iter()
            .map(|(i, tf)| (i, (1.0 + tf.ln()) * self.idf[i as usize]))
            .collect();
        entries.sort_unstable_by_key(|e| e.0);
        let norm = entries.iter().map(|e| e.1 * e.1).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.extend(entries.into_iter().map(|(i, v)| (base + i, v / norm)));
        }
    }
}

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| w.chars().count() >= 2)
        .map(str::to_string)
        .collect()
}

fn word_terms(text: &str) -> Vec<String> {
    let words = words(text);
    let mut terms = words.clone();
    terms.extend(words.windows(2).map(|w| format!("{} {}", w[0], w[1])));
    terms
}

fn char_terms(text: &str) -> Vec<String> {
    let mut terms = Vec::new();
    for word in text.to_lowercase().split_whitespace() {
        let padded: Vec<char> = std::iter::once(' ')
            .chain(word.chars())
            .chain(std::iter::once(' '))
            .collect();
        for n in CHAR_GRAMS {
            if n > padded.len() {
                break;
            }
            terms.extend(padded.windows(n).map(|w| w.iter().collect::<String>()));
        }
    }
    terms
}

/// Fitted TF-IDF vocabularies. A row is `[word block | char block | extra dense block]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TfIdf {
    words: Vocabulary,
    chars: Vocabulary,
}

impl TfIdf {
    pub fn fit(texts: &[&str]) -> TfIdf {
        TfIdf {
            words: Vocabulary::fit(texts.iter().map(|t| word_terms(t)), 1),
            chars: Vocabulary::fit(texts.iter().map(|t| char_terms(t)), CHAR_MIN_DF),
        }
    }

    /// Columns taken by the sparse blocks; dense extras start here.
    pub fn sparse_width(&self) -> u32 {
        (self.words.len() + self.chars.len()) as u32
    }

    /// The sparse features of `text`, then `dense` (scaled by `dense_weight`) in the columns
    /// after the sparse blocks.
    pub fn row(&self, text: &str, dense: &[f32], dense_weight: f32) -> SparseRow {
        let mut row = SparseRow::new();
        self.words.transform(&word_terms(text), 0, &mut row);
        self.chars
            .transform(&char_terms(text), self.words.len() as u32, &mut row);
        let base = self.sparse_width();
        row.extend(
            dense
                .iter()
                .enumerate()
                .map(|(i, v)| (base + i as u32, v * dense_weight)),
        );
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_bigrams_skip_single_letters() {
        assert_eq!(
            word_terms("I lost my card!"),
            vec!["lost", "my", "card", "lost my", "my card"]
        );
    }

    #[test]
    fn char_grams_stay_inside_words() {
        let terms = char_terms("ab cd");
        assert!(terms.contains(&" ab ".to_string()));
        assert!(terms.contains(&"cd ".to_string()));
        assert!(!terms.iter().any(|t| t.contains("b c")), "{terms:?}");
    }

    #[test]
    fn rows_are_unit_length_per_block_and_ignore_unknown_terms() {
        let tfidf = TfIdf::fit(&["card arrived", "card lost", "lost pin"]);
        let row = tfidf.row("card card lost zebra", &[0.5, -0.5], 2.0);
        let width = tfidf.sparse_width();
        let words: f32 = row
            .iter()
            .filter(|(i, _)| *i < tfidf.words.len() as u32)
            .map(|(_, v)| v * v)
            .sum();
        assert!((words - 1.0).abs() < 1e-5, "{words}");
        assert!(row.windows(2).all(|w| w[0].0 < w[1].0), "columns ascend");
        assert_eq!(&row[row.len() - 2..], &[(width, 1.0), (width + 1, -1.0)]);
        // "zebra" is unknown: no column for it, and a text of only unknown words is empty.
        assert!(tfidf.row("zebra", &[], 1.0).is_empty());
    }
}
