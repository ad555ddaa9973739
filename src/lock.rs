//! One writer at a time: the lock `apply` (and the proxy's GitOps sync) holds on a stack while it
//! plans and applies. `plan` never locks.
//!
//! - The cluster: a `coordination.k8s.io/v1` Lease `labctl-<stack>` in the stack's namespace
//!   (in `default` while that namespace does not exist yet, as on a first apply). It names its
//!   holder (`holderIdentity`, and annotations for the command, host, machine id, pid and start
//!   time) and is renewed while the holder runs, from a thread of its own so that a prompt or a
//!   slow step never lets it lapse. A Lease whose holder stopped renewing (killed, host gone) is
//!   taken over once `leaseDurationSeconds` have passed since its last renewal, and at once when
//!   its holder ran on this machine and its process is gone. Every write is guarded by
//!   `resourceVersion`, so two takers never both win.
//! - The host: a lock file taken with `flock` (the kernel releases it when its holder exits,
//!   however it exits), holding the same description of its holder.
//! - Each other host (`[hosts.<name>]`): the same lock file there, held by `flock` in a command
//!   that runs over the host's ssh connection for as long as the lock is held. The kernel on
//!   that host lets go when the command ends, however it ends: released, labctl killed (its ssh
//!   goes and the command's input ends), or the connection lost. A lock directory made with
//!   `mkdir` would outlive a killed labctl and need `force-unlock`; this never does. A host that
//!   cannot be reached is not locked and not planned either (the plan names it); one whose lock
//!   is held by another writer refuses the whole run, as the local lock does.
//!
//! A second writer waits up to its timeout (`--lock-timeout`, default: fail at once), then fails
//! naming the holder. `labctl force-unlock` removes a Lease whose holder cannot release it.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::backend::kube::{Cluster, Kube};
use crate::backend::ssh::{HostLock, LockError, Remote};
use crate::backend::systemd::Target;
use crate::error::{Error, Remedy};
use crate::resource::At;
use crate::stack::Scope;

/// How long a Lease lasts without renewal (`leaseDurationSeconds`) unless told otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// Where the Lease lives while the stack's own namespace does not exist.
const FALLBACK_NAMESPACE: &str = "default";

const ANNOTATION: &str = "labctl.lock";

/// Who holds (or wants) the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Unique per process: `host/pid/start`.
    pub identity: String,
    /// What it runs, as `labctl apply --yes`.
    pub command: String,
    /// The host name.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// When it took the lock (RFC 3339).
    pub started: String,
    /// `/etc/machine-id`: tells this machine from another of the same host name (empty when
    /// unreadable, and in records written before it was kept).
    #[serde(default)]
    pub machine: String,
}

impl Holder {
    /// This process, running `command`.
    pub fn this_process(command: &str) -> Holder {
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        let pid = std::process::id();
        let now = SystemTime::now();
        let nanos = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        Holder {
            identity: format!("{host}/{pid}/{nanos}"),
            command: command.to_string(),
            host,
            pid,
            started: humantime::format_rfc3339_seconds(now).to_string(),
            machine: machine_id(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "`{}` (pid {} on {}, since {})",
            self.command, self.pid, self.host, self.started
        )
    }
}

/// This machine's id, or empty when it has none to read.
fn machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .map(|t| t.trim().to_string())
        .unwrap_or_default()
}

/// What to lock for one apply of one stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The stack's name.
    pub stack: String,
    /// The stack's namespace, where its Lease lives.
    pub namespace: String,
    /// The cluster, when the kube plane is applied: the Lease is taken through the run's own
    /// client.
    pub kube: Option<Cluster>,
    /// The host lock file, when the systemd plane is applied.
    pub file: Option<PathBuf>,
    /// The other hosts whose units the apply may change: the same lock is taken on each.
    pub hosts: Vec<Remote>,
    /// How long the Lease lasts without renewal.
    pub lease: Duration,
}

impl Spec {
    fn lease_name(&self) -> String {
        format!("labctl-{}", self.stack)
    }
}

