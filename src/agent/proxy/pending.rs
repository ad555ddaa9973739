//! The pending sync: the newest pushed commit of the followed branch, waiting to be checked out,
//! planned and applied. A push stores it (durably, before the webhook is answered 202); the sync
//! reads it, and clears it once that commit is applied. A newer push replaces an older one, so
//! pushes that arrive while a sync runs coalesce into one follow-up sync of the newest commit.
//!
//! On disk: `pending-sync.jsonl` in the state folder, an append-only log of JSON lines (see
//! [`PendingSync`]); the last complete line is what waits, an empty file means nothing does.
//!
//! Group commit: one writer thread owns the file. Pushes hand it their record and wait; it takes
//! every record queued meanwhile, appends only the newest (the older ones are superseded, and a
//! sync of the newest covers them), makes it durable with one `fdatasync`, and then releases all
//! of them. Concurrent pushes therefore share one disk flush instead of queueing for one each,
//! and none is answered before its record, or a newer one, is on disk. The log is rewritten
//! (temp file, fsync, rename, fsync of the folder) when it grows past [`COMPACT_AT`], after a
//! write failed, and at start (which also drops a line cut short by a crash).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use serde::{Deserialize, Serialize};

use crate::error::Error;

const FILE: &str = "pending-sync.jsonl";
/// The single-object file of earlier versions: a commit waiting in it is carried over at start.
const OLD_FILE: &str = "pending-sync.json";
/// Log size past which the next write rewrites it with the newest record alone.
pub const COMPACT_AT: u64 = 256 * 1024;

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

/// What the writer thread is asked to do.
enum Op {
    Store(
        PendingSync,
        tokio::sync::oneshot::Sender<std::io::Result<()>>,
    ),
    Clear(String, tokio::sync::oneshot::Sender<std::io::Result<bool>>),
}

/// The slot in the state folder, with its writer thread.
#[derive(Debug)]
pub struct Slot {
    path: PathBuf,
    /// The newest record on disk: only the writer changes it, after the flush.
    current: Arc<Mutex<Option<PendingSync>>>,
    ops: mpsc::Sender<Op>,
}

impl Slot {
    /// Open the slot in state folder `dir`: read what waits, rewrite the log clean, and start
    /// its writer.
    ///
    /// # Errors
    /// [`Error::Read`]/[`Error::Write`] when the log cannot be read or rewritten.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(FILE);
        let mut current = read_log(&path)?;
        let old = dir.join(OLD_FILE);
        if current.is_none() {
            current = read_old(&old)?;
        }
        let log = Log::create(&path, current.as_ref())?;
        if old.exists() {
            std::fs::remove_file(&old).map_err(|source| Error::Write {
                path: old.clone(),
                source,
            })?;
        }
        let current = Arc::new(Mutex::new(current));
        let (tx, rx) = mpsc::channel();
        let shared = current.clone();
        std::thread::Builder::new()
            .name("pending-sync".into())
            .spawn(move || writer(rx, &shared, log))
            .map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
        Ok(Slot {
            path,
            current,
            ops: tx,
        })
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What waits, if anything (as on disk).
    pub fn read(&self) -> Option<PendingSync> {
        lock(&self.current).clone()
    }

