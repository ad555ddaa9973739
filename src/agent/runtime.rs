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
use crate::telemetry;

/// How long an agent may take to finish after SIGTERM before the process exits anyway. Below
/// systemd's default `TimeoutStopSec=` (90 s) so that our exit, not its SIGKILL, ends the process.
pub const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// The longest wait between retries of a failed piece of work.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The wait before retry `failures + 1` of work that failed `failures` times in a row already:
/// 1 s, 2 s, 4 s, … up to `cap` (at least 1 s, at most [`MAX_BACKOFF`]), so a failure is tried
/// again soon but never in a tight loop.
pub fn backoff(failures: u32, cap: Duration) -> Duration {
    let cap = cap.clamp(Duration::from_secs(1), MAX_BACKOFF);
    Duration::from_secs(1u64 << failures.min(16)).min(cap)
}

/// The agent's view of the process's life: when to stop, when to reload, and how to say it serves.
/// Cheap to clone; every task of an agent can hold one.
#[derive(Clone)]
pub struct Shutdown {
    stop: CancellationToken,
    reload: watch::Receiver<u64>,
    ready: Arc<dyn Fn() + Send + Sync>,
    settled: Option<fn()>,
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
                settled: None,
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

    /// The same handle, calling `hook` when the agent says it has [`settled`](Self::settled).
    pub fn on_settled(mut self, hook: Option<fn()>) -> Self {
        self.settled = hook;
        self
    }

    /// The agent is up and steady: what starting needed is done and will not run again (the
    /// collector after its first collection, the proxy once it serves). Runs the binary's hook
    /// ([`crate::Hooks::agent_settled`]), if any; nothing otherwise.
    pub fn settled(&self) {
        if let Some(hook) = self.settled {
            hook();
        }
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
/// Logs go to stderr (journald-friendly) and, with an OTLP endpoint (`otlp_endpoint`, the
/// agent's `--otlp-endpoint`, else `OTEL_EXPORTER_OTLP_ENDPOINT`), as OTLP logs, with traces and
/// metrics, under `service.name` `labctl-<name>`. An agent's error is logged and exits 1. What is
/// left to export is flushed on the way out, within [`telemetry::SHUTDOWN_DEADLINE`].
pub fn start<F, Fut>(name: &'static str, otlp_endpoint: Option<&str>, agent: F) -> ExitCode
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    start_as(
        name,
        Start {
            otlp_endpoint,
            ..Start::default()
        },
        agent,
    )
}

/// How an agent is started, beyond its own configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Start<'a> {
    /// The agent's `--otlp-endpoint`, else `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<&'a str>,
    /// The resource's `host.name` (the collector's `--node-name`: in the DaemonSet the pod's
    /// host name is not the node's); the host name when `None`.
    pub host: Option<&'a str>,
    /// The threads its runtime runs on.
    pub threads: Threads,
    /// Called when the agent has settled ([`Shutdown::settled`]).
    pub settled: Option<fn()>,
}

/// The threads an agent's async runtime runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Threads {
    /// Two worker threads: agents that serve requests while they work.
    #[default]
    Two,
    /// The starting thread alone (tokio's current-thread runtime), for an agent that mostly waits
    /// for its next tick and sends blocking reads to `spawn_blocking`: no idle workers holding
    /// stacks and allocator arenas.
    One,
}

/// [`start`], as `how` says.
pub fn start_as<F, Fut>(name: &'static str, how: Start<'_>, agent: F) -> ExitCode
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let service = format!("labctl-{name}");
    let telemetry = telemetry::init(
        telemetry::Options {
            service: &service,
            endpoint: how.otlp_endpoint,
            stderr: true,
            host: how.host,
        },
        // Agents are not given a stack file: `OTEL_RESOURCE_ATTRIBUTES=labctl.stack=…` names it.
        || None,
    );
    let code = run_agent(name, how.threads, how.settled, agent);
    telemetry.shutdown();
    code
}

