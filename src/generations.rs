//! Generations, as NixOS keeps them: every apply of a stack on this host is recorded (its number,
//! the commit or the stack's hash, when, who, the plan's summary and how it ended), with a copy of
//! the stack as it was then (`stack.toml` and the stack's own templates), so that
//! `labctl rollback` and the automatic rollback can apply it again. Secrets are never kept:
//! they are read from their sources again.
//!
//! One file per generation (`<state_dir>/generations/<stack>/<number>.json`), written atomically
//! ([`crate::atomic`]), under the stack's lock, so numbers never collide and a crash leaves each
//! record whole. At most `[host] generations` are kept; the oldest go first, but never the last
//! good one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::{self, Access};
use crate::error::Error;
use crate::plan::Summary;
use crate::render::{Origin, Templates};
use crate::stack::{LoadedStack, Scope, Stack};

/// Who applied a generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "by", content = "what")]
pub enum Who {
    /// A person's `labctl apply` (or `rollback`): the command line.
    Command(String),
    /// The proxy's GitOps sync.
    Proxy,
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Command(c) => write!(f, "`{c}`"),
            Who::Proxy => f.write_str("the proxy's sync"),
        }
    }
}

/// How an apply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Applied, and every health gate passed: a good generation, one a rollback can return to.
    Ok,
    /// The apply or a gate failed, and the lab was left as the failure left it.
    Failed,
    /// The apply or a gate failed, and the last good generation was applied again.
    RolledBack,
}

impl Outcome {
    /// The word, as history and the sync's status show it.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled-back",
        }
    }
}

/// The stack as it was applied: enough to apply it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Where the stack file was (relative `file` secrets are read beside it).
    pub path: PathBuf,
    /// Its text.
    pub stack_toml: String,
    /// The stack's own templates (its `templates/` and `systemd-templates/`), by name; the
    /// built-in ones are the binary's.
    pub templates: BTreeMap<String, String>,
}

impl Snapshot {
    /// The stack `loaded` with its `templates`, as applied now.
    ///
    /// # Errors
    /// [`Error::Read`] when the stack file cannot be read again.
    pub fn of(loaded: &LoadedStack, templates: &Templates) -> Result<Self, Error> {
        let stack_toml = std::fs::read_to_string(&loaded.path).map_err(|source| Error::Read {
            path: loaded.path.clone(),
            source,
        })?;
        Ok(Self::with_text(loaded, stack_toml, templates))
    }

    /// As [`Snapshot::of`], for a stack read from elsewhere (git) whose text is `stack_toml`.
    pub fn with_text(loaded: &LoadedStack, stack_toml: String, templates: &Templates) -> Self {
        let templates = templates
            .names()
            .filter(|(_, o)| *o == Origin::Stack)
            .filter_map(|(n, _)| Some((n.to_string(), templates.text(n)?.to_string())))
            .collect();
        Snapshot {
            path: loaded.path.clone(),
            stack_toml,
            templates,
        }
    }

    /// The stack and templates again, checked as any stack is.
    ///
    /// # Errors
    /// [`Error::Invalid`] when this labctl no longer accepts the stack.
    pub fn load(&self) -> Result<(LoadedStack, Templates), Error> {
        let stack = crate::stack::parse(&self.path, &self.stack_toml)?;
        let mut templates = Templates::builtin();
        for (name, text) in &self.templates {
            templates.insert(name, text.clone());
        }
        Ok((
            LoadedStack {
                stack,
                path: self.path.clone(),
            },
            templates,
        ))
    }

    /// The hash a saved plan records of a stack and its templates: the same stack applied twice
    /// has the same one.
    pub fn hash(&self) -> String {
        let mut templates = Templates::builtin();
        for (name, text) in &self.templates {
            templates.insert(name, text.clone());
        }
        crate::plan::saved::stack_hash(self.stack_toml.as_bytes(), &templates)
    }
}

