//! Models on item text embeddings (from the local embedding model): the zero-shot
//! "off-the-shelf" baseline and a content neighbour model for items nobody has touched yet.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{axpy, dot, sum_neighbours, History, Scorer};

/// One L2-normalised vector per item, row-major.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemVectors {
    pub dims: usize,
    pub data: Vec<f32>,
}

impl ItemVectors {
    /// Normalises each vector to unit length (zero vectors stay zero).
    pub fn new(vectors: Vec<Vec<f32>>) -> Self {
        let dims = vectors.first().map_or(0, |v| v.len());
        let mut data = Vec::with_capacity(vectors.len() * dims);
        for v in vectors {
            let norm = dot(&v, &v).sqrt();
            data.extend(v.iter().map(|x| if norm > 0.0 { x / norm } else { 0.0 }));
        }
        ItemVectors { dims, data }
    }

    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dims).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, item: u32) -> &[f32] {
        &self.data[item as usize * self.dims..(item as usize + 1) * self.dims]
    }

    /// A cosine nearest-neighbour index over these vectors (rows are item indexes).
    pub fn index(&self) -> hearth_index::VectorIndex {
        let options = hearth_index::VectorOptions::new(hearth_index::Metric::Cosine);
        hearth_index::VectorIndex::build(self.dims.max(1), self.data.clone(), &options, &|_| {})
            .expect("rows of `dims` numbers")
    }
}

/// The off-the-shelf baseline: the user's profile is the (weighted) mean of their items'
/// vectors and every item is scored by its cosine to it.
#[derive(Serialize, Deserialize)]
pub struct ProfileCosine {
    vectors: ItemVectors,
}

impl ProfileCosine {
    pub fn new(vectors: ItemVectors) -> Self {
        ProfileCosine { vectors }
    }
}

impl Scorer for ProfileCosine {
    fn score(&self, _user: Option<u32>, history: History<'_>, out: &mut [f32]) {
        let mut profile = vec![0f32; self.vectors.dims];
        for (&j, &w) in history.items.iter().zip(history.weights) {
            axpy(w, self.vectors.get(j), &mut profile);
        }
        // Ranking by cosine needs no division by the profile's norm.
        for (i, o) in out.iter_mut().enumerate() {
            *o = dot(&profile, self.vectors.get(i as u32));
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentKnnParams {
    pub neighbours: usize,
}

impl Default for ContentKnnParams {
    fn default() -> Self {
        ContentKnnParams { neighbours: 50 }
    }
}

/// Item neighbours by text similarity, scored as item-kNN scores collaborative neighbours.
#[derive(Serialize, Deserialize)]
pub struct ContentKnn {
    neighbours: Vec<Vec<(u32, f32)>>,
}

impl ContentKnn {
    /// Each item's nearest items by cosine, through hearth-index (exact for small
    /// catalogues, HNSW for large ones).
    pub fn train(vectors: &ItemVectors, params: &ContentKnnParams) -> Self {
        let index = vectors.index();
        let neighbours = (0..vectors.len())
            .into_par_iter()
            .map(|i| {
                let found = index
                    .search(
                        vectors.get(i as u32),
                        params.neighbours + 1,
                        Some(&|j| j != i),
                    )
                    .expect("the index was built from these vectors");
                found.into_iter().map(|(j, s)| (j as u32, s)).collect()
            })
            .collect();
        ContentKnn { neighbours }
    }

    pub fn similar(&self, item: u32) -> &[(u32, f32)] {
        &self.neighbours[item as usize]
    }
}

impl Scorer for ContentKnn {
    fn score(&self, _user: Option<u32>, history: History<'_>, out: &mut [f32]) {
        sum_neighbours(&self.neighbours, history, out);
    }
}

/// Embeds every item's text ([`crate::Item::text`]) with `model` through the gateway, in
/// batches; `progress` hears how many items are done.
pub async fn embed_items(
    gateway: &hearth_gateway::Gateway,
    model: &str,
    items: &[crate::Item],
    progress: &(dyn Fn(usize) + Sync),
) -> Result<ItemVectors, crate::RecsError> {
    const BATCH: usize = 128;
    let mut vectors = Vec::with_capacity(items.len());
    for chunk in items.chunks(BATCH) {
        let texts = chunk
            .iter()
            .map(|item| {
                let text = item.text();
                if text.is_empty() {
                    item.id.0.clone()
                } else {
                    text
                }
            })
            .collect();
        vectors.extend(gateway.embed_texts(model, texts).await?);
        progress(vectors.len());
    }
    Ok(ItemVectors::new(vectors))
}
