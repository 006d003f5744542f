//! `hearth pull` against an in-process fake Hugging Face Hub (no network): the HF cache layout,
//! resume with Range, checksum verification, auth, errors and offline mode.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use hearth_infer::hub::{
    cached_models, hf_cache_repo_dir, pull, HubError, HubOptions, NoProgress, PullProgress,
    PullSpec, PulledModel,
};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// The fake Hub

struct FakeRepo {
    commit: String,
    files: BTreeMap<String, Vec<u8>>,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    gated_token: Option<String>,
}

#[derive(Default)]
struct Behaviour {
    /// The next GET of this file sends this many bytes, then the connection drops.
    cut_after: Option<(String, usize)>,
    /// GETs of these files serve one flipped byte (the headers still carry the true sha256).
    corrupt: HashSet<String>,
    /// Listed by the API but answered 404 by resolve.
    missing_on_resolve: HashSet<String>,
    /// Claim this size in X-Linked-Size.
    claimed_size: HashMap<String, u64>,
    /// LFS files answer with a 302 to this base URL (another server: the "CDN").
    redirect_lfs_to: Option<String>,
    /// Answer 200 with the whole body even to a Range request (a server without ranges).
    ignore_range: bool,
}

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    range: Option<String>,
    authorization: Option<String>,
}

#[derive(Default)]
struct FakeHub {
    repos: Mutex<HashMap<String, FakeRepo>>,
    behaviour: Mutex<Behaviour>,
    seen: Mutex<Vec<Seen>>,
    body_bytes_sent: AtomicU64,
}

impl FakeHub {
    fn add_repo(&self, repo: &str, commit: &str, files: &[(&str, Vec<u8>)]) {
        self.repos.lock().unwrap().insert(
            repo.to_string(),
            FakeRepo {
                commit: commit.to_string(),
                files: files
                    .iter()
                    .map(|(name, bytes)| (name.to_string(), bytes.clone()))
                    .collect(),
                gated_token: None,
            },
        );
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn gets_of(&self, file: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == Method::GET && s.path.ends_with(&format!("/{file}")))
            .collect()
    }

    fn sent(&self) -> u64 {
        self.body_bytes_sent.load(Ordering::SeqCst)
    }
}