/// The host lock file of `stack` for a systemd target: in the user's runtime folder for the
/// user manager, in `/run/lock` for the system one.
pub fn lock_file(target: &Target, stack: &str) -> PathBuf {
    let dir = match target.scope {
        Scope::User => std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|v| !v.is_empty())
            .map(|d| PathBuf::from(d).join("labctl"))
            .unwrap_or_else(|| {
                target
                    .unit_dir
                    .parent()
                    .unwrap_or(&target.unit_dir)
                    .join("labctl")
            }),
        Scope::System => PathBuf::from("/run/lock/labctl"),
    };
    dir.join(format!("{stack}.lock"))
}

/// A held lock. [`Lock::release`] lets it go (the Lease deleted, the file unlocked); dropping
/// it without releasing unlocks the file and stops renewing, and the Lease expires by itself.
#[derive(Debug)]
pub struct Lock {
    file: Option<File>,
    /// The locks held on other hosts.
    hosts: Mutex<Vec<HostLock>>,
    /// Why the Lease could not be renewed, the last time it could not.
    lost: Arc<Mutex<Option<String>>>,
    renewing: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl Lock {
    /// Why renewing the Lease last failed (deleted by `force-unlock`, taken over, or the cluster
    /// unreachable), if it did while the lock was held: another writer may have run meanwhile.
    pub fn lost(&self) -> Option<String> {
        let lease = self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = hosts.iter_mut().filter_map(HostLock::lost).collect();
        lease
            .into_iter()
            .chain(gone)
            .reduce(|a, b| format!("{a}; {b}"))
    }

    /// Let the lock go: stop renewing, delete the Lease (when this holder still holds it),
    /// unlock the file.
    pub async fn release(mut self) {
        if let Some((stop, task)) = self.renewing.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
        // Closing the file releases the flock.
        self.file.take();
        let hosts = std::mem::take(&mut *self.hosts.lock().unwrap_or_else(|e| e.into_inner()));
        futures_util::future::join_all(hosts.into_iter().map(HostLock::release)).await;
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Not released: the renewing task stops and tries to delete the Lease if the runtime
        // still runs; otherwise the Lease expires after its duration.
        if let Some((stop, _)) = self.renewing.take() {
            let _ = stop.send(());
        }
    }
}

fn busy(spec: &Spec, holder: &str) -> Error {
    Error::Locked {
        stack: spec.stack.clone(),
        holder: holder.to_string(),
    }
}

/// Take the lock described by `spec` as `holder`, waiting up to `wait` for another holder to
/// let go. The Lease is renewed every third of its duration by a task on the current runtime
/// until [`Lock::release`]: a front end that blocks its own thread meanwhile (a prompt) must
/// run on a runtime with a worker thread.
///
/// # Errors
/// [`Error::Locked`] naming the holder when it is still held after `wait`; [`Error::Write`] when
/// the lock file cannot be made; [`Error::Backend`] when the cluster cannot be reached.
pub async fn acquire(spec: &Spec, holder: &Holder, wait: Duration) -> Result<Lock, Error> {
    let deadline = Instant::now() + wait;
    let mut lock = Lock {
        file: None,
        hosts: Mutex::default(),
        lost: Arc::default(),
        renewing: None,
    };
    if let Some(path) = &spec.file {
        lock.file = Some(lock_host(spec, path, holder, deadline).await?);
    }
    lock_remotes(spec, holder, deadline, &lock).await?;
    if let Some(cluster) = &spec.kube {
        let k = cluster.client().await?;
        let ns = take(&k, spec, holder, deadline).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let held = Held {
            spec: spec.clone(),
            holder: holder.clone(),
            lost: lock.lost.clone(),
            ns,
        };
        lock.renewing = Some((stop, tokio::spawn(held.renew_until(k, stopped))));
    }
    Ok(lock)
}

async fn lock_host(
    spec: &Spec,
    path: &Path,
    holder: &Holder,
    deadline: Instant,
) -> Result<File, Error> {
    let werr = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(werr)?;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::WOULDBLOCK) => {
                if Instant::now() >= deadline {
                    let who = host_holder(&mut file).map_or_else(
                        || format!("the host lock `{}`", path.display()),
                        |h| format!("{} (host lock `{}`)", h.describe(), path.display()),
                    );
                    return Err(busy(spec, &who));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(werr(e.into())),
        }
    }
    let text = serde_json::to_string(holder).expect("a holder serialises");
    file.set_len(0).map_err(werr)?;
    file.rewind().map_err(werr)?;
    file.write_all(text.as_bytes()).map_err(werr)?;
    file.flush().map_err(werr)?;
    Ok(file)
}

