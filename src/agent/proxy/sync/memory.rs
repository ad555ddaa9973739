//! What the sync keeps in the proxy's state folder across restarts: the commits it rolled back
//! (never applied again), the last commit applied, and the stack of the last good sync, from
//! which the proxy takes its own settings when it starts.

use std::path::Path;

use crate::atomic::{self, Access};
use crate::error::Error;
use crate::generations::Snapshot;

/// The file naming the last commit applied.
pub const LAST_APPLIED: &str = "last-applied";
/// The file listing the commits rolled back, one per line, newest last.
pub const ROLLED_BACK: &str = "rolled-back";
/// The stack of the last good sync ([`Snapshot`] as JSON).
pub const LAST_GOOD: &str = "last-good-stack.json";
/// How many rolled-back commits are remembered.
const REMEMBERED: usize = 200;

/// The commits rolled back, oldest first.
pub fn rolled_back(state_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(state_dir.join(ROLLED_BACK))
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `commit` was rolled back before.
pub fn was_rolled_back(state_dir: &Path, commit: &str) -> bool {
    rolled_back(state_dir).iter().any(|c| c == commit)
}

/// Remember `commit` as rolled back: the sync never applies it again.
///
/// # Errors
/// [`Error::Write`] naming the file.
pub fn remember_rolled_back(state_dir: &Path, commit: &str) -> Result<(), Error> {
    let mut all = rolled_back(state_dir);
    if !all.iter().any(|c| c == commit) {
        all.push(commit.to_string());
    }
    let keep = all.len().saturating_sub(REMEMBERED);
    let text: String = all[keep..].iter().map(|c| format!("{c}\n")).collect();
    atomic::write(
        &state_dir.join(ROLLED_BACK),
        text.as_bytes(),
        Access::Private,
    )
}

/// Record a good sync of `commit`: the commit, and its stack for the proxy's next start.
///
/// # Errors
/// [`Error::Write`] naming the file.
pub fn remember_good(state_dir: &Path, commit: &str, stack: &Snapshot) -> Result<(), Error> {
    atomic::write(
        &state_dir.join(LAST_APPLIED),
        format!("{commit}\n").as_bytes(),
        Access::Private,
    )?;
    let json = serde_json::to_string_pretty(stack).expect("a snapshot serialises");
    atomic::write(&state_dir.join(LAST_GOOD), json.as_bytes(), Access::Private)
}

/// The stack of the last good sync, if one was recorded and still reads.
pub fn last_good(state_dir: &Path) -> Option<Snapshot> {
    let text = std::fs::read_to_string(state_dir.join(LAST_GOOD)).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolled_back_commits_are_remembered_once_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!was_rolled_back(dir.path(), "a"));
        remember_rolled_back(dir.path(), "a").unwrap();
        remember_rolled_back(dir.path(), "a").unwrap();
        assert_eq!(rolled_back(dir.path()), ["a"]);
        for i in 0..REMEMBERED + 5 {
            remember_rolled_back(dir.path(), &format!("c{i}")).unwrap();
        }
        let all = rolled_back(dir.path());
        assert_eq!(all.len(), REMEMBERED);
        assert!(!was_rolled_back(dir.path(), "a"), "the oldest go first");
        assert!(was_rolled_back(dir.path(), &format!("c{}", REMEMBERED + 4)));
    }
}
