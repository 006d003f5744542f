//! Model pulls started from the console: each runs as a task of this process, downloading
//! into the HF cache that `hearth models` lists, and keeps its progress where the console's
//! live view reads it. A pull belongs to the replica that runs it (the files land in its
//! cache); the list is this process's, newest first.

use std::sync::{Arc, Mutex};

use hearth_infer::hub::{self, HubError, HubOptions, PullProgress, PullSpec};
use hearth_types::ErrorCode;
use serde::Serialize;

use crate::Platform;

/// Pulls that may download at once; more are refused with 429 until one ends.
pub const MAX_RUNNING_PULLS: usize = 2;
/// Finished pulls kept in the list (the running ones are always kept).
const KEEP_FINISHED: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullState {
    Running,
    Done,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PullFile {
    pub file: String,
    pub bytes_done: u64,
    /// `None` when the Hub did not say.
    pub bytes_total: Option<u64>,
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PullFailure {
    pub code: &'static str,
    pub message: String,
}

/// One pull, as the console shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PullStatus {
    pub id: String,
    /// `ORG/REPO[:FILE_OR_QUANT]`.
    pub model: String,
    pub revision: String,
    pub state: PullState,
    pub started_at: f64,
    pub finished_at: Option<f64>,
    pub bytes_done: u64,
    /// Every file's size added up; `None` until the files are resolved, or when the Hub did
    /// not give a size.
    pub bytes_total: Option<u64>,
    pub files: Vec<PullFile>,
    pub error: Option<PullFailure>,
    /// The name `hearth models` lists the pulled model under.
    pub name: Option<String>,
    pub commit: Option<String>,
    pub path: Option<String>,
}

/// Why a pull was not started.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{message}")]
    Invalid {
        param: &'static str,
        message: String,
    },
    #[error("{0} is already being pulled (pull {1}); wait for it or cancel it")]
    InProgress(String, String),
    #[error("{MAX_RUNNING_PULLS} pulls are running; start this one when one of them ends")]
    TooMany,
    #[error("no pull {0} in this process")]
    NotFound(String),
}

impl PullError {
    pub fn code(&self) -> ErrorCode {
        match self {
            PullError::Invalid { .. } => ErrorCode::InvalidRequest,
            PullError::InProgress(..) => ErrorCode::PullInProgress,
            PullError::TooMany => ErrorCode::TooManyPulls,
            PullError::NotFound(_) => ErrorCode::PullNotFound,
        }
    }

    pub fn param(&self) -> Option<&'static str> {
        match self {
            PullError::Invalid { param, .. } => Some(param),
            _ => None,
        }
    }
}

impl PullStatus {
    /// The pull's totals from its files' (the files' figures are the ones progress moves).
    fn recount(&mut self) {
        self.bytes_done = self.files.iter().map(|f| f.bytes_done).sum();
        if !self.files.is_empty() {
            self.bytes_total = self.files.iter().map(|f| f.bytes_total).sum();
        }
    }
}

struct Job {
    status: PullStatus,
    task: Option<tokio::task::AbortHandle>,
}

#[derive(Default)]
struct State {
    jobs: Vec<Job>,
    next_id: u64,
    /// Bumped on every change, so that a live view sends only what changed.
    version: u64,
}

/// This process's pulls.
#[derive(Clone)]
pub struct Pulls {
    hub: HubOptions,
    state: Arc<Mutex<State>>,
}

impl Pulls {
    pub(crate) fn new(hub: HubOptions) -> Self {
        Pulls {
            hub,
            state: Arc::default(),
        }
    }

    /// Where pulls come from and go to.
    pub fn hub(&self) -> &HubOptions {
        &self.hub
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every pull, newest first, and the change counter they were read at.
    pub fn list(&self) -> (u64, Vec<PullStatus>) {
        let state = self.lock();
        let pulls = state.jobs.iter().rev().map(|j| j.status.clone()).collect();
        (state.version, pulls)
    }

    /// The change counter: it moves whenever any pull does.
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut PullStatus)) {
        let mut state = self.lock();
        if let Some(job) = state.jobs.iter_mut().find(|j| j.status.id == id) {
            // A cancelled pull's task may still report a last chunk: it stays cancelled.
            if job.status.state == PullState::Running {
                change(&mut job.status);
                job.status.recount();
                state.version += 1;
            }
        }
    }

    /// Stops a running pull; what it downloaded stays in the cache's `.incomplete` file, so
    /// pulling it again resumes.
    pub fn cancel(&self, id: &str) -> Result<PullStatus, PullError> {
        let mut state = self.lock();
        let job = state
            .jobs
            .iter_mut()
            .find(|j| j.status.id == id)
            .ok_or_else(|| PullError::NotFound(id.to_owned()))?;
        if job.status.state == PullState::Running {
            if let Some(task) = job.task.take() {
                task.abort();
            }
            job.status.state = PullState::Cancelled;
            job.status.finished_at = Some(hearth_types::clock::unix_now_f64());
        }
        let status = job.status.clone();
        state.version += 1;
        Ok(status)
    }
}

