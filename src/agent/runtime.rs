//! What every agent shares: signals, the shutdown deadline, systemd's notify protocol and logging.
//!
//! An agent is `run(config, shutdown) -> Result<(), Error>`. [`start`] builds the tokio runtime,
//! turns SIGTERM/SIGINT into [`Shutdown::cancelled`] and SIGHUP into [`Shutdown::reloaded`], tells
//! systemd `READY=1` when the agent calls [`Shutdown::ready`], pings the watchdog when the unit sets
//! `WatchdogSec=`, says `STOPPING=1` on the way out, and gives the agent a deadline to finish after
//! the stop signal: systemd's own stop timeout would otherwise end it with SIGKILL mid-write.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::Error;

/// How long an agent may take to finish after SIGTERM before the process exits anyway. Below
/// systemd's default `TimeoutStopSec=` (90 s) so that our exit, not its SIGKILL, ends the process.
pub const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// The agent's view of the process's life: when to stop, when to reload, and how to say it serves.
/// Cheap to clone; every task of an agent can hold one.
#[derive(Clone)]
pub struct Shutdown {
    stop: CancellationToken,
    reload: watch::Receiver<u64>,
    ready: Arc<dyn Fn() + Send + Sync>,
}

/// The other end of a [`Shutdown`]: the runtime (or a test) triggers stop and reload through it.
#[derive(Clone)]
pub struct Trigger {
    stop: CancellationToken,
    reload: Arc<watch::Sender<u64>>,
}

impl Shutdown {
    /// A connected pair. `ready` runs each time the agent calls [`Shutdown::ready`].
    pub fn new(ready: impl Fn() + Send + Sync + 'static) -> (Shutdown, Trigger) {
        let stop = CancellationToken::new();
        let (tx, rx) = watch::channel(0);
        (
            Shutdown {
                stop: stop.clone(),
                reload: rx,
                ready: Arc::new(ready),
            },
            Trigger {
                stop,
                reload: Arc::new(tx),
            },
        )
    }

    /// Resolves once a stop was asked for (SIGTERM, SIGINT, or a test's [`Trigger::stop`]).
    pub async fn cancelled(&self) {
        self.stop.cancelled().await;
    }

    /// Whether a stop was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Resolves at the next reload request (SIGHUP) after the last one this handle saw. Never
    /// resolves once the runtime is gone.
    pub async fn reloaded(&mut self) {
        if self.reload.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The agent serves: tells systemd `READY=1` (a `Type=notify` unit's start job completes now).
    pub fn ready(&self) {
        (self.ready)();
    }
}

impl Trigger {
    /// Ask the agent to stop.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Ask the agent to reload.
    pub fn reload(&self) {
        self.reload.send_modify(|n| *n += 1);
    }
}

/// Run agent `name` until it returns or is stopped; the process's exit code.
///
/// Logs go to stderr (and through `tracing` to whatever subscriber is installed); an agent's error
/// is logged and exits 1.
pub fn start<F, Fut>(name: &'static str, agent: F) -> ExitCode
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: agent {name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(supervise(name, agent));
    // Tasks an agent left behind must not hold the process past the deadline.
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(agent = name, "{e}");
            ExitCode::FAILURE
        }
    }
}

async fn supervise<F, Fut>(name: &'static str, agent: F) -> Result<(), Error>
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    use tokio::signal::unix::{SignalKind, signal};
    let sig = |kind: SignalKind, what: &str| {
        signal(kind).map_err(|e| Error::Agent {
            agent: name,
            message: format!("cannot listen for {what}: {e}"),
        })
    };
    let (mut term, mut int, mut hup) = (
        sig(SignalKind::terminate(), "SIGTERM")?,
        sig(SignalKind::interrupt(), "SIGINT")?,
        sig(SignalKind::hangup(), "SIGHUP")?,
    );
    let (shutdown, trigger) = Shutdown::new(move || {
        notify(&[sd_notify::NotifyState::Ready]);
        tracing::info!(agent = name, "ready");
    });
    let watchdog = sd_notify::watchdog_enabled().map(|every| {
        // systemd's advice: ping at half the interval.
        let every = every / 2;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                notify(&[sd_notify::NotifyState::Watchdog]);
            }
        })
    });
    let signals = {
        let trigger = trigger.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    _ = hup.recv() => {
                        tracing::info!(agent = name, "SIGHUP: reloading");
                        trigger.reload();
                    }
                }
            }
            tracing::info!(agent = name, "stopping");
            notify(&[sd_notify::NotifyState::Stopping]);
            trigger.stop();
        })
    };
    let work = agent(shutdown.clone());
    tokio::pin!(work);
    let result = tokio::select! {
        r = &mut work => r,
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(STOP_DEADLINE).await;
        } => Err(Error::Agent {
            agent: name,
            message: format!("did not stop within {} s of the stop signal", STOP_DEADLINE.as_secs()),
        }),
    };
    signals.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    result
}

/// Logs to stderr. Under systemd (`JOURNAL_STREAM` set) the journal stamps each line itself, so
/// ours carry no time and no colour.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LABCTL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(!journal && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if journal {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}

/// Tell systemd; outside a `Type=notify` unit (`NOTIFY_SOCKET` unset) this does nothing.
fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn stop_and_reload_reach_every_clone() {
        let readies = Arc::new(AtomicUsize::new(0));
        let r = readies.clone();
        let (shutdown, trigger) = Shutdown::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let mut a = shutdown.clone();
        shutdown.ready();
        trigger.reload();
        tokio::time::timeout(Duration::from_secs(1), a.reloaded())
            .await
            .expect("reload seen");
        assert!(!a.is_cancelled());
        trigger.stop();
        tokio::time::timeout(Duration::from_secs(1), shutdown.cancelled())
            .await
            .expect("stop seen");
        assert!(a.is_cancelled());
        assert_eq!(readies.load(Ordering::SeqCst), 1);
    }
}
