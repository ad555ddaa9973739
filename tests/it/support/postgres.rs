//! A real PostgreSQL server for the tests: Debian's (`postgresql`, version 15 or newer), initdb'd
//! into a temp folder and started on a free loopback port, one server per test binary, each test
//! in a database of its own. The server stops when the test binary exits: a small watcher process
//! stops it then, even when the tests panic or the binary is killed.
//!
//! Missing PostgreSQL fails the tests (CI must install `postgresql`); nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::free_port;

/// The running server.
pub struct Postgres {
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
}

static SERVER: OnceLock<Postgres> = OnceLock::new();

/// The test binary's server, started on first use.
pub fn server() -> &'static Postgres {
    SERVER.get_or_init(start)
}

/// PostgreSQL's programs: `LABCTL_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LABCTL_PG_BIN") {
        return dir.into();
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).unwrap_or_else(|| {
        panic!(
            "PostgreSQL not found in /usr/lib/postgresql/*/bin (or LABCTL_PG_BIN): \
             install the Debian package `postgresql`"
        )
    })
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn is_root() -> bool {
    run(Command::new("id").arg("-u"), "id -u").trim() == "0"
}

fn start() -> Postgres {
    let bin = bin_dir();
    let dir = tempfile::Builder::new()
        .prefix("labctl-pg-")
        .tempdir()
        .unwrap()
        .keep();
    // PostgreSQL refuses to run as root: as root (CI), its programs run as `postgres`.
    let root = is_root();
    if root {
        let id = |flag: &str| -> u32 {
            let mut c = Command::new("id");
            c.args([flag, "postgres"]);
            run(&mut c, "id postgres").trim().parse().unwrap()
        };
        std::os::unix::fs::chown(&dir, Some(id("-u")), Some(id("-g"))).unwrap();
    }
    let as_pg = |program: &str| {
        let path = bin.join(program);
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    };
    let data = dir.join("data");
    let mut initdb = as_pg("initdb");
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "labctl", "-E", "UTF8", "--no-sync"]);
    run(&mut initdb, "initdb");
    let port = free_port();
    let mut pg_ctl = as_pg("pg_ctl");
    pg_ctl
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("log"))
        .args(["-w", "start", "-o"])
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            dir.display()
        ))
        .stdout(Stdio::null());
    run(&mut pg_ctl, "pg_ctl start");
    watch(&bin, &data, &dir, root);
    Postgres { port, bin }
}

/// Stop the server and remove its folder once this process is gone.
// The watcher outlives this process by design: nobody is left to wait for it.
#[allow(clippy::zombie_processes)]
fn watch(bin: &Path, data: &Path, dir: &Path, root: bool) {
    let stop = format!(
        "{}{} -D {} -m immediate stop",
        if root { "runuser -u postgres -- " } else { "" },
        bin.join("pg_ctl").display(),
        data.display()
    );
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display()
    );
    std::os::unix::process::CommandExt::process_group(
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        0,
    )
    .spawn()
    .expect("start the PostgreSQL watcher");
}

impl Postgres {
    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://labctl@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database `name` (dropped first if a previous run left it); its URL.
    pub fn database(&self, name: &str) -> String {
        self.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(name)
    }

    /// Run `sql` in `db` with psql; its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut c = Command::new(self.bin.join("psql"));
        c.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args([
            "-p",
            &self.port.to_string(),
            "-U",
            "labctl",
            "-d",
            db,
            "-c",
            sql,
        ]);
        run(&mut c, &format!("psql -d {db} -c {sql:?}"))
    }
}
