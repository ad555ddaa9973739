//! A real, isolated systemd user manager per test, and the checks tests make over its D-Bus API.
//!
//! `systemd --user` runs fine without systemd as PID 1, with two quirks:
//! it refuses to start unless `/run/systemd/system` exists, and that marker must not linger (apt
//! would believe systemd is PID 1). The marker is made only for start-up, under a lock shared with
//! every test process and `scripts/systemd-user-manager.sh`. Managers share one cgroup tree (and
//! stopping one manager's `dbus.service` would kill every manager's bus), so each manager is started
//! in a cgroup of its own where the cgroup file system allows it; tests also give their units their
//! own prefixes.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Labctl, Output};

const SYSTEMD: &str = "/lib/systemd/systemd";
const MARKER: &str = "/run/systemd/system";
const LOCK: &str = "/tmp/labctl-systemd-marker.lock";
/// Where each manager's runtime, config and scratch folders live.
const TEMP_BASE: &str = "/var/lib/labctl-tests";

/// A running user manager with its own runtime folder (bus) and config folder (units). Dropping it
/// kills the manager, and with it every unit it started.
pub struct UserManager {
    child: Child,
    root: tempfile::TempDir,
    cgroups: Vec<PathBuf>,
}

/// Make an empty cgroup in each hierarchy systemd uses (cgroup2, and v1's `name=systemd` on hybrid
/// machines). Best effort: where none can be made, managers share the caller's cgroup.
fn cgroups() -> Vec<PathBuf> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "labctl-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let roots: &[&str] = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        &["/sys/fs/cgroup"]
    } else {
        &["/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"]
    };
    roots
        .iter()
        .map(|r| Path::new(r).join(&name))
        .filter(|d| {
            d.parent().is_some_and(|p| p.join("cgroup.procs").exists())
                && std::fs::create_dir(d).is_ok()
        })
        .collect()
}

/// The nodes systemd (PID 1) makes at boot in `/run/systemd/inaccessible/` and a root manager,
/// user managers included, bind-mounts over what a sandbox hides (`ProtectHome=yes` over /root,
/// `ProtectKernelTunables=yes` over /proc/kcore, …). With no systemd as PID 1 nobody makes them
/// and every such unit fails with status 226/NAMESPACE; on a real host they are always there.
fn inaccessible_nodes() {
    let d = Path::new("/run/systemd/inaccessible");
    if d.join("sock").exists() {
        return;
    }
    std::fs::create_dir_all(d).expect("create /run/systemd/inaccessible");
    let sh = format!(
        "cd {} && {{ [ -e reg ] || install -m 0000 /dev/null reg; }} \
         && {{ [ -e dir ] || mkdir -m 0000 dir; }} \
         && {{ [ -e fifo ] || mkfifo -m 0000 fifo; }} \
         && {{ [ -e chr ] || mknod -m 0000 chr c 0 0; }} \
         && {{ [ -e blk ] || mknod -m 0000 blk b 0 0; }}",
        d.display()
    );
    let ok = Command::new("/bin/sh").arg("-c").arg(&sh).status();
    assert!(ok.is_ok_and(|s| s.success()), "make {}", d.display());
    if !d.join("sock").exists() {
        let sock = std::os::unix::net::UnixListener::bind(d.join("sock"))
            .expect("make /run/systemd/inaccessible/sock");
        drop(sock);
        std::fs::set_permissions(
            d.join("sock"),
            std::os::unix::fs::PermissionsExt::from_mode(0o000),
        )
        .unwrap();
    }
}

