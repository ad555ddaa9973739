//! The one error type. Messages are lowercase, name the thing in backticks, and put the cause last:
//! the cause is kept as the error's [`source`](std::error::Error::source) (its own chain intact),
//! and [`Error::report`] writes the whole chain, as `kube: get ConfigMap lab/x: <cause>`.

use std::path::PathBuf;

/// The cause of a failure, kept as an error so that its own chain survives.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

use crate::source::{Problem, SourceFile};

/// Everything that can go wrong in labctl.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },

    /// A file or folder could not be written.
    #[error("cannot write `{}`", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },

    /// The stack file has problems; the view shows each in place.
    #[error("`{}` is invalid: {} problem(s)", file.path.display(), problems.len())]
    Invalid {
        /// The stack file.
        file: SourceFile,
        /// Every problem found.
        problems: Vec<Problem>,
    },

    /// A template failed to render.
    #[error("template `{template}`{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Template {
        /// Template name, as `templates/grafana/deployment.yaml`.
        template: String,
        /// Line in the template, when known.
        line: Option<usize>,
        /// What went wrong.
        message: String,
    },

    /// A rendered document is not a valid object.
    #[error("template `{template}`, document {document}: {message}")]
    Manifest {
        /// Template name.
        template: String,
        /// 1-based document index within the template's output.
        document: usize,
        /// What is wrong with it.
        message: String,
    },

    /// Two templates render the same object.
    #[error("`{id}` is rendered twice: by `{first}` and by `{second}`")]
    Duplicate {
        /// The object.
        id: String,
        /// The first template.
        first: String,
        /// The second template.
        second: String,
    },

    /// Reading the stack at a git revision failed.
    #[error("cannot read the stack at git revision `{rev}`: {message}")]
    Git {
        /// The revision.
        rev: String,
        /// Why.
        message: String,
    },

    /// The command line asks for something that cannot be done as asked.
    #[error("{0}")]
    Usage(String),

    /// Talking to a backend failed.
    #[error("{plane}: {step}")]
    Backend {
        /// `kube` or `systemd`.
        plane: &'static str,
        /// The step that failed, as `observe units` or `apply deployment/grafana`.
        step: String,
        /// The cause.
        #[source]
        source: Cause,
    },

    /// A policy says no: the plan noted it, and `remedy` says what lifts it (or that nothing
    /// does). Nothing was changed.
    #[error("refusing to {what}: {why}; {remedy}")]
    Refused {
        /// What is refused, naming the resources (`take over `ConfigMap lab/x``).
        what: String,
        /// Why.
        why: String,
        /// What lifts it; the views turn it into advice.
        remedy: Remedy,
    },

    /// Another writer holds the stack's lock (an apply, the proxy's sync). Nothing was changed.
    #[error(
        "refusing to apply stack `{stack}`: another writer holds its lock: {holder}; wait for it \
         to finish (`--lock-timeout 5m` waits), or, if it is gone, run `labctl force-unlock`"
    )]
    Locked {
        /// The stack.
        stack: String,
        /// Who holds it, since when, and where.
        holder: String,
    },

    /// The Kubernetes API server refused a request.
    #[error("kube: {step}")]
    Api {
        /// The step, as `apply Deployment lab/web`.
        step: String,
        /// The server's answer.
        #[source]
        status: ApiStatus,
    },

    /// An agent could not go on.
    #[error("agent {agent}: {message}")]
    Agent {
        /// The agent, as `proxy`.
        agent: &'static str,
        /// Why.
        message: String,
    },

    /// Secrets a command needs have no value; each is named with its source and the reason.
    #[error("{} secret(s) have no value: {}", missing.len(), by_cause(missing))]
    MissingSecrets {
        /// Every secret without a value.
        missing: Vec<MissingSecret>,
    },

    /// The secret store is sealed (it seals itself whenever it restarts): nothing that needs a
    /// secret from it can go on until it is unsealed.
    #[error(
        "OpenBao at `{addr}` is sealed, so {} ha{} no value: unseal it with `bao operator unseal` \
         (once per unseal key, up to the threshold) or `labctl bootstrap --unseal --keys-file FILE`{}",
        names(blocked),
        if blocked.len() == 1 { "s" } else { "ve" },
        if others.is_empty() { String::new() } else { format!("; besides, {}", by_cause(others)) }
    )]
    Sealed {
        /// The store's address.
        addr: String,
        /// The secrets it holds that this command needs.
        blocked: Vec<String>,
        /// Secrets missing for another reason.
        others: Vec<MissingSecret>,
    },

    /// A health gate did not pass after an apply: the apply failed.
    #[error("health gate `{gate}` did not pass: {why}")]
    GateFailed {
        /// The gate: a `[health.checks]` name.
        gate: String,
        /// Why its last try failed.
        why: String,
    },

    /// An apply failed and the last good generation was applied again: the lab is as it was.
    #[error("{failure}; rolled back to generation {restored} ({from}), which is what runs now")]
    RolledBack {
        /// What failed.
        failure: String,
        /// The generation put back.
        restored: u64,
        /// What it was applied from (`commit 1a2b3c`, `stack 9f8e7d`).
        from: String,
    },

    /// An apply failed, and so did putting the last good generation back.
    #[error("{failure}; rolling back to generation {restored} failed too: {rollback}")]
    RollbackFailed {
        /// What failed first.
        failure: String,
        /// The generation that could not be put back.
        restored: u64,
        /// Why.
        rollback: String,
    },

    /// Apply finished, but some changes failed, or some hosts could not be reached; each is
    /// named. Everything else was applied.
    #[error("apply failed for {}", applied_failures(failed, hosts))]
    ApplyFailed {
        /// One per failed change.
        failed: Vec<Failure>,
        /// The hosts (`[hosts.<name>]`) that could not be reached, or went away: nothing more
        /// was done there.
        hosts: Vec<HostFailure>,
        /// With several hosts, those whose changes all went through, by name.
        done: Vec<String>,
    },

    /// Some hosts (`[hosts.<name>]`) could not be planned; the plan covers the others.
    #[error("{} host(s) could not be planned: {}", hosts.len(), hosts.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Unreached {
        /// Each host and why.
        hosts: Vec<HostFailure>,
    },
}