fn is_lfs(file: &str) -> bool {
    file.ends_with(".gguf") || file.ends_with(".safetensors")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Small files carry a git-sha1-like etag on the real Hub; 40 hex chars of something unique.
fn git_etag(bytes: &[u8]) -> String {
    sha256_hex(&[b"blob ".as_slice(), bytes].concat())[..40].to_string()
}

fn respond(status: StatusCode, error_code: &str) -> Response {
    Response::builder()
        .status(status)
        .header("x-error-code", error_code)
        .body(Body::from(format!("{{\"error\":\"{error_code}\"}}")))
        .unwrap()
}

async fn handle(State(hub): State<Arc<FakeHub>>, request: Request) -> Response {
    let headers = request.headers();
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let seen = Seen {
        method: request.method().clone(),
        path: request.uri().path().to_string(),
        range: text(header::RANGE),
        authorization: text(header::AUTHORIZATION),
    };
    hub.seen.lock().unwrap().push(seen.clone());

    let segments: Vec<&str> = seen.path.trim_start_matches('/').split('/').collect();
    let (repo_id, kind, revision, file) = match segments.as_slice() {
        ["api", "models", org, name, "revision", revision] => {
            (format!("{org}/{name}"), "api", revision.to_string(), None)
        }
        [org, name, "resolve", revision, file @ ..] if !file.is_empty() => (
            format!("{org}/{name}"),
            "resolve",
            revision.to_string(),
            Some(file.join("/")),
        ),
        _ => return respond(StatusCode::NOT_FOUND, "NotFound"),
    };

    let (commit, content, gated_token, listing) = {
        let repos = hub.repos.lock().unwrap();
        let Some(repo) = repos.get(&repo_id) else {
            return respond(StatusCode::NOT_FOUND, "RepoNotFound");
        };
        let listing = serde_json::json!({
            "id": repo_id,
            "sha": repo.commit,
            "siblings": repo.files.iter().map(|(name, bytes)| {
                if is_lfs(name) {
                    serde_json::json!({"rfilename": name, "size": bytes.len(),
                        "lfs": {"sha256": sha256_hex(bytes), "size": bytes.len()}})
                } else {
                    serde_json::json!({"rfilename": name, "size": bytes.len()})
                }
            }).collect::<Vec<_>>(),
        });
        let content = file.as_ref().and_then(|f| repo.files.get(f).cloned());
        (
            repo.commit.clone(),
            content,
            repo.gated_token.clone(),
            listing,
        )
    };
    if let Some(token) = gated_token {
        if seen.authorization.as_deref() != Some(&format!("Bearer {token}")) {
            return respond(StatusCode::UNAUTHORIZED, "GatedRepo");
        }
    }
    if revision != "main" && revision != commit {
        return respond(StatusCode::NOT_FOUND, "RevisionNotFound");
    }
    if kind == "api" {
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(listing.to_string()))
            .unwrap();
    }
    let file = file.unwrap();
    let behaviour_missing = hub
        .behaviour
        .lock()
        .unwrap()
        .missing_on_resolve
        .contains(&file);
    let Some(content) = content.filter(|_| !behaviour_missing) else {
        return respond(StatusCode::NOT_FOUND, "EntryNotFound");
    };

    let lfs = is_lfs(&file);
    let total = content.len();
    let mut response = Response::builder().header("x-repo-commit", &commit);
    if lfs {
        let sha = sha256_hex(&content);
        let claimed = hub
            .behaviour
            .lock()
            .unwrap()
            .claimed_size
            .get(&file)
            .copied();
        response = response
            .header("x-linked-etag", format!("\"{sha}\""))
            .header("x-linked-size", claimed.unwrap_or(total as u64))
            .header(header::ETAG, format!("\"{sha}\""));
        let redirect = hub.behaviour.lock().unwrap().redirect_lfs_to.clone();
        if let Some(cdn) = redirect {
            return response
                .status(StatusCode::FOUND)
                .header(header::LOCATION, format!("{cdn}{}", seen.path))
                .body(Body::empty())
                .unwrap();
        }
    } else {
        response = response.header(header::ETAG, format!("W/\"{}\"", git_etag(&content)));
    }

    let ignore_range = hub.behaviour.lock().unwrap().ignore_range;
    let start = seen
        .range
        .as_deref()
        .filter(|_| !ignore_range)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let (status, body) = match start {
        Some(start) if start >= total => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{total}"))
                .body(Body::empty())
                .unwrap()
        }
        Some(start) => {
            response = response.header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{total}", total - 1),
            );
            (StatusCode::PARTIAL_CONTENT, content[start..].to_vec())
        }
        None => (StatusCode::OK, content),
    };
    response = response
        .status(status)
        .header(header::CONTENT_LENGTH, body.len());
    if seen.method == Method::HEAD {
        return response.body(Body::empty()).unwrap();
    }

    let mut body = body;
    if hub.behaviour.lock().unwrap().corrupt.contains(&file) {
        let middle = body.len() / 2;
        body[middle] ^= 0xff;
    }
    let cut = {
        let mut behaviour = hub.behaviour.lock().unwrap();
        match &behaviour.cut_after {
            Some((cut_file, _)) if *cut_file == file => behaviour.cut_after.take(),
            _ => None,
        }
    };
    match cut {
        Some((_, after)) => {
            let head = Bytes::from(body[..after.min(body.len())].to_vec());
            hub.body_bytes_sent
                .fetch_add(head.len() as u64, Ordering::SeqCst);
            // Send the head, give the client a moment to read it, then break the stream:
            // hyper drops the connection before Content-Length bytes were sent.
            let stream = futures::stream::unfold(0u8, move |step| {
                let head = head.clone();
                async move {
                    match step {
                        0 => Some((Ok::<Bytes, std::io::Error>(head), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Some((Err(std::io::Error::other("connection cut by the test")), 2))
                        }
                        _ => None,
                    }
                }
            });
            response.body(Body::from_stream(stream)).unwrap()
        }
        None => {
            hub.body_bytes_sent
                .fetch_add(body.len() as u64, Ordering::SeqCst);
            response.body(Body::from(body)).unwrap()
        }
    }
}