/// Remove a cgroup and the ones systemd made inside it, deepest first (only empty ones go).
fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl UserManager {
    /// Start a manager and wait until its bus answers.
    pub fn start() -> Self {
        assert!(
            Path::new(SYSTEMD).exists(),
            "{SYSTEMD} not found: install the Debian packages systemd and dbus-user-session"
        );
        // Not under /tmp: the shipped units have `PrivateTmp=yes`, which would hide the runtime
        // folder (the bus, the notify socket) and the stacks' checkouts from them, as /run/user
        // and a real checkout are not hidden on a host. Not under /run either: where /run is no
        // mount of its own (this kind of machine), a unit with `ProtectControlGroups=` or
        // `ProtectProc=` gets a /run without it.
        std::fs::create_dir_all(TEMP_BASE).expect("create the managers' base folder");
        let root = tempfile::Builder::new()
            .prefix("um-")
            .tempdir_in(TEMP_BASE)
            .expect("temp dir");
        let runtime = root.path().join("runtime");
        let config = root.path().join("config");
        std::fs::create_dir_all(config.join("systemd/user")).unwrap();
        std::fs::create_dir_all(&runtime).unwrap();
        std::fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();

        let lock = File::create(LOCK).expect("lock file");
        lock.lock().expect("lock the /run/systemd/system marker");
        let made = !Path::new(MARKER).exists();
        if made {
            std::fs::create_dir_all(MARKER).expect("create /run/systemd/system");
        }
        inaccessible_nodes();
        let log = File::create(root.path().join("manager.log")).unwrap();
        let cgroups = cgroups();
        // The shell moves itself into the new cgroups, then becomes the manager.
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"for d; do echo $$ > "$d/cgroup.procs"; done; exec "$0" --user"#)
            .arg(SYSTEMD)
            .args(&cgroups)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("XDG_CONFIG_HOME", &config)
            // Units inherit it: their `~` (state, tokens) is the manager's own, as `env()` says.
            .env("HOME", root.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn systemd --user");
        let mut m = UserManager {
            child,
            root,
            cgroups,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let up = loop {
            if runtime.join("bus").exists() && runtime.join("systemd/private").exists() {
                break true;
            }
            if Instant::now() > deadline || m.child.try_wait().ok().flatten().is_some() {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if made {
            let _ = std::fs::remove_dir(MARKER);
        }
        drop(lock);
        assert!(up, "systemd --user did not come up; its log:\n{}", m.log());
        // The bus socket exists a moment before the manager owns its name on it.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !m
            .busctl(&["status", "org.freedesktop.systemd1"])
            .status
            .success()
        {
            assert!(
                Instant::now() < deadline,
                "systemd1 never appeared on the bus; log:\n{}",
                m.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("manager.log")).unwrap_or_default()
    }

    /// The environment a client of this manager needs.
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        let runtime = self.root.path().join("runtime");
        let mut bus = OsString::from("unix:path=");
        bus.push(runtime.join("bus"));
        vec![
            ("XDG_RUNTIME_DIR", runtime.into_os_string()),
            (
                "XDG_CONFIG_HOME",
                self.root.path().join("config").into_os_string(),
            ),
            ("DBUS_SESSION_BUS_ADDRESS", bus),
            // A HOME without ~/.kube/config: no cluster the developer has configured can leak in.
            ("HOME", self.root.path().as_os_str().to_owned()),
        ]
    }

    /// The manager's unit folder, where labctl writes by default with `--user`.
    pub fn unit_dir(&self) -> PathBuf {
        self.root.path().join("config/systemd/user")
    }

    /// A scratch folder that lives as long as the manager.
    pub fn scratch(&self) -> PathBuf {
        let p = self.root.path().join("scratch");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Run `busctl --user ARGS` against this manager.
    pub fn busctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("busctl")
            .arg("--user")
            .args(args)
            .envs(self.env())
            .output()
            .expect("run busctl")
    }

    /// Run `systemctl --user ARGS` (tests use it to make drift; labctl itself never does).
    pub fn systemctl(&self, args: &[&str]) {
        let out = Command::new("systemctl")
            .arg("--user")
            .args(args)
            .envs(self.env())
            .output()
            .expect("systemctl");
        assert!(
            out.status.success(),
            "systemctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A property of a unit over D-Bus, as busctl prints its value (strings unquoted).
    pub fn property(&self, unit: &str, iface: &str, name: &str) -> String {
        let path = unit_object_path(unit);
        let out = self.busctl(&[
            "get-property",
            "org.freedesktop.systemd1",
            &path,
            iface,
            name,
        ]);
        assert!(
            out.status.success(),
            "busctl get-property {unit} {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // `s "active"`, `u 1234`, `b true`
        let value = text.split_once(' ').map_or(text.as_str(), |(_, v)| v);
        value.trim_matches('"').to_string()
    }

    /// `ActiveState` of a unit.
    pub fn active_state(&self, unit: &str) -> String {
        self.property(unit, "org.freedesktop.systemd1.Unit", "ActiveState")
    }

    /// `UnitFileState` of a unit.
    pub fn unit_file_state(&self, unit: &str) -> String {
        self.property(unit, "org.freedesktop.systemd1.Unit", "UnitFileState")
    }

    /// `MainPID` of a service (0 when not running).
    pub fn main_pid(&self, unit: &str) -> u32 {
        self.property(unit, "org.freedesktop.systemd1.Service", "MainPID")
            .parse()
            .expect("MainPID is a number")
    }

    /// labctl `--stack STACK ARGS` against this manager, run to its end.
    #[track_caller]
    pub fn labctl(&self, stack: &Path, args: &[&str]) -> Output {
        self.command(stack, args).run()
    }

    /// labctl `--stack STACK ARGS` with this manager's environment, to run as the test needs.
    pub fn command(&self, stack: &Path, args: &[&str]) -> Labctl {
        Labctl::new().stack(stack).args(args).envs(self.env())
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        // SIGTERM lets the manager stop its units; the process group catches stragglers.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .arg(&pid)
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Usually the group is already gone ("No such process"): that is success, not news.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
        for d in &self.cgroups {
            remove_cgroup(d);
        }
    }
}

/// systemd's object path for a unit (same escaping as the backend's).
pub fn unit_object_path(unit: &str) -> String {
    let mut out = String::from("/org/freedesktop/systemd1/unit/");
    for (i, b) in unit.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}
