//! The read-only views the console shows beside the inbox and the spend: models and routes
//! with their recent health, the published recommendation models with their evaluation, a
//! shopper's history, and the knowledge base with the passages the agent would cite.

use std::collections::BTreeMap;

use hearth_gateway::{GatewayError, RouteState};
use hearth_infer::registry::ModelInfo;
use hearth_recs::bundle::TrainReport;
use hearth_recs::RecsError;
use hearth_support::kb::Hit;
use hearth_support::SupportError;
use serde::Serialize;

use crate::Platform;

/// How many of the newest requests the routes' recent health is measured on.
pub const RECENT_REQUESTS: usize = 5000;

/// A local model and whether its engine runs now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRow {
    #[serde(flatten)]
    pub info: ModelInfo,
    pub loaded: bool,
}

/// A deployment's recent requests (the newest [`RECENT_REQUESTS`] of the ledger, at most an
/// hour old).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecentStats {
    pub requests: u64,
    pub errors: u64,
    /// `errors / requests`; `None` without requests.
    pub error_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub mean_ttft_ms: Option<f64>,
    /// How the requests' durations spread: one bucket per bound of [`LATENCY_BUCKETS_MS`],
    /// then one for the slower ones (`le_ms: None`). Counts per bucket, not cumulative.
    pub latency_histogram: Vec<Bucket>,
}

impl Default for RecentStats {
    /// No requests: every bucket empty.
    fn default() -> Self {
        stats(&[])
    }
}

/// The upper bounds (ms) of the latency histogram's buckets.
pub const LATENCY_BUCKETS_MS: [f64; 10] = [
    25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// Requests that took at most this long (and longer than the bucket before); `None`:
    /// longer than the last bound.
    pub le_ms: Option<f64>,
    pub count: u64,
}

/// The durations' histogram over [`LATENCY_BUCKETS_MS`].
pub fn latency_histogram(durations_ms: &[f64]) -> Vec<Bucket> {
    let mut buckets: Vec<Bucket> = LATENCY_BUCKETS_MS
        .iter()
        .map(|&le| Bucket {
            le_ms: Some(le),
            count: 0,
        })
        .chain(std::iter::once(Bucket {
            le_ms: None,
            count: 0,
        }))
        .collect();
    for &d in durations_ms {
        let n = LATENCY_BUCKETS_MS
            .iter()
            .position(|&le| d <= le)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        buckets[n].count += 1;
    }
    buckets
}

/// A deployment as the console shows it: health here, recent requests everywhere.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentRow {
    #[serde(flatten)]
    pub state: hearth_gateway::DeploymentState,
    pub recent: RecentStats,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteRow {
    pub alias: String,
    pub privacy: &'static str,
    pub strategy: &'static str,
    pub deployments: Vec<DeploymentRow>,
}

/// `GET /console/api/models`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelsView {
    pub models: Vec<ModelRow>,
    pub routes: Vec<RouteRow>,
    /// Deployments that served recent requests without a declared route (local models asked
    /// for by name), with their recent requests.
    pub implicit: Vec<(String, RecentStats)>,
    /// What "recent" covers.
    pub recent_window: String,
}

/// A published recommendation model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecsVersion {
    pub version: u64,
    pub current: bool,
    /// What its training chose and every candidate's NDCG@K on the validation split; `None`
    /// when its report cannot be read.
    pub report: Option<serde_json::Value>,
}

/// A knowledge-base file and its passages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KbDocument {
    pub source: String,
    pub passages: usize,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn stats(rows: &[(f64, bool, Option<f64>)]) -> RecentStats {
    let requests = rows.len() as u64;
    let errors = rows.iter().filter(|(_, ok, _)| !ok).count() as u64;
    let mut durations: Vec<f64> = rows.iter().map(|(d, _, _)| *d).collect();
    durations.sort_by(f64::total_cmp);
    let ttfts: Vec<f64> = rows.iter().filter_map(|(_, _, t)| *t).collect();
    RecentStats {
        requests,
        errors,
        error_rate: (requests > 0).then(|| errors as f64 / requests as f64),
        p50_ms: percentile(&durations, 0.5),
        p95_ms: percentile(&durations, 0.95),
        mean_ttft_ms: (!ttfts.is_empty()).then(|| ttfts.iter().sum::<f64>() / ttfts.len() as f64),
        latency_histogram: latency_histogram(&durations),
    }
}

