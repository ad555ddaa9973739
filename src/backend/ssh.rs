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

use std::collections::BTreeMap;
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

/// The variable that replaces `ssh` and its options.
pub const SSH_COMMAND_VAR: &str = "LABCTL_SSH_COMMAND";

/// How long a master connection outlives its last session: long enough to carry a run from its
/// lock through its plan to its apply, short enough that a killed labctl leaves nothing behind
/// for long.
const PERSIST: &str = "ControlPersist=60";

fn ssh_error(step: impl Into<String>, cause: impl Into<crate::error::Cause>) -> Error {
    Error::backend("ssh", step, cause)
}

/// `word` as one word for a POSIX shell: as is when it holds only characters no shell treats
/// specially, else in single quotes (a `'` inside as `'\''`).
pub fn quote(word: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"%+,-./:=@_".contains(&b);
    if !word.is_empty() && word.bytes().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The remote command line that runs `script` under `sh -c` with `args` as `$1`, `$2`, ...
fn sh_line(script: &str, args: &[&str]) -> String {
    let mut line = format!("sh -c {} sh", quote(script));
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    line
}

/// [`sh_line`] for a script that may call `list` ([`LIST`]).
fn script_line(script: &str, args: &[&str]) -> String {
    sh_line(&format!("{LIST}{script}"), args)
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

/// A unit folder as read: its regular files by name, and the drop-ins below it.
pub type UnitListing = (BTreeMap<String, String>, Vec<String>);

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

/// `list DIR`, a shell function the scripts share: the regular files of DIR (no symlinks, no dot
/// files, no name holding a newline) as `L`, then their names (one a line) in base64 lines and
/// `.`, their sizes as `wc -c` prints them and `.`, their bytes one after another in base64
/// lines and `.`; then `D` and the drop-ins below it (`DIR/*.d/*.conf`, one a line) in base64
/// lines and `.`. A handful of processes, however many files: a host's shell starting one per
/// file was most of a plan's time there. A folder that does not exist holds none.
const LIST: &str = r#"list() (
  d=$1
  printf 'L\n'
  if [ ! -d "$d" ]; then printf '.\n.\n.\nD\n.\n'; exit 0; fi
  cd "$d" || exit 1
  set --
  for f in *; do
    case $f in *'
'*) continue ;; esac
    if [ -f "$f" ] && [ ! -L "$f" ]; then set -- "$@" "$f"; fi
  done
  if [ $# -gt 0 ]; then
    printf '%s\n' "$@" | base64; printf '.\n'
    wc -c -- "$@" || exit 1; printf '.\n'
    cat -- "$@" | base64; printf '.\n'
  else
    printf '.\n.\n.\n'
  fi
  printf 'D\n'
  for f in *.d/*.conf; do
    if [ -e "$f" ]; then printf '%s/%s\n' "$d" "$f"; fi
  done | base64
  printf '.\n'
)
"#;

/// The probe, with `$1` the unit folder asked for (empty: the scope's) and `$2` the scope: where
/// the bridge is, the variables the manager's folders follow and the unit folder, one line each
/// (a missing bridge is said, not an error here: the caller names the host), then that folder
/// as `list` gives it; then `ready`, and it becomes the bridge to the manager's bus (for a
/// user's manager, pointed at the user's bus as the remote shell finds it: `--user` alone dials
/// the system bus on systemd 252). A plan needs no second command: one session reads the folder
/// and carries D-Bus.
const PROBE: &str = r#"b=$(command -v systemd-stdio-bridge 2>/dev/null) || b=
if [ -z "$b" ]; then
  for p in /usr/bin/systemd-stdio-bridge /lib/systemd/systemd-stdio-bridge /usr/lib/systemd/systemd-stdio-bridge; do
    if [ -x "$p" ]; then b=$p; break; fi
  done
fi
d=$1
if [ -z "$d" ]; then
  if [ "$2" = user ]; then d=${XDG_CONFIG_HOME:-${HOME:-}/.config}/systemd/user; else d=/etc/systemd/system; fi
fi
printf 'bridge=%s\n' "$b"
printf 'HOME=%s\n' "${HOME:-}"
printf 'XDG_CONFIG_HOME=%s\n' "${XDG_CONFIG_HOME:-}"
printf 'XDG_RUNTIME_DIR=%s\n' "${XDG_RUNTIME_DIR:-}"
printf 'UID=%s\n' "$(id -u)"
printf 'dir=%s\n' "$d"
list "$d"
[ -n "$b" ] || exit 0
printf 'ready\n'
if [ "$2" = user ]; then
  exec "$b" -p "unix:path=${XDG_RUNTIME_DIR:-/run/user/$(id -u)}/bus"
fi
exec "$b"
"#;

/// `$1`: the folder to `list`.
const READ_DIR: &str = r#"list "$1"
"#;

/// The files the arguments name: a line with one letter per argument (`F` a regular file, `N`
/// none there, `O` something else), then the regular files' sizes as `wc -c` prints them and
/// `.`, their bytes one after another in base64 lines and `.`.
const READ_FILES: &str = r#"st=
for p; do
  if [ -f "$p" ]; then st="${st}F"; elif [ -e "$p" ]; then st="${st}O"; else st="${st}N"; fi
done
printf '%s\n' "$st"
for p; do shift; if [ -f "$p" ]; then set -- "$@" "$p"; fi; done
if [ $# -gt 0 ]; then
  wc -c -- "$@" || exit 1; printf '.\n'
  cat -- "$@" | base64; printf '.\n'
else
  printf '.\n.\n'
fi
"#;

/// Stage files read from stdin, each as its path, its mode (`600` or `644`), its text in base64
/// lines and `.`: a temp file beside the path (made owner-only, its folder too when missing and
/// private), written, given its mode and synced. Prints each temp file's path; on a failure
/// removes the ones it made (kept as `$@`) and fails.
const STAGE: &str = r#"umask 077
while IFS= read -r p && IFS= read -r m; do
  d=${p%/*}
  [ -n "$d" ] || d=/
  if [ ! -d "$d" ]; then
    if [ "$m" = 600 ]; then mkdir -p "$d"; else (umask 022; mkdir -p "$d"); fi || { rm -f -- "$@"; exit 1; }
  fi
  t=$(mktemp "$d/.${p##*/}.XXXXXX") || { rm -f -- "$@"; exit 1; }
  set -- "$@" "$t"
  while IFS= read -r l && [ "$l" != . ]; do printf '%s\n' "$l"; done | base64 -d > "$t" || { rm -f -- "$@"; exit 1; }
  chmod "$m" "$t" || { rm -f -- "$@"; exit 1; }
  sync "$t" 2>/dev/null || sync
done
printf '%s\n' "$@"
"#;

/// Steps given as arguments, in order: `r PATH` removes a file (gone already is fine), `m TMP
/// PATH` renames a staged file into place, `s DIR` syncs a folder (the renames and removals in
/// it survive a crash).
const COMMIT: &str = r#"while [ $# -gt 0 ]; do
  case $1 in
    r) rm -f -- "$2" || exit 1; shift 2 ;;
    m) mv -f -- "$2" "$3" || exit 1; shift 3 ;;
    s) if [ -d "$2" ]; then sync "$2" 2>/dev/null || sync; fi; shift 2 ;;
    *) echo "unknown step $1" >&2; exit 1 ;;
  esac
