//! The knowledge base: the company's documents (Markdown, HTML, plain text) split into
//! passages under their headings, embedded with the local embedder, kept in SQLite, and
//! searched hybrid — BM25 on hearth-index's tantivy index and cosine on its vector index,
//! fused by reciprocal rank. Passages have stable ids (`kb:N`) the agent's answers cite.
//! An optional second stage ([`Rerank`]) scores the first stage's best passages again with a
//! reranker (a cross-encoder, or a chat model judging yes/no) and keeps its order.
//!
//! Re-adding a file whose content changed replaces its passages; unchanged files are
//! skipped; files gone from disk can be dropped.

use std::path::{Path, PathBuf};

use hearth_gateway::Gateway;
use hearth_index::{
    reciprocal_rank_fusion, Metric, TextDoc, TextIndex, VectorIndex, VectorOptions,
};
use hearth_store::params;
use hearth_store::Database;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::intents::{embed_all, IntentProgress};
use crate::SupportError;

const MIGRATIONS: &[&str] = &["CREATE TABLE kb_files (
        path TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL,
        model TEXT NOT NULL,
        added_at INTEGER NOT NULL
    );
    CREATE TABLE kb_passages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        path TEXT NOT NULL,
        ordinal INTEGER NOT NULL,
        title TEXT NOT NULL,
        text TEXT NOT NULL,
        vector BLOB NOT NULL
    );
    CREATE INDEX kb_passages_path ON kb_passages(path);"];

/// Longest passage, in characters: a paragraph or two, enough context to answer from.
const PASSAGE_CHARS: usize = 900;
const EXTENSIONS: [&str; 6] = ["md", "markdown", "html", "htm", "txt", "text"];

/// A piece of a document under its heading path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Passage {
    /// "Returns › Refunds": the headings above it (or the file name).
    pub title: String,
    pub text: String,
}

fn push_chunks(title: &str, body: &str, out: &mut Vec<Passage>) {
    let mut current = String::new();
    let flush = |current: &mut String, out: &mut Vec<Passage>| {
        let text = current.trim().to_string();
        if !text.is_empty() {
            out.push(Passage {
                title: title.to_string(),
                text,
            });
        }
        current.clear();
    };
    for paragraph in body.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        if current.len() + paragraph.len() > PASSAGE_CHARS && !current.is_empty() {
            flush(&mut current, out);
        }
        if paragraph.len() > PASSAGE_CHARS {
            // A long paragraph is cut between sentences.
            for sentence in paragraph.split_inclusive(". ") {
                if current.len() + sentence.len() > PASSAGE_CHARS && !current.is_empty() {
                    flush(&mut current, out);
                }
                current.push_str(sentence);
            }
        } else {
            if !current.is_empty() {
                current.push_str("\n\n");
            }
            current.push_str(paragraph);
        }
    }
    flush(&mut current, out);
}

/// Splits Markdown (or text that uses `#` headings) into passages under their headings.
pub fn split_markdown(text: &str, file_title: &str) -> Vec<Passage> {
    let mut out = Vec::new();
    let mut headings: Vec<(usize, String)> = Vec::new();
    let mut body = String::new();
    let title = |headings: &[(usize, String)]| {
        if headings.is_empty() {
            file_title.to_string()
        } else {
            headings
                .iter()
                .map(|(_, h)| h.as_str())
                .collect::<Vec<_>>()
                .join(" › ")
        }
    };
    for line in text.lines() {
        let trimmed = line.trim_start();
        let level = trimmed.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&level) && trimmed[level..].starts_with(' ') {
            push_chunks(&title(&headings), &body, &mut out);
            body.clear();
            headings.retain(|(l, _)| *l < level);
            headings.push((level, trimmed[level..].trim().to_string()));
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    push_chunks(&title(&headings), &body, &mut out);
    out
}

/// Passages of one file, by its extension.
pub fn split_file(path: &Path, bytes: &[u8]) -> Result<Vec<Passage>, SupportError> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().replace(['_', '-'], " "))
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let text = match ext.as_str() {
        // Rendered as Markdown-like text (headings keep their `#`); emphasis marks dropped.
        "html" | "htm" => html2text::from_read(bytes, 10_000)
            .map_err(|e| SupportError::BadFile {
                file: path.to_path_buf(),
                message: format!("cannot read the HTML: {e}"),
            })?
            .replace("**", ""),
        _ => String::from_utf8(bytes.to_vec()).map_err(|_| SupportError::BadFile {
            file: path.to_path_buf(),
            message: "not UTF-8 text".into(),
        })?,
    };
    Ok(split_markdown(&text, &name))
}