/// One recorded apply: what was recorded, with its number, the stack's hash and the time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Its number, from 1, per stack and host.
    pub number: u64,
    /// The stack's hash ([`Snapshot::hash`]).
    pub stack_sha256: String,
    /// When the apply ended (RFC 3339, UTC).
    pub time: String,
    /// What was recorded.
    #[serde(flatten)]
    pub record: Record,
}

impl Generation {
    /// Whether a rollback may return to it.
    pub fn is_good(&self) -> bool {
        self.record.result == Outcome::Ok
    }

    /// What it was applied from: the short commit, else the stack's short hash.
    pub fn source(&self) -> String {
        match &self.record.commit {
            Some(c) => format!("commit {}", &c[..c.len().min(12)]),
            None => format!(
                "stack {}",
                &self.stack_sha256[..self.stack_sha256.len().min(12)]
            ),
        }
    }
}

/// What a generation records of an apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The git commit the stack was applied from, when it was in git.
    pub commit: Option<String>,
    /// Who applied it.
    pub who: Who,
    /// What the plan did.
    pub summary: Summary,
    /// How it ended.
    pub result: Outcome,
    /// Why it failed (the failure, a gate that did not pass), when it did.
    pub failure: Option<String>,
    /// The generation a rollback put back, when it was rolled back or a rollback applied it.
    pub restored: Option<u64>,
    /// The stack as applied.
    pub snapshot: Snapshot,
}

/// The generations of one stack on this host.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    keep: usize,
}

/// Where labctl keeps its records on this host for `stack` applied to the manager of `scope`:
/// `[host] state_dir`, else `/var/lib/labctl` (system) or `$XDG_STATE_HOME/labctl` (user).
pub fn state_dir(stack: &Stack, scope: Scope) -> PathBuf {
    if let Some(d) = &stack.host.state_dir {
        return d.clone();
    }
    match scope {
        Scope::System => PathBuf::from("/var/lib/labctl"),
        Scope::User => std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from(".")) // no home at all: beside the caller
            .join("labctl"),
    }
}

impl Store {
    /// The store of `stack` for the manager of `scope`.
    pub fn of(stack: &Stack, scope: Scope) -> Store {
        Store::at(
            &state_dir(stack, scope)
                .join("generations")
                .join(&stack.stack.name),
            stack.host.generations.max(1) as usize,
        )
    }

    /// The store in `dir`, keeping `keep` generations.
    pub fn at(dir: &Path, keep: usize) -> Store {
        Store {
            dir: dir.to_path_buf(),
            keep: keep.max(1),
        }
    }