/// One host that could not be planned or applied, and why: ssh's own words when ssh failed (as
/// `ssh: connect to host nas port 22: Connection refused`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFailure {
    /// Its name in the stack (`[hosts.<name>]`).
    pub host: String,
    /// Why.
    pub why: String,
}

impl std::fmt::Display for HostFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host `{}`: {}", self.host, self.why)
    }
}

fn applied_failures(failed: &[Failure], hosts: &[HostFailure]) -> String {
    failed
        .iter()
        .map(ToString::to_string)
        .chain(hosts.iter().map(ToString::to_string))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A secret without a value, as data: the view groups them by cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSecret {
    /// The secret's name.
    pub name: String,
    /// Where it should have come from, short (`OpenBao secret/homelab`, `env X`, `file P`);
    /// `None` when nothing provides it.
    pub source: Option<String>,
    /// Why it has no value, in the user's terms: the same text for every secret one cause
    /// blocks (never a value or a token).
    pub cause: String,
    /// Whether the cause is the secret store (OpenBao): absent, unreachable, not initialised, or
    /// the secret not written yet. `labctl bootstrap` is the way in then.
    pub store: bool,
}

/// Secrets grouped by cause, in the order the causes first appear: `` `a`, `b` (from S): cause ``.
pub fn group_missing(missing: &[MissingSecret]) -> Vec<(String, Vec<&MissingSecret>)> {
    let mut groups: Vec<(String, Vec<&MissingSecret>)> = Vec::new();
    for m in missing {
        match groups.iter_mut().find(|(c, _)| *c == m.cause) {
            Some((_, v)) => v.push(m),
            None => groups.push((m.cause.clone(), vec![m])),
        }
    }
    groups
}

/// One line per cause: the secrets it blocks, where they come from, then the cause.
pub fn missing_line(cause: &str, secrets: &[&MissingSecret]) -> String {
    let mut sources: Vec<&str> = secrets.iter().filter_map(|m| m.source.as_deref()).collect();
    sources.dedup();
    let from = if sources.is_empty() {
        String::new()
    } else {
        format!(" (from {})", sources.join(", "))
    };
    let names: Vec<String> = secrets.iter().map(|m| m.name.clone()).collect();
    format!("{}{from}: {cause}", self::names(&names))
}

fn by_cause(missing: &[MissingSecret]) -> String {
    group_missing(missing)
        .iter()
        .map(|(cause, v)| missing_line(cause, v))
        .collect::<Vec<_>>()
        .join("; ")
}

fn names(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What lifts a refusal or fixes a failure, as data: the code that refuses chooses it from what
/// it knows (a guard in the plan, the server's status code), and the message says it last, in
/// the command line's words (what a person does next, whichever front end met it). Backends
/// never choose one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remedy {
    /// Taking over resources this stack does not own (`--adopt`).
    Adopt,
    /// Deleting and creating objects again (`--allow-replace`).
    AllowReplace,
    /// Applying without asking (`--yes`).
    Confirm,
    /// A saved plan no longer holds: make and review a new one.
    NewPlan,
    /// Taking ownership of fields another field manager owns (`--force-conflicts`).
    ForceConflicts,
    /// Advice in words that names no flag.
    Say(String),
}

/// One change apply could not make: what and why, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The thing and the cause, as `` `Deployment lab/web`: conflict: ... `` (never a value).
    pub line: String,
    /// What to do; the views turn a flag into advice, words are part of the message.
    pub remedy: Option<Remedy>,
}