/// Every supported file under `paths` (directories recursively), sorted.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SupportError> {
    fn walk(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), SupportError> {
        let meta = std::fs::metadata(path).map_err(|e| SupportError::io(path, e))?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| SupportError::io(path, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| SupportError::io(path, e))?;
                let name = entry.file_name();
                if !name.to_string_lossy().starts_with('.') {
                    walk(&entry.path(), out)?;
                }
            }
        } else if path
            .extension()
            .is_some_and(|e| EXTENSIONS.contains(&e.to_string_lossy().to_lowercase().as_str()))
        {
            out.push(std::fs::canonicalize(path).map_err(|e| SupportError::io(path, e))?);
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out)?;
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// What `add` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AddReport {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub passages: usize,
}

/// A search hit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// `kb:N`, stable until its file changes.
    pub id: String,
    pub source: String,
    pub title: String,
    pub text: String,
    pub score: f32,
}

/// The knowledge base's tables.
#[derive(Clone)]
pub struct KnowledgeBase {
    db: Database,
}

impl KnowledgeBase {
    /// The database these tables live in.
    pub fn database(&self) -> &hearth_store::Database {
        &self.db
    }

    pub fn open(db: Database) -> Result<KnowledgeBase, SupportError> {
        db.migrate("support_kb", MIGRATIONS)?;
        Ok(KnowledgeBase { db })
    }

