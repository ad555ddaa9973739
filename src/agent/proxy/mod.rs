//! `labctl agent proxy`: the public edge. GitHub webhooks (verified, deduplicated, answered at
//! once), and data pipelines started over D-Bus on an authenticated request.
//!
//! The rooms: [`http`] is the only importer of axum (routes, limits, the server loop); [`webhook`]
//! verifies and dispatches GitHub deliveries; [`deliveries`] remembers delivery IDs on disk;
//! [`pending`] is the durable slot a push leaves for the GitOps sync, which [`sync`] runs;
//! [`pipelines`] starts units; [`metrics`] counts what they did.
//! Everything but [`http`] answers with a plain [`Reply`].

pub mod deliveries;
mod http;
pub mod metrics;
pub mod pending;
pub mod pipelines;
pub mod rescue;
pub mod sync;
pub mod webhook;

use std::path::PathBuf;
use std::sync::Arc;

use super::runtime::Shutdown;
use crate::backend::systemd::{Systemd, Target};
use crate::cli::ProxyArgs;
use crate::error::Error;

/// The variable holding the webhook's HMAC key.
pub const SECRET_VAR: &str = "LABCTL_WEBHOOK_SECRET";

/// The variable holding the ssh deploy key the sync fetches with (`[host.proxy] deploy_key`).
pub const DEPLOY_KEY_VAR: &str = "LABCTL_DEPLOY_KEY";

/// An answer, before it becomes HTTP: a status code and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// JSON body.
    pub body: serde_json::Value,
    /// `Retry-After`, in seconds (a rate-limited pipeline).
    pub retry_after: Option<u64>,
}

impl Reply {
    /// A reply with a JSON body.
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Reply {
            status,
            body,
            retry_after: None,
        }
    }

    /// A reply whose body is `{"error": message}`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Reply::json(status, serde_json::json!({ "error": message.into() }))
    }
}

/// Everything the handlers share, built once at start.
pub struct Proxy {
    /// The branch whose pushes are queued.
    pub branch: String,
    /// The checkout pushes sync.
    pub repo_dir: PathBuf,
    /// The stack file, relative to the checkout.
    pub stack_file: PathBuf,
    /// `origin`'s URL in the checkout, to tell the repository's pushes from another's.
    pub origin: Option<String>,
    /// How git reaches `origin` over ssh with the deploy key ([`DEPLOY_KEY_VAR`]), when set.
    pub git_ssh: Option<String>,
    secret: Vec<u8>,
    /// Where deliveries and the pending sync live.
    pub state_dir: PathBuf,
    /// Delivery IDs already handled, and the ones being handled. Held briefly, never across a
    /// wait.
    pub deliveries: std::sync::Mutex<deliveries::Deliveries>,
    /// Woken whenever a delivery being handled is finished or released.
    pub handled: tokio::sync::Notify,
    /// The slot a push leaves for the sync.
    pub pending: pending::Slot,
    /// The GitOps sync's wake-up and status.
    pub sync: sync::Sync,
    /// The ingest agent's unit, told to sync on an `issues` event (`None`: ingest is disabled).
    pub ingest_unit: Option<String>,
    /// The pipelines of `[host.proxy.pipelines]`.
    pub pipelines: pipelines::Pipelines,
    target: Target,
    systemd: tokio::sync::Mutex<Option<Arc<Systemd>>>,
    /// Set once a sync has armed the dead-man switch and goes on to restart this very proxy: the
    /// stop that follows is expected, and waits for no grace.
    pub restarting_itself: std::sync::atomic::AtomicBool,
    /// The stack the proxy took its own settings from (see [`configure`]).
    pub stack: crate::stack::Stack,
    /// Why the proxy has no stack of its own to take its settings from, when it has none.
    stack_problem: Option<String>,
}

impl Proxy {
    /// The systemd manager, connected on first use and again after a failure (the proxy serves
    /// webhooks while the bus is away).
    ///
    /// # Errors
    /// [`Error::Backend`] when the bus cannot be reached.
    pub async fn systemd(&self) -> Result<Arc<Systemd>, Error> {
        let mut s = self.systemd.lock().await;
        if let Some(s) = s.as_ref() {
            return Ok(s.clone());
        }
        let conn = Arc::new(Systemd::connect(self.target.clone()).await?);
        *s = Some(conn.clone());
        Ok(conn)
    }