done
"#;

/// Hold `flock` on the file `$2` in the folder `$1` (made owner-only) for as long as stdin stays
/// open: waits up to `$3` seconds for another holder, then says `busy` and who (the file's
/// text); once held, writes the first line of stdin (the holder) into the file, says `locked`
/// and lists the unit folder `$4` (read under the lock, it is what the plan starts from). The
/// kernel lets go when this ends, however it ends: labctl letting go, labctl killed (its ssh
/// goes, and with it stdin), or the connection lost.
const LOCK: &str = r#"command -v flock >/dev/null 2>&1 || { echo "flock (util-linux) is not installed" >&2; exit 1; }
mkdir -p "$1" 2>/dev/null
exec 9>>"$1/$2" || exit 1
if ! flock -w "$3" 9; then
  printf 'busy %s\n' "$(cat "$1/$2")"
  exit 3
fi
IFS= read -r holder
printf '%s\n' "$holder" > "$1/$2"
echo locked
list "$4"
cat > /dev/null
"#;

/// Say who holds the lock file `$2` in the folder `$1`: nothing when it is free (or not there),
/// else `busy` and what its holder wrote.
const LOCK_HOLDER: &str = r#"[ -e "$1/$2" ] || exit 0
command -v flock >/dev/null 2>&1 || { echo "flock (util-linux) is not installed" >&2; exit 1; }
exec 9<"$1/$2" || exit 1
flock -n -s 9 && exit 0
printf 'busy %s\n' "$(cat "$1/$2")"
"#;

