//! Nearest-neighbour search over dense vectors: an exact scan for small collections, an HNSW
//! graph (USearch) for large ones, with the same interface and exact scores either way.

use std::sync::atomic::{AtomicUsize, Ordering};

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::IndexError;

/// How vectors are compared; scores are similarities (higher is closer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Cosine similarity: vectors are normalised when indexed and queries when searched.
    Cosine,
    /// Raw inner product (e.g. matrix-factorisation scores), vectors kept as they are.
    InnerProduct,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HnswOptions {
    /// Links per node (hnswlib's M).
    pub m: usize,
    pub ef_construction: usize,
    /// Candidates examined per query (k when k is larger).
    pub ef_search: usize,
}

impl Default for HnswOptions {
    fn default() -> Self {
        HnswOptions {
            m: 16,
            ef_construction: 200,
            ef_search: 96,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VectorOptions {
    pub metric: Metric,
    /// Collections smaller than this are scanned exactly (faster than a graph below ~20k rows
    /// of a few hundred dimensions, and always exact).
    pub exact_below: usize,
    pub hnsw: HnswOptions,
}

impl VectorOptions {
    pub fn new(metric: Metric) -> Self {
        VectorOptions {
            metric,
            exact_below: 20_000,
            hnsw: HnswOptions::default(),
        }
    }
}

/// Eight independent sums so the compiler can vectorise (a single running sum must keep
/// floating-point order and stays scalar).
fn lanes(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += f(x[l], y[l]);
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(&x, &y)| f(x, y)).sum();
    acc.iter().sum::<f32>() + tail
}

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    lanes(a, b, |x, y| x * y)
}

fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = dot(v, v).sqrt();
    v.iter()
        .map(|x| if norm > 0.0 { x / norm } else { 0.0 })
        .collect()
}

/// The graph searches by Euclidean distance. Inner-product search is reduced to it (Bachrach
/// et al., 2014): each row gets one more coordinate, `sqrt(M² − |x|²)` with M the largest
/// norm, so all rows have norm M and the nearest row to `[q, 0]` has the largest `q·x`. For
/// cosine (unit rows) Euclidean order is cosine order already.
struct Graph {
    hnsw: Index,
    augmented: bool,
}

/// Concurrent searches the graph allows (USearch keeps per-thread scratch space); beyond this
/// a search falls back to the exact scan rather than fail.
const SEARCH_SLOTS: usize = 256;

fn graph_error(e: cxx::Exception) -> IndexError {
    IndexError::Graph(e.what().to_owned())
}

/// A searchable collection of vectors, addressed by row position.
pub struct VectorIndex {
    dim: usize,
    metric: Metric,
    data: Vec<f32>,
    graph: Option<Graph>,
    ef_search: usize,
}

/// Top `k` of (id, score) by score, best first.
fn best(mut scored: Vec<(usize, f32)>, k: usize) -> Vec<(usize, f32)> {
    let by_score = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if scored.len() > k && k > 0 {
        scored.select_nth_unstable_by(k - 1, by_score);
    }
    scored.truncate(k);
    scored.sort_unstable_by(by_score);
    scored
}

