//! Other machines, over ssh: the only runner of `ssh`. A run reaches each host once, through one
//! master connection (`ControlMaster`) that everything it does there reuses: the probe that
//! checks the host (systemd's `systemd-stdio-bridge` is installed, where the manager keeps its
//! folders), D-Bus through that bridge (the transport `systemctl -H` uses; the systemd backend
//! speaks it), reading and writing files, and the host's lock.
//!
//! `LABCTL_SSH_COMMAND` replaces `ssh` and its options, as `GIT_SSH_COMMAND` does for git: it
//! runs through `sh -c`, followed by labctl's own options, the destination and the command.
//! Options it sets win over labctl's (ssh keeps the first value it reads). Nothing is ever asked
//! on a terminal (`BatchMode=yes`): keys come from an agent or from files without a passphrase.
//!
//! Remote commands run as `sh -c SCRIPT sh ARGS...`, every word quoted for the remote shell
//! ([`quote`]). File contents travel on stdin as base64, never on a command line (the remote `ps`
//! shows those); env files are created owner-only (`umask 077`) from their first byte.
//!
//! A host that cannot be reached is remembered as such for the rest of the run, with ssh's own
//! words (the last line it printed, as `ssh: connect to host nas port 22: Connection refused`):
//! everything else the run does there fails at once with that reason.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

use crate::error::Error;
use crate::stack::Scope;

mod files;
mod lock;
mod script;

pub use files::{Put, Step};
pub use lock::{HostLock, LockError};
pub use script::quote;
use script::*;

/// The variable that replaces `ssh` and its options.
pub const SSH_COMMAND_VAR: &str = "LABCTL_SSH_COMMAND";

/// How long a master connection outlives its last session: long enough to carry a run from its
/// lock through its plan to its apply, short enough that a killed labctl leaves nothing behind
/// for long.
const PERSIST: &str = "ControlPersist=60";

fn ssh_error(step: impl Into<String>, cause: impl Into<crate::error::Cause>) -> Error {
    Error::backend("ssh", step, cause)
}

/// The hosts of one run: one [`Remote`] per host name, shared by every step of the run (its
/// lock, observing for the plan, applying, a rollback), as a [`super::kube::Cluster`] is. The
/// master connections close when the last clone goes.
#[derive(Clone, Default)]
pub struct Remotes {
    inner: Arc<Mutex<RemotesInner>>,
}

#[derive(Default)]
struct RemotesInner {
    control: Option<Arc<ControlDir>>,
    hosts: BTreeMap<String, Remote>,
}

impl std::fmt::Debug for Remotes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .inner
            .lock()
            .map(|i| i.hosts.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("Remotes").field("hosts", &names).finish()
    }
}

impl Remotes {
    /// The host `name`, reached at `destination` (as ssh takes it), whose systemd manager of
    /// `scope` labctl manages, its unit files in `unit_dir` (`None`: the scope's own); not
    /// connected yet. The same host gives the same handle for the whole run; one whose
    /// settings changed (another stack read in the same run, as a rollback's) gets a new one.
    ///
    /// # Errors
    /// [`Error::Write`] when the folder for the master connections' sockets cannot be made.
    pub fn get(
        &self,
        name: &str,
        destination: &str,
        scope: Scope,
        unit_dir: Option<&Path>,
    ) -> Result<Remote, Error> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = inner.hosts.get(name)
            && r.destination == destination
            && r.scope == scope
            && r.unit_dir.as_deref() == unit_dir
        {
            return Ok(r.clone());
        }
        let control = match &inner.control {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(ControlDir::new()?);
                inner.control = Some(c.clone());
                c
            }
        };
        let socket = control.dir.join(inner.hosts.len().to_string());
        let remote = Remote {
            name: name.to_string(),
            destination: destination.to_string(),
            scope,
            unit_dir: unit_dir.map(Path::to_path_buf),
            shared: Arc::new(Shared {
                socket,
                control,
                probed: tokio::sync::OnceCell::new(),
                last_words: Mutex::new(None),
                failed: Mutex::new(None),
                listing: Mutex::new(None),
                bridge: Mutex::new(None),
            }),
        };
        inner.hosts.insert(name.to_string(), remote.clone());
        Ok(remote)
    }

    /// End the run's master connections and remove their folder: the run is over. A host asked
    /// for again after this is reached anew.
    pub fn close(&self) {
        let control = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.hosts.clear();
            inner.control.take()
        };
        if let Some(c) = control {
            c.close();
        }
    }
}