async fn serve(hub: Arc<FakeHub>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new().fallback(handle).with_state(hub);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

// ---------------------------------------------------------------------------------------------
// Helpers

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Deterministic bytes that differ per seed.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

struct Fixture {
    hub: Arc<FakeHub>,
    cache: tempfile::TempDir,
    opts: HubOptions,
}

async fn fixture() -> Fixture {
    let hub = Arc::new(FakeHub::default());
    let endpoint = serve(hub.clone()).await;
    let cache = tempfile::tempdir().unwrap();
    let opts = HubOptions {
        endpoint,
        cache_dir: cache.path().to_path_buf(),
        token: None,
        offline: false,
    };
    Fixture { hub, cache, opts }
}

fn spec(text: &str) -> PullSpec {
    text.parse().unwrap()
}

#[derive(Default)]
struct Recorder {
    planned: Vec<(String, Option<u64>)>,
    started: Vec<(String, u64, u64)>,
    advanced: u64,
    finished: Vec<String>,
}

impl PullProgress for Recorder {
    fn planned(&mut self, files: &[(&str, Option<u64>)]) {
        assert!(
            self.started.is_empty(),
            "files are planned before any starts"
        );
        self.planned = files.iter().map(|(f, n)| (f.to_string(), *n)).collect();
    }
    fn file_started(&mut self, file: &str, total_bytes: u64, resumed_from: u64) {
        self.started
            .push((file.to_string(), total_bytes, resumed_from));
    }
    fn advanced(&mut self, bytes: u64) {
        self.advanced += bytes;
    }
    fn file_finished(&mut self, file: &str) {
        self.finished.push(file.to_string());
    }
}

/// Every file under `dir`, relative, sorted (symlinks not followed).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(&path, base, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

fn gguf_repo(hub: &FakeHub) -> (Vec<u8>, Vec<u8>) {
    let q4 = data(300_000, 1);
    let q8 = data(20_000, 2);
    hub.add_repo(
        "acme/tiny-GGUF",
        COMMIT,
        &[
            ("README.md", b"# tiny\n".to_vec()),
            ("tiny-Q4_K_M.gguf", q4.clone()),
            ("tiny-Q8_0.gguf", q8.clone()),
        ],
    );
    (q4, q8)
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn pulls_a_gguf_by_quant_tag_into_the_hf_cache_layout() {
    let f = fixture().await;
    let (q4, _) = gguf_repo(&f.hub);
    let mut progress = Recorder::default();
    let pulled = pull(&f.opts, &spec("acme/tiny-GGUF:q4_k_m"), &mut progress)
        .await
        .unwrap();

    let repo_dir = f.cache.path().join("models--acme--tiny-GGUF");
    assert_eq!(
        hf_cache_repo_dir(f.cache.path(), "acme/tiny-GGUF"),
        repo_dir
    );
    let sha = sha256_hex(&q4);
    let snapshot = repo_dir.join("snapshots").join(COMMIT);
    assert_eq!(
        tree(&repo_dir),
        vec![
            format!("blobs/{sha}"),
            "refs/main".to_string(),
            format!("snapshots/{COMMIT}/tiny-Q4_K_M.gguf"),
        ]
    );
    assert_eq!(
        std::fs::read(repo_dir.join("blobs").join(&sha)).unwrap(),
        q4
    );
    let link = snapshot.join("tiny-Q4_K_M.gguf");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        PathBuf::from(format!("../../blobs/{sha}"))
    );
    assert_eq!(std::fs::read(&link).unwrap(), q4);
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        COMMIT
    );
    assert_eq!(
        pulled,
        PulledModel {
            repo: "acme/tiny-GGUF".into(),
            revision: "main".into(),
            commit: COMMIT.into(),
            snapshot_dir: snapshot.clone(),
            files: vec![link.clone()],
            primary: link.clone(),
        }
    );
    assert_eq!(
        progress.planned,
        vec![("tiny-Q4_K_M.gguf".to_string(), Some(q4.len() as u64))]
    );
    assert_eq!(
        progress.started,
        vec![("tiny-Q4_K_M.gguf".to_string(), q4.len() as u64, 0)]
    );
    assert_eq!(progress.advanced, q4.len() as u64);
    assert_eq!(progress.finished, vec!["tiny-Q4_K_M.gguf".to_string()]);
    // The other quantization was not fetched.
    assert!(f.hub.gets_of("tiny-Q8_0.gguf").is_empty());

    // The cache scan sees it.
    let cached = cached_models(f.cache.path());
    assert_eq!(cached.len(), 1);
    assert_eq!(cached[0].repo, "acme/tiny-GGUF");
    assert_eq!(cached[0].refs.get("main").map(String::as_str), Some(COMMIT));
    assert_eq!(cached[0].snapshots[0].dir, snapshot);

    // A blob already in the cache is not downloaded again.
    let sent = f.hub.sent();
    let again = pull(&f.opts, &spec("acme/tiny-GGUF:Q4_K_M"), &mut NoProgress)
        .await
        .unwrap();
    assert_eq!(again.primary, link);
    assert_eq!(f.hub.sent(), sent, "the second pull downloaded bytes again");
    assert_eq!(f.hub.gets_of("tiny-Q4_K_M.gguf").len(), 1);
}