/// Feeds one pull's progress into its status.
struct Sink {
    pulls: Pulls,
    id: String,
    /// The file downloading now.
    current: Option<String>,
    /// Bytes not yet reported: progress is published at most every 256 KiB per file.
    pending: u64,
}

const REPORT_EVERY: u64 = 256 * 1024;

impl Sink {
    fn publish(&mut self) {
        let bytes = std::mem::take(&mut self.pending);
        if bytes == 0 {
            return;
        }
        let current = self.current.as_deref();
        self.pulls.update(&self.id, |s| {
            if let Some(file) = s
                .files
                .iter_mut()
                .find(|f| Some(f.file.as_str()) == current)
            {
                file.bytes_done += bytes;
            }
        });
    }
}

impl PullProgress for Sink {
    fn planned(&mut self, files: &[(&str, Option<u64>)]) {
        self.pulls.update(&self.id, |s| {
            s.files = files
                .iter()
                .map(|(file, size)| PullFile {
                    file: (*file).to_owned(),
                    bytes_done: 0,
                    bytes_total: *size,
                    done: false,
                })
                .collect();
        });
    }

    fn file_started(&mut self, file: &str, total_bytes: u64, resumed_from: u64) {
        self.publish();
        self.pulls.update(&self.id, |s| {
            // Files go one at a time, in the planned order: mark this one as the current one.
            match s.files.iter_mut().find(|f| f.file == file) {
                Some(f) => {
                    f.bytes_done = resumed_from;
                    if total_bytes > 0 {
                        f.bytes_total = Some(total_bytes);
                    }
                }
                None => s.files.push(PullFile {
                    file: file.to_owned(),
                    bytes_done: resumed_from,
                    bytes_total: (total_bytes > 0).then_some(total_bytes),
                    done: false,
                }),
            }
        });
        self.current = Some(file.to_owned());
    }

    fn advanced(&mut self, bytes: u64) {
        self.pending += bytes;
        if self.pending >= REPORT_EVERY {
            self.publish();
        }
    }

    fn file_finished(&mut self, file: &str) {
        self.publish();
        self.pulls.update(&self.id, |s| {
            if let Some(f) = s.files.iter_mut().find(|f| f.file == file) {
                f.done = true;
                if let Some(total) = f.bytes_total {
                    f.bytes_done = total;
                }
            }
        });
    }
}

/// An endpoint URL's scheme, credentials (`user:password`) and host (with its port); the
/// first two empty when it has none.
fn endpoint_parts(endpoint: &str) -> (&str, &str, &str) {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("", endpoint));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (credentials, host) = authority.rsplit_once('@').unwrap_or(("", authority));
    (scheme, credentials, host)
}

/// The Hub's endpoint as a page may show it: scheme, host and port, never the credentials a
/// mirror's URL may carry.
pub fn shown_endpoint(endpoint: &str) -> String {
    match endpoint_parts(endpoint) {
        ("", _, host) => host.to_owned(),
        (scheme, _, host) => format!("{scheme}://{host}"),
    }
}

/// `text` (an error naming Hub URLs) without the endpoint's credentials.
fn without_credentials(text: &str, endpoint: &str) -> String {
    match endpoint_parts(endpoint) {
        (_, "", _) => text.to_owned(),
        (_, credentials, _) => text.replace(&format!("{credentials}@"), ""),
    }
}

impl Platform {
    /// This process's model pulls.
    pub fn pulls(&self) -> &Pulls {
        &self.inner.pulls
    }