/// The folder of a run's master sockets, owner-only. Its masters are asked to exit when it is
/// closed: explicitly at the end of a run ([`Remotes::close`]), or when it goes.
struct ControlDir {
    dir: PathBuf,
    /// The master sockets made, with the destination each reaches.
    masters: Mutex<Vec<(PathBuf, String)>>,
}

impl ControlDir {
    fn new() -> Result<Self, Error> {
        // A socket path may be about 100 bytes long, and ssh adds a random suffix while it
        // makes one: a long TMPDIR would not leave room, so short `/tmp` then.
        let tmp = std::env::temp_dir();
        let base = if tmp.as_os_str().len() > 40 {
            PathBuf::from("/tmp")
        } else {
            tmp
        };
        let dir = tempfile::Builder::new()
            .prefix("labctl-ssh-")
            .tempdir_in(&base)
            .map_err(|source| Error::Write { path: base, source })?
            .keep();
        Ok(ControlDir {
            dir,
            masters: Mutex::new(Vec::new()),
        })
    }

    /// Ask each master to exit (quick: a local socket; without it a master lingers for its
    /// persist time), then remove the folder. Done once.
    fn close(&self) {
        let masters = std::mem::take(&mut *self.masters.lock().unwrap_or_else(|e| e.into_inner()));
        // All at once: each is a local round trip, and a run's end waits for them.
        let asked: Vec<std::process::Child> = masters
            .iter()
            .filter(|(socket, _)| socket.exists())
            .filter_map(|(socket, destination)| {
                base_command_std(socket)
                    .args(["-O", "exit", "--", destination])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .ok()
            })
            .collect();
        for mut child in asked {
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for ControlDir {
    fn drop(&mut self) {
        self.close();
    }
}

/// One host of a run, reached over ssh. Cheap to clone: clones share the master connection,
/// the probe's findings and ssh's last words.
#[derive(Clone)]
pub struct Remote {
    name: String,
    destination: String,
    scope: Scope,
    unit_dir: Option<PathBuf>,
    shared: Arc<Shared>,
}

struct Shared {
    socket: PathBuf,
    control: Arc<ControlDir>,
    /// What the first contact found, or why there was none.
    probed: tokio::sync::OnceCell<Result<Probed, String>>,
    /// The last line ssh printed when it failed, for the host's failure.
    last_words: Mutex<Option<String>>,
    /// Why the run gave up on the host after reaching it (its lock could not be taken).
    failed: Mutex<Option<String>>,
    /// The unit folder as the last contact read it (the probe, or the lock once taken), for
    /// the plan that comes next: taken once.
    listing: Mutex<Option<(PathBuf, UnitListing)>>,
    /// The probe's session, become the bridge to the manager's bus: taken by the first D-Bus
    /// connection.
    bridge: Mutex<Option<(UnixStream, Bridge)>>,
}

/// A unit folder as read: its regular files by name, the drop-ins below it, and the restart
/// markers in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitListing {
    /// Its regular files by name, with their text.
    pub files: BTreeMap<String, String>,
    /// The drop-ins below it.
    pub drop_ins: Vec<String>,
    /// The units an apply marked as owed a restart and never got to (their markers).
    pub restart_owed: BTreeSet<String>,
}

impl PartialEq for Remote {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.destination == other.destination
            && self.scope == other.scope
            && self.unit_dir == other.unit_dir
    }
}

impl Eq for Remote {}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("name", &self.name)
            .field("destination", &self.destination)
            .finish()
    }
}

/// What the first contact with a host found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    /// Where `systemd-stdio-bridge` is.
    bridge: String,
    /// `HOME`, `XDG_CONFIG_HOME`, `XDG_RUNTIME_DIR` and `UID` as the ssh user's shell has them.
    env: BTreeMap<String, String>,
    /// The manager's unit folder there: the one asked for, or the scope's.
    unit_dir: PathBuf,
}