/// How one remote file should be staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    /// Where it goes.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Owner-only (an env file of secrets) rather than readable by all (a unit file).
    pub private: bool,
}

/// One step of [`Remote::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Remove a file; one that is gone already is fine.
    Remove(PathBuf),
    /// Rename a staged file (its temp path) into place.
    Place(PathBuf, PathBuf),
    /// Sync a folder, so that the renames and removals in it survive a crash.
    Sync(PathBuf),
}

/// A held host lock: released when dropped (its ssh ends) or by [`HostLock::release`].
#[derive(Debug)]
pub struct HostLock {
    host: String,
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
}

impl HostLock {
    /// Why the lock went before it was let go (the connection was lost), if it did.
    pub fn lost(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(_)) => Some(format!(
                "the lock on host `{}` went with its connection",
                self.host
            )),
            _ => None,
        }
    }

    /// Let the lock go: its command sees the end of its input and exits, and with it the lock.
    pub async fn release(mut self) {
        drop(self.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// Why a host lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another holder has it: what its file says about it.
    Busy(String),
    /// The host could not be asked.
    Failed(Error),
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

    fn keep_listing(&self, dir: &Path, listing: UnitListing) {
        *self
            .shared
            .listing
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((dir.to_path_buf(), listing));
    }

    /// The regular files of `dir` on the host by name, with their text (no symlinks, no dot
    /// files), and the drop-ins (`dir/*.d/*.conf`) there. The first read after the host was
    /// reached (or its lock taken) is what that contact listed: no second command.
    ///
    /// # Errors
    /// [`Error::Backend`] when the host cannot be reached or a file cannot be read.
    pub async fn read_dir(&self, dir: &Path) -> Result<UnitListing, Error> {
        self.connect().await?;
        let kept = self
            .shared
            .listing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((d, listing)) = kept
            && d == dir
        {
            return Ok(listing);
        }
        let d = dir.to_string_lossy();
        let step = format!("read `{d}`");
        let out = self.run(&step, READ_DIR, &[&d], None).await?;
        let text = String::from_utf8_lossy(&out);
        let mut lines = text.lines();
        (lines.next() == Some("L"))
            .then(|| parse_listing(&mut lines))
            .flatten()
            .ok_or_else(|| {
                ssh_error(
                    format!("{step} on host `{}`", self.name),
                    "garbled listing (a file changed while it was read?)",
                )
            })
    }

    /// The text of each of `paths` on the host, `None` for one that does not exist (or is not a
    /// regular file).
    ///
    /// # Errors
    /// [`Error::Backend`] when the host cannot be reached or a file cannot be read.
    pub async fn read_files(&self, paths: &[PathBuf]) -> Result<Vec<Option<String>>, Error> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let args: Vec<String> = paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let step = format!("read `{}`", args.join("`, `"));
        let out = self.run(&step, READ_FILES, &args, None).await?;
        let text = String::from_utf8_lossy(&out);
        parse_files(&text, paths.len()).ok_or_else(|| {
            ssh_error(
                format!("{step} on host `{}`", self.name),
                "garbled answer (a file changed while it was read?)",
            )
        })
    }

    /// Write each file beside its place (owner-only from the first byte for a private one, its
    /// folder made when missing), synced, and return the temp files in order: renaming them
    /// later ([`Remote::commit`]) is atomic. On failure, the temp files made are removed (a
    /// connection lost halfway may leave some behind: hidden, as `.NAME.XXXXXX`).
    ///
    /// # Errors
    /// [`Error::Backend`] naming the host and what the remote shell said.
    pub async fn stage(&self, files: &[Put]) -> Result<Vec<PathBuf>, Error> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let engine = base64::engine::general_purpose::STANDARD;
        let mut input = String::new();
        for f in files {
            input.push_str(&f.path.to_string_lossy());
            input.push('\n');
            input.push_str(if f.private { "600\n" } else { "644\n" });
            let b = engine.encode(&f.bytes);
            for chunk in b.as_bytes().chunks(76) {
                input.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
                input.push('\n');
            }
            input.push_str(".\n");
        }
        let names: Vec<String> = files
            .iter()
            .map(|f| f.path.to_string_lossy().into_owned())
            .collect();
        let step = format!("stage `{}`", names.join("`, `"));
        self.connect().await?;
        let line = sh_line(STAGE, &[]);
        match self.output(&line, Some(input.as_bytes())).await {
            Ok(out) => {
                let made: Vec<PathBuf> = String::from_utf8_lossy(&out)
                    .lines()
                    .map(PathBuf::from)
                    .collect();
                if made.len() != files.len() {
                    self.discard(&made).await;
                    return Err(ssh_error(
                        format!("{step} on host `{}`", self.name),
                        "the files were not all staged",
                    ));
                }
                Ok(made)
            }
            // The script removed what it had made.
            Err(Fault::Ssh(why) | Fault::Command(why)) => {
                Err(ssh_error(format!("{step} on host `{}`", self.name), why))
            }
        }
    }

    /// Remove staged files that will not be placed (best effort).
    pub async fn discard(&self, staged: &[PathBuf]) {
        let steps: Vec<Step> = staged.iter().cloned().map(Step::Remove).collect();
        let _ = self.commit(&steps).await;
    }

    /// Run `steps` in order on the host, in one go.
    ///
    /// # Errors
    /// [`Error::Backend`] naming the host and what the remote shell said; the steps before the
    /// failing one were done.
    pub async fn commit(&self, steps: &[Step]) -> Result<(), Error> {
        if steps.is_empty() {
            return Ok(());
        }
        let mut args: Vec<String> = Vec::new();
        for s in steps {
            match s {
                Step::Remove(p) => args.extend(["r".into(), p.to_string_lossy().into_owned()]),
                Step::Place(tmp, p) => args.extend([
                    "m".into(),
                    tmp.to_string_lossy().into_owned(),
                    p.to_string_lossy().into_owned(),
                ]),
                Step::Sync(d) => args.extend(["s".into(), d.to_string_lossy().into_owned()]),
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run("write files", COMMIT, &args, None).await?;
        Ok(())
    }

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

    /// The folder host locks are in for the manager of `scope`: the user's runtime folder, or
    /// `/run/lock` (as on this machine).
    fn lock_dir(&self) -> String {
        match self.scope {
            Scope::System => "/run/lock/labctl".to_string(),
            Scope::User => {
                let runtime = self.var("XDG_RUNTIME_DIR").unwrap_or_else(|| {
                    format!("/run/user/{}", self.var("UID").unwrap_or_default())
                });
                format!("{runtime}/labctl")
            }
        }
    }

    /// Who holds the host lock `file` of the host's manager (what its holder wrote), or `None`
    /// when it is free.
    ///
    /// # Errors
    /// [`Error::Backend`] when the host cannot be asked.
    pub async fn lock_holder(&self, file: &str) -> Result<Option<String>, Error> {
        self.connect().await?;
        let dir = self.lock_dir();
        let out = self
            .run("read the lock", LOCK_HOLDER, &[&dir, file], None)
            .await?;
        let text = String::from_utf8_lossy(&out);
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("busy"))
            .map(|h| h.trim().to_string()))
    }

    /// Take the host lock `file` in the folder the host's manager keeps it in (the user's
    /// runtime folder, or `/run/lock`), as `holder` (one line), waiting up to `wait` for another
    /// holder. Once taken, the unit folder is read under it, for the plan that comes next.
    ///
    /// # Errors
    /// [`LockError::Busy`] with what the current holder wrote; [`LockError::Failed`] when the
    /// host cannot be asked.
    pub async fn lock(
        &self,
        file: &str,
        holder: &str,
        wait: Duration,
    ) -> Result<HostLock, LockError> {
        let step = || format!("take the lock on host `{}`", self.name);
        self.connect().await.map_err(LockError::Failed)?;
        let dir = self.lock_dir();
        let secs = wait.as_secs().to_string();
        let unit_dir = self.unit_dir().unwrap_or_default();
        let units = unit_dir.to_string_lossy();
        let mut c = self.command(&script_line(LOCK, &[&dir, file, &secs, &units]));
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .map_err(|e| LockError::Failed(ssh_error(step(), e)))?;
        let mut stdin = child.stdin.take();
        if let Some(pipe) = stdin.as_mut() {
            let _ = pipe.write_all(format!("{holder}\n").as_bytes()).await;
        }
        let Some(out) = child.stdout.take() else {
            return Err(LockError::Failed(ssh_error(step(), "no output")));
        };
        let mut lines = tokio::io::BufReader::new(out).lines();
        match lines.next_line().await {
            Ok(Some(l)) if l == "locked" => {
                // The unit folder as it is under the lock: the plan starts from it. Four `.`
                // lines end a listing.
                let mut text = String::new();
                let mut dots = 0;
                while dots < 4 {
                    match lines.next_line().await {
                        Ok(Some(l)) => {
                            dots += usize::from(l == ".");
                            text.push_str(&l);
                            text.push('\n');
                        }
                        _ => break,
                    }
                }
                let mut listing = text.lines();
                if listing.next() == Some("L")
                    && let Some(found) = parse_listing(&mut listing)
                {
                    self.keep_listing(&unit_dir, found);
                }
                Ok(HostLock {
                    host: self.name.clone(),
                    child,
                    stdin,
                })
            }
            Ok(Some(l)) if l.starts_with("busy") => {
                let _ = child.wait().await;
                Err(LockError::Busy(
                    l.trim_start_matches("busy").trim().to_string(),
                ))
            }
            _ => {
                drop(stdin);
                let out = child.wait_with_output().await;
                let (code, stderr) = match &out {
                    Ok(o) => (
                        o.status.code(),
                        String::from_utf8_lossy(&o.stderr).into_owned(),
                    ),
                    Err(e) => (None, e.to_string()),
                };
                let why = last_line(&stderr).unwrap_or_else(|| "no answer".into());
                if code == Some(255) {
                    self.heard(&why);
                }
                Err(LockError::Failed(ssh_error(step(), why)))
            }
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

/// The base64 lines up to the next `.`, decoded.
fn block<'a>(lines: &mut impl Iterator<Item = &'a str>) -> Option<Vec<u8>> {
    let mut b64 = String::new();
    for l in lines.by_ref() {
        if l == "." {
            return base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .ok();
        }
        b64.push_str(l.trim());
    }
    None
}

/// The first number of each line up to the next `.`: sizes as `wc -c` prints them (its `total`
/// line, when there is one, comes last).
fn sizes<'a>(lines: &mut impl Iterator<Item = &'a str>) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for l in lines.by_ref() {
        if l == "." {
            return Some(out);
        }
        out.push(l.split_whitespace().next()?.parse().ok()?);
    }
    None
}