fn run_agent<F, Fut>(
    name: &'static str,
    threads: Threads,
    settled: Option<fn()>,
    agent: F,
) -> ExitCode
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let mut builder = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::Two => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2);
            b
        }
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: agent {name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(supervise(name, STOP_DEADLINE, settled, agent));
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

async fn supervise<F, Fut>(
    name: &'static str,
    deadline: Duration,
    settled: Option<fn()>,
    agent: F,
) -> Result<(), Error>
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
    let shutdown = shutdown.on_settled(settled);
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
            tokio::time::sleep(deadline).await;
        } => Err(Error::Agent {
            agent: name,
            message: format!("did not stop within {} ms of the stop signal", deadline.as_millis()),
        }),
    };
    signals.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    result
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

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let i = Duration::from_secs(60);
        assert_eq!(backoff(0, i), Duration::from_secs(1));
        assert_eq!(backoff(3, i), Duration::from_secs(8));
        assert_eq!(backoff(10, i), i);
        assert_eq!(backoff(40, Duration::from_secs(3600)), MAX_BACKOFF);
    }

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

    /// The whole protocol against a socket standing in for systemd's: READY=1 when the agent
    /// serves, WATCHDOG=1 pings at half `WATCHDOG_USEC`, SIGHUP reloads and keeps running,
    /// SIGTERM says STOPPING=1 and stops; then an agent that ignores the stop is cut off at the
    /// deadline. One test: the notify variables are process-wide.
    #[test]
    fn signals_and_sd_notify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // SAFETY: no other test of this binary reads or writes these variables.
        unsafe {
            std::env::set_var("NOTIFY_SOCKET", &path);
            std::env::set_var("WATCHDOG_USEC", "200000");
            std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
        }
        let kill = |sig: &str| {
            let st = std::process::Command::new("kill")
                .args([sig, &std::process::id().to_string()])
                .status()
                .unwrap();
            assert!(st.success());
        };
        let recv = || {
            let mut buf = [0u8; 256];
            let n = sock.recv(&mut buf).expect("a notification within 5 s");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let reloads = Arc::new(AtomicUsize::new(0));
        let seen = reloads.clone();
        let agent = rt.spawn(supervise(
            "test",
            Duration::from_secs(5),
            None,
            move |mut s: Shutdown| async move {
                s.ready();
                let stop = s.clone();
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = s.reloaded() => { seen.fetch_add(1, Ordering::SeqCst); }
                    }
                }
            },
        ));
        let mut got = Vec::new();
        while !got.iter().any(|m: &String| m.contains("READY=1")) {
            got.push(recv());
        }
        // Pings keep coming (the agent is idle: only the runtime sends them).
        let pings = (0..3)
            .map(|_| recv())
            .filter(|m| m.contains("WATCHDOG=1"))
            .count();
        assert!(pings >= 2, "watchdog pings: {got:?}");
        kill("-HUP");
        for _ in 0..50 {
            if reloads.load(Ordering::SeqCst) == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(reloads.load(Ordering::SeqCst), 1, "SIGHUP reloads");
        assert!(!agent.is_finished(), "SIGHUP keeps the agent running");
        kill("-TERM");
        let stopping = (0..10).map(|_| recv()).any(|m| m.contains("STOPPING=1"));
        assert!(stopping, "STOPPING=1 after SIGTERM");
        let result = rt.block_on(agent).unwrap();
        assert!(result.is_ok(), "{result:?}");

        // An agent that never stops is cut off at the deadline, with an error naming it.
        let stubborn = rt.spawn(supervise(
            "stubborn",
            Duration::from_millis(200),
            None,
            |s| async move {
                s.ready();
                std::future::pending::<()>().await;
                Ok(())
            },
        ));
        while !recv().contains("READY=1") {}
        kill("-INT");
        let err = rt.block_on(stubborn).unwrap().unwrap_err().to_string();
        assert!(
            err.contains("stubborn") && err.contains("did not stop within 200 ms"),
            "{err}"
        );
        unsafe {
            std::env::remove_var("NOTIFY_SOCKET");
            std::env::remove_var("WATCHDOG_USEC");
            std::env::remove_var("WATCHDOG_PID");
        }
    }
}