/// ssh as the user configured it: `LABCTL_SSH_COMMAND` through `sh -c` (as git runs
/// `GIT_SSH_COMMAND`), else `ssh`; then labctl's options for `socket`. A command of plain words
/// (no quote, variable or other shell syntax) is run directly, split at white space: what the
/// shell would do, without starting one for every ssh.
fn base_command_std(socket: &Path) -> std::process::Command {
    let plain = |s: &str| {
        s.chars().all(|c| {
            c.is_ascii_alphanumeric() || c.is_ascii_whitespace() || "-_./=:@,+%".contains(c)
        })
    };
    let mut c = match std::env::var(SSH_COMMAND_VAR) {
        Ok(custom) if !custom.trim().is_empty() && plain(&custom) => {
            let mut words = custom.split_ascii_whitespace();
            let mut c = std::process::Command::new(words.next().unwrap_or("ssh"));
            c.args(words);
            c
        }
        Ok(custom) if !custom.trim().is_empty() => {
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(format!("{custom} \"$@\"")).arg("ssh");
            c
        }
        _ => std::process::Command::new("ssh"),
    };
    c.args([
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=15",
        "-o",
        "ServerAliveInterval=5",
        "-o",
        "ServerAliveCountMax=3",
        "-o",
        "ControlMaster=auto",
        "-o",
        PERSIST,
        "-o",
    ])
    .arg(format!("ControlPath={}", socket.display()))
    .arg("-T");
    c
}

/// The last line that says something.
fn last_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_string)
}

/// How a remote command ended badly.
enum Fault {
    /// ssh itself failed (exit 255): its last words.
    Ssh(String),
    /// The command failed: its last words, or its status.
    Command(String),
}