/// `bytes` cut into pieces of `sizes` (the first `n` of them), as text; `None` when they do not
/// add up (a file changed between `wc` and `cat`) or a piece is not UTF-8.
fn cut(bytes: &[u8], sizes: &[usize], n: usize) -> Option<Vec<String>> {
    let sizes = sizes.get(..n)?;
    if sizes.iter().sum::<usize>() != bytes.len() {
        return None;
    }
    let mut out = Vec::new();
    let mut at = 0;
    for size in sizes {
        out.push(String::from_utf8(bytes[at..at + size].to_vec()).ok()?);
        at += size;
    }
    Some(out)
}

/// What `list` printed after its `L` line.
fn parse_listing<'a>(lines: &mut impl Iterator<Item = &'a str>) -> Option<UnitListing> {
    let names = String::from_utf8(block(lines)?).ok()?;
    let names: Vec<&str> = names.lines().collect();
    let sizes = sizes(lines)?;
    let texts = cut(&block(lines)?, &sizes, names.len())?;
    if lines.next()? != "D" {
        return None;
    }
    let drop_ins = String::from_utf8(block(lines)?).ok()?;
    Some((
        names.into_iter().map(str::to_string).zip(texts).collect(),
        drop_ins.lines().map(str::to_string).collect(),
    ))
}