impl VectorIndex {
    /// Indexes `data` (row-major, `dim` numbers per row). `progress` hears how many rows are
    /// in the graph while a large collection is being linked.
    pub fn build(
        dim: usize,
        data: Vec<f32>,
        options: &VectorOptions,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<VectorIndex, IndexError> {
        if dim == 0 || data.len() % dim != 0 {
            return Err(IndexError::Shape {
                dim,
                got: data.len(),
            });
        }
        let data = match options.metric {
            Metric::Cosine => data.chunks_exact(dim).flat_map(normalised).collect(),
            Metric::InnerProduct => data,
        };
        let n = data.len() / dim;
        let graph = if n > 0 && n >= options.exact_below {
            Some(Self::link(dim, &data, options, progress)?)
        } else {
            None
        };
        Ok(VectorIndex {
            dim,
            metric: options.metric,
            data,
            graph,
            ef_search: options.hnsw.ef_search,
        })
    }

    fn link(
        dim: usize,
        data: &[f32],
        options: &VectorOptions,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Graph, IndexError> {
        let n = data.len() / dim;
        let augmented = options.metric == Metric::InnerProduct;
        let max_sq = data
            .chunks_exact(dim)
            .map(|r| dot(r, r))
            .fold(0f32, f32::max);
        let hnsw = Index::new(&IndexOptions {
            dimensions: dim + augmented as usize,
            metric: MetricKind::L2sq,
            quantization: ScalarKind::F32,
            connectivity: options.hnsw.m,
            expansion_add: options.hnsw.ef_construction,
            expansion_search: options.hnsw.ef_search,
            multi: false,
        })
        .map_err(graph_error)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        hnsw.reserve_capacity_and_threads(n, threads.max(SEARCH_SLOTS))
            .map_err(graph_error)?;
        let next = AtomicUsize::new(0);
        let failure = std::sync::Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let mut row = Vec::with_capacity(dim + 1);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let r = &data[i * dim..(i + 1) * dim];
                        let added = if augmented {
                            row.clear();
                            row.extend_from_slice(r);
                            row.push((max_sq - dot(r, r)).max(0.0).sqrt());
                            hnsw.add(i as u64, &row)
                        } else {
                            hnsw.add(i as u64, r)
                        };
                        if let Err(e) = added {
                            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            next.store(n, Ordering::Relaxed);
                            break;
                        }
                        if (i + 1) % 10_000 == 0 || i + 1 == n {
                            progress(i + 1);
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(graph_error(e));
        }
        Ok(Graph { hnsw, augmented })
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Candidates examined per graph query (recall against speed).
    pub fn set_ef_search(&mut self, ef: usize) {
        self.ef_search = ef.max(1);
        if let Some(graph) = &self.graph {
            graph.hnsw.change_expansion_search(self.ef_search);
        }
    }

    /// Whether searches go through the HNSW graph (approximate) rather than a scan.
    pub fn is_approximate(&self) -> bool {
        self.graph.is_some()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    fn prepare(&self, query: &[f32]) -> Result<Vec<f32>, IndexError> {
        if query.len() != self.dim {
            return Err(IndexError::QueryDimension {
                dim: self.dim,
                got: query.len(),
            });
        }
        Ok(match self.metric {
            Metric::Cosine => normalised(query),
            Metric::InnerProduct => query.to_vec(),
        })
    }

    /// The `k` rows most similar to `query` that `keep` accepts, best first, with their
    /// exact similarity. Through the graph when there is one; when a narrow filter leaves
    /// the graph search short of `k`, the answer falls back to an exact filtered scan.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        keep: Option<&(dyn Fn(usize) -> bool + Sync)>,
    ) -> Result<Vec<(usize, f32)>, IndexError> {
        let q = self.prepare(query)?;
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let Some(graph) = &self.graph else {
            return Ok(self.scan(&q, k, keep));
        };
        let mut gq = q.clone();
        if graph.augmented {
            gq.push(0.0);
        }
        let found = match keep {
            Some(f) => graph.hnsw.filtered_search(&gq, k, |key| f(key as usize)),
            None => graph.hnsw.search(&gq, k),
        };
        let Ok(found) = found else {
            // Out of search slots (or a graph error): the scan is always right.
            return Ok(self.scan(&q, k, keep));
        };
        if found.keys.len() < k.min(self.len()) && keep.is_some() {
            return Ok(self.scan(&q, k, keep));
        }
        let scored = found
            .keys
            .iter()
            .map(|&key| (key as usize, dot(&q, self.row(key as usize))))
            .collect();
        Ok(best(scored, k))
    }

    /// Exact search, whatever the size (for recall measurements and narrow filters).
    pub fn exact(
        &self,
        query: &[f32],
        k: usize,
        keep: Option<&(dyn Fn(usize) -> bool + Sync)>,
    ) -> Result<Vec<(usize, f32)>, IndexError> {
        let q = self.prepare(query)?;
        Ok(self.scan(&q, k, keep))
    }

    fn scan(
        &self,
        q: &[f32],
        k: usize,
        keep: Option<&(dyn Fn(usize) -> bool + Sync)>,
    ) -> Vec<(usize, f32)> {
        let scored = self
            .data
            .chunks_exact(self.dim)
            .enumerate()
            .filter(|(i, _)| keep.is_none_or(|f| f(*i)))
            .map(|(i, row)| (i, dot(q, row)))
            .collect();
        best(scored, k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random rows (xorshift), values in [-1, 1).
    fn rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.max(1);
        (0..n * dim)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn recall(index: &VectorIndex, queries: &[f32], k: usize) -> f64 {
        let dim = index.dim();
        let mut hits = 0;
        for q in queries.chunks_exact(dim) {
            let exact: Vec<usize> = index
                .exact(q, k, None)
                .unwrap()
                .iter()
                .map(|r| r.0)
                .collect();
            let found = index.search(q, k, None).unwrap();
            hits += found.iter().filter(|r| exact.contains(&r.0)).count();
        }
        hits as f64 / (queries.len() / dim * k) as f64
    }

    #[test]
    fn small_collections_are_scanned_exactly() {
        let data = vec![1.0, 0.0, 0.0, 1.0, 0.7, 0.7];
        let index =
            VectorIndex::build(2, data, &VectorOptions::new(Metric::Cosine), &|_| {}).unwrap();
        assert!(!index.is_approximate());
        let found = index.search(&[2.0, 0.1], 2, None).unwrap();
        assert_eq!(found[0].0, 0);
        assert_eq!(found[1].0, 2);
        // Scores are cosines: the query is normalised too.
        let cos = 2.0 / (4.01f32).sqrt();
        assert!((found[0].1 - cos).abs() < 1e-5, "{found:?}");
        let kept = index.search(&[2.0, 0.1], 2, Some(&|i| i != 0)).unwrap();
        assert_eq!(kept.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 1]);
    }

    #[test]
    fn the_graph_finds_nearly_all_true_neighbours() {
        let dim = 16;
        let mut options = VectorOptions::new(Metric::Cosine);
        options.exact_below = 1000;
        let index = VectorIndex::build(dim, rows(5000, dim, 7), &options, &|_| {}).unwrap();
        assert!(index.is_approximate());
        let r = recall(&index, &rows(50, dim, 99), 10);
        assert!(r >= 0.95, "recall@10 {r}");
    }

    #[test]
    fn inner_product_search_through_the_graph_matches_a_scan() {
        let dim = 8;
        let mut data = rows(4000, dim, 3);
        // Norms that vary a lot: inner product is not cosine here.
        for (i, row) in data.chunks_exact_mut(dim).enumerate() {
            let scale = 0.2 + (i % 10) as f32;
            row.iter_mut().for_each(|x| *x *= scale);
        }
        let mut options = VectorOptions::new(Metric::InnerProduct);
        options.exact_below = 1000;
        let index = VectorIndex::build(dim, data, &options, &|_| {}).unwrap();
        let r = recall(&index, &rows(50, dim, 5), 10);
        assert!(r >= 0.95, "recall@10 {r}");
        let q = rows(1, dim, 11);
        let top = index.search(&q, 1, None).unwrap()[0];
        assert!((top.1 - dot(&q, index.row(top.0))).abs() < 1e-6);
    }

    #[test]
    fn a_narrow_filter_still_returns_k_rows() {
        let dim = 8;
        let mut options = VectorOptions::new(Metric::Cosine);
        options.exact_below = 100;
        let index = VectorIndex::build(dim, rows(3000, dim, 13), &options, &|_| {}).unwrap();
        // One row in a hundred passes.
        let keep = |i: usize| i % 100 == 0;
        let q = rows(1, dim, 17);
        let found = index.search(&q, 10, Some(&keep)).unwrap();
        assert_eq!(found.len(), 10);
        assert!(found.iter().all(|r| r.0 % 100 == 0));
        let exact = index.exact(&q, 10, Some(&keep)).unwrap();
        assert_eq!(found, exact);
    }

    #[test]
    fn wrong_shapes_are_refused() {
        let options = VectorOptions::new(Metric::Cosine);
        assert!(matches!(
            VectorIndex::build(3, vec![0.0; 7], &options, &|_| {}),
            Err(IndexError::Shape { dim: 3, got: 7 })
        ));
        let index = VectorIndex::build(3, vec![0.0; 6], &options, &|_| {}).unwrap();
        assert!(matches!(
            index.search(&[1.0], 1, None),
            Err(IndexError::QueryDimension { dim: 3, got: 1 })
        ));
    }
}