    /// Adds (or refreshes) every supported file under `paths`, embedding new passages with
    /// `model`. A file whose content and model are unchanged is skipped.
    pub async fn add(
        &self,
        gateway: &Gateway,
        model: &str,
        paths: &[PathBuf],
        progress: &dyn IntentProgress,
    ) -> Result<AddReport, SupportError> {
        let files = collect_files(paths)?;
        if files.is_empty() {
            return Err(SupportError::invalid(
                "paths",
                format!("no {} files found", EXTENSIONS.join("/")),
            ));
        }
        let mut report = AddReport::default();
        for (n, file) in files.iter().enumerate() {
            progress.stage(&format!("{} ({}/{})", file.display(), n + 1, files.len()));
            let bytes = std::fs::read(file).map_err(|e| SupportError::io(file, e))?;
            let hash = hex::encode(Sha256::digest(&bytes));
            let key = file.to_string_lossy().to_string();
            let stored: Option<(String, String)> = self.db.query_one(
                "SELECT sha256, model FROM kb_files WHERE path = $1",
                params![&key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if stored.as_ref() == Some(&(hash.clone(), model.to_string())) {
                report.unchanged += 1;
                continue;
            }
            let passages = split_file(file, &bytes)?;
            let texts: Vec<String> = passages
                .iter()
                .map(|p| format!("{}\n{}", p.title, p.text))
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vectors = embed_all(gateway, model, &refs, progress).await?;
            // The file's passages and its record replaced in one transaction.
            self.db.write(|tx| {
                tx.execute("DELETE FROM kb_passages WHERE path = $1", params![&key])?;
                for (i, (p, v)) in passages.iter().zip(&vectors).enumerate() {
                    let blob: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    tx.execute(
                        "INSERT INTO kb_passages (path, ordinal, title, text, vector)
                         VALUES ($1, $2, $3, $4, $5)",
                        params![&key, i, &p.title, &p.text, blob],
                    )?;
                }
                tx.execute(
                    "INSERT INTO kb_files (path, sha256, model, added_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT(path) DO UPDATE SET sha256 = excluded.sha256,
                        model = excluded.model, added_at = excluded.added_at",
                    params![&key, &hash, model, crate::sessions::now() as i64],
                )?;
                Ok(())
            })?;
            if stored.is_some() {
                report.updated += 1;
            } else {
                report.added += 1;
            }
            report.passages += passages.len();
        }
        Ok(report)
    }

    /// Drops the files (and their passages) that are no longer on disk; returns their paths.
    pub fn drop_missing(&self) -> Result<Vec<String>, SupportError> {
        let missing: Vec<String> = self
            .files()?
            .into_iter()
            .map(|(path, _)| path)
            .filter(|p| !Path::new(p).exists())
            .collect();
        self.remove(&missing)?;
        Ok(missing)
    }

    /// Drops these files (absolute paths, as `files` lists them).
    pub fn remove(&self, paths: &[String]) -> Result<(), SupportError> {
        self.db.write(|tx| {
            for p in paths {
                tx.execute("DELETE FROM kb_passages WHERE path = $1", params![p])?;
                tx.execute("DELETE FROM kb_files WHERE path = $1", params![p])?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Changes whenever passages are added, replaced or dropped (passage ids only grow).
    pub fn stamp(&self) -> Result<(i64, i64), SupportError> {
        let stamp = self.db.query_one(
            "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM kb_passages",
            params![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(stamp.unwrap_or((0, 0)))
    }

    /// Every file with its passage count.
    pub fn files(&self) -> Result<Vec<(String, usize)>, SupportError> {
        Ok(self.db.query(
            "SELECT f.path, COUNT(p.id) FROM kb_files f
             LEFT JOIN kb_passages p ON p.path = f.path GROUP BY f.path ORDER BY f.path",
            params![],
            |r| Ok((r.get(0)?, r.get::<u64>(1)? as usize)),
        )?)
    }

    /// Loads every passage and builds the search indexes.
    pub fn index(&self) -> Result<KbIndex, SupportError> {
        type Row = (i64, String, String, String, Vec<u8>);
        let rows: Vec<Row> = self.db.query(
            "SELECT id, path, title, text, vector FROM kb_passages ORDER BY id",
            params![],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
        let model: Option<String> =
            self.db
                .query_one("SELECT model FROM kb_files LIMIT 1", params![], |r| {
                    r.get(0)
                })?;
        let dim = rows.first().map_or(0, |r| r.4.len() / 4);
        let mut data = Vec::with_capacity(rows.len() * dim);
        for r in &rows {
            if r.4.len() != dim * 4 {
                return Err(SupportError::Artifact(
                    "knowledge-base vectors of different sizes: re-add the documents with one \
                     embedding model"
                        .into(),
                ));
            }
            data.extend(
                r.4.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
        let text = TextIndex::build(rows.iter().enumerate().map(|(i, r)| TextDoc {
            id: i,
            title: &r.2,
            body: &r.3,
        }))
        .map_err(|e| SupportError::Artifact(e.to_string()))?;
        let vectors = if dim == 0 {
            None
        } else {
            Some(
                VectorIndex::build(dim, data, &VectorOptions::new(Metric::Cosine), &|_| {})
                    .map_err(|e| SupportError::Artifact(e.to_string()))?,
            )
        };
        Ok(KbIndex {
            passages: rows
                .into_iter()
                .map(|(id, path, title, text, _)| (id, path, title, text))
                .collect(),
            text,
            vectors,
            model: model.unwrap_or_default(),
            rerank: None,
        })
    }
}

/// The knowledge base, loaded for search.
pub struct KbIndex {
    passages: Vec<(i64, String, String, String)>,
    text: TextIndex,
    vectors: Option<VectorIndex>,
    model: String,
    rerank: Option<Rerank>,
}

/// The second stage of a search: the first stage's best passages scored again.
pub use hearth_gateway::rerank::RerankStage as Rerank;

/// What relevance means for the knowledge base's reranker unless the config says otherwise.
pub const RERANK_INSTRUCTION: &str =
    "Given a customer's message, retrieve the passage of the company's documents that tells how to handle it";

impl KbIndex {
    /// Searches with `rerank` as the second stage (none: the hybrid ranking alone).
    pub fn with_rerank(mut self, rerank: Option<Rerank>) -> Self {
        self.rerank = rerank;
        self
    }

    pub fn rerank(&self) -> Option<&Rerank> {
        self.rerank.as_ref()
    }

    pub fn is_empty(&self) -> bool {
        self.passages.is_empty()
    }

    pub fn len(&self) -> usize {
        self.passages.len()
    }

    /// The best `k` passages for `query`: BM25 and embedding similarity, fused by
    /// reciprocal rank, then reordered by the reranker when there is one.
    pub async fn search(
        &self,
        gateway: &Gateway,
        query: &str,
        k: usize,
    ) -> Result<Vec<Hit>, SupportError> {
        self.search_with(gateway, query, k, self.rerank.as_ref())
            .await
    }

    /// [`KbIndex::search`] with this `rerank` stage instead of the index's own.
    pub async fn search_with(
        &self,
        gateway: &Gateway,
        query: &str,
        k: usize,
        rerank: Option<&Rerank>,
    ) -> Result<Vec<Hit>, SupportError> {
        let Some(rerank) = rerank else {
            return self.first_stage(gateway, query, k).await;
        };
        let mut hits = self
            .first_stage(gateway, query, k.max(rerank.depth))
            .await?;
        let documents: Vec<String> = hits
            .iter()
            .map(|h| format!("{}\n{}", h.title, h.text))
            .collect();
        let (order, scores) = gateway.rerank_stage(rerank, query, &documents).await?;
        for (hit, score) in hits.iter_mut().zip(&scores) {
            hit.score = *score as f32;
        }
        let mut slots: Vec<Option<Hit>> = hits.into_iter().map(Some).collect();
        hits = order.iter().filter_map(|&i| slots[i].take()).collect();
        hits.truncate(k);
        Ok(hits)
    }

    /// The hybrid ranking: BM25 and embedding similarity fused by reciprocal rank.
    async fn first_stage(
        &self,
        gateway: &Gateway,
        query: &str,
        k: usize,
    ) -> Result<Vec<Hit>, SupportError> {
        if self.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let depth = (k * 5).max(20);
        let words = self
            .text
            .search(query, depth, None)
            .map_err(|e| SupportError::Artifact(e.to_string()))?;
        let mut lists: Vec<Vec<(usize, f32)>> = vec![words];
        if let Some(vectors) = &self.vectors {
            let q = embed_all(gateway, &self.model, &[query], &crate::intents::NoProgress).await?;
            lists.push(
                vectors
                    .search(&q[0], depth, None)
                    .map_err(|e| SupportError::Artifact(e.to_string()))?,
            );
        }
        let refs: Vec<&[(usize, f32)]> = lists.iter().map(Vec::as_slice).collect();
        Ok(reciprocal_rank_fusion(&refs, 60.0)
            .into_iter()
            .take(k)
            .map(|(i, score)| {
                let (id, path, title, text) = &self.passages[i];
                Hit {
                    id: format!("kb:{id}"),
                    source: path.clone(),
                    title: title.clone(),
                    text: text.clone(),
                    score,
                }
            })
            .collect())
    }
}

/// One labelled query: the titles of the passages that answer it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct LabelledQuery {
    pub query: String,
    /// A passage answers when its title (the heading path, "A › B") is one of these.
    pub titles: Vec<String>,
}

/// Reads labelled queries from JSONL (`{"query": …, "titles": […]}` per line); a bad line is
/// an error naming the file and line.
pub fn read_labels(path: &Path) -> Result<Vec<LabelledQuery>, SupportError> {
    let text = std::fs::read_to_string(path).map_err(|source| SupportError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| SupportError::BadFile {
            file: path.to_owned(),
            message: format!("line {}: {message}", i + 1),
        };
        let label: LabelledQuery = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        if label.query.trim().is_empty() {
            return Err(bad("empty query".into()));
        }
        if label.titles.is_empty() {
            return Err(bad(
                "no titles: name the passages that answer the query".into()
            ));
        }
        labels.push(label);
    }
    if labels.is_empty() {
        return Err(SupportError::NotEnoughData(format!(
            "{} holds no labelled queries",
            path.display()
        )));
    }
    Ok(labels)
}

/// How well search finds the passages that answer labelled queries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetrievalReport {
    pub queries: usize,
    pub k: usize,
    /// The reranker, if a second stage ran.
    pub rerank: Option<String>,
    /// Share of queries whose first passage answers.
    pub hit_at_1: f64,
    /// Share of queries with an answering passage among the first `k`.
    pub recall_at_k: f64,
    /// Mean of 1 / rank of the first answering passage (0 beyond `k`).
    pub mrr_at_k: f64,
    /// Mean seconds per search.
    pub seconds_per_query: f64,
}

/// Runs every labelled query through search (with `rerank` as its second stage, or none)
/// and measures the ranking; `on_done` is called after each query.
pub async fn evaluate(
    index: &KbIndex,
    gateway: &Gateway,
    labels: &[LabelledQuery],
    k: usize,
    rerank: Option<&Rerank>,
    on_done: &(dyn Fn() + Sync),
) -> Result<RetrievalReport, SupportError> {
    if k == 0 {
        return Err(SupportError::InvalidParameter {
            param: "k".into(),
            message: "must be at least 1".into(),
        });
    }
    let started = std::time::Instant::now();
    let (mut hits, mut found, mut reciprocal) = (0usize, 0usize, 0f64);
    for label in labels {
        let ranked = index.search_with(gateway, &label.query, k, rerank).await?;
        let first = ranked.iter().position(|h| label.titles.contains(&h.title));
        if first == Some(0) {
            hits += 1;
        }
        if let Some(rank) = first {
            found += 1;
            reciprocal += 1.0 / (rank + 1) as f64;
        }
        on_done();
    }
    let n = labels.len().max(1) as f64;
    Ok(RetrievalReport {
        queries: labels.len(),
        k,
        rerank: rerank.map(|r| r.model.clone()),
        hit_at_1: hits as f64 / n,
        recall_at_k: found as f64 / n,
        mrr_at_k: reciprocal / n,
        seconds_per_query: started.elapsed().as_secs_f64() / n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_passages_keep_their_heading_path() {
        let doc = "Intro line.\n\n# Returns\n\nSend it back within 30 days.\n\n## Refunds\n\nRefunds take 5-7 days.\n\n# Shipping\n\nWe ship worldwide.\n";
        let passages = split_markdown(doc, "policy");
        let titles: Vec<&str> = passages.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(
            titles,
            ["policy", "Returns", "Returns › Refunds", "Shipping"]
        );
        assert_eq!(passages[2].text, "Refunds take 5-7 days.");
    }

    #[test]
    fn long_sections_are_cut_between_paragraphs_and_sentences() {
        let paragraph = "This sentence is about forty characters. ".repeat(30);
        let doc = format!("# A\n\n{paragraph}\n\nshort tail");
        let passages = split_markdown(&doc, "f");
        assert!(passages.len() >= 2, "{passages:?}");
        assert!(passages.iter().all(|p| p.text.len() <= PASSAGE_CHARS + 50));
        assert!(passages.iter().all(|p| p.title == "A"));
        let joined: String = passages.iter().map(|p| p.text.as_str()).collect();
        assert!(joined.contains("short tail"));
    }

    #[test]
    fn html_is_read_as_text_with_headings() {
        let html = b"<html><head><style>p{}</style></head><body><h1>Warranty</h1><p>Two <b>years</b> on all chairs.</p></body></html>";
        let passages = split_file(Path::new("help/warranty.html"), html).unwrap();
        let all: String = passages
            .iter()
            .map(|p| format!("{} {}", p.title, p.text))
            .collect();
        assert!(
            all.contains("Warranty") && all.contains("Two years on all chairs"),
            "{passages:?}"
        );
        assert!(!all.contains("<b>"));
    }
}
