//! Answering recommendation requests from a trained bundle and live histories.

use std::collections::HashMap;

use hearth_index::{
    reciprocal_rank_fusion, Metric, TextDoc, TextIndex, VectorIndex, VectorOptions,
};
use serde::{Deserialize, Serialize};

use crate::bundle::{RecsBundle, TrainReport};
use crate::data::{Event, EventWeights, Item, ItemId};
use crate::error::RecsError;
use crate::models::{dot, top_k, History, Scorer};
use crate::train::TrainedModel;

/// Which items may be recommended.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemFilter {
    /// Only items in this category (case-insensitive).
    pub category: Option<String>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    /// Only items marked available.
    #[serde(default)]
    pub in_stock: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Recommendation {
    pub item: ItemId,
    pub title: String,
    pub score: f32,
    /// Why this item, in words ("because you saved Kettle").
    pub reason: String,
}

/// A trained bundle ready to answer, with the catalogue it filters on.
pub struct Recommender {
    bundle: RecsBundle,
    version: u64,
    item_index: HashMap<ItemId, u32>,
    /// Catalogue records by the bundle's item index (None: known from events only).
    catalogue: Vec<Option<Item>>,
    weights: EventWeights,
    /// BM25 over titles, descriptions, categories and tags.
    text: TextIndex,
    /// Item text vectors (when the bundle has them), for the meaning half of search.
    text_vectors: Option<VectorIndex>,
    /// ALS item factors behind an HNSW graph, for catalogues too large to score every item.
    factors: Option<VectorIndex>,
    /// ALS factors folded in per history (by a hash of its items and weights): a returning
    /// shopper whose history has not changed skips the conjugate-gradient solve.
    folded: std::sync::Mutex<HashMap<u64, std::sync::Arc<Vec<f32>>>>,
    /// The catalogue's categories, sorted, each once (case-insensitively).
    categories: Vec<String>,
}

/// Folded-in histories kept before the cache starts over.
const FOLDED_CAPACITY: usize = 100_000;

/// A history weighed per item: sorted item indexes, their summed weights, and the strongest
/// event type per item (for reasons).
struct Weighed<'a> {
    items: Vec<u32>,
    weights: Vec<f32>,
    kinds: HashMap<u32, &'a str>,
}

impl Weighed<'_> {
    fn history(&self) -> History<'_> {
        History {
            items: &self.items,
            weights: &self.weights,
        }
    }

    fn seen(&self, i: u32) -> bool {
        self.items.binary_search(&i).is_ok()
    }
}

fn verb(kind: &str) -> &str {
    match kind {
        "view" => "viewed",
        "click" => "clicked",
        "save" => "saved",
        "cart" => "added to your cart",
        "purchase" => "bought",
        "rating" => "rated",
        _ => "chose",
    }
}

