//! Several hosts on this machine, as `../shared/scripts/hosts-on-loopback.sh` starts them, ported
//! here so that a test starts from nothing: each host is a systemd user manager of its own
//! ([`UserManager`]: its own runtime and config folders, its own cgroup, so the same unit names
//! never collide) behind an sshd on loopback, and its ssh key selects its environment through
//! `authorized_keys`' `environment=` options. Host `i` is `ssh -F <config> h<i>`.
//!
//! One difference from the script: each host gets an sshd of its own, so that a test can take
//! one host off the network ([`Hosts::cut`]: its sshd and every session on it killed) while the
//! others stay up.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;
use super::systemd::UserManager;

/// How a host is made to fail on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// None: a host as it should be.
    None,
    /// systemd's `systemd-stdio-bridge` is not there (hidden in a mount namespace of the host's
    /// sessions, over which an empty file is bound).
    NoBridge,
    /// Its key is not the one its sshd lets in: ssh says `Permission denied (publickey)`.
    WrongKey,
    /// util-linux's `flock` is not there (hidden as the bridge is for [`Flaw::NoBridge`]):
    /// the host can be planned but not locked.
    NoFlock,
}

impl Flaw {
    /// The program this flaw hides from the host's sessions, if it hides one.
    fn hides(self) -> Option<&'static str> {
        match self {
            Flaw::NoBridge => Some("/usr/bin/systemd-stdio-bridge"),
            Flaw::NoFlock => Some("/usr/bin/flock"),
            Flaw::None | Flaw::WrongKey => None,
        }
    }
}

/// One host: its manager, its sshd, its key.
struct Host {
    manager: UserManager,
    port: u16,
    config: PathBuf,
    /// Its sshd, while the host is on the network.
    sshd: std::sync::Mutex<Option<Child>>,
}

/// N hosts on loopback, and the ssh config that reaches them. Dropping it stops every sshd
/// (and every session on it) and every manager.
pub struct Hosts {
    dir: tempfile::TempDir,
    hosts: Vec<Host>,
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "labctl-hosts", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (Debian's openssh-client)");
    assert!(st.success(), "ssh-keygen: {st}");
}

impl Hosts {
    /// `n` good hosts, `h1` to `h<n>`.
    pub fn start(n: usize) -> Self {
        Self::start_with(&vec![Flaw::None; n])
    }