/// What [`READ_FILES`] printed, for `n` paths.
fn parse_files(text: &str, n: usize) -> Option<Vec<Option<String>>> {
    let mut lines = text.lines();
    let kinds = lines.next()?;
    if kinds.len() != n {
        return None;
    }
    let regular = kinds.bytes().filter(|&k| k == b'F').count();
    let sizes = sizes(&mut lines)?;
    let mut texts = cut(&block(&mut lines)?, &sizes, regular)?.into_iter();
    kinds
        .bytes()
        .map(|k| match k {
            b'F' => texts.next().map(Some),
            _ => Some(None),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_words_reach_a_shell_unchanged() {
        let words = [
            "",
            "plain",
            "a b",
            "it's",
            "$HOME",
            "`id`",
            "a\"b\\c",
            "new\nline",
            "'''",
            "*",
            "-n",
            "ünïcode",
            "x;y&z|w",
        ];
        let mut line = String::from("printf '%s\\0'");
        for w in words {
            line.push(' ');
            line.push_str(&quote(w));
        }
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}");
        let got: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .split('\0')
            .map(str::to_string)
            .collect();
        let mut want: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        want.push(String::new());
        assert_eq!(got, want);
        assert_eq!(quote("/etc/systemd/system"), "/etc/systemd/system");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn a_script_and_its_arguments_run_under_sh_as_given() {
        let line = sh_line(
            r#"printf '%s|' "$@"; printf '%s' "$0""#,
            &["a b", "$x", "it's"],
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "a b|$x|it's|sh");
    }

    #[tokio::test]
    async fn the_file_scripts_read_and_write_what_they_are_given() {
        // The remote scripts, run by a local sh: staged files land beside their place with
        // their modes, placed ones read back byte for byte, and the listing skips what it must.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let output = |script: &str, args: &[&str], stdin: &str| {
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(script).arg("sh").args(args);
            c.stdin(Stdio::piped()).stdout(Stdio::piped());
            let mut child = c.spawn().unwrap();
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(stdin.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            (out.status, String::from_utf8(out.stdout).unwrap())
        };
        let run = |script: &str, args: &[&str], stdin: &str| {
            let (status, out) = output(script, args, stdin);
            assert!(status.success(), "{script}");
            out
        };
        let engine = base64::engine::general_purpose::STANDARD;
        let unit = "[Service]\nExecStart=/bin/true 'it''s' $X\n";
        let secret = "TOKEN='s3cr€t'\nKEY=\"multi\nline\"\n";
        let input = format!(
            "{}\n644\n{}\n.\n{}\n600\n{}\n.\n",
            d.join("units/a.service").display(),
            engine.encode(unit),
            d.join("env/labctl/a.env").display(),
            engine.encode(secret)
        );
        let staged = run(STAGE, &[], &input);
        let tmps: Vec<&str> = staged.lines().collect();
        assert_eq!(tmps.len(), 2, "{staged}");
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(std::fs::metadata(tmps[0]).unwrap().mode() & 0o777, 0o644);
        assert_eq!(std::fs::metadata(tmps[1]).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(d.join("env/labctl")).unwrap().mode() & 0o777,
            0o700
        );
        let unit_path = d.join("units/a.service").display().to_string();
        let env_path = d.join("env/labctl/a.env").display().to_string();
        let units = d.join("units").display().to_string();
        run(
            COMMIT,
            &[
                "m", tmps[0], &unit_path, "m", tmps[1], &env_path, "s", &units,
            ],
            "",
        );
        std::fs::write(d.join("units/.hidden"), "x").unwrap();
        std::fs::write(d.join("units/odd name's.timer"), "").unwrap();
        std::fs::write(d.join("units/z.service"), "ünï\n".repeat(100)).unwrap();
        std::fs::create_dir_all(d.join("units/a.service.d")).unwrap();
        std::fs::create_dir_all(d.join("units/default.target.wants")).unwrap();
        std::fs::write(d.join("units/a.service.d/x.conf"), "[Unit]\n").unwrap();
        std::os::unix::fs::symlink(d.join("units/a.service"), d.join("units/b.service")).unwrap();
        let with_list = |script: &str| format!("{LIST}{script}");
        let listing = run(&with_list(READ_DIR), &[&units], "");
        let mut lines = listing.lines();
        assert_eq!(lines.next(), Some("L"), "{listing}");
        let (files, drop_ins) = parse_listing(&mut lines).expect(&listing);
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["a.service", "odd name's.timer", "z.service"]
        );
        assert_eq!(files["a.service"], unit);
        assert_eq!(files["odd name's.timer"], "");
        assert_eq!(files["z.service"], "ünï\n".repeat(100));
        assert_eq!(drop_ins, [format!("{units}/a.service.d/x.conf")]);
        // A folder that is not there holds nothing; the probe lists the folder it names.
        let none = run(&with_list(READ_DIR), &[&format!("{units}/nope")], "");
        let mut lines = none.lines();
        assert_eq!(lines.next(), Some("L"));
        assert_eq!(
            parse_listing(&mut lines),
            Some((BTreeMap::new(), Vec::new()))
        );
        // Where this machine has the bridge, the probe becomes it after `ready`, and it ends
        // (failing) as soon as it finds no bus there: only what comes before is the probe's.
        let (_, probe) = output(&with_list(PROBE), &[&units, "user"], "");
        assert!(probe.contains(&format!("\ndir={units}\nL\n")), "{probe}");
        let mut lines = probe.lines().skip_while(|l| *l != "L").skip(1);
        assert_eq!(
            parse_listing(&mut lines).map(|(files, _)| files.len()),
            Some(3),
            "{probe}"
        );
        let read = run(
            READ_FILES,
            &[
                &env_path,
                &d.join("nope").display().to_string(),
                &unit_path,
                &units,
            ],
            "",
        );
        assert_eq!(
            parse_files(&read, 4),
            Some(vec![
                Some(secret.to_string()),
                None,
                Some(unit.to_string()),
                None
            ]),
            "{read}"
        );
        // Sizes that do not add up (a file that changed between `wc` and `cat`) are refused.
        let mut changed: Vec<&str> = read.lines().collect();
        changed[1] = "1 shorter-than-it-was";
        assert_eq!(parse_files(&changed.join("\n"), 4), None);
        run(COMMIT, &["r", &env_path, "r", &env_path], "");
        assert!(!Path::new(&env_path).exists());
    }
}
