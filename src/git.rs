//! Reading a stack as committed at a git revision, for `plan --base`. This shells out to `git`:
//! CI already has it, and a git library would triple labctl's build for three read-only commands.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::Error;
use crate::render::{KUBE_DIR, Templates, UNIT_DIR};
use crate::stack::{self, Stack};

fn git(dir: &Path, rev: &str, args: &[&str]) -> Result<Vec<u8>, Error> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| Error::Git {
            rev: rev.into(),
            message: format!("cannot run `git`: {e}"),
        })?;
    if !out.status.success() {
        return Err(Error::Git {
            rev: rev.into(),
            message: reason(&out.stderr, args, out.status),
        });
    }
    Ok(out.stdout)
}

/// Git's own reason for a failure, as `bad revision 'nope'`: its last `fatal:`/`error:` line
/// without the prefix (hints dropped), or the command and exit status when it said nothing.
fn reason(stderr: &[u8], args: &[&str], status: std::process::ExitStatus) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let said = lines
        .iter()
        .rev()
        .find_map(|l| {
            l.strip_prefix("fatal: ")
                .or_else(|| l.strip_prefix("error: "))
        })
        .or(lines.first().copied());
    match said {
        Some(s) => s.to_string(),
        None => format!(
            "`git {}` failed ({status}) without saying why",
            args.join(" ")
        ),
    }
}

/// The stack file and the stack's own templates as committed at a revision.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The full commit id `rev` named.
    pub commit: String,
    /// The stack file's name as messages show it: `rev:path`.
    pub shown: PathBuf,
    /// The stack file's text.
    pub text: String,
    /// The stack's own templates (its `templates/` and `systemd-templates/`), by name.
    pub templates: BTreeMap<String, String>,
}

impl Committed {
    /// The stack, checked, named `rev:path` in its problems, with the built-in templates
    /// overridden by its own.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the stack is invalid.
    pub fn parse(&self) -> Result<(Stack, Templates), Error> {
        let stack = stack::parse(&self.shown, &self.text)?;
        let mut templates = Templates::builtin();
        for (name, text) in &self.templates {
            templates.insert(name, text.clone());
        }
        Ok((stack, templates))
    }
}

/// The stack file and template overrides at `rev`, read from git's objects (the checkout is not
/// touched). `Ok(None)` when the stack file did not exist at that revision.
///
/// # Errors
/// [`Error::Git`] when git fails or `rev` is unknown.
pub fn committed(stack_path: &Path, rev: &str) -> Result<Option<Committed>, Error> {
    let dir = stack_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // `rev-list` (unlike `rev-parse --verify --quiet`) says why it does not know a revision.
    let commit = String::from_utf8_lossy(&git(
        dir,
        rev,
        &["rev-list", "-n", "1", "--end-of-options", rev, "--"],
    )?)
    .trim()
    .to_string();
    // Paths inside the repository, relative to its root, as git names them.
    let prefix = String::from_utf8_lossy(&git(dir, rev, &["rev-parse", "--show-prefix"])?)
        .trim()
        .to_string();
    let file_name = stack_path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let spec = format!("{commit}:{prefix}{file_name}");
    let listed = git(
        dir,
        rev,
        &[
            "ls-tree",
            "-r",
            "--name-only",
            &commit,
            "--",
            &format!("{prefix}{file_name}"),
        ],
    )?;
    if listed.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8(git(dir, rev, &["cat-file", "blob", &spec])?).map_err(|_| {
        Error::Git {
            rev: rev.into(),
            message: format!("`{spec}` is not UTF-8"),
        }
    })?;
    let mut templates = BTreeMap::new();
    for folder in [KUBE_DIR, UNIT_DIR] {
        let root = format!("{prefix}{folder}/");
        let names = git(
            dir,
            rev,
            &["ls-tree", "-r", "--name-only", &commit, "--", &root],
        )?;
        for name in String::from_utf8_lossy(&names).lines() {
            let blob = git(dir, rev, &["cat-file", "blob", &format!("{commit}:{name}")])?;
            let text = String::from_utf8(blob).map_err(|_| Error::Git {
                rev: rev.into(),
                message: format!("`{name}` is not UTF-8"),
            })?;
            templates.insert(name[prefix.len()..].to_string(), text);
        }
    }
    Ok(Some(Committed {
        commit,
        shown: PathBuf::from(format!("{rev}:{prefix}{file_name}")),
        text,
        templates,
    }))
}

/// The stack file and template overrides at `rev` ([`committed`]), checked. `Ok(None)` when
/// the stack file did not exist at that revision (everything is new).
///
/// # Errors
/// [`Error::Git`] when git fails or `rev` is unknown; [`Error::Invalid`] when the stack at `rev`
/// is invalid (named as `rev:path`).
pub fn stack_at(stack_path: &Path, rev: &str) -> Result<Option<(Stack, Templates)>, Error> {
    committed(stack_path, rev)?.map(|c| c.parse()).transpose()
}