    /// Forget the connection after a call failed, so the next use reconnects.
    pub async fn systemd_failed(&self) {
        *self.systemd.lock().await = None;
    }

    /// Whether `signature` (the `X-Hub-Signature-256` value) signs `body` with the secret.
    pub fn verify(&self, signature: Option<&str>, body: &[u8]) -> bool {
        webhook::verify_signature(&self.secret, signature, body)
    }

    /// What `/readyz` checks: the state folder takes writes, the proxy has a stack of its own
    /// (until a sync succeeds), the repository is a git checkout, systemd answers. Each failure
    /// is named.
    pub async fn readiness(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let probe = self.state_dir.join(".ready");
        if let Err(e) = std::fs::write(&probe, b"").and_then(|()| std::fs::remove_file(&probe)) {
            problems.push(format!(
                "state folder `{}` is not writable: {e}",
                self.state_dir.display()
            ));
        }
        if let Some(why) = &self.stack_problem
            && !matches!(self.sync.status().result, Some("ok"))
        {
            problems.push(why.clone());
        }
        if !self.repo_dir.join(".git").exists() {
            problems.push(format!(
                "`{}` is not a git checkout",
                self.repo_dir.display()
            ));
        }
        let ping = match self.systemd().await {
            Ok(s) => s.ping().await,
            Err(e) => Err(e),
        };
        if let Err(e) = ping {
            self.systemd_failed().await;
            problems.push(format!("systemd is not reachable: {e}"));
        }
        problems
    }
}

/// Lock a mutex whose holder may have panicked: the data (plain sets and maps) stays usable.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn agent_error(message: impl Into<String>) -> Error {
    Error::Agent {
        agent: "proxy",
        message: message.into(),
    }
}

/// Build the shared state from the command line, the environment and the stack file.
///
/// # Errors
/// [`Error::Agent`] naming the variable when the webhook secret or a pipeline's token is not set,
/// or the state folder cannot be made; [`Error::Invalid`]/[`Error::Read`] for the stack file.
pub fn configure(args: &ProxyArgs) -> Result<Proxy, Error> {
    let secret = std::env::var(SECRET_VAR).unwrap_or_default();
    if secret.is_empty() {
        return Err(agent_error(format!(
            "`{SECRET_VAR}` is not set: it holds the GitHub webhook's secret; refusing to accept \
             unsigned webhooks"
        )));
    }
    if args.sync_grace >= super::runtime::STOP_DEADLINE {
        return Err(agent_error(format!(
            "`--sync-grace {}` must be shorter than the {} s the runtime gives an agent to stop",
            humantime::format_duration(args.sync_grace),
            super::runtime::STOP_DEADLINE.as_secs()
        )));
    }
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| args.repo_dir.join(".git/labctl-proxy"));
    std::fs::create_dir_all(&state_dir).map_err(|source| Error::Write {
        path: state_dir.clone(),
        source,
    })?;
    let (stack, stack_problem) = own_stack(args, &state_dir);
    let pipelines = pipelines::Pipelines::from_stack(&stack, |var| std::env::var(var).ok())?;
    let deliveries = deliveries::Deliveries::open(&state_dir, deliveries::RETENTION)?;
    // ssh reads a key from a file only: written owner-only in the state folder, which only the
    // proxy uses, and again at each start (the env file is the source).
    let git_ssh = match std::env::var(DEPLOY_KEY_VAR) {
        Ok(key) if !key.trim().is_empty() => {
            let path = state_dir.join("deploy-key");
            let text = format!("{}\n", key.trim_end());
            crate::atomic::write(&path, text.as_bytes(), crate::atomic::Access::Private)?;
            Some(crate::git::ssh_command(
                &path,
                &state_dir.join("known_hosts"),
            ))
        }
        _ => None,
    };
    let origin = match crate::git::remote_url(&args.repo_dir, "origin") {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(
                "cannot read the checkout's `origin`: {e}; pushes are matched by branch only"
            );
            None
        }
    };
    let h = &stack.host;
    // The proxy starts and reloads units but never writes one: only the manager matters.
    let target = Target {
        scope: h.scope,
        unit_dir: h.unit_dir.clone().unwrap_or_default(),
        remote: None,
    };
    Ok(Proxy {
        branch: args.branch.clone(),
        repo_dir: args.repo_dir.clone(),
        stack_file: args.stack_file.clone(),
        origin,
        git_ssh,
        secret: secret.into_bytes(),
        pending: pending::Slot::open(&state_dir)?,
        sync: sync::Sync::default(),
        state_dir,
        deliveries: std::sync::Mutex::new(deliveries),
        handled: tokio::sync::Notify::new(),
        ingest_unit: h
            .ingest
            .enabled
            .then(|| format!("{}.service", h.ingest.unit)),
        pipelines,
        target,
        systemd: tokio::sync::Mutex::new(None),
        restarting_itself: std::sync::atomic::AtomicBool::new(false),
        stack,
        stack_problem,
    })
}