/// Take the lock on every other host: all at once when every one is free (the usual case: a
/// round trip in all), else, when the run may wait, one after another in name order, so that two
/// writers wanting the same hosts never each hold what the other waits for. A host that cannot
/// be reached is left out here (it fails alone, and the plan says why); one reached whose lock
/// cannot be taken (no `flock` there) is given up on for the run: never applied unlocked.
async fn lock_remotes(
    spec: &Spec,
    holder: &Holder,
    deadline: Instant,
    lock: &Lock,
) -> Result<(), Error> {
    let mut hosts: Vec<&Remote> = spec.hosts.iter().collect();
    hosts.sort_by(|a, b| a.name().cmp(b.name()));
    let text = serde_json::to_string(holder).expect("a holder serialises");
    let file = format!("{}.lock", spec.stack);
    let keep = |held: HostLock| {
        lock.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(held);
    };
    let busy_on = |remote: &Remote, who: &str| {
        let who = serde_json::from_str::<Holder>(who)
            .map_or_else(|_| format!("`{who}`"), |h| h.describe());
        busy(spec, &format!("{who} (lock on host `{}`)", remote.name()))
    };
    let tries = futures_util::future::join_all(hosts.iter().map(|r| async {
        match r.connect().await {
            Ok(_) => Some(r.lock(&file, &text, Duration::ZERO).await),
            Err(_) => None,
        }
    }))
    .await;
    let mut taken = Vec::new();
    let mut first_busy = None;
    for (remote, tried) in hosts.iter().zip(tries) {
        match tried {
            None => {}
            Some(Ok(held)) => taken.push(held),
            Some(Err(LockError::Busy(who))) => {
                first_busy.get_or_insert((*remote, who));
            }
            Some(Err(LockError::Failed(e))) => remote.fail(&e.report()),
        }
    }
    let Some((remote, who)) = first_busy else {
        taken.into_iter().for_each(keep);
        return Ok(());
    };
    // Someone holds one: let go of the rest, and wait for each in order, or say who.
    futures_util::future::join_all(taken.into_iter().map(HostLock::release)).await;
    if Instant::now() >= deadline {
        return Err(busy_on(remote, &who));
    }
    for remote in hosts {
        if remote.connect().await.is_err() {
            continue;
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match remote.lock(&file, &text, wait).await {
            Ok(held) => keep(held),
            Err(LockError::Busy(who)) => return Err(busy_on(remote, &who)),
            Err(LockError::Failed(e)) => remote.fail(&e.report()),
        }
    }
    Ok(())
}

fn host_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// A Lease taken: what to renew, and where to say that renewing failed.
struct Held {
    spec: Spec,
    holder: Holder,
    lost: Arc<Mutex<Option<String>>>,
    /// The namespace the Lease lives in.
    ns: String,
}

impl Held {
    /// Renew the Lease every third of its duration until `stop`, then release it.
    async fn renew_until(self, k: Kube, mut stop: tokio::sync::oneshot::Receiver<()>) {
        let Held {
            spec,
            holder,
            lost,
            ns,
        } = self;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                () = tokio::time::sleep(spec.lease / 3) => {
                    if let Err(e) = renew(&k, &spec, &ns, &holder).await {
                        let why = format!(
                            "the lock of stack `{}` was not renewed: {}",
                            spec.stack,
                            e.report()
                        );
                        tracing::warn!("{why}");
                        *lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                    }
                }
            }
        }
        if let Err(e) = release(&k, &spec, &ns, &holder).await {
            tracing::warn!("lock of stack `{}`: {}", spec.stack, e.report());
        }
    }
}

fn now_micro() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