    /// Replace what waits with `p`; returns once `p` (or a newer record stored with it) is on
    /// disk.
    ///
    /// # Errors
    /// [`Error::Write`] when it cannot be made durable; what waited before then still waits (a
    /// line the failed write may have left is dropped by the next write, which rewrites the log).
    pub async fn store(&self, p: PendingSync) -> Result<(), Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Op::Store(p, tx))?;
        self.wait(rx).await
    }

    /// Clear the slot, but only if it still holds `commit`: a push that arrived during the sync
    /// must stay queued. Returns whether it was cleared.
    ///
    /// # Errors
    /// [`Error::Write`] when the log cannot be emptied.
    pub async fn clear_if(&self, commit: &str) -> Result<bool, Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Op::Clear(commit.to_string(), tx))?;
        self.wait(rx).await
    }

    fn send(&self, op: Op) -> Result<(), Error> {
        self.ops.send(op).map_err(|_| self.stopped())
    }

    async fn wait<T>(
        &self,
        rx: tokio::sync::oneshot::Receiver<std::io::Result<T>>,
    ) -> Result<T, Error> {
        match rx.await {
            Ok(r) => r.map_err(|source| Error::Write {
                path: self.path.clone(),
                source,
            }),
            Err(_) => Err(self.stopped()),
        }
    }

    fn stopped(&self) -> Error {
        Error::Write {
            path: self.path.clone(),
            source: std::io::Error::other("the pending-sync writer stopped"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The newest complete record of the log at `path`, if any. Lines that do not parse (one cut
/// short by a crash mid-append) are skipped.
fn read_log(path: &Path) -> Result<Option<PendingSync>, Error> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut newest = None;
    let mut bad = 0;
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<PendingSync>(line) {
            Ok(p) => newest = Some(p),
            Err(_) => bad += 1,
        }
    }
    if bad > 0 {
        tracing::warn!(
            file = %path.display(),
            "skipped {bad} unreadable line(s) of the pending-sync log"
        );
    }
    Ok(newest)
}

/// The pending sync in an earlier version's single-object file.
fn read_old(path: &Path) -> Result<Option<PendingSync>, Error> {
    match std::fs::read(path) {
        Ok(t) => serde_json::from_slice(&t)
            .map(Some)
            .map_err(|e| Error::Read {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn line(p: &PendingSync) -> Vec<u8> {
    let mut l = serde_json::to_vec(p).expect("plain data serialises");
    l.push(b'\n');
    l
}

/// The log file, open for appending.
struct Log {
    path: PathBuf,
    file: std::fs::File,
    len: u64,
    /// A write failed: the file may end in a line no one was told is stored.
    dirty: bool,
}

impl Log {
    /// Rewrite the log at `path` to hold `current` alone, and open it for appending.
    fn create(path: &Path, current: Option<&PendingSync>) -> Result<Self, Error> {
        let bytes = current.map(line).unwrap_or_default();
        crate::atomic::write(path, &bytes, crate::atomic::Access::Private)?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| Error::Write {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Log {
            path: path.to_path_buf(),
            file,
            len: bytes.len() as u64,
            dirty: false,
        })
    }

    /// Make `next` what the log says waits, durably.
    fn persist(&mut self, next: Option<&PendingSync>) -> std::io::Result<()> {
        let r = self.try_persist(next);
        if r.is_err() {
            self.dirty = true;
        }
        r
    }

    fn try_persist(&mut self, next: Option<&PendingSync>) -> std::io::Result<()> {
        match next {
            None => {
                self.file.set_len(0)?;
                self.file.sync_data()?;
                self.len = 0;
                self.dirty = false;
            }
            Some(p) => {
                let l = line(p);
                if self.dirty || self.len + l.len() as u64 > COMPACT_AT {
                    let fresh = Log::create(&self.path, Some(p)).map_err(|e| match e {
                        Error::Write { source, .. } | Error::Read { source, .. } => source,
                        other => std::io::Error::other(other.to_string()),
                    })?;
                    *self = fresh;
                } else {
                    self.file.write_all(&l)?;
                    self.file.sync_data()?;
                    self.len += l.len() as u64;
                }
            }
        }
        Ok(())
    }
}

/// The writer thread: take every queued op, apply them in order to what waits, persist the result
/// with one flush, then answer them all. Ends when the [`Slot`] is dropped.
fn writer(rx: mpsc::Receiver<Op>, current: &Mutex<Option<PendingSync>>, mut log: Log) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let before = lock(current).clone();
        let mut next = before.clone();
        let mut cleared = Vec::new();
        for op in &batch {
            match op {
                Op::Store(p, _) => next = Some(p.clone()),
                Op::Clear(commit, _) => {
                    let hit = next.as_ref().is_some_and(|p| p.commit == *commit);
                    if hit {
                        next = None;
                    }
                    cleared.push(hit);
                }
            }
        }
        let r = if next == before && !log.dirty {
            Ok(())
        } else {
            log.persist(next.as_ref())
        };
        if r.is_ok() {
            *lock(current) = next;
        }
        let err = |e: &std::io::Error| std::io::Error::new(e.kind(), e.to_string());
        let mut cleared = cleared.into_iter();
        for op in batch {
            match op {
                Op::Store(_, tx) => {
                    let _ = tx.send(r.as_ref().map(|_| ()).map_err(err));
                }
                Op::Clear(_, tx) => {
                    let hit = cleared.next().unwrap_or(false);
                    let _ = tx.send(r.as_ref().map(|_| hit).map_err(err));
                }
            }
        }
    }
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
            delivery: format!("d-{commit}"),
            received_at: "2026-11-30T08:00:00Z".into(),
        }
    }

    fn on_disk(dir: &Path) -> Option<PendingSync> {
        read_log(&dir.join(FILE)).unwrap()
    }

    #[tokio::test]
    async fn newest_push_wins_and_clear_keeps_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let slot = Slot::open(dir.path()).unwrap();
        assert_eq!(slot.read(), None);
        slot.store(push("a")).await.unwrap();
        slot.store(push("b")).await.unwrap();
        assert_eq!(slot.read().unwrap().commit, "b");
        assert_eq!(on_disk(dir.path()).unwrap().commit, "b");
        assert!(!slot.clear_if("a").await.unwrap());
        assert_eq!(slot.read().unwrap().commit, "b");
        assert!(slot.clear_if("b").await.unwrap());
        assert_eq!(slot.read(), None);
        assert_eq!(on_disk(dir.path()), None);
        drop(slot);
        // A restart finds what the log says.
        let slot = Slot::open(dir.path()).unwrap();
        assert_eq!(slot.read(), None);
        slot.store(push("c")).await.unwrap();
        drop(slot);
        assert_eq!(Slot::open(dir.path()).unwrap().read().unwrap().commit, "c");
    }

    /// Many pushes at once: each is answered only once a record is on disk, and what waits in
    /// memory is what the log says.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_pushes_are_answered_once_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let slot = Arc::new(Slot::open(dir.path()).unwrap());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let slot = slot.clone();
            let dir = dir.path().to_path_buf();
            tasks.push(tokio::spawn(async move {
                slot.store(push(&format!("{i:040}"))).await.unwrap();
                // Durable by now: the log holds this record or one stored after it.
                assert!(on_disk(&dir).is_some(), "store {i} returned before a flush");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let last = slot.read().unwrap();
        assert_eq!(on_disk(dir.path()).unwrap(), last);
    }

    #[tokio::test]
    async fn a_torn_last_line_and_the_old_file_are_handled_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from_utf8(line(&push("a"))).unwrap();
        text.push_str(&String::from_utf8(line(&push("b"))).unwrap()[..30]);
        std::fs::write(dir.path().join(FILE), &text).unwrap();
        let slot = Slot::open(dir.path()).unwrap();
        assert_eq!(slot.read().unwrap().commit, "a");
        let clean = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(clean.lines().count(), 1, "{clean}");
        drop(slot);

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(OLD_FILE),
            serde_json::to_vec_pretty(&push("old")).unwrap(),
        )
        .unwrap();
        let slot = Slot::open(dir.path()).unwrap();
        assert_eq!(slot.read().unwrap().commit, "old");
        assert!(!dir.path().join(OLD_FILE).exists());
        assert_eq!(on_disk(dir.path()).unwrap().commit, "old");
    }

    #[tokio::test]
    async fn the_log_is_compacted_when_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let slot = Slot::open(dir.path()).unwrap();
        let per = line(&push(&"0".repeat(40))).len() as u64;
        for i in 0..(COMPACT_AT / per + 10) {
            slot.store(push(&format!("{i:040}"))).await.unwrap();
        }
        let size = std::fs::metadata(dir.path().join(FILE)).unwrap().len();
        assert!(size <= COMPACT_AT, "{size}");
        assert_eq!(on_disk(dir.path()), slot.read());
    }
}
