//! BM25 full-text search over short documents (a title and a body), in memory, on tantivy.

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexReader, TantivyDocument, Term};

use crate::IndexError;

/// One document to index: `id` is the caller's position for it.
pub struct TextDoc<'a> {
    pub id: usize,
    /// Weighs twice as much as the body in ranking.
    pub title: &'a str,
    pub body: &'a str,
}

/// A BM25 index; queries are plain user text (never a syntax error).
pub struct TextIndex {
    reader: IndexReader,
    analyzer: TextAnalyzer,
    title: Field,
    body: Field,
    len: usize,
}

const TOKENIZER: &str = "en_stem";
const WRITER_MEMORY: usize = 64 << 20;

impl TextIndex {
    pub fn build<'a>(docs: impl IntoIterator<Item = TextDoc<'a>>) -> Result<TextIndex, IndexError> {
        let mut schema = Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TOKENIZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let title = schema.add_text_field("title", text.clone());
        let body = schema.add_text_field("body", text);
        let id = schema.add_u64_field("id", NumericOptions::default().set_fast());
        let index = Index::create_in_ram(schema.build());
        let mut writer = index.writer::<TantivyDocument>(WRITER_MEMORY)?;
        let mut len = 0;
        for doc in docs {
            let mut d = TantivyDocument::default();
            d.add_text(title, doc.title);
            d.add_text(body, doc.body);
            d.add_u64(id, doc.id as u64);
            writer.add_document(d)?;
            len += 1;
        }
        writer.commit()?;
        let reader = index.reader()?;
        let analyzer = index.tokenizer_for_field(title)?;
        Ok(TextIndex {
            reader,
            analyzer,
            title,
            body,
            len,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The query's words, analysed as the documents were, each searched in title and body.
    fn query(&self, text: &str) -> Option<BooleanQuery> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(text);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        while let Some(token) = stream.next() {
            for (field, boost) in [(self.title, 2.0), (self.body, 1.0)] {
                let term = TermQuery::new(
                    Term::from_field_text(field, &token.text),
                    IndexRecordOption::WithFreqs,
                );
                clauses.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(term), boost)),
                ));
            }
        }
        (!clauses.is_empty()).then(|| BooleanQuery::new(clauses))
    }

    /// The `k` best matches that `keep` accepts, by BM25 score (title words count double).
    /// Any word may match, more matching words rank higher; the text is read as plain words,
    /// never as query syntax.
    pub fn search(
        &self,
        query: &str,
        k: usize,
        keep: Option<&dyn Fn(usize) -> bool>,
    ) -> Result<Vec<(usize, f32)>, IndexError> {
        let Some(query) = self.query(query).filter(|_| k > 0) else {
            return Ok(Vec::new());
        };
        let searcher = self.reader.searcher();
        // Filters apply after ranking: ask for more the first time, everything if needed.
        let mut limit = if keep.is_some() { k * 10 + 100 } else { k };
        loop {
            let hits = searcher.search(&query, &TopDocs::with_limit(limit))?;
            let exhausted = hits.len() < limit;
            let mut out = Vec::with_capacity(k);
            for (score, address) in hits {
                let ids = searcher
                    .segment_reader(address.segment_ord)
                    .fast_fields()
                    .u64("id")?;
                let Some(id) = ids.first(address.doc_id) else {
                    continue;
                };
                let id = id as usize;
                if keep.is_none_or(|f| f(id)) {
                    out.push((id, score));
                    if out.len() == k {
                        return Ok(out);
                    }
                }
            }
            if exhausted || limit >= self.len {
                return Ok(out);
            }
            limit = self.len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> TextIndex {
        let docs = [
            (
                "Trail running shoes",
                "Light shoes with a grippy sole for muddy trails",
            ),
            ("Road running shoes", "Cushioned shoes for asphalt"),
            (
                "Rain jacket",
                "Waterproof jacket, packs into its own pocket",
            ),
            ("Wool socks", "Warm socks for hiking boots"),
        ];
        TextIndex::build(docs.iter().enumerate().map(|(id, (title, body))| TextDoc {
            id,
            title,
            body,
        }))
        .unwrap()
    }

    #[test]
    fn ranks_by_bm25_with_stemming() {
        let index = index();
        assert_eq!(index.len(), 4);
        // "trails" and "trail" share a stem; both running shoes match "shoe".
        let found = index.search("shoe for trails", 10, None).unwrap();
        let ids: Vec<usize> = found.iter().map(|r| r.0).collect();
        assert_eq!(ids[0], 0, "{found:?}");
        assert!(ids.contains(&1));
        assert!(!ids.contains(&2));
        assert!(found[0].1 > found[1].1);
    }

    #[test]
    fn filters_apply_and_odd_syntax_is_read_as_words() {
        let index = index();
        let found = index.search("shoes", 10, Some(&|id| id != 0)).unwrap();
        assert_eq!(found.iter().map(|r| r.0).collect::<Vec<_>>(), [1]);
        // Unbalanced quotes and a field the index does not have: still a search.
        let found = index
            .search("\"waterproof price:cheap (", 10, None)
            .unwrap();
        assert_eq!(found.first().map(|r| r.0), Some(2));
        assert!(index.search("   ", 10, None).unwrap().is_empty());
        assert!(index.search("submarine", 10, None).unwrap().is_empty());
    }
}