fn lease_body(spec: &Spec, ns: &str, holder: &Holder, transitions: i64, acquired: &str) -> Value {
    let annotations: serde_json::Map<String, Value> = [
        ("command", holder.command.clone()),
        ("host", holder.host.clone()),
        ("pid", holder.pid.to_string()),
        ("started", holder.started.clone()),
        ("machine", holder.machine.clone()),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (format!("{ANNOTATION}/{k}"), Value::String(v)))
    .collect();
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": spec.lease_name(),
            "namespace": ns,
            "annotations": annotations,
        },
        "spec": {
            "holderIdentity": holder.identity,
            "leaseDurationSeconds": spec.lease.as_secs().max(1),
            "acquireTime": acquired,
            "renewTime": now_micro(),
            "leaseTransitions": transitions,
        },
    })
}

/// Who holds `lease`, unless it is free: released (no holder) or expired (not renewed within
/// its duration).
fn live_holder(lease: &Value) -> Option<String> {
    let spec = lease.get("spec")?;
    let identity = spec
        .get("holderIdentity")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())?;
    let duration = spec
        .get("leaseDurationSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let renewed = spec
        .get("renewTime")
        .or_else(|| spec.get("acquireTime"))
        .and_then(Value::as_str)
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())?;
    let age = SystemTime::now()
        .duration_since(renewed)
        .unwrap_or_default();
    if age > Duration::from_secs(duration) {
        return None;
    }
    let a = |k: &str| {
        lease
            .pointer(&format!("/metadata/annotations/{ANNOTATION}~1{k}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    // A holder on this host whose process is gone (killed: SIGKILL, OOM) holds nothing: waiting
    // out the Lease would only make the next run wait for a dead process. This host: the same
    // name, and the same machine id when the Lease says one (two machines may share a name).
    if let (Some(host), Some(pid)) = (a("host"), a("pid").and_then(|p| p.parse::<i32>().ok()))
        && host == rustix::system::uname().nodename().to_string_lossy()
        && a("machine").is_none_or(|m| m == machine_id())
        && rustix::process::Pid::from_raw(pid)
            .is_some_and(|p| rustix::process::test_kill_process(p) == Err(rustix::io::Errno::SRCH))
    {
        return None;
    }
    let described = match (a("command"), a("pid"), a("host"), a("started")) {
        (Some(c), Some(p), Some(h), Some(s)) => format!("`{c}` (pid {p} on {h}, since {s})"),
        _ => format!("`{identity}`"),
    };
    let ns = lease
        .at("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = lease
        .at("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some(format!(
        "{described}, Lease {ns}/{name} renewed {} s ago, expiring after {duration} s without renewal",
        age.as_secs()
    ))
}

fn holder_identity(lease: &Value) -> Option<&str> {
    lease.at("/spec/holderIdentity").and_then(Value::as_str)
}

/// Take the Lease: create it, or take over a free one, guarded by its `resourceVersion`. Returns
/// the namespace it lives in.
async fn take(k: &Kube, spec: &Spec, holder: &Holder, deadline: Instant) -> Result<String, Error> {
    let name = spec.lease_name();
    loop {
        // An account limited to the stack's namespace may not read namespaces: it works there.
        let exists = k.namespace_exists(&spec.namespace).await.unwrap_or(true);
        let home = if exists {
            spec.namespace.as_str()
        } else {
            FALLBACK_NAMESPACE
        };
        // A holder that started before the namespace existed holds the fallback Lease.
        let mut held = None;
        if home != FALLBACK_NAMESPACE
            && let Ok(Some(l)) = k.get_lease(FALLBACK_NAMESPACE, &name).await
            && holder_identity(&l) != Some(holder.identity.as_str())
        {
            held = live_holder(&l);
            if held.is_none() {
                // Expired or released: it no longer stands for anyone.
                let _ = k.delete_lease(FALLBACK_NAMESPACE, &name).await;
            }
        }
        if held.is_none() {
            let won = match k.get_lease(home, &name).await? {
                None => {
                    let body = lease_body(spec, home, holder, 0, &now_micro());
                    k.write_lease(home, &body, false).await?.is_some()
                }
                Some(l) => match live_holder(&l) {
                    Some(who) if holder_identity(&l) != Some(holder.identity.as_str()) => {
                        held = Some(who);
                        false
                    }
                    _ => {
                        let transitions = l
                            .at("/spec/leaseTransitions")
                            .and_then(Value::as_i64)
                            .unwrap_or(0)
                            + 1;
                        let mut body = lease_body(spec, home, holder, transitions, &now_micro());
                        body["metadata"]["resourceVersion"] =
                            l["metadata"]["resourceVersion"].clone();
                        k.write_lease(home, &body, true).await?.is_some()
                    }
                },
            };
            if won {
                return Ok(home.to_string());
            }
        }
        if let Some(who) = held {
            if Instant::now() >= deadline {
                return Err(busy(spec, &who));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Lost a race (409): look again at once.
    }
}

async fn renew(k: &Kube, spec: &Spec, ns: &str, holder: &Holder) -> Result<(), Error> {
    let name = spec.lease_name();
    let Some(mut l) = k.get_lease(ns, &name).await? else {
        return Err(Error::backend(
            "kube",
            format!("renew Lease {ns}/{name}"),
            "it was deleted (`labctl force-unlock`?)",
        ));
    };
    if holder_identity(&l) != Some(holder.identity.as_str()) {
        return Err(Error::backend(
            "kube",
            format!("renew Lease {ns}/{name}"),
            format!(
                "it was taken over by `{}`",
                holder_identity(&l).unwrap_or("?")
            ),
        ));
    }
    l["spec"]["renewTime"] = json!(now_micro());
    k.write_lease(ns, &l, true).await?;
    Ok(())
}

async fn release(k: &Kube, spec: &Spec, ns: &str, holder: &Holder) -> Result<(), Error> {
    let name = spec.lease_name();
    if let Some(l) = k.get_lease(ns, &name).await?
        && holder_identity(&l) == Some(holder.identity.as_str())
    {
        k.delete_lease(ns, &name).await?;
    }
    Ok(())
}

/// What `labctl force-unlock` did.
#[derive(Debug, Default)]
pub struct Unlocked {
    /// One line per lock removed or found free.
    pub lines: Vec<String>,
}

/// Remove the lock of `spec` whoever holds it: the Lease is deleted (in the stack's namespace
/// and the fallback one). The host lock cannot be taken from a live process (the kernel holds it
/// for its holder and releases it when that exits), here or on another host: a held one is an
/// error naming its holder.
///
/// # Errors
/// [`Error::Refused`] when the host lock is held by a running process; [`Error::Backend`] when
/// the cluster cannot be reached.
pub async fn force_unlock(spec: &Spec) -> Result<Unlocked, Error> {
    let mut out = Unlocked::default();
    if let Some(cluster) = &spec.kube {
        let k = cluster.client().await?;
        let name = spec.lease_name();
        let mut found = false;
        for ns in [spec.namespace.as_str(), FALLBACK_NAMESPACE] {
            if let Some(l) = k.get_lease(ns, &name).await? {
                found = true;
                let who = live_holder(&l).unwrap_or_else(|| {
                    format!(
                        "`{}` (expired or released)",
                        holder_identity(&l).unwrap_or("nobody")
                    )
                });
                k.delete_lease(ns, &name).await?;
                out.lines
                    .push(format!("Removed Lease {ns}/{name}, held by {who}."));
            }
        }
        if !found {
            out.lines.push(format!(
                "No Lease {}/{name}: the cluster lock is free.",
                spec.namespace
            ));
        }
    }
    for remote in &spec.hosts {
        let name = remote.name();
        match remote.lock_holder(&format!("{}.lock", spec.stack)).await {
            Ok(None) => out
                .lines
                .push(format!("The lock on host `{name}` is free.")),
            Ok(Some(who)) => {
                let who = serde_json::from_str::<Holder>(&who)
                    .map_or_else(|_| format!("`{who}`"), |h| h.describe());
                return Err(Error::Refused {
                    what: format!("unlock the lock on host `{name}`"),
                    why: format!("{who} holds it and is still running"),
                    remedy: Remedy::Say(
                        "stop that process: the lock is released when it exits, or when its \
                         connection to the host ends"
                            .into(),
                    ),
                });
            }
            Err(e) => out.lines.push(format!(
                "Host `{name}` not reached ({}): a lock there goes when the run holding it, or \
                 its connection, ends.",
                e.report()
            )),
        }
    }
    if let Some(path) = &spec.file {
        match std::fs::OpenOptions::new().read(true).open(path) {
            Err(_) => out
                .lines
                .push(format!("No host lock `{}`: it is free.", path.display())),
            Ok(mut file) => {
                match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
                    Ok(()) => out
                        .lines
                        .push(format!("The host lock `{}` is free.", path.display())),
                    Err(_) => {
                        let who = host_holder(&mut file)
                            .map_or_else(|| "a running process".into(), |h| h.describe());
                        return Err(Error::Refused {
                            what: format!("unlock the host lock `{}`", path.display()),
                            why: format!("{who} holds it and is still running"),
                            remedy: Remedy::Say(
                                "stop that process: the lock is released when it exits".into(),
                            ),
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(renewed_ago: u64, duration: u64) -> Value {
        let t = SystemTime::now() - Duration::from_secs(renewed_ago);
        json!({"metadata": {"name": "labctl-s", "namespace": "s", "annotations": {
                "labctl.lock/command": "labctl apply", "labctl.lock/pid": "7",
                "labctl.lock/host": "h", "labctl.lock/started": "2026-01-01T00:00:00Z"}},
               "spec": {"holderIdentity": "h/7/1", "leaseDurationSeconds": duration,
                        "renewTime": humantime::format_rfc3339_micros(t).to_string()}})
    }

    #[test]
    fn a_lease_of_a_dead_process_on_this_host_is_free_at_once() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        let mut l = lease(1, 30);
        l["metadata"]["annotations"]["labctl.lock/host"] = json!(host);
        l["metadata"]["annotations"]["labctl.lock/pid"] = json!(dead.to_string());
        assert_eq!(live_holder(&l), None);
        // The same name on another machine: its process cannot be seen from here.
        l["metadata"]["annotations"]["labctl.lock/machine"] = json!("another-machine");
        assert!(live_holder(&l).is_some());
        l["metadata"]["annotations"]["labctl.lock/machine"] = json!(machine_id());
        assert_eq!(live_holder(&l), None);
        // A live one (this test) still holds it.
        l["metadata"]["annotations"]["labctl.lock/pid"] = json!(std::process::id().to_string());
        assert!(live_holder(&l).is_some());
    }

    #[test]
    fn a_lease_not_renewed_within_its_duration_is_free() {
        let held = live_holder(&lease(1, 30)).expect("held");
        assert!(
            held.starts_with(
                "`labctl apply` (pid 7 on h, since 2026-01-01T00:00:00Z), Lease s/labctl-s renewed"
            ),
            "{held}"
        );
        assert_eq!(live_holder(&lease(31, 30)), None);
        let mut released = lease(1, 30);
        released["spec"]["holderIdentity"] = json!("");
        assert_eq!(live_holder(&released), None);
    }

    #[tokio::test]
    async fn the_host_lock_names_its_holder_and_is_free_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let spec = Spec {
            stack: "s".into(),
            namespace: "s".into(),
            kube: None,
            file: Some(dir.path().join("l/s.lock")),
            hosts: Vec::new(),
            lease: DEFAULT_LEASE,
        };
        let me = Holder::this_process("labctl apply --yes");
        let held = acquire(&spec, &me, Duration::ZERO).await.unwrap();
        // flock locks belong to the open file: a second open in this process conflicts too.
        let e = acquire(
            &spec,
            &Holder::this_process("other"),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::Locked { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("`labctl apply --yes` (pid "), "{e}");
        held.release().await;
        let again = acquire(&spec, &me, Duration::ZERO)
            .await
            .expect("free again");
        drop(again);
        acquire(&spec, &me, Duration::ZERO)
            .await
            .expect("free once dropped too");
    }
}
