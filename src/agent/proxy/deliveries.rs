//! Delivery IDs (`X-GitHub-Delivery`) already handled, kept on disk so that a redelivery, even
//! after a restart, is answered without being acted on twice.
//!
//! The file `deliveries` in the state folder holds one `<unix seconds> <id>` line per delivery,
//! appended as each is handled. It is read whole at start, and rewritten (to a temp file, then
//! renamed) without the entries older than the retention when those make up most of it.
//! Appends are not fsynced: a process kill keeps them (the page cache survives it); a power cut
//! may lose the last few, and a push then redelivered is queued again, which is harmless (the
//! pending sync is the same commit).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Error;

/// How long a delivery is remembered. GitHub lets a hook's deliveries of the last 3 days be
/// redelivered; a day more covers clock skew and a redelivery queued on the last day.
pub const RETENTION: Duration = Duration::from_secs(4 * 24 * 3600);

const FILE: &str = "deliveries";

/// The remembered deliveries.
pub struct Deliveries {
    path: PathBuf,
    retention: Duration,
    seen: HashMap<String, u64>,
    /// Lines in the file, stale ones included.
    lines: usize,
    file: std::fs::File,
    /// Deliveries being handled now (not yet recorded).
    in_flight: HashSet<String>,
    /// When expired entries are next dropped from `seen` (unix seconds). Dropping them is a walk
    /// of the whole map, so it is done once per [`PURGE_EVERY`], not per delivery.
    next_purge: u64,
}

/// How often expired deliveries are dropped from memory (they stop counting as seen at once).
const PURGE_EVERY: u64 = 3600;

/// What [`Deliveries::begin`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Handled before: a redelivery.
    Seen,
    /// Being handled by another request right now: wait for it and ask again.
    Busy,
    /// New: the caller handles it, then calls [`Deliveries::finish`] or [`Deliveries::abandon`].
    Started,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `id` can be a delivery ID: GitHub's are GUIDs; anything printable without white space