#[tokio::test]
async fn an_interrupted_download_resumes_with_a_range_request() {
    let f = fixture().await;
    let (q4, _) = gguf_repo(&f.hub);
    let sha = sha256_hex(&q4);
    f.hub.behaviour.lock().unwrap().cut_after = Some(("tiny-Q4_K_M.gguf".into(), 120_000));

    let err = pull(&f.opts, &spec("acme/tiny-GGUF:Q4_K_M"), &mut NoProgress)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "hub_download_interrupted", "{err}");
    assert!(err.to_string().contains("resume"), "{err}");

    // Only the .incomplete file exists: nothing that looks complete.
    let repo_dir = hf_cache_repo_dir(f.cache.path(), "acme/tiny-GGUF");
    assert_eq!(tree(&repo_dir), vec![format!("blobs/{sha}.incomplete")]);
    let partial = std::fs::metadata(repo_dir.join(format!("blobs/{sha}.incomplete")))
        .unwrap()
        .len();
    assert!(partial > 0 && partial <= 120_000, "partial = {partial}");

    let mut progress = Recorder::default();
    let pulled = pull(&f.opts, &spec("acme/tiny-GGUF:Q4_K_M"), &mut progress)
        .await
        .unwrap();
    let gets = f.hub.gets_of("tiny-Q4_K_M.gguf");
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[0].range, None);
    assert_eq!(
        gets[1].range.as_deref(),
        Some(format!("bytes={partial}-").as_str())
    );
    assert_eq!(
        progress.started,
        vec![("tiny-Q4_K_M.gguf".to_string(), q4.len() as u64, partial)]
    );
    assert_eq!(progress.advanced, q4.len() as u64 - partial);
    assert!(
        f.hub.sent() < 2 * q4.len() as u64,
        "sent {} bytes for a {}-byte file",
        f.hub.sent(),
        q4.len()
    );
    let content = std::fs::read(&pulled.primary).unwrap();
    assert_eq!(sha256_hex(&content), sha);
    assert_eq!(
        tree(&repo_dir),
        vec![
            format!("blobs/{sha}"),
            "refs/main".to_string(),
            format!("snapshots/{COMMIT}/tiny-Q4_K_M.gguf"),
        ]
    );
}

#[tokio::test]
async fn a_server_without_ranges_makes_the_resume_start_over() {
    let f = fixture().await;
    let (q4, _) = gguf_repo(&f.hub);
    f.hub.behaviour.lock().unwrap().cut_after = Some(("tiny-Q4_K_M.gguf".into(), 100_000));
    pull(&f.opts, &spec("acme/tiny-GGUF:Q4_K_M"), &mut NoProgress)
        .await
        .unwrap_err();
    f.hub.behaviour.lock().unwrap().ignore_range = true;

    let mut progress = Recorder::default();
    let pulled = pull(&f.opts, &spec("acme/tiny-GGUF:Q4_K_M"), &mut progress)
        .await
        .unwrap();
    let gets = f.hub.gets_of("tiny-Q4_K_M.gguf");
    assert!(gets[1].range.is_some(), "the second pull asked for a range");
    // The 200 body replaced the partial file instead of being appended to it.
    assert_eq!(std::fs::read(&pulled.primary).unwrap(), q4);
    assert_eq!(
        progress.started,
        vec![("tiny-Q4_K_M.gguf".to_string(), q4.len() as u64, 0)]
    );
}