/// The commit the stack at `stack_path` is exactly as (`HEAD`), when it is in a git checkout and
/// neither the stack file nor its template folders differ from it; `None` otherwise (not in
/// git, git missing, or changes not committed), and the stack's hash stands for it.
pub fn clean_commit(stack_path: &Path) -> Option<String> {
    let dir = stack_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file = stack_path.file_name()?.to_string_lossy().to_string();
    let changed = git(
        dir,
        "HEAD",
        &["status", "--porcelain", "--", &file, KUBE_DIR, UNIT_DIR],
    )
    .ok()?;
    if !changed.is_empty() {
        return None;
    }
    let head = git(dir, "HEAD", &["rev-parse", "--verify", "HEAD"]).ok()?;
    Some(String::from_utf8_lossy(&head).trim().to_string()).filter(|c| !c.is_empty())
}

/// The URL of `remote` in the checkout at `dir`; `None` when the checkout has no such remote.
///
/// # Errors
/// [`Error::Git`] when `git` cannot run or `dir` is not a checkout.
pub fn remote_url(dir: &Path, remote: &str) -> Result<Option<String>, Error> {
    let key = format!("remote.{remote}.url");
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["config", "--get", &key])
        .output()
        .map_err(|e| Error::Git {
            rev: key.clone(),
            message: format!("cannot run `git`: {e}"),
        })?;
    match out.status.code() {
        Some(0) => Ok(Some(
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )),
        // `git config --get` exits 1 when the key is unset.
        Some(1) => Ok(None),
        _ => Err(Error::Git {
            rev: key,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
    }
}

/// Fetch `branch` from `remote` into the checkout at `dir`, for the GitOps sync.
///
/// # Errors
/// [`Error::Git`] with git's reason when the fetch fails.
pub fn fetch(dir: &Path, remote: &str, branch: &str) -> Result<(), Error> {
    git(dir, branch, &["fetch", "--quiet", remote, branch]).map(drop)
}

/// How git reaches a repository over ssh with a deploy key: the `GIT_SSH_COMMAND` that uses
/// `key` only (never an agent's or the user's other keys), never asks anything (no terminal
/// under systemd), and trusts a host key on first use, remembered in `known_hosts`.
pub fn ssh_command(key: &Path, known_hosts: &Path) -> String {
    // Git runs it through the shell: the paths are quoted.
    let q = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    format!(
        "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new \
         -o UserKnownHostsFile={}",
        q(key),
        q(known_hosts)
    )
}

/// [`fetch`], over ssh as `ssh_command` says when given ([`ssh_command`]).
///
/// # Errors
/// [`Error::Git`] with git's reason when the fetch fails.
pub fn fetch_with(
    dir: &Path,
    remote: &str,
    branch: &str,
    ssh_command: Option<&str>,
) -> Result<(), Error> {
    let Some(ssh) = ssh_command else {
        return fetch(dir, remote, branch);
    };
    run_git(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["fetch", "--quiet", remote, branch])
            .env("GIT_SSH_COMMAND", ssh),
        branch,
        &["fetch"],
    )
}

/// Clone `url` into `dir` (which must not exist or be empty), checking out `branch`, over ssh
/// as `ssh_command` says when given ([`ssh_command`]).
///
/// # Errors
/// [`Error::Git`] with git's reason (unreachable, refused key, no such branch, `dir` in use).
pub fn clone(url: &str, dir: &Path, branch: &str, ssh_command: Option<&str>) -> Result<(), Error> {
    let mut c = Command::new("git");
    c.args(["clone", "--quiet", "--branch", branch, "--", url])
        .arg(dir)
        // Never a prompt for a user name or a passphrase: bootstrap may run unattended.
        .env("GIT_TERMINAL_PROMPT", "0");
    if let Some(ssh) = ssh_command {
        c.env("GIT_SSH_COMMAND", ssh);
    }
    run_git(&mut c, url, &["clone"])
}

fn run_git(c: &mut Command, rev: &str, args: &[&str]) -> Result<(), Error> {
    let out = c.output().map_err(|e| Error::Git {
        rev: rev.into(),
        message: format!("cannot run `git`: {e}"),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Git {
            rev: rev.into(),
            message: reason(&out.stderr, args, out.status),
        })
    }
}

/// Check out exactly `commit` in the checkout at `dir`, detached from any branch: the sync
/// applies what was pushed, never what a branch points at by the time it runs.
///
/// # Errors
/// [`Error::Git`] with git's reason (an unknown commit, local changes in the way).
pub fn checkout_detached(dir: &Path, commit: &str) -> Result<(), Error> {
    git(dir, commit, &["checkout", "--quiet", "--detach", commit]).map(drop)
}