/// and of modest length is kept (the file is line-based).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl Deliveries {
    /// Read the remembered deliveries in `dir`, dropping the expired ones.
    ///
    /// # Errors
    /// [`Error::Read`]/[`Error::Write`] when the file cannot be read or rewritten.
    pub fn open(dir: &Path, retention: Duration) -> Result<Self, Error> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(Error::Read { path, source }),
        };
        let cutoff = now().saturating_sub(retention.as_secs());
        let mut seen = HashMap::new();
        let mut lines = 0;
        let mut bad = 0;
        for line in text.lines() {
            lines += 1;
            match line.split_once(' ') {
                Some((t, id)) if valid_id(id) => match t.parse::<u64>() {
                    Ok(t) if t >= cutoff => {
                        seen.insert(id.to_string(), t);
                    }
                    Ok(_) => {}
                    Err(_) => bad += 1,
                },
                // A line cut short by a crash mid-append.
                _ => bad += 1,
            }
        }
        if bad > 0 {
            tracing::warn!(
                file = %path.display(),
                "skipped {bad} unreadable line(s) of remembered deliveries"
            );
        }
        let file = open_append(&path)?;
        let mut d = Deliveries {
            path,
            retention,
            seen,
            lines,
            file,
            in_flight: HashSet::new(),
            next_purge: now() + PURGE_EVERY,
        };
        if d.lines > d.seen.len() {
            d.compact()?;
        }
        Ok(d)
    }

    /// Whether delivery `id` was handled within the retention.
    pub fn seen(&self, id: &str) -> bool {
        self.seen
            .get(id)
            .is_some_and(|t| *t >= now().saturating_sub(self.retention.as_secs()))
    }

    /// How many deliveries are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Claim delivery `id` for handling, unless it was handled or is being handled. The claim is
    /// in memory only: the file is written by [`finish`](Self::finish), outside any wait for the
    /// disk, so deliveries are not handled one at a time.
    pub fn begin(&mut self, id: &str) -> Begin {
        if self.seen(id) {
            Begin::Seen
        } else if self.in_flight.insert(id.to_string()) {
            Begin::Started
        } else {
            Begin::Busy
        }
    }

    /// Release a claim without recording it (the delivery was refused or could not be acted on,
    /// so a redelivery must be handled again).
    pub fn abandon(&mut self, id: &str) {
        self.in_flight.remove(id);
    }

    /// Release a claim and remember the delivery as handled.
    ///
    /// # Errors
    /// As [`record`](Self::record).
    pub fn finish(&mut self, id: &str) -> Result<(), Error> {
        self.in_flight.remove(id);
        self.record(id)
    }

    /// Remember delivery `id` as handled now.
    ///
    /// # Errors
    /// [`Error::Write`] when the file cannot be appended to; the delivery is then not remembered.
    pub fn record(&mut self, id: &str) -> Result<(), Error> {
        let t = now();
        self.file
            .write_all(format!("{t} {id}\n").as_bytes())
            .map_err(|source| Error::Write {
                path: self.path.clone(),
                source,
            })?;
        self.seen.insert(id.to_string(), t);
        self.lines += 1;
        if t >= self.next_purge {
            let cutoff = t.saturating_sub(self.retention.as_secs());
            self.seen.retain(|_, seen_at| *seen_at >= cutoff);
            self.next_purge = t + PURGE_EVERY;
        }
        // Rewrite once stale lines are the majority, so the file stays proportional to the
        // deliveries of the retention period.
        if self.lines > 1024 && self.lines > 2 * self.seen.len() {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrite the file with the live entries only: temp file, fsync, rename.
    fn compact(&mut self) -> Result<(), Error> {
        let cutoff = now().saturating_sub(self.retention.as_secs());
        self.seen.retain(|_, t| *t >= cutoff);
        let mut entries: Vec<(&String, &u64)> = self.seen.iter().collect();
        entries.sort_by_key(|(id, t)| (**t, (*id).clone()));
        let mut text = String::new();
        for (id, t) in entries {
            text.push_str(&format!("{t} {id}\n"));
        }
        crate::atomic::write(&self.path, text.as_bytes(), crate::atomic::Access::Private)?;
        self.file = open_append(&self.path)?;
        self.lines = self.seen.len();
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<std::fs::File, Error> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| Error::Write {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_across_reopen_and_expired_entries_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let old = now() - RETENTION.as_secs() - 10;
        std::fs::write(
            dir.path().join(FILE),
            format!("{old} stale-one\ngarbage\n{} fresh-one\n", now() - 5),
        )
        .unwrap();
        let mut d = Deliveries::open(dir.path(), RETENTION).unwrap();
        assert!(d.seen("fresh-one"));
        assert!(!d.seen("stale-one"));
        d.record("new-one").unwrap();
        drop(d);
        let d = Deliveries::open(dir.path(), RETENTION).unwrap();
        assert!(d.seen("new-one") && d.seen("fresh-one"));
        assert_eq!(d.len(), 2);
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(
            !text.contains("stale-one") && !text.contains("garbage"),
            "{text}"
        );
    }

    #[test]
    fn a_claimed_delivery_is_busy_until_finished_or_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Deliveries::open(dir.path(), RETENTION).unwrap();
        assert_eq!(d.begin("x"), Begin::Started);
        assert_eq!(d.begin("x"), Begin::Busy);
        d.abandon("x");
        assert_eq!(d.begin("x"), Begin::Started);
        d.finish("x").unwrap();
        assert_eq!(d.begin("x"), Begin::Seen);
        assert!(Deliveries::open(dir.path(), RETENTION).unwrap().seen("x"));
    }

    #[test]
    fn expired_deliveries_leave_memory_at_the_next_purge_and_the_file_stays_proportional() {
        let dir = tempfile::tempdir().unwrap();
        let old = now() - RETENTION.as_secs() - 10;
        let stale: String = (0..2000)
            .map(|i| format!("{} stale-{i}\n", now() - 5))
            .collect();
        std::fs::write(dir.path().join(FILE), &stale).unwrap();
        let mut d = Deliveries::open(dir.path(), RETENTION).unwrap();
        assert_eq!(d.len(), 2000);
        // They age past the retention while the proxy runs: not seen at once, dropped from
        // memory at the next purge, and the rewrite then leaves only the live ones on disk.
        for t in d.seen.values_mut() {
            *t = old;
        }
        assert!(!d.seen("stale-1"));
        d.record("before-purge").unwrap();
        assert_eq!(d.len(), 2001, "no walk of the map per delivery");
        d.next_purge = 0;
        d.record("fresh").unwrap();
        assert_eq!(d.len(), 2);
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(d.seen("fresh") && d.seen("before-purge"));
    }

    #[test]
    fn ids_are_guid_like() {
        assert!(valid_id("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
        assert!(!valid_id(""));
        assert!(!valid_id("a b"));
        assert!(!valid_id("a\nb"));
        assert!(!valid_id(&"x".repeat(200)));
    }
}