#[tokio::test]
async fn a_checksum_mismatch_fails_and_leaves_no_file() {
    let f = fixture().await;
    let (q4, _) = gguf_repo(&f.hub);
    f.hub
        .behaviour
        .lock()
        .unwrap()
        .corrupt
        .insert("tiny-Q4_K_M.gguf".into());
    let err = pull(&f.opts, &spec("acme/tiny-GGUF:Q4_K_M"), &mut NoProgress)
        .await
        .unwrap_err();
    match &err {
        HubError::ChecksumMismatch {
            file,
            expected,
            actual,
        } => {
            assert_eq!(file, "tiny-Q4_K_M.gguf");
            assert_eq!(expected, &sha256_hex(&q4));
            assert_ne!(actual, expected);
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    assert_eq!(err.code(), "checksum_mismatch");
    let repo_dir = hf_cache_repo_dir(f.cache.path(), "acme/tiny-GGUF");
    assert_eq!(tree(&repo_dir), Vec::<String>::new());

    // A clean retry works.
    f.hub.behaviour.lock().unwrap().corrupt.clear();
    let pulled = pull(&f.opts, &spec("acme/tiny-GGUF:Q4_K_M"), &mut NoProgress)
        .await
        .unwrap();
    assert_eq!(std::fs::read(pulled.primary).unwrap(), q4);
}

#[tokio::test]
async fn a_gated_repo_needs_the_token_sent_as_bearer() {
    let f = fixture().await;
    gguf_repo(&f.hub);
    f.hub
        .repos
        .lock()
        .unwrap()
        .get_mut("acme/tiny-GGUF")
        .unwrap()
        .gated_token = Some("hf_test_token".into());

    let err = pull(&f.opts, &spec("acme/tiny-GGUF:Q8_0"), &mut NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(err, HubError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "hub_unauthorized");
    let message = err.to_string();
    assert!(
        message.contains("HF_TOKEN") && message.contains("licence"),
        "{message}"
    );

    let opts = HubOptions {
        token: Some("hf_test_token".into()),
        ..f.opts.clone()
    };
    let before = f.hub.seen().len();
    pull(&opts, &spec("acme/tiny-GGUF:Q8_0"), &mut NoProgress)
        .await
        .unwrap();
    let seen = &f.hub.seen()[before..];
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref() == Some("Bearer hf_test_token")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn the_token_does_not_follow_a_redirect_to_another_host() {
    let f = fixture().await;
    let (q4, _) = gguf_repo(&f.hub);
    f.hub
        .repos
        .lock()
        .unwrap()
        .get_mut("acme/tiny-GGUF")
        .unwrap()
        .gated_token = Some("hf_secret".into());
    // The "CDN": another server (another port) holding the same files, not gated.
    let cdn = Arc::new(FakeHub::default());
    gguf_repo(&cdn);
    let cdn_url = serve(cdn.clone()).await;
    f.hub.behaviour.lock().unwrap().redirect_lfs_to = Some(cdn_url);

    let opts = HubOptions {
        token: Some("hf_secret".into()),
        ..f.opts.clone()
    };
    let pulled = pull(&opts, &spec("acme/tiny-GGUF:Q4_K_M"), &mut NoProgress)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&pulled.primary).unwrap(), q4);
    // The blob is named by the Hub's X-Linked-Etag (the sha256), taken from the 302.
    let blob = hf_cache_repo_dir(f.cache.path(), "acme/tiny-GGUF")
        .join("blobs")
        .join(sha256_hex(&q4));
    assert!(blob.is_file());

    let cdn_gets = cdn.gets_of("tiny-Q4_K_M.gguf");
    assert_eq!(cdn_gets.len(), 1, "the download went through the CDN");
    assert!(
        cdn.seen().iter().all(|s| s.authorization.is_none()),
        "the token leaked to the CDN: {:?}",
        cdn.seen()
    );
    assert!(f
        .hub
        .seen()
        .iter()
        .all(|s| s.authorization.as_deref() == Some("Bearer hf_secret")));
}

#[tokio::test]
async fn missing_repo_revision_and_file_are_not_found() {
    let f = fixture().await;
    gguf_repo(&f.hub);

    let err = pull(&f.opts, &spec("acme/nope"), &mut NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HubError::NotFound { file: None, .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "hub_not_found");
    assert!(err.to_string().contains("acme/nope"), "{err}");

    let revision = spec("acme/tiny-GGUF:Q8_0").with_revision("v9").unwrap();
    let err = pull(&f.opts, &revision, &mut NoProgress).await.unwrap_err();
    assert_eq!(err.code(), "hub_not_found", "{err}");
    assert!(err.to_string().contains("v9"), "{err}");

    // Listed by the API, but the file itself answers 404.
    f.hub
        .behaviour
        .lock()
        .unwrap()
        .missing_on_resolve
        .insert("tiny-Q8_0.gguf".into());
    let err = pull(&f.opts, &spec("acme/tiny-GGUF:Q8_0"), &mut NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HubError::NotFound { file: Some(file), .. } if file == "tiny-Q8_0.gguf"),
        "{err:?}"
    );

    // A selector that matches nothing lists what there is.
    let err = pull(&f.opts, &spec("acme/tiny-GGUF:Q5_K_M"), &mut NoProgress)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "hub_file_not_found");
    let message = err.to_string();
    assert!(
        message.contains("tiny-Q4_K_M.gguf") && message.contains("tiny-Q8_0.gguf"),
        "{message}"
    );
}

#[tokio::test]
async fn ambiguous_selectors_list_the_candidates() {
    let f = fixture().await;
    gguf_repo(&f.hub);
    let err = pull(&f.opts, &spec("acme/tiny-GGUF"), &mut NoProgress)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "ambiguous_model_file");
    let message = err.to_string();
    assert!(
        message.contains("tiny-Q4_K_M.gguf") && message.contains("tiny-Q8_0.gguf"),
        "{message}"
    );
    assert!(message.contains("acme/tiny-GGUF:QUANT"), "{message}");

    f.hub.add_repo(
        "acme/two",
        COMMIT,
        &[
            ("base-Q4_K_M.gguf", data(100, 3)),
            ("chat-Q4_K_M.gguf", data(100, 4)),
        ],
    );
    let err = pull(&f.opts, &spec("acme/two:Q4_K_M"), &mut NoProgress)
        .await
        .unwrap_err();
    match &err {
        HubError::AmbiguousSelector { candidates, .. } => assert_eq!(
            candidates,
            &vec![
                "base-Q4_K_M.gguf".to_string(),
                "chat-Q4_K_M.gguf".to_string()
            ]
        ),
        other => panic!("expected ambiguity, got {other:?}"),
    }
    // Nothing was downloaded.
    assert!(tree(&hf_cache_repo_dir(f.cache.path(), "acme/two")).is_empty());
}

