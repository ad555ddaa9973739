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

    /// A policy says no: the plan noted it, and the flag or change in `hint` lifts it (or
    /// nothing does). Nothing was changed.
    #[error("refusing to {what}: {why}; {hint}")]
    Refused {
        /// What is refused, naming the resources (`take over `ConfigMap lab/x``).
        what: String,
        /// Why.
        why: String,
        /// What to do about it (`pass `--adopt` to take them over`).
        hint: String,
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
    #[error("{} secret(s) have no value: {}", missing.len(), missing.join("; "))]
    MissingSecrets {
        /// One line per secret: name, source, reason.
        missing: Vec<String>,
    },

    /// Apply finished, but some changes failed; each is named.
    #[error("apply failed for {}", failed.join(", "))]
    ApplyFailed {
        /// One line per failed change.
        failed: Vec<String>,
    },
}

impl Error {
    /// The message with every cause after it, joined by `: `.
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            // Some client errors repeat their cause in their own message: say it once.
            let text = c.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            cause = c.source();
        }
        out
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
