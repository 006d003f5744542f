//! The records a store gives the engine: items, users and events, and the interaction matrix
//! the models train on.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::limits;
use crate::sparse::Csr;

/// An item's id as the company knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ItemId(pub String);

/// A user's id as the company knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub String);

hearth_types::schema_by_hand!(ItemId, id_schema());
hearth_types::schema_by_hand!(UserId, id_schema());

/// An id's schema: 1 to [`limits::MAX_ID_CHARS`] characters, none a control character.
pub fn id_schema() -> utoipa::openapi::schema::ObjectBuilder {
    hearth_types::schema::id().max_length(Some(limits::MAX_ID_CHARS))
}

fn title_schema() -> utoipa::openapi::schema::ObjectBuilder {
    hearth_types::schema::text(limits::MAX_TITLE_CHARS)
}

fn description_schema() -> utoipa::openapi::schema::ObjectBuilder {
    hearth_types::schema::text(limits::MAX_DESCRIPTION_CHARS)
}

/// Categories or tags.
fn labels_schema() -> utoipa::openapi::schema::Schema {
    hearth_types::schema::list(
        hearth_types::schema::text(limits::MAX_LABEL_CHARS),
        None,
        Some(limits::MAX_LABELS),
    )
}

impl std::fmt::Display for ItemId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A catalogue entry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct Item {
    pub id: ItemId,
    #[serde(default)]
    #[schema(schema_with = title_schema)]
    pub title: String,
    #[serde(default)]
    #[schema(schema_with = description_schema)]
    pub description: String,
    #[serde(default)]
    #[schema(schema_with = labels_schema)]
    pub categories: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = labels_schema)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub price: Option<f64>,
    /// In stock / purchasable. Items are available unless said otherwise.
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub available: bool,
    /// Unix seconds.
    #[serde(default, deserialize_with = "hearth_types::whole::opt")]
    pub created_at: Option<i64>,
}

fn yes() -> bool {
    true
}

impl Item {
    /// The text an embedding model reads for this item: title, categories, tags, description.
    pub fn text(&self) -> String {
        let mut text = self.title.clone();
        for part in [self.categories.join(", "), self.tags.join(", ")] {
            if !part.is_empty() {
                text.push_str(". ");
                text.push_str(&part);
            }
        }
        if !self.description.is_empty() {
            text.push_str(". ");
            text.push_str(&self.description);
        }
        text
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: UserId,
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// One thing a user did with an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Events are idempotent by id; files without ids get one from their file and line.
    pub id: String,
    pub user: UserId,
    pub item: ItemId,
    /// view, click, save, cart, purchase, rating, or any name the company uses.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub value: Option<f64>,
    /// Unix seconds.
    pub timestamp: i64,
}

/// How much each event type counts towards a user's interest in an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventWeights {
    pub weights: BTreeMap<String, f32>,
    /// Weight of a type not listed.
    pub default: f32,
}

impl Default for EventWeights {
    fn default() -> Self {
        let weights = [
            ("view", 1.0),
            ("click", 1.0),
            ("rating", 1.0),
            ("save", 2.0),
            ("cart", 3.0),
            ("purchase", 4.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        EventWeights {
            weights,
            default: 1.0,
        }
    }
}

impl EventWeights {
    pub fn weight(&self, kind: &str) -> f32 {
        self.weights.get(kind).copied().unwrap_or(self.default)
    }
}

/// Dense indices for string ids, in first-seen order.
#[derive(Debug, Clone)]
pub struct IdMap<T> {
    ids: Vec<T>,
    index: HashMap<T, u32>,
}

impl<T> Default for IdMap<T> {
    fn default() -> Self {
        IdMap {
            ids: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T: Clone + Eq + std::hash::Hash> IdMap<T> {
    pub fn insert(&mut self, id: &T) -> u32 {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.push(id.clone());
        self.index.insert(id.clone(), i);
        i
    }

    pub fn get(&self, id: &T) -> Option<u32> {
        self.index.get(id).copied()
    }

    pub fn id(&self, index: u32) -> &T {
        &self.ids[index as usize]
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.ids.iter()
    }
}

/// One (user, item) pair after events are weighed: the unit that splits hold out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interaction {
    pub user: u32,
    pub item: u32,
    pub weight: f32,
    /// The latest event's time.
    pub timestamp: i64,
}

/// Everything the models train on: the catalogue, the users and their weighed interactions.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub items: IdMap<ItemId>,
    pub users: IdMap<UserId>,
    /// Catalogue records by item index; items seen only in events get a bare record.
    pub catalogue: Vec<Item>,
    pub interactions: Vec<Interaction>,
}

impl Dataset {
    /// Builds the dataset; events naming an item missing from `items` add that item to the
    /// catalogue with only its id (events are never dropped for it).
    pub fn build(
        items: Vec<Item>,
        users: Vec<User>,
        events: &[Event],
        weights: &EventWeights,
    ) -> Dataset {
        let mut data = Dataset::default();
        for item in items {
            let i = data.items.insert(&item.id) as usize;
            if i == data.catalogue.len() {
                data.catalogue.push(item);
            } else {
                data.catalogue[i] = item;
            }
        }
        for user in users {
            data.users.insert(&user.id);
        }
        let mut pairs: HashMap<(u32, u32), Interaction> = HashMap::new();
        for event in events {
            let user = data.users.insert(&event.user);
            let item = data.items.insert(&event.item);
            if item as usize == data.catalogue.len() {
                data.catalogue.push(Item {
                    id: event.item.clone(),
                    available: true,
                    ..Default::default()
                });
            }
            let w = weights.weight(&event.kind);
            let entry = pairs.entry((user, item)).or_insert(Interaction {
                user,
                item,
                weight: 0.0,
                timestamp: event.timestamp,
            });
            entry.weight += w;
            entry.timestamp = entry.timestamp.max(event.timestamp);
        }
        let mut interactions: Vec<Interaction> = pairs.into_values().collect();
        interactions.sort_by_key(|i| (i.user, i.timestamp, i.item));
        data.interactions = interactions;
        data
    }

    pub fn n_users(&self) -> usize {
        self.users.len()
    }

    pub fn n_items(&self) -> usize {
        self.items.len()
    }

    /// The users × items matrix of the given interactions (weights summed).
    pub fn matrix(&self, interactions: &[Interaction]) -> Csr {
        let triplets: Vec<(u32, u32, f32)> = interactions
            .iter()
            .map(|i| (i.user, i.item, i.weight))
            .collect();
        Csr::from_triplets(self.n_users(), self.n_items(), &triplets)
    }
}