#[tokio::test]
async fn a_sentence_transformers_repo_gets_its_file_set() {
    let f = fixture().await;
    let weights = data(50_000, 5);
    f.hub.add_repo(
        "sentence-transformers/mini",
        COMMIT,
        &[
            (".gitattributes", b"*.safetensors filter=lfs\n".to_vec()),
            (
                "1_Pooling/config.json",
                br#"{"word_embedding_dimension": 384}"#.to_vec(),
            ),
            ("README.md", b"# mini\n".to_vec()),
            ("config.json", br#"{"model_type": "bert"}"#.to_vec()),
            ("config_sentence_transformers.json", b"{}".to_vec()),
            ("model.safetensors", weights.clone()),
            ("modules.json", b"[]".to_vec()),
            ("onnx/model.onnx", data(10_000, 6)),
            ("pytorch_model.bin", data(10_000, 7)),
            ("sentence_bert_config.json", b"{}".to_vec()),
            ("special_tokens_map.json", b"{}".to_vec()),
            ("tokenizer.json", b"{}".to_vec()),
            ("tokenizer_config.json", b"{}".to_vec()),
            ("vocab.txt", b"[PAD]\n".to_vec()),
        ],
    );
    let pulled = pull(
        &f.opts,
        &spec("sentence-transformers/mini"),
        &mut NoProgress,
    )
    .await
    .unwrap();
    let snapshot = &pulled.snapshot_dir;
    assert_eq!(pulled.primary, *snapshot);
    let expected = [
        "1_Pooling/config.json",
        "config.json",
        "config_sentence_transformers.json",
        "model.safetensors",
        "modules.json",
        "sentence_bert_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ];
    assert_eq!(tree(snapshot), expected.to_vec());
    assert_eq!(
        pulled.files,
        expected
            .iter()
            .map(|f| snapshot.join(f))
            .collect::<Vec<_>>()
    );
    // Nested files link one level further up; small files are named by their git etag.
    let pooling = snapshot.join("1_Pooling/config.json");
    let pooling_bytes = br#"{"word_embedding_dimension": 384}"#;
    assert_eq!(
        std::fs::read_link(&pooling).unwrap(),
        PathBuf::from(format!("../../../blobs/{}", git_etag(pooling_bytes)))
    );
    assert_eq!(std::fs::read(&pooling).unwrap(), pooling_bytes);
    assert_eq!(
        std::fs::read(snapshot.join("model.safetensors")).unwrap(),
        weights
    );
    assert!(f.hub.gets_of("pytorch_model.bin").is_empty());
    assert!(f.hub.gets_of("model.onnx").is_empty());
}

#[tokio::test]
async fn a_split_gguf_pulls_every_part() {
    let f = fixture().await;
    let parts = [data(40_000, 8), data(40_000, 9), data(10_000, 10)];
    f.hub.add_repo(
        "acme/big-GGUF",
        COMMIT,
        &[
            ("Q8_0/big-Q8_0-00001-of-00003.gguf", parts[0].clone()),
            ("Q8_0/big-Q8_0-00002-of-00003.gguf", parts[1].clone()),
            ("Q8_0/big-Q8_0-00003-of-00003.gguf", parts[2].clone()),
            ("big-Q2_K.gguf", data(1_000, 11)),
        ],
    );
    let pulled = pull(&f.opts, &spec("acme/big-GGUF:q8_0"), &mut NoProgress)
        .await
        .unwrap();
    assert_eq!(pulled.files.len(), 3);
    assert_eq!(
        pulled.primary,
        pulled
            .snapshot_dir
            .join("Q8_0/big-Q8_0-00001-of-00003.gguf")
    );
    for (path, bytes) in pulled.files.iter().zip(&parts) {
        assert_eq!(&std::fs::read(path).unwrap(), bytes);
    }
}

#[tokio::test]
async fn offline_mode_resolves_from_the_cache_without_a_request() {
    let f = fixture().await;
    gguf_repo(&f.hub);
    let online = pull(&f.opts, &spec("acme/tiny-GGUF:Q4_K_M"), &mut NoProgress)
        .await
        .unwrap();
    let requests = f.hub.seen().len();

    let offline = HubOptions {
        offline: true,
        ..f.opts.clone()
    };
    let resolved = pull(&offline, &spec("acme/tiny-GGUF:Q4_K_M"), &mut NoProgress)
        .await
        .unwrap();
    assert_eq!(resolved, online);
    // The only cached GGUF is also what a bare ORG/REPO means offline.
    let bare = pull(&offline, &spec("acme/tiny-GGUF"), &mut NoProgress)
        .await
        .unwrap();
    assert_eq!(bare.primary, online.primary);

    // Not in the cache: a clean error, still no request.
    let err = pull(&offline, &spec("acme/tiny-GGUF:Q8_0"), &mut NoProgress)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "hub_offline");
    assert!(err.to_string().contains("Q8_0"), "{err}");
    let err = pull(&offline, &spec("acme/absent"), &mut NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::Offline { .. }), "{err:?}");
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
    assert_eq!(f.hub.seen().len(), requests, "offline mode made a request");
}

