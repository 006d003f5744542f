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

    /// Writes a new version with `write` (into an empty directory) and makes it current.
    /// Older versions stay on disk (the live server may still be reading one) until
    /// [`Artifacts::prune`].
    pub fn publish<E: From<StoreError>>(
        &self,
        write: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<ArtifactVersion, E> {
        std::fs::create_dir_all(&self.root).map_err(|e| StoreError::io(&self.root, e))?;
        let version = self.versions()?.last().copied().unwrap_or(0) + 1;
        let staging = self
            .root
            .join(format!(".staging-{}-{version}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(|e| StoreError::io(&staging, e))?;
        if let Err(e) = write(&staging) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let dir = self.root.join(Self::name(version));
        std::fs::rename(&staging, &dir).map_err(|e| StoreError::io(&dir, e))?;
        let pointer = self.root.join("current");
        let tmp = self.root.join(format!(".current-{}", std::process::id()));
        std::fs::write(&tmp, Self::name(version)).map_err(|e| StoreError::io(&tmp, e))?;
        std::fs::rename(&tmp, &pointer).map_err(|e| StoreError::io(&pointer, e))?;
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
}