    /// Starts pulling `model` (`ORG/REPO[:FILE_OR_QUANT]`) at `revision` (`main` when
    /// `None`) in the background. Must be called inside a tokio runtime.
    pub fn start_pull(&self, model: &str, revision: Option<&str>) -> Result<PullStatus, PullError> {
        let invalid = |param: &'static str, e: HubError| PullError::Invalid {
            param,
            message: e.to_string(),
        };
        if model.len() > 1024 {
            return Err(PullError::Invalid {
                param: "model",
                message: "a model is ORG/REPO[:FILE_OR_QUANT], at most 1024 bytes".into(),
            });
        }
        let mut spec: PullSpec = model.parse().map_err(|e| invalid("model", e))?;
        if let Some(revision) = revision.map(str::trim).filter(|r| !r.is_empty()) {
            spec = spec
                .with_revision(revision)
                .map_err(|e| invalid("revision", e))?;
        }
        let pulls = self.pulls().clone();
        let mut state = pulls.lock();
        let running: Vec<&Job> = state
            .jobs
            .iter()
            .filter(|j| j.status.state == PullState::Running)
            .collect();
        let shown = spec.to_string();
        if let Some(same) = running
            .iter()
            .find(|j| j.status.model == shown && j.status.revision == spec.revision)
        {
            return Err(PullError::InProgress(shown, same.status.id.clone()));
        }
        if running.len() >= MAX_RUNNING_PULLS {
            return Err(PullError::TooMany);
        }
        state.next_id += 1;
        let id = format!("p{}", state.next_id);
        let status = PullStatus {
            id: id.clone(),
            model: shown,
            revision: spec.revision.clone(),
            state: PullState::Running,
            started_at: hearth_types::clock::unix_now_f64(),
            finished_at: None,
            bytes_done: 0,
            bytes_total: None,
            files: Vec::new(),
            error: None,
            name: None,
            commit: None,
            path: None,
        };
        let platform = self.clone();
        let task_id = id.clone();
        let task = tokio::spawn(async move { platform.run_pull(&task_id, spec).await });
        state.jobs.push(Job {
            status: status.clone(),
            task: Some(task.abort_handle()),
        });
        // Keep the newest finished pulls; drop the oldest beyond that.
        let finished = |j: &Job| j.status.state != PullState::Running;
        let mut excess = state
            .jobs
            .iter()
            .filter(|j| finished(j))
            .count()
            .saturating_sub(KEEP_FINISHED);
        state.jobs.retain(|j| {
            let drop = excess > 0 && finished(j);
            excess -= usize::from(drop);
            !drop
        });
        state.version += 1;
        tracing::info!(pull = %id, model = %status.model, revision = %status.revision, "pull started");
        Ok(status)
    }

    async fn run_pull(&self, id: &str, spec: PullSpec) {
        let pulls = self.pulls().clone();
        let mut sink = Sink {
            pulls: pulls.clone(),
            id: id.to_owned(),
            current: None,
            pending: 0,
        };
        let result = hub::pull(pulls.hub(), &spec, &mut sink).await;
        sink.publish();
        let outcome = match result {
            Ok(pulled) => {
                // The name it is served under: the registry lists the cache's models.
                let platform = self.clone();
                let primary = pulled.primary.clone();
                let name = tokio::task::spawn_blocking(move || {
                    platform
                        .gateway()
                        .models()
                        .ok()?
                        .into_iter()
                        .find(|m| m.path == primary)
                        .map(|m| m.name)
                })
                .await
                .ok()
                .flatten();
                Ok((pulled, name))
            }
            Err(e) => Err(e),
        };
        match &outcome {
            Ok((pulled, name)) => {
                tracing::info!(pull = %id, commit = %pulled.commit, name = ?name, "pull done")
            }
            Err(e) => {
                let error = without_credentials(&e.to_string(), &pulls.hub().endpoint);
                tracing::warn!(pull = %id, %error, "pull failed")
            }
        }
        pulls.update(id, |s| {
            s.finished_at = Some(hearth_types::clock::unix_now_f64());
            match outcome {
                Ok((pulled, name)) => {
                    s.state = PullState::Done;
                    s.commit = Some(pulled.commit);
                    s.path = Some(pulled.primary.display().to_string());
                    s.name = name;
                    for f in &mut s.files {
                        f.done = true;
                    }
                }
                Err(e) => {
                    s.state = PullState::Failed;
                    s.error = Some(PullFailure {
                        code: e.code().as_str(),
                        message: without_credentials(&e.to_string(), &pulls.hub().endpoint),
                    });
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirrors_credentials_are_never_shown() {
        let endpoint = "https://user:p%40ss@mirror.internal:8443/hf";
        assert_eq!(shown_endpoint(endpoint), "https://mirror.internal:8443");
        assert_eq!(
            shown_endpoint("https://huggingface.co"),
            "https://huggingface.co"
        );
        let error = "cannot reach https://user:p%40ss@mirror.internal:8443/hf/api/models/a/b";
        let shown = without_credentials(error, endpoint);
        assert_eq!(
            shown,
            "cannot reach https://mirror.internal:8443/hf/api/models/a/b"
        );
        assert_eq!(
            without_credentials("plain", "https://huggingface.co"),
            "plain"
        );
    }
}