#[tokio::test]
async fn an_unreachable_hub_is_named_in_the_error() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let cache = tempfile::tempdir().unwrap();
    let opts = HubOptions {
        endpoint: endpoint.clone(),
        cache_dir: cache.path().to_path_buf(),
        token: None,
        offline: false,
    };
    let err = pull(&opts, &spec("acme/tiny-GGUF"), &mut NoProgress)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "hub_unreachable", "{err:?}");
    assert!(err.to_string().contains(&endpoint), "{err}");
}

#[tokio::test]
async fn not_enough_disk_space_fails_before_downloading() {
    let f = fixture().await;
    gguf_repo(&f.hub);
    // The Hub claims 1 EiB: no disk has that free.
    f.hub
        .behaviour
        .lock()
        .unwrap()
        .claimed_size
        .insert("tiny-Q4_K_M.gguf".into(), 1 << 60);
    let err = pull(&f.opts, &spec("acme/tiny-GGUF:Q4_K_M"), &mut NoProgress)
        .await
        .unwrap_err();
    match &err {
        HubError::DiskFull {
            cache_dir,
            needed_bytes,
            available_bytes,
        } => {
            assert_eq!(cache_dir, f.cache.path());
            assert_eq!(*needed_bytes, Some(1 << 60));
            assert!(available_bytes.is_some());
        }
        other => panic!("expected disk_full, got {other:?}"),
    }
    assert_eq!(err.code(), "disk_full");
    assert!(err
        .to_string()
        .contains(&f.cache.path().display().to_string()));
    assert!(f.hub.gets_of("tiny-Q4_K_M.gguf").is_empty());
}

