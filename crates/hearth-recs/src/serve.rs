//! Answering recommendation requests from a trained bundle and live histories.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::bundle::{RecsBundle, TrainReport};
use crate::data::{Event, EventWeights, Item, ItemId};
use crate::error::RecsError;
use crate::models::{top_k, History, Scorer};

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

#[derive(Debug, Clone, PartialEq, Serialize)]
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
    pub fn new(
        bundle: RecsBundle,
        version: u64,
        catalogue: Vec<Item>,
        weights: EventWeights,
    ) -> Self {
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
        Recommender {
            bundle,
            version,
            item_index,
            catalogue: records,
            weights,
        }
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
        // Weigh the history per item; remember the strongest event type for the reason.
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
        let items: Vec<u32> = seen.iter().map(|&(i, _)| i).collect();
        let weights: Vec<f32> = seen.iter().map(|&(_, w)| w).collect();
        let n_items = self.bundle.items.len();
        let mut scores = vec![0f32; n_items];
        let cold = items.is_empty();
        if cold {
            self.bundle.popularity.score(
                None,
                History {
                    items: &[],
                    weights: &[],
                },
                &mut scores,
            );
        } else {
            self.bundle.model.score(
                None,
                History {
                    items: &items,
                    weights: &weights,
                },
                &mut scores,
            );
        }
        let best = top_k(
            scores
                .iter()
                .enumerate()
                .map(|(i, &s)| (i as u32, s))
                .filter(|(i, s)| {
                    s.is_finite() && items.binary_search(i).is_err() && self.passes(*i, filter)
                }),
            n,
        );
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
                            format!("because you {} {}", verb(per_item[&j].2), self.title(j))
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