impl Recommender {
    /// `catalogue`: the store's current items (new items and changed prices apply at once).
    /// Builds the search indexes (and, for large catalogues, the ALS graph): seconds per
    /// hundred thousand items, so load off any request path.
    pub fn new(
        mut bundle: RecsBundle,
        version: u64,
        catalogue: Vec<Item>,
        weights: EventWeights,
    ) -> Result<Self, RecsError> {
        let item_index: HashMap<ItemId, u32> = bundle
            .items
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i as u32))
            .collect();
        let mut records = vec![None; bundle.items.len()];
        for item in catalogue {
            if let Some(&i) = item_index.get(&item.id) {
                records[i as usize] = Some(item);
            }
        }
        let bodies: Vec<String> = records
            .iter()
            .map(|r| {
                r.as_ref().map_or(String::new(), |item| {
                    let mut body = item.description.clone();
                    for part in item.categories.iter().chain(&item.tags) {
                        body.push_str(". ");
                        body.push_str(part);
                    }
                    body
                })
            })
            .collect();
        let text = TextIndex::build(records.iter().enumerate().map(|(i, r)| {
            TextDoc {
                id: i,
                title: r
                    .as_ref()
                    .map(|item| item.title.as_str())
                    .filter(|t| !t.is_empty())
                    .unwrap_or(&bundle.items[i].0),
                body: &bodies[i],
            }
        }))?;
        // The index keeps the vectors; the bundle keeps only the model's name.
        let text_vectors = match &mut bundle.embeddings {
            Some(e) => Some(VectorIndex::build(
                e.vectors.dims.max(1),
                std::mem::take(&mut e.vectors.data),
                &VectorOptions::new(Metric::Cosine),
                &|_| {},
            )?),
            None => None,
        };
        let options = VectorOptions::new(Metric::InnerProduct);
        let factors = match &bundle.model {
            TrainedModel::Als(als) if bundle.items.len() >= options.exact_below => {
                let data = als.all_item_factors().to_vec();
                Some(VectorIndex::build(als.factors(), data, &options, &|_| {})?)
            }
            _ => None,
        };
        let mut categories: Vec<String> = records
            .iter()
            .flatten()
            .flat_map(|item| item.categories.iter().cloned())
            .collect();
        categories.sort_unstable_by_key(|c| c.to_lowercase());
        categories.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        Ok(Recommender {
            categories,
            bundle,
            version,
            item_index,
            catalogue: records,
            weights,
            text,
            text_vectors,
            factors,
            folded: Default::default(),
        })
    }

    fn weigh<'a>(&self, history: &'a [Event]) -> Weighed<'a> {
        // The strongest event type per item explains recommendations it leads to.
        let mut per_item: HashMap<u32, (f32, f32, &str)> = HashMap::new();
        for event in history {
            let Some(&i) = self.item_index.get(&event.item) else {
                continue;
            };
            let w = self.weights.weight(&event.kind);
            let entry = per_item.entry(i).or_insert((0.0, f32::MIN, "view"));
            entry.0 += w;
            if w >= entry.1 {
                entry.1 = w;
                entry.2 = &event.kind;
            }
        }
        let mut seen: Vec<(u32, f32)> = per_item.iter().map(|(&i, &(w, _, _))| (i, w)).collect();
        seen.sort_unstable_by_key(|&(i, _)| i);
        Weighed {
            items: seen.iter().map(|&(i, _)| i).collect(),
            weights: seen.iter().map(|&(_, w)| w).collect(),
            kinds: per_item.into_iter().map(|(i, (_, _, k))| (i, k)).collect(),
        }
    }

    fn fold(&self, als: &crate::models::Als, weighed: &Weighed<'_>) -> std::sync::Arc<Vec<f32>> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        weighed.items.hash(&mut hasher);
        for w in &weighed.weights {
            w.to_bits().hash(&mut hasher);
        }
        let key = hasher.finish();
        let cache = || self.folded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(u) = cache().get(&key) {
            return u.clone();
        }
        let u = std::sync::Arc::new(als.fold_in(weighed.history()));
        let mut cache = cache();
        if cache.len() >= FOLDED_CAPACITY {
            cache.clear();
        }
        cache.insert(key, u.clone());
        u
    }

    /// The embedding model search queries must be embedded with (None: text search only).
    pub fn search_model(&self) -> Option<&str> {
        self.bundle.embeddings.as_ref().map(|e| e.model.as_str())
    }

    /// Every category in the catalogue (the assistant offers them to the model).
    pub fn categories(&self) -> &[String] {
        &self.categories
    }

    /// The catalogue record of an item (None: unknown, or known from events only).
    pub fn item(&self, id: &ItemId) -> Option<&Item> {
        self.item_index
            .get(id)
            .and_then(|&i| self.catalogue[i as usize].as_ref())
    }

    /// Items for a text query: BM25 and (when the bundle has item vectors and a query vector
    /// is given, embedded with [`Self::search_model`]) cosine, fused by reciprocal rank; with
    /// a history, the recommendation model's order of the candidates joins the fusion.
    pub fn search(
        &self,
        query: &str,
        query_vector: Option<&[f32]>,
        history: &[Event],
        n: usize,
        filter: &ItemFilter,
    ) -> Result<Vec<Recommendation>, RecsError> {
        let keep = |i: usize| self.passes(i as u32, filter);
        let pool = (n * 5).max(50);
        let words = self.text.search(query, pool, Some(&keep))?;
        let meaning = match (query_vector, &self.text_vectors) {
            (Some(q), Some(index)) => index.search(q, pool, Some(&keep))?,
            _ => Vec::new(),
        };
        let weighed = self.weigh(history);
        let personal = if weighed.items.is_empty() {
            Vec::new()
        } else {
            let mut candidates: Vec<usize> = words.iter().chain(&meaning).map(|r| r.0).collect();
            candidates.sort_unstable();
            candidates.dedup();
            self.rank(&weighed, &candidates)
        };
        let fused = reciprocal_rank_fusion(&[&words, &meaning, &personal], 60.0);
        Ok(fused
            .into_iter()
            .take(n)
            .map(|(i, score)| {
                let by_words = words.iter().any(|r| r.0 == i);
                let by_meaning = meaning.iter().any(|r| r.0 == i);
                let reason = match (by_words, by_meaning) {
                    (true, true) => "matches your words and what you mean",
                    (true, false) => "matches your words",
                    _ => "close to what you mean",
                };
                Recommendation {
                    item: self.bundle.items[i].clone(),
                    title: self.title(i as u32),
                    score,
                    reason: reason.to_owned(),
                }
            })
            .collect())
    }

    /// `candidates` in the model's order for this history.
    fn rank(&self, weighed: &Weighed<'_>, candidates: &[usize]) -> Vec<(usize, f32)> {
        let mut scored: Vec<(usize, f32)> = match &self.bundle.model {
            TrainedModel::Als(als) => {
                let u = self.fold(als, weighed);
                candidates
                    .iter()
                    .map(|&i| (i, dot(&u, als.item_factors(i as u32))))
                    .collect()
            }
            model => {
                let mut scores = vec![0f32; self.bundle.items.len()];
                model.score(None, weighed.history(), &mut scores);
                candidates.iter().map(|&i| (i, scores[i])).collect()
            }
        };
        scored.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        scored
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn report(&self) -> &TrainReport {
        &self.bundle.report
    }

    fn title(&self, i: u32) -> String {
        self.catalogue[i as usize]
            .as_ref()
            .map(|item| item.title.clone())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| self.bundle.items[i as usize].0.clone())
    }

    fn passes(&self, i: u32, filter: &ItemFilter) -> bool {
        let item = self.catalogue[i as usize].as_ref();
        if let Some(category) = &filter.category {
            let Some(item) = item else { return false };
            if !item
                .categories
                .iter()
                .any(|c| c.eq_ignore_ascii_case(category))
            {
                return false;
            }
        }
        if filter.min_price.is_some() || filter.max_price.is_some() {
            let Some(price) = item.and_then(|i| i.price) else {
                return false;
            };
            if filter.min_price.is_some_and(|min| price < min)
                || filter.max_price.is_some_and(|max| price > max)
            {
                return false;
            }
        }
        if filter.in_stock && !item.is_some_and(|i| i.available) {
            return false;
        }
        true
    }

    /// Recommendations for a history (a user's stored events, or a visitor's session), seen
    /// items excluded. Without any known item in the history, the most popular items.
    pub fn recommend(
        &self,
        history: &[Event],
        n: usize,
        filter: &ItemFilter,
    ) -> Vec<Recommendation> {
        let weighed = self.weigh(history);
        let cold = weighed.items.is_empty();
        let best = match (&self.factors, &self.bundle.model) {
            (Some(index), TrainedModel::Als(als)) if !cold => {
                // Large catalogue: the graph finds the best inner products without scoring
                // every item.
                let u = self.fold(als, &weighed);
                let keep = |i: usize| !weighed.seen(i as u32) && self.passes(i as u32, filter);
                index
                    .search(&u, n, Some(&keep))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(i, s)| (i as u32, s))
                    .collect()
            }
            (_, model) => {
                let mut scores = vec![0f32; self.bundle.items.len()];
                match model {
                    TrainedModel::Als(als) if !cold => {
                        let u = self.fold(als, &weighed);
                        for (i, out) in scores.iter_mut().enumerate() {
                            *out = dot(&u, als.item_factors(i as u32));
                        }
                    }
                    _ if cold => self
                        .bundle
                        .popularity
                        .score(None, weighed.history(), &mut scores),
                    model => model.score(None, weighed.history(), &mut scores),
                }
                top_k(
                    scores
                        .iter()
                        .enumerate()
                        .map(|(i, &s)| (i as u32, s))
                        .filter(|&(i, s)| {
                            s.is_finite() && !weighed.seen(i) && self.passes(i, filter)
                        }),
                    n,
                )
            }
        };
        let items = &weighed.items;
        best.into_iter()
            .map(|(i, score)| {
                let reason = if cold {
                    "popular with other customers".to_owned()
                } else {
                    // The history item most similar to this one explains it.
                    items
                        .iter()
                        .filter_map(|&j| {
                            self.bundle
                                .neighbours
                                .similar(j)
                                .iter()
                                .find(|(k, _)| *k == i)
                                .map(|&(_, s)| (j, s))
                        })
                        .max_by(|a, b| a.1.total_cmp(&b.1))
                        .map(|(j, _)| {
                            format!("because you {} {}", verb(weighed.kinds[&j]), self.title(j))
                        })
                        .unwrap_or_else(|| "matches what you chose before".to_owned())
                };
                Recommendation {
                    item: self.bundle.items[i as usize].clone(),
                    title: self.title(i),
                    score,
                    reason,
                }
            })
            .collect()
    }

    /// Items like `item`: chosen by the same people, or (for items nobody has chosen yet)
    /// described alike.
    pub fn similar(
        &self,
        item: &ItemId,
        n: usize,
        filter: &ItemFilter,
    ) -> Result<Vec<Recommendation>, RecsError> {
        let &i = self
            .item_index
            .get(item)
            .ok_or_else(|| RecsError::UnknownItem(item.0.clone()))?;
        let collaborative = self.bundle.neighbours.similar(i);
        let (list, reason) = if collaborative.is_empty() {
            match &self.bundle.content {
                Some(content) => (content.similar(i), "described like"),
                None => (collaborative, ""),
            }
        } else {
            (collaborative, "often chosen with")
        };
        let title = self.title(i);
        Ok(list
            .iter()
            .filter(|(j, _)| self.passes(*j, filter))
            .take(n)
            .map(|&(j, s)| Recommendation {
                item: self.bundle.items[j as usize].clone(),
                title: self.title(j),
                score: s,
                reason: format!("{reason} {title}"),
            })
            .collect())
    }
}