    /// Make its folder when missing. An apply does so before any unit starts: a sandboxed
    /// service that records here (the proxy's syncs) can write only the paths that existed when
    /// it started (`ReadWritePaths=-`).
    ///
    /// # Errors
    /// [`Error::Write`] naming the folder.
    pub fn prepare(&self) -> Result<(), Error> {
        atomic::make_dir(&self.dir, Access::Private)
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every generation kept, oldest first. A record that cannot be read is skipped, not fatal:
    /// history and rollback still work with the others.
    ///
    /// # Errors
    /// [`Error::Read`] when the folder exists but cannot be listed.
    pub fn list(&self) -> Result<Vec<Generation>, Error> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Read {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut out: Vec<Generation> = entries
            .flatten()
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.ends_with(".json") && !n.starts_with('.')
            })
            .filter_map(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                match serde_json::from_str::<Generation>(&text) {
                    Ok(g) => Some(g),
                    Err(why) => {
                        tracing::warn!("generation record `{}` skipped: {why}", e.path().display());
                        None
                    }
                }
            })
            .collect();
        out.sort_by_key(|g| g.number);
        Ok(out)
    }

    /// Generation `number`.
    ///
    /// # Errors
    /// [`Error::Usage`] naming the generations kept when there is no such one.
    pub fn get(&self, number: u64) -> Result<Generation, Error> {
        let all = self.list()?;
        all.iter()
            .find(|g| g.number == number)
            .cloned()
            .ok_or_else(|| {
                Error::Usage(format!(
                    "no generation {number} in `{}` (kept: {})",
                    self.dir.display(),
                    kept(&all)
                ))
            })
    }

    /// The newest good generation, if any.
    ///
    /// # Errors
    /// As [`Store::list`].
    pub fn last_good(&self) -> Result<Option<Generation>, Error> {
        Ok(self.list()?.into_iter().rev().find(Generation::is_good))
    }

    /// Record `record` as the next generation; the oldest beyond the bound are removed (never
    /// the last good one). Returns its number.
    ///
    /// # Errors
    /// [`Error::Write`] when the record cannot be written (nothing half-written stays).
    pub fn record(&self, record: Record) -> Result<Generation, Error> {
        let all = self.list()?;
        let number = all.last().map_or(1, |g| g.number + 1);
        let g = Generation {
            number,
            stack_sha256: record.snapshot.hash(),
            time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            record,
        };
        let text = serde_json::to_string_pretty(&g).expect("a generation serialises");
        atomic::write(&self.path(number), text.as_bytes(), Access::Private)?;
        self.prune(all.into_iter().chain(std::iter::once(g.clone())).collect())?;
        Ok(g)
    }

    fn path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number:06}.json"))
    }

    fn prune(&self, all: Vec<Generation>) -> Result<(), Error> {
        let last_good = all.iter().rev().find(|g| g.is_good()).map(|g| g.number);
        let excess = all.len().saturating_sub(self.keep);
        for g in all
            .iter()
            .filter(|g| Some(g.number) != last_good)
            .take(excess)
        {
            atomic::remove(&self.path(g.number))?;
        }
        Ok(())
    }
}

fn kept(all: &[Generation]) -> String {
    match (all.first(), all.last()) {
        (Some(a), Some(b)) if a.number == b.number => a.number.to_string(),
        (Some(a), Some(b)) => format!("{} to {}", a.number, b.number),
        _ => "none".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(text: &str) -> Snapshot {
        Snapshot {
            path: PathBuf::from("/x/stack.toml"),
            stack_toml: text.into(),
            templates: BTreeMap::new(),
        }
    }

    fn record(result: Outcome, text: &str) -> Record {
        Record {
            commit: None,
            who: Who::Proxy,
            summary: Summary::default(),
            result,
            failure: None,
            restored: None,
            snapshot: snapshot(text),
        }
    }

    #[test]
    fn generations_are_numbered_bounded_and_keep_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path(), 3);
        store.record(record(Outcome::Ok, "a")).unwrap();
        for _ in 0..4 {
            store.record(record(Outcome::Failed, "b")).unwrap();
        }
        let all = store.list().unwrap();
        let numbers: Vec<u64> = all.iter().map(|g| g.number).collect();
        assert_eq!(numbers, [1, 4, 5], "bounded to 3, the good one kept");
        assert_eq!(store.last_good().unwrap().unwrap().number, 1);
        assert_eq!(store.record(record(Outcome::Ok, "c")).unwrap().number, 6);
        let all = store.list().unwrap();
        assert_eq!(all.iter().map(|g| g.number).collect::<Vec<_>>(), [4, 5, 6]);
        assert!(
            store
                .get(1)
                .unwrap_err()
                .to_string()
                .contains("kept: 4 to 6")
        );
        // The same stack has the same hash; another has another.
        assert_eq!(all[0].stack_sha256, all[1].stack_sha256);
        assert_ne!(all[1].stack_sha256, all[2].stack_sha256);
    }

    #[test]
    fn a_broken_record_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path(), 10);
        store.record(record(Outcome::Ok, "a")).unwrap();
        std::fs::write(dir.path().join("000002.json"), "{ half").unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        assert_eq!(store.record(record(Outcome::Ok, "b")).unwrap().number, 2);
    }
}