impl Remote {
    /// The host's name in the stack (`[hosts.<name>]`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where ssh goes.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// The last line ssh printed when it failed on this host, if it did: its own reason.
    pub fn last_words(&self) -> Option<String> {
        self.shared
            .last_words
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn heard(&self, words: &str) {
        *self
            .shared
            .last_words
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(words.to_string());
    }

    fn command(&self, remote_line: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::from(base_command_std(&self.shared.socket));
        c.args(["--", &self.destination, remote_line])
            .kill_on_drop(true);
        c
    }

    /// Reach the host (the first call opens the master connection) and check it: the bridge
    /// must be installed. A host that could not be reached stays so for the run.
    ///
    /// # Errors
    /// [`Error::Backend`] with ssh's own reason (`ssh: connect to host ...: Connection
    /// refused`, `Permission denied (publickey)`), or naming the host that lacks
    /// `systemd-stdio-bridge`.
    pub async fn connect(&self) -> Result<&Probed, Error> {
        let probed = self
            .shared
            .probed
            .get_or_init(|| async {
                {
                    let mut masters = self
                        .shared
                        .control
                        .masters
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    masters.push((self.shared.socket.clone(), self.destination.clone()));
                }
                let dir = self
                    .unit_dir
                    .as_ref()
                    .map(|d| d.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let scope = match self.scope {
                    Scope::System => "system",
                    Scope::User => "user",
                };
                let (text, pending) = self.probe(&dir, scope).await?;
                let mut env = BTreeMap::new();
                let mut bridge = String::new();
                let mut unit_dir = PathBuf::new();
                let mut lines = text.lines();
                for l in lines.by_ref() {
                    if l == "L" {
                        break;
                    }
                    if let Some((k, v)) = l.split_once('=') {
                        match k {
                            "bridge" => bridge = v.to_string(),
                            "dir" => unit_dir = PathBuf::from(v),
                            _ if !v.is_empty() => {
                                env.insert(k.to_string(), v.to_string());
                            }
                            _ => {}
                        }
                    }
                }
                if let Some(listing) = parse_listing(&mut lines) {
                    self.keep_listing(&unit_dir, listing);
                }
                if bridge.is_empty() {
                    return Err(format!(
                        "`systemd-stdio-bridge` is not installed on `{}` (systemd's D-Bus \
                         bridge, which `systemctl -H` uses too): labctl reaches the host's \
                         systemd through it",
                        self.name
                    ));
                }
                *self.shared.bridge.lock().unwrap_or_else(|e| e.into_inner()) = pending;
                Ok(Probed {
                    bridge,
                    env,
                    unit_dir,
                })
            })
            .await;
        let failed = self
            .shared
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match (probed, failed) {
            (Ok(_), Some(why)) => Err(ssh_error(format!("use host `{}`", self.name), why)),
            (Ok(p), None) => Ok(p),
            (Err(why), _) => Err(ssh_error(
                format!("reach host `{}` (`{}`)", self.name, self.destination),
                why.clone(),
            )),
        }
    }

    /// Give up on the host for the rest of the run, saying `why`: from now on
    /// [`Remote::connect`] (and so everything else on the host) fails with it.
    pub fn fail(&self, why: &str) {
        *self.shared.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_string());
    }

    /// After the host's connection went: ssh's own words on reaching it again now (a fresh
    /// connection, not through the master), as `ssh: connect to host nas port 22: Connection
    /// refused`; `None` when it can be reached again.
    pub async fn diagnose(&self) -> Option<String> {
        let mut c = tokio::process::Command::from(base_command_std(Path::new("none")));
        c.args(["-o", "ConnectTimeout=5", "--", &self.destination, "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(10), c.output())
            .await
            .ok()?
            .ok()?;
        if out.status.success() {
            return None;
        }
        let words = last_line(&String::from_utf8_lossy(&out.stderr))?;
        self.heard(&words);
        Some(words)
    }

    /// A variable of the ssh user's environment on the host, as the probe found it (`HOME`,
    /// `XDG_CONFIG_HOME`, `XDG_RUNTIME_DIR`, `UID`); `None` before [`Remote::connect`].
    pub fn var(&self, name: &str) -> Option<String> {
        match self.shared.probed.get() {
            Some(Ok(p)) => p.env.get(name).cloned(),
            _ => None,
        }
    }

    /// Run `line` on the host, feeding it `stdin`: its stdout, or how it failed.
    async fn output(&self, line: &str, stdin: Option<&[u8]>) -> Result<Vec<u8>, Fault> {
        let mut c = self.command(line);
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .map_err(|e| Fault::Ssh(format!("cannot run ssh: {e}")))?;
        let pipe = child.stdin.take();
        let feed = async move {
            if let (Some(bytes), Some(mut pipe)) = (stdin, pipe) {
                // A command that stops reading early is its own failure, seen in its status.
                let _ = pipe.write_all(bytes).await;
            }
        };
        let (_, out) = tokio::join!(feed, child.wait_with_output());
        let out = out.map_err(|e| Fault::Ssh(format!("ssh: {e}")))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(255) => {
                let why = last_line(&stderr).unwrap_or_else(|| "ssh failed (exit 255)".into());
                self.heard(&why);
                Err(Fault::Ssh(why))
            }
            code => Err(Fault::Command(last_line(&stderr).unwrap_or_else(|| {
                format!(
                    "exited with {}",
                    code.map_or("a signal".into(), |c| c.to_string())
                )
            }))),
        }
    }

    /// Run `script` with `args` on the host (after [`Remote::connect`]): its stdout.
    async fn run(
        &self,
        step: &str,
        script: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Vec<u8>, Error> {
        self.connect().await?;
        self.output(&script_line(script, args), stdin)
            .await
            .map_err(|f| match f {
                Fault::Ssh(why) | Fault::Command(why) => {
                    ssh_error(format!("{step} on host `{}`", self.name), why)
                }
            })
    }

    /// The unit folder of the host's manager: the one asked for, or the scope's, as the first
    /// contact found it (`None` before [`Remote::connect`]).
    pub fn unit_dir(&self) -> Option<PathBuf> {
        match self.shared.probed.get() {
            Some(Ok(p)) => Some(p.unit_dir.clone()),
            _ => None,
        }
    }

    /// The scope of the host's manager.
    pub fn scope(&self) -> Scope {
        self.scope
    }
}

impl Remote {
    /// Start `systemd-stdio-bridge` on the host for the manager of `scope`, its input and output
    /// the other end of the returned socket: a D-Bus connection to that manager's bus. For a
    /// user's manager the bridge is pointed at the user's bus, as the remote shell finds it
    /// (`--user` alone dials the system bus on systemd 252).
    ///
    /// # Errors
    /// [`Error::Backend`] when the host cannot be reached or ssh cannot be started.
    pub async fn bridge(&self, scope: Scope) -> Result<(UnixStream, Bridge), Error> {
        let probed = self.connect().await?;
        if scope == self.scope {
            let pending = self
                .shared
                .bridge
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(pending) = pending {
                return Ok(pending);
            }
        }
        let bridge = quote(&probed.bridge);
        let script = match scope {
            Scope::System => format!("exec {bridge}"),
            Scope::User => format!(
                r#"exec {bridge} -p "unix:path=${{XDG_RUNTIME_DIR:-/run/user/$(id -u)}}/bus""#
            ),
        };
        self.spawn_piped(&sh_line(&script, &[]))
            .map_err(|e| ssh_error(format!("start the D-Bus bridge on host `{}`", self.name), e))
    }

    /// Run `line` on the host with its input and output the other end of the returned socket,
    /// and what it says on stderr kept (as the host's last words, too).
    fn spawn_piped(&self, line: &str) -> std::io::Result<(UnixStream, Bridge)> {
        let (ours, theirs) = UnixStream::pair()?;
        let out = theirs.try_clone()?;
        let mut c = self.command(line);
        c.stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::from(OwnedFd::from(out)))
            .stderr(Stdio::piped());
        let mut child = c.spawn()?;
        let words: Arc<Mutex<Option<String>>> = Arc::default();
        let mut reader = None;
        if let Some(err) = child.stderr.take() {
            let (words, remote) = (words.clone(), self.clone());
            reader = Some(tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(err).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    if !l.trim().is_empty() {
                        remote.heard(l.trim());
                        *words.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(l.trim().to_string());
                    }
                }
            }));
        }
        Ok((
            ours,
            Bridge {
                child,
                words,
                reader,
            },
        ))
    }

    /// The first contact: the probe's text, and its session once it became the bridge (`None`
    /// when the host has no bridge). The master connection opens here.
    async fn probe(
        &self,
        dir: &str,
        scope: &str,
    ) -> Result<(String, Option<(UnixStream, Bridge)>), String> {
        use tokio::io::AsyncReadExt as _;
        let (ours, mut bridge) = self
            .spawn_piped(&script_line(PROBE, &[dir, scope]))
            .map_err(|e| format!("cannot run ssh: {e}"))?;
        let io = |e: std::io::Error| format!("reading the probe: {e}");
        ours.set_nonblocking(true).map_err(io)?;
        let mut stream = tokio::net::UnixStream::from_std(ours).map_err(io)?;
        // In pieces until `ready`: what follows is D-Bus, which the bridge only speaks once
        // spoken to, so nothing of it can have come yet.
        let mut text = Vec::new();
        let mut ready = false;
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    text.extend_from_slice(&buf[..n]);
                    if text.ends_with(b"\nready\n") {
                        ready = true;
                        break;
                    }
                }
                Err(e) => return Err(io(e)),
            }
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        if ready {
            let ours = stream.into_std().map_err(io)?;
            return Ok((text, Some((ours, bridge))));
        }
        // It ended: ssh could not get there (its own words say why), or there is no bridge.
        match bridge.child.wait().await {
            Ok(status) if status.success() => Ok((text, None)),
            Ok(status) => {
                let words = bridge.reason_now().await;
                Err(words.unwrap_or_else(|| format!("ssh failed ({status})")))
            }
            Err(e) => Err(format!("ssh: {e}")),
        }
    }
}

/// A running `systemd-stdio-bridge` on a host: the ssh that carries it, stopped when dropped.
#[derive(Debug)]
pub struct Bridge {
    child: tokio::process::Child,
    words: Arc<Mutex<Option<String>>>,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
    }
}

impl Bridge {
    /// What ssh (or the command) said last, once it has ended (its stderr read to the end).
    async fn reason_now(&mut self) -> Option<String> {
        if let Some(r) = self.reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
        }
        self.words.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Why the bridge did not carry a connection: once its ssh has ended (waiting a moment for
    /// it), the last thing it or the bridge said.
    pub async fn reason(&mut self) -> Option<String> {
        if tokio::time::timeout(Duration::from_secs(2), self.child.wait())
            .await
            .is_err()
        {
            // Still running: the connection is fine, the failure was something else.
            return None;
        }
        if let Some(r) = self.reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), r).await;
        }
        self.words.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What ssh (or the bridge) last said, once it has ended: why the connection went.
    pub fn gone(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(
                self.words
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .unwrap_or_else(|| format!("ssh ended ({status})")),
            ),
            _ => None,
        }
    }
}
