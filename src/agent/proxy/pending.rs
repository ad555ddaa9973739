//! The pending sync: the newest pushed commit of the followed branch, waiting to be checked out,
//! planned and applied. A push writes it (durably, before the webhook is answered 202); the sync
//! reads it, and clears it once that commit is applied. A newer push overwrites an older one, so
//! pushes that arrive while a sync runs coalesce into one follow-up sync of the newest commit.
//!
//! On disk: `pending-sync.json` in the state folder, one JSON object (see [`PendingSync`]),
//! replaced as a whole (temp file, fsync, rename, fsync of the folder): a reader never sees half
//! of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

const FILE: &str = "pending-sync.json";

/// A pushed commit waiting to be synced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSync {
    /// The pushed commit (`after` of the push): exactly what the sync checks out.
    pub commit: String,
    /// The ref pushed, as `refs/heads/main`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The commit the branch pointed at before the push (`before`).
    pub before: String,
    /// The repository, as `owner/name` (`repository.full_name`).
    pub repository: String,
    /// The delivery that brought it (`X-GitHub-Delivery`).
    pub delivery: String,
    /// When the proxy received it, RFC 3339 UTC.
    pub received_at: String,
}

/// The slot in the state folder.
#[derive(Debug, Clone)]
pub struct Slot {
    path: PathBuf,
}

impl Slot {
    /// The slot in state folder `dir`.
    pub fn new(dir: &Path) -> Self {
        Slot {
            path: dir.join(FILE),
        }
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replace what waits with `p`.
    ///
    /// # Errors
    /// [`Error::Write`] when it cannot be written durably; what waited before is then unchanged.
    pub fn store(&self, p: &PendingSync) -> Result<(), Error> {
        let mut text = serde_json::to_vec_pretty(p).expect("plain data serialises");
        text.push(b'\n');
        write_atomic(&self.path, &text)
    }

    /// What waits, if anything.
    ///
    /// # Errors
    /// [`Error::Read`] when the file cannot be read or is not a pending sync.
    pub fn read(&self) -> Result<Option<PendingSync>, Error> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| Error::Read {
                path: self.path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })
    }

    /// Clear the slot, but only if it still holds `commit`: a push that arrived during the sync
    /// must stay queued.
    ///
    /// # Errors
    /// [`Error::Read`]/[`Error::Write`] when the file cannot be read or removed.
    pub fn clear_if(&self, commit: &str) -> Result<bool, Error> {
        match self.read()? {
            Some(p) if p.commit == commit => {
                std::fs::remove_file(&self.path).map_err(|source| Error::Write {
                    path: self.path.clone(),
                    source,
                })?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Write `bytes` to `path` so that a crash leaves either the old file or the new one: a temp file
/// in the same folder, fsync, rename over, fsync the folder.
///
/// # Errors
/// [`Error::Write`] naming `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(commit: &str) -> PendingSync {
        PendingSync {
            commit: commit.into(),
            git_ref: "refs/heads/main".into(),
            before: "0".repeat(40),
            repository: "acme/homelab".into(),
            delivery: "d-1".into(),
            received_at: "2026-11-30T08:00:00Z".into(),
        }
    }

    #[test]
    fn newest_push_wins_and_clear_keeps_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let slot = Slot::new(dir.path());
        assert_eq!(slot.read().unwrap(), None);
        slot.store(&push("a")).unwrap();
        slot.store(&push("b")).unwrap();
        assert_eq!(slot.read().unwrap().unwrap().commit, "b");
        assert!(!slot.clear_if("a").unwrap());
        assert_eq!(slot.read().unwrap().unwrap().commit, "b");
        assert!(slot.clear_if("b").unwrap());
        assert_eq!(slot.read().unwrap(), None);
    }
}
