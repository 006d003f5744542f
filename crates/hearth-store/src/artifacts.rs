//! Versioned artifact directories: `ROOT/v000001/…`, with `ROOT/current` naming the live one.
//! A version is written under a temporary name and renamed into place, then `current` is
//! replaced atomically, so a reader sees the old version or the new one, never half of one.

use std::path::{Path, PathBuf};

use crate::StoreError;

#[derive(Debug, Clone)]
pub struct Artifacts {
    root: PathBuf,
}

/// A published version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactVersion {
    pub version: u64,
    pub dir: PathBuf,
}

impl Artifacts {
    pub fn new(root: PathBuf) -> Self {
        Artifacts { root }
    }

    fn name(version: u64) -> String {
        format!("v{version:06}")
    }

    fn versions(&self) -> Result<Vec<u64>, StoreError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io(&self.root, e)),
        };
        let mut versions: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix('v')?.parse().ok())
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// Every published version, oldest first.
    pub fn list(&self) -> Result<Vec<ArtifactVersion>, StoreError> {
        Ok(self
            .versions()?
            .into_iter()
            .map(|version| ArtifactVersion {
                version,
                dir: self.root.join(Self::name(version)),
            })
            .collect())
    }

    /// Writes a new version with `write` (into an empty directory) and makes it current.
    /// Older versions stay on disk (the live server may still be reading one) until
    /// [`Artifacts::prune`]. Publishers are serialised on a lock file in the directory
    /// (replicas sharing the path, threads of one process): each takes the next number and
    /// points `current` at it, so two trainings finishing together publish two versions
    /// and the later one is live.
    pub fn publish<E: From<StoreError>>(
        &self,
        write: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<ArtifactVersion, E> {
        std::fs::create_dir_all(&self.root).map_err(|e| StoreError::io(&self.root, e))?;
        let staging = self
            .root
            .join(format!(".staging-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&staging).map_err(|e| StoreError::io(&staging, e))?;
        if let Err(e) = write(&staging) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let published = self.place(&staging);
        if published.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        Ok(published?)
    }

    /// Under the publishing lock: `staging` becomes the next version, and current.
    fn place(&self, staging: &Path) -> Result<ArtifactVersion, StoreError> {
        let lock_path = self.root.join(".publish.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io(&lock_path, e))?;
        lock.lock().map_err(|e| StoreError::io(&lock_path, e))?;
        let version = self.versions()?.last().copied().unwrap_or(0) + 1;
        let dir = self.root.join(Self::name(version));
        std::fs::rename(staging, &dir).map_err(|e| StoreError::io(&dir, e))?;
        let pointer = self.root.join("current");
        let tmp = self
            .root
            .join(format!(".current-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&tmp, Self::name(version)).map_err(|e| StoreError::io(&tmp, e))?;
        std::fs::rename(&tmp, &pointer).map_err(|e| StoreError::io(&pointer, e))?;
        // The lock goes with the file's closing.
        drop(lock);
        Ok(ArtifactVersion { version, dir })
    }

    /// The live version, if any has been published.
    pub fn current(&self) -> Result<Option<ArtifactVersion>, StoreError> {
        let pointer = self.root.join("current");
        let name = match std::fs::read_to_string(&pointer) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&pointer, e)),
        };
        let name = name.trim();
        let version = name
            .strip_prefix('v')
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                StoreError::io(
                    &pointer,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("bad version '{name}'"),
                    ),
                )
            })?;
        Ok(Some(ArtifactVersion {
            version,
            dir: self.root.join(name),
        }))
    }

    /// Deletes all but the newest `keep` versions (never the current one).
    pub fn prune(&self, keep: usize) -> Result<(), StoreError> {
        let current = self.current()?.map(|c| c.version);
        let versions = self.versions()?;
        let cut = versions.len().saturating_sub(keep);
        for &v in &versions[..cut] {
            if Some(v) != current {
                let dir = self.root.join(Self::name(v));
                std::fs::remove_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_makes_the_new_version_current_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let artifacts = Artifacts::new(dir.path().join("recs"));
        assert_eq!(artifacts.current().unwrap(), None);
        let v1 = artifacts
            .publish(|d| std::fs::write(d.join("model"), "one").map_err(|e| StoreError::io(d, e)))
            .unwrap();
        let v2 = artifacts
            .publish(|d| std::fs::write(d.join("model"), "two").map_err(|e| StoreError::io(d, e)))
            .unwrap();
        assert_eq!((v1.version, v2.version), (1, 2));
        assert_eq!(artifacts.current().unwrap(), Some(v2.clone()));
        assert_eq!(
            std::fs::read_to_string(v1.dir.join("model")).unwrap(),
            "one"
        );
        // A failed write publishes nothing.
        let failed =
            artifacts.publish(|d| Err::<(), _>(StoreError::io(d, std::io::Error::other("boom"))));
        assert!(failed.is_err());
        assert_eq!(artifacts.current().unwrap(), Some(v2.clone()));
        artifacts.prune(1).unwrap();
        assert!(!v1.dir.exists());
        assert_eq!(
            std::fs::read_to_string(v2.dir.join("model")).unwrap(),
            "two"
        );
    }

    /// Eight publishers at once (as replicas sharing the path, or a training beside the
    /// schedule): eight versions, each whole and its own, the last placed one current.
    #[test]
    fn publishers_at_once_each_get_a_version_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("recs");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let (artifacts, barrier) = (Artifacts::new(root.clone()), barrier.clone());
                std::thread::spawn(move || {
                    artifacts
                        .publish(|d| {
                            barrier.wait();
                            std::fs::write(d.join("model"), format!("{n}"))
                                .map_err(|e| StoreError::io(d, e))
                        })
                        .unwrap()
                })
            })
            .collect();
        let mut published: Vec<ArtifactVersion> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        published.sort_by_key(|v| v.version);
        assert_eq!(
            published.iter().map(|v| v.version).collect::<Vec<_>>(),
            (1..=8).collect::<Vec<_>>()
        );
        let mut writers: Vec<String> = published
            .iter()
            .map(|v| std::fs::read_to_string(v.dir.join("model")).unwrap())
            .collect();
        writers.sort();
        assert_eq!(writers, (0..8).map(|n| n.to_string()).collect::<Vec<_>>());
        let artifacts = Artifacts::new(root.clone());
        assert_eq!(artifacts.current().unwrap().map(|c| c.version), Some(8));
        let leftovers: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(".staging") || n.starts_with(".current-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