    /// One host per entry of `flaws`, `h1` first.
    pub fn start_with(flaws: &[Flaw]) -> Self {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "/usr/sbin/sshd not found: install the Debian package openssh-server"
        );
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join("ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        let host_key = ssh.join("hostkey");
        keygen(&host_key);
        let mut config = String::new();
        let mut hosts = Vec::new();
        for (i, flaw) in flaws.iter().enumerate() {
            let n = i + 1;
            let manager = UserManager::start();
            let env = |k: &str| {
                manager
                    .env()
                    .into_iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.to_string_lossy().into_owned())
                    .unwrap()
            };
            let key = ssh.join(format!("id{n}"));
            keygen(&key);
            // The key the sshd lets in: the host's own, or another one for a refused key.
            let allowed = if *flaw == Flaw::WrongKey {
                let other = ssh.join(format!("other{n}"));
                keygen(&other);
                other
            } else {
                key.clone()
            };
            let public = std::fs::read_to_string(allowed.with_extension("pub")).unwrap();
            let mut options = format!(
                "environment=\"XDG_RUNTIME_DIR={}\",environment=\"XDG_CONFIG_HOME={}\",\
                 environment=\"DBUS_SESSION_BUS_ADDRESS={}\",environment=\"HOME={}\"",
                env("XDG_RUNTIME_DIR"),
                env("XDG_CONFIG_HOME"),
                env("DBUS_SESSION_BUS_ADDRESS"),
                env("HOME"),
            );
            if let Some(program) = flaw.hides() {
                // Every session of this key runs in a mount namespace of its own, where the
                // program is an empty file that cannot run.
                options.push_str(&format!(
                    ",command=\"unshare -m --propagation private sh -c 'mount --bind /dev/null \
                     {program} && exec sh -c \\\"$SSH_ORIGINAL_COMMAND\\\"'\""
                ));
            }
            let authorized = ssh.join(format!("authorized_keys{n}"));
            std::fs::write(&authorized, format!("{options} {public}")).unwrap();
            let port = free_port();
            let sshd_config = ssh.join(format!("sshd_config{n}"));
            std::fs::write(
                &sshd_config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile none\n\
                     AuthorizedKeysFile {}\nPermitRootLogin prohibit-password\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     PermitUserEnvironment yes\nUsePAM no\nStrictModes no\nMaxSessions 30\n",
                    host_key.display(),
                    authorized.display()
                ),
            )
            .unwrap();
            config.push_str(&format!(
                "Host h{n}\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {}\n  \
                 IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  \
                 LogLevel ERROR\n",
                key.display()
            ));
            let mut host = Host {
                manager,
                port,
                config: sshd_config,
                sshd: std::sync::Mutex::new(None),
            };
            host.sshd = std::sync::Mutex::new(Some(sshd(&host, &ssh.join(format!("sshd{n}.log")))));
            hosts.push(host);
        }
        std::fs::write(ssh.join("config"), config).unwrap();
        Hosts { dir, hosts }
    }

    /// The ssh config naming `h1` ... `h<n>`.
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.path().join("ssh/config")
    }

    /// `LABCTL_SSH_COMMAND` for these hosts: ssh with their config.
    pub fn ssh_command(&self) -> String {
        format!("ssh -F {}", self.ssh_config().display())
    }

    /// The `[hosts.h<i>]` tables of a stack reaching every host's user manager.
    pub fn toml(&self) -> String {
        (1..=self.hosts.len())
            .map(|n| format!("[hosts.h{n}]\nssh = \"h{n}\"\nscope = \"user\"\n\n"))
            .collect()
    }

    /// Host `h<n>`'s manager, to look at (or change) it directly.
    pub fn manager(&self, n: usize) -> &UserManager {
        &self.hosts[n - 1].manager
    }

    /// Take host `h<n>` off the network: its sshd and every session on it (the master
    /// connections of any labctl, the bridges, the locks) are killed; its manager runs on.
    pub fn cut(&self, n: usize) {
        let host = &self.hosts[n - 1];
        let taken = host.sshd.lock().unwrap().take();
        if let Some(mut child) = taken {
            // The listener first: once the sessions go, nothing reaches the host any more.
            let mut pids = vec![child.id()];
            pids.extend(descendants(child.id()));
            for pid in pids {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", host.port)).is_ok() {
            assert!(Instant::now() < deadline, "h{n}'s sshd still listens");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Put host `h<n>` back on the network (its sshd again, on the same port).
    pub fn restore(&self, n: usize) {
        let log = self.dir.path().join(format!("ssh/sshd{n}.log"));
        let host = &self.hosts[n - 1];
        assert!(host.sshd.lock().unwrap().is_none(), "h{n} is up");
        let child = sshd(host, &log);
        *host.sshd.lock().unwrap() = Some(child);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in 1..=self.hosts.len() {
            self.cut(n);
        }
    }
}

/// Start the host's sshd in the foreground (its child, so that it can be killed with every
/// session it serves) and wait until it listens.
fn sshd(host: &Host, log: &Path) -> Child {
    let child = Command::new("/usr/sbin/sshd")
        .arg("-D")
        .arg("-f")
        .arg(&host.config)
        .arg("-E")
        .arg(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("/usr/sbin/sshd");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", host.port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "sshd never listened on {}: {}",
            host.port,
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Every process below `pid`, from `/proc` (sshd starts a session process per connection, in a
/// session of its own: a process group would miss it).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        parent_of.push((p, ppid));
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parent_of {
            if parent == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}