impl Platform {
    /// Local models (loaded or not), declared routes with their deployments' health, and
    /// every deployment's recent requests from the ledger. Blocks.
    pub fn models_view(&self) -> Result<ModelsView, GatewayError> {
        let gateway = self.gateway();
        let loaded: std::collections::HashSet<String> = gateway
            .loaded()
            .iter()
            .map(|m| m.info().name.clone())
            .collect();
        let models = gateway
            .models()?
            .into_iter()
            .map(|info| ModelRow {
                loaded: loaded.contains(&info.name),
                info,
            })
            .collect();
        let mut recent: BTreeMap<String, Vec<(f64, bool, Option<f64>)>> = BTreeMap::new();
        if let Some(ledger) = gateway.ledger() {
            ledger.flush();
            let hour_ago = hearth_types::clock::unix_now_f64() - 3600.0;
            for r in
                hearth_gateway::ledger::request_log(ledger.database(), RECENT_REQUESTS, None, None)?
            {
                if r.record.at >= hour_ago {
                    recent
                        .entry(r.record.deployment.clone())
                        .or_default()
                        .push((
                            r.record.duration_ms,
                            r.record.status == "ok",
                            r.record.ttft_ms,
                        ));
                }
            }
        }
        let routes: Vec<RouteRow> = gateway
            .route_states()
            .into_iter()
            .map(
                |RouteState {
                     alias,
                     privacy,
                     strategy,
                     deployments,
                 }| RouteRow {
                    alias,
                    privacy,
                    strategy,
                    deployments: deployments
                        .into_iter()
                        .map(|state| DeploymentRow {
                            recent: recent
                                .get(&state.deployment)
                                .map(|rows| stats(rows))
                                .unwrap_or_default(),
                            state,
                        })
                        .collect(),
                },
            )
            .collect();
        let declared: std::collections::HashSet<&str> = routes
            .iter()
            .flat_map(|r| r.deployments.iter().map(|d| d.state.deployment.as_str()))
            .collect();
        let implicit = recent
            .iter()
            .filter(|(d, _)| !declared.contains(d.as_str()))
            .map(|(d, rows)| (d.clone(), stats(rows)))
            .collect();
        Ok(ModelsView {
            models,
            routes,
            implicit,
            recent_window: format!("the newest {RECENT_REQUESTS} requests of the past hour"),
        })
    }

    /// Every published recommendation model, newest first, with its training report.
    pub fn recs_versions(&self) -> Result<Vec<RecsVersion>, RecsError> {
        let artifacts = self.recs_artifacts();
        let current = artifacts.current()?.map(|c| c.version);
        let mut versions: Vec<RecsVersion> = artifacts
            .list()?
            .into_iter()
            .map(|v| {
                let report = std::fs::read(v.dir.join("meta.json"))
                    .ok()
                    .and_then(|bytes| serde_json::from_slice::<TrainReport>(&bytes).ok())
                    .and_then(|r| serde_json::to_value(r).ok());
                RecsVersion {
                    version: v.version,
                    current: Some(v.version) == current,
                    report,
                }
            })
            .collect();
        versions.reverse();
        Ok(versions)
    }

    /// The knowledge base's files and how many passages each has. Blocks.
    pub fn kb_documents(&self) -> Result<Vec<KbDocument>, SupportError> {
        Ok(self
            .knowledge_base()?
            .files()?
            .into_iter()
            .map(|(source, passages)| KbDocument { source, passages })
            .collect())
    }

    /// The passages the agent would cite for `query`: the same search, the same number of
    /// hits, the same rerank stage.
    pub async fn kb_search(&self, query: &str) -> Result<Vec<Hit>, SupportError> {
        let query = query.trim();
        if query.is_empty() || query.len() > 4096 {
            return Err(SupportError::invalid(
                "q",
                "a search is 1 to 4096 bytes of text",
            ));
        }
        let index = self.kb_index()?;
        index
            .search(self.gateway(), query, hearth_support::agent::SEARCH_HITS)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latency_histogram_counts_each_duration_once_in_its_bucket() {
        let h = latency_histogram(&[1.0, 25.0, 25.5, 99.0, 30_000.0, 30_000.1, 1e9]);
        assert_eq!(h.len(), LATENCY_BUCKETS_MS.len() + 1);
        let count = |le: Option<f64>| h.iter().find(|b| b.le_ms == le).unwrap().count;
        assert_eq!(count(Some(25.0)), 2, "a bound belongs to its own bucket");
        assert_eq!(count(Some(50.0)), 1);
        assert_eq!(count(Some(100.0)), 1);
        assert_eq!(count(Some(30_000.0)), 1);
        assert_eq!(count(None), 2, "slower than the last bound");
        assert_eq!(h.iter().map(|b| b.count).sum::<u64>(), 7);
        let stats = RecentStats::default();
        assert_eq!(stats.requests, 0);
        assert!(stats.latency_histogram.iter().all(|b| b.count == 0));
        assert_eq!(stats.latency_histogram.len(), h.len());
    }
}