impl Failure {
    /// A failure with nothing to add.
    pub fn new(line: impl Into<String>) -> Self {
        Failure {
            line: line.into(),
            remedy: None,
        }
    }

    /// The same failure with advice.
    pub fn with(mut self, remedy: Remedy) -> Self {
        self.remedy = Some(remedy);
        self
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)?;
        match &self.remedy {
            Some(r) => write!(f, "; {r}"),
            None => Ok(()),
        }
    }
}

impl std::fmt::Display for Remedy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Remedy::Adopt => "pass `--adopt` to take them over",
            Remedy::AllowReplace => "pass `--allow-replace` to do so",
            Remedy::Confirm => "pass `--yes` to apply",
            Remedy::ForceConflicts => "pass `--force-conflicts` to take ownership",
            Remedy::NewPlan => {
                "nothing was applied; make a new plan (`labctl plan --out FILE`) and review it"
            }
            Remedy::Say(words) => words,
        })
    }
}

/// The Kubernetes API server's answer to a request it refused (its `Status`): the code the
/// advice is chosen from, and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiStatus {
    /// The HTTP status code: 403, 404, 409, 422, ...
    pub code: u16,
    /// The server's message.
    pub message: String,
    /// For a server-side apply conflict: each field another manager owns, with that manager.
    pub conflicts: Vec<(String, String)>,
}

impl std::fmt::Display for ApiStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.code == 409 && !self.conflicts.is_empty() {
            let fields: Vec<String> = (self.conflicts.iter())
                .map(|(field, manager)| format!("`{field}` is owned by field manager `{manager}`"))
                .collect();
            write!(f, "conflict: {}", fields.join(", "))
        } else {
            write!(f, "{} ({})", self.message, self.code)
        }
    }
}

impl std::error::Error for ApiStatus {}

/// `e`'s message with every cause after it, joined by `: `, each said once (some clients repeat
/// their cause in their own message).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

impl Error {
    /// Whether this is an apply whose only failures are hosts that could not be reached (no
    /// change failed where labctl got to make it): the lab is as planned wherever labctl got.
    pub fn hosts_only(&self) -> bool {
        match self {
            Error::ApplyFailed { failed, hosts, .. } => failed.is_empty() && !hosts.is_empty(),
            Error::Unreached { .. } => true,
            _ => false,
        }
    }

    /// The message with every cause after it, joined by `: `.
    pub fn report(&self) -> String {
        chain(self)
    }

    /// A backend failure: `step` on `plane` failed because of `cause`.
    pub fn backend(plane: &'static str, step: impl Into<String>, cause: impl Into<Cause>) -> Self {
        Error::Backend {
            plane,
            step: step.into(),
            source: cause.into(),
        }
    }
}

/// Shorthand for results in labctl.
pub type Result<T, E = Error> = std::result::Result<T, E>;