#[test]
fn options_come_from_the_huggingface_variables() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    std::fs::write(home.join("token"), "hf_from_file\n").unwrap();
    let vars = |pairs: &[(&str, String)]| {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |name: &str| map.get(name).cloned()
    };
    let home_s = home.display().to_string();
    let opts = HubOptions::from_vars(vars(&[
        ("HF_HOME", home_s.clone()),
        ("HF_ENDPOINT", "https://hf-mirror.example".into()),
        ("HF_HUB_OFFLINE", "1".into()),
    ]));
    assert_eq!(opts.endpoint, "https://hf-mirror.example");
    assert_eq!(opts.cache_dir, home.join("hub"));
    assert_eq!(opts.token.as_deref(), Some("hf_from_file"));
    assert!(opts.offline);

    let opts = HubOptions::from_vars(vars(&[
        ("HF_HOME", home_s.clone()),
        ("HF_HUB_CACHE", home.join("elsewhere").display().to_string()),
        ("HF_TOKEN", "hf_from_env".into()),
        ("HF_HUB_OFFLINE", "0".into()),
        ("HF_ENDPOINT", "  ".into()),
    ]));
    assert_eq!(opts.endpoint, hearth_infer::hub::DEFAULT_ENDPOINT);
    assert_eq!(opts.cache_dir, home.join("elsewhere"));
    assert_eq!(opts.token.as_deref(), Some("hf_from_env"));
    assert!(!opts.offline);

    // Without HF_HOME the cache follows XDG_CACHE_HOME, then HOME.
    let opts = HubOptions::from_vars(vars(&[("XDG_CACHE_HOME", home_s.clone())]));
    assert_eq!(opts.cache_dir, home.join("huggingface").join("hub"));
    let opts = HubOptions::from_vars(vars(&[("HOME", home_s)]));
    assert_eq!(
        opts.cache_dir,
        home.join(".cache").join("huggingface").join("hub")
    );
}

#[test]
fn the_pull_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let opts = HubOptions {
        endpoint: "http://127.0.0.1:9".into(),
        cache_dir: PathBuf::from("/nonexistent"),
        token: None,
        offline: true,
    };
    let spec = spec("acme/tiny-GGUF");
    let mut progress = NoProgress;
    let future = pull(&opts, &spec, &mut progress);
    assert_send(&future);
}