/// The stack the proxy takes its own settings from (its scope, pipelines, the ingest unit): the
/// last good sync's, else the checkout's, else none at all, so that no bad checkout can keep the
/// proxy from starting and webhooks from arriving. The second value says what is wrong, for
/// `/readyz`.
fn own_stack(
    args: &ProxyArgs,
    state_dir: &std::path::Path,
) -> (crate::stack::Stack, Option<String>) {
    if let Some(good) = sync::memory::last_good(state_dir)
        && let Ok((loaded, _)) = good.load()
    {
        return (loaded.stack, None);
    }
    let path = args.repo_dir.join(&args.stack_file);
    let why = match crate::stack::load(&path) {
        Ok(loaded) => return (loaded.stack, None),
        // Every problem, where it is: `/readyz` is where a person looks first.
        Err(Error::Invalid { file, problems }) => problems
            .iter()
            .map(|p| p.one_line(&file))
            .collect::<Vec<_>>()
            .join("; "),
        Err(e) => e.report(),
    };
    tracing::error!(
        "no stack to take the proxy's settings from (no good sync yet, and {why}): serving \
         webhooks without pipelines until a sync succeeds"
    );
    // The manager of a user's session, when the proxy runs in one; else the system's.
    let scope = if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
        crate::stack::Scope::User
    } else {
        crate::stack::Scope::System
    };
    let mut stack = crate::stack::parse(
        std::path::Path::new("(none)"),
        "[stack]\nname = \"unknown\"\n",
    )
    .expect("a stack with a name is valid");
    stack.host.scope = scope;
    stack.host.ingest.enabled = false;
    (stack, Some(format!("no good stack yet: {why}")))
}

/// Run the proxy until `shutdown`: bind, say ready, serve and sync; on stop, accept nothing more,
/// answer the requests in flight and let a running sync finish.
///
/// # Errors
/// [`Error::Agent`] when it cannot start (see [`configure`]) or cannot bind its address.
pub async fn run(config: ProxyArgs, shutdown: Shutdown) -> Result<(), Error> {
    let proxy = Arc::new(configure(&config)?);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| agent_error(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| agent_error(e.to_string()))?;
    tracing::info!(
        listen = %addr,
        branch = %proxy.branch,
        pipelines = proxy.pipelines.len(),
        state_dir = %proxy.state_dir.display(),
        "serving"
    );
    if let Some(p) = proxy.pending.read() {
        tracing::info!(commit = %p.commit, "a pushed commit is waiting to be synced");
    }
    let limits = http::Limits {
        body: config.body_limit,
        read_timeout: config.read_timeout,
        connections: config.max_connections.max(1),
    };
    shutdown.ready();
    shutdown.settled();
    // Serving: a dead-man switch a sync armed before it restarted this proxy is stopped.
    match proxy.systemd().await {
        Ok(sd) => {
            if let Err(e) = rescue::confirm(&proxy.state_dir, &sd).await {
                tracing::error!("cannot stop the dead-man switch: {}", e.report());
            }
        }
        Err(e) => tracing::error!(
            "cannot reach systemd to stop a dead-man switch: {}",
            e.report()
        ),
    }
    // The sync runs beside the server; when the server stops, a sync under way gets
    // `--sync-grace` to finish before the process exits.
    let sync = sync::run(
        proxy.clone(),
        config.stack_file.clone(),
        config.sync_grace,
        shutdown.clone(),
    );
    let (served, ()) = tokio::join!(http::serve(listener, proxy, limits, shutdown), sync);
    served
}
