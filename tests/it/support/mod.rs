//! What the integration tests share: the binary under test ([`Labctl`]), stack folders
//! ([`Stack`]), one helper per job ([`free_port`], [`wait_for`], [`git`]) and the real parts the
//! tests start: a systemd user manager ([`systemd`]), PostgreSQL ([`postgres`]), an OTLP receiver
//! ([`otlp`]), a GitHub stand-in ([`github`]), a tailscaled stand-in ([`tailscaled`]) and the
//! agents' HTTP client ([`agents`]).

pub mod agents;
pub mod github;
pub mod gitops;
pub mod hosts;
pub mod otlp;
pub mod postgres;
pub mod systemd;
pub mod tailscaled;

use std::ffi::{OsStr, OsString};
use std::fmt::Display;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- the binary under test

/// How long a run may take: a labctl that hangs fails its test instead of holding the suite.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// The labctl binary under test, as a test runs it: built up like a [`Command`], then
/// [`run`](Labctl::run) to its end or [`spawn`](Labctl::spawn)ed (an agent). Its environment is the
/// test's minus what a developer's shell could leak into results (`LABCTL_*`, `OTEL_*`,
/// `TRACEPARENT`, a kubeconfig), with `NO_COLOR`; what the test sets comes after, in order.
#[derive(Clone, Debug)]
pub struct Labctl {
    program: PathBuf,
    args: Vec<OsString>,
    /// Variables set (`Some`) or removed (`None`), in order.
    env: Vec<(OsString, Option<OsString>)>,
    clear_env: bool,
    dir: Option<PathBuf>,
    timeout: Duration,
    log: Option<PathBuf>,
}

impl Default for Labctl {
    fn default() -> Self {
        Self::new()
    }
}

impl Labctl {
    /// The binary cargo built for these tests.
    pub fn new() -> Self {
        Labctl {
            program: env!("CARGO_BIN_EXE_labctl").into(),
            args: Vec::new(),
            env: Vec::new(),
            clear_env: false,
            dir: None,
            timeout: RUN_TIMEOUT,
            log: None,
        }
    }

    /// Another build of labctl, run the same way (the image test's static binary).
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = path.into();
        self
    }

    /// `--stack PATH`.
    pub fn stack(self, path: impl AsRef<OsStr>) -> Self {
        self.arg("--stack").arg(path)
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// More arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Set variable `key`.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Set each of `vars` (a user manager's environment, say).
    pub fn envs<I, K, V>(self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        vars.into_iter().fold(self, |c, (k, v)| c.env(k, v))
    }

    /// Remove variable `key`.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Start from an empty environment (an agent given only what its unit would give it).
    pub fn env_clear(mut self) -> Self {
        self.clear_env = true;
        self.env.clear();
        self
    }

    /// Run in folder `dir`.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Fail the run after `timeout` instead of the default five minutes.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// For [`spawn`](Labctl::spawn): append stderr to the file `log` instead of a pipe (an agent
    /// that logs for longer than a pipe holds, or is started again on the same log).
    pub fn log_to(mut self, log: impl Into<PathBuf>) -> Self {
        self.log = Some(log.into());
        self
    }

    /// The command as it runs, environment and all.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        self.environment(&mut c);
        if let Some(dir) = &self.dir {
            c.current_dir(dir);
        }
        c
    }

    /// This run's environment on `c` (also on the wrappers that start labctl: `script`, a shell).
    fn environment(&self, c: &mut Command) {
        if self.clear_env {
            c.env_clear();
        } else {
            for (k, _) in std::env::vars_os() {
                let name = k.to_string_lossy();
                if name.starts_with("LABCTL_") || name.starts_with("OTEL_") {
                    c.env_remove(&k);
                }
            }
            for k in [
                "TRACEPARENT",
                "KUBECONFIG",
                "KUBERNETES_SERVICE_HOST",
                "KUBERNETES_SERVICE_PORT",
            ] {
                c.env_remove(k);
            }
        }
        c.env("NO_COLOR", "1");
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
    }

    fn shown_args(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// Run to the end, stdin empty (no terminal to ask on); the code, stdout and stderr.
    #[track_caller]
    pub fn run(&self) -> Output {
        let mut c = self.command();
        c.stdin(Stdio::null());
        self.finish(c, None)
    }

    /// Start it (an agent, or a command the test acts on while it runs): stdin empty, stdout
    /// discarded, stderr piped (or appended to [`log_to`](Labctl::log_to)'s file).
    pub fn spawn(&self) -> Child {
        let stderr = match &self.log {
            Some(log) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap_or_else(|e| panic!("open {}: {e}", log.display())),
            ),
            None => Stdio::piped(),
        };
        self.command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start labctl {:?}: {e}", self.shown_args()))
    }

    /// Run on a terminal (a pty made by util-linux `script`), typing `input`: what the terminal
    /// showed is both stdout and stderr.
    #[track_caller]
    pub fn run_on_tty(&self, input: &str) -> Output {
        assert!(
            Path::new("/usr/bin/script").exists(),
            "util-linux `script` is not installed: install the Debian package `bsdutils`"
        );
        let line = format!("{}; echo \"exit=$?\"", self.shell_line());
        let mut c = Command::new("/usr/bin/script");
        c.args(["-qec", &line, "/dev/null"]);
        self.environment(&mut c);
        let mut out = self.finish(c, Some(input));
        out.code = out
            .stdout
            .rsplit_once("exit=")
            .and_then(|(_, c)| c.trim().parse().ok())
            .unwrap_or(-1);
        out.stderr = out.stdout.clone();
        out
    }

    /// Run with stdout piped into the shell command `reader` (`head -1`): labctl's code, what
    /// `reader` printed, labctl's stderr.
    #[track_caller]
    pub fn run_piped(&self, reader: &str) -> Output {
        let err = tempfile::NamedTempFile::new().expect("a file for stderr");
        let script = format!(
            "{} 2>\"$IT_STDERR\" | {reader}; exit ${{PIPESTATUS[0]}}",
            self.shell_line()
        );
        let mut c = Command::new("bash");
        c.arg("-c").arg(script).stdin(Stdio::null());
        self.environment(&mut c);
        c.env("IT_STDERR", err.path());
        let mut out = self.finish(c, None);
        out.stderr = std::fs::read_to_string(err.path()).expect("labctl's stderr");
        out
    }

    /// The program and arguments as one shell command line.
    fn shell_line(&self) -> String {
        let quote = |s: &OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
        let mut line = quote(self.program.as_os_str());
        for a in &self.args {
            line.push(' ');
            line.push_str(&quote(a));
        }
        if let Some(dir) = &self.dir {
            line = format!("cd {} && {line}", quote(dir.as_os_str()));
        }
        line
    }

    /// Run `c` to its end within the timeout, writing `input` to its stdin (kept open until the
    /// end: `script` hangs up on its command when its input ends).
    #[track_caller]
    fn finish(&self, mut c: Command, input: Option<&str>) -> Output {
        if input.is_some() {
            c.stdin(Stdio::piped());
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {c:?}: {e}"));
        let stdin = input.map(|text| {
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(text.as_bytes()).expect("write stdin");
            stdin
        });
        let read = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = read(Box::new(child.stdout.take().unwrap()));
        let stderr = read(Box::new(child.stderr.take().unwrap()));
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for labctl") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "labctl {:?} did not finish within {:?}\n--- stderr\n{}",
                    self.shown_args(),
                    self.timeout,
                    String::from_utf8_lossy(&stderr.join().unwrap())
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        drop(stdin);
        let text = |bytes: Vec<u8>, what: &str| {
            String::from_utf8(bytes).unwrap_or_else(|e| panic!("labctl's {what} is not UTF-8: {e}"))
        };
        Output {
            code: status.code().unwrap_or(-1),
            stdout: text(stdout.join().unwrap(), "stdout"),
            stderr: text(stderr.join().unwrap(), "stderr"),
            args: self.shown_args(),
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct Output {
    /// The exit code; -1 when a signal ended the process.
    pub code: i32,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
    /// Its arguments, for messages.
    args: Vec<String>,
}

impl Output {
    /// `(code, stdout, stderr)`, for tests that take them apart.
    pub fn parts(self) -> (i32, String, String) {
        (self.code, self.stdout, self.stderr)
    }

    /// Assert the exit code, showing everything when it differs.
    #[track_caller]
    pub fn code(&self, want: i32) -> &Self {
        assert_eq!(
            self.code, want,
            "labctl {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args, self.stdout, self.stderr
        );
        self
    }

    /// Assert stdout contains `s`.
    #[track_caller]
    pub fn stdout_has(&self, s: &str) -> &Self {
        assert!(
            self.stdout.contains(s),
            "stdout of labctl {:?} lacks {s:?}:\n{}\n--- stderr\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Assert stderr contains `s`.
    #[track_caller]
    pub fn stderr_has(&self, s: &str) -> &Self {
        assert!(
            self.stderr.contains(s),
            "stderr of labctl {:?} lacks {s:?}:\n{}\n--- stdout\n{}",
            self.args,
            self.stderr,
            self.stdout
        );
        self
    }
}

// ---------------------------------------------------------------- stack folders

/// A stack folder: `stack.toml` and the stack's own templates, in a temp folder or in one the test
/// gives (a user manager's scratch folder). Two shapes: a stack.toml written whole
/// ([`Stack::new`]), or one [`Stack::write`] composes for the user manager ([`Stack::units`]).
pub struct Stack {
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    name: String,
    host: String,
    extras: Vec<String>,
}

impl Stack {
    /// A temp folder holding `stack.toml` with `text`.
    pub fn new(text: &str) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let s = Stack {
            dir: temp.path().to_path_buf(),
            _temp: Some(temp),
            name: String::new(),
            host: String::new(),
            extras: Vec::new(),
        };
        s.file("stack.toml", text);
        s
    }

    /// A temp folder holding a copy of the bundled stack.toml.
    pub fn bundled() -> Self {
        Self::new(&std::fs::read_to_string(repo().join("stack.toml")).expect("bundled stack"))
    }

    /// A stack named `name` in `dir`, for the user manager: every builtin component off, its
    /// units the `[host.extra.*]` entries [`Stack::unit`] adds; [`Stack::write`] writes it.
    pub fn units(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all(dir.join("systemd-templates")).unwrap();
        Stack {
            dir: dir.to_path_buf(),
            _temp: None,
            name: name.into(),
            host: "scope = \"user\"\n".into(),
            extras: Vec::new(),
        }
    }

    /// Write a file (creating folders) relative to the stack folder.
    pub fn file(&self, rel: &str, text: &str) -> &Self {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    /// A unit template `systemd-templates/<file>`.
    pub fn template(self, file: &str, text: &str) -> Self {
        self.file(&format!("systemd-templates/{file}"), text);
        self
    }

    /// Leave `host.scope` at its default (the system manager).
    pub fn system_scope(mut self) -> Self {
        self.host.clear();
        self
    }

    /// Extra `[host]` settings (`unit_dir = "..."`).
    pub fn host(mut self, toml: &str) -> Self {
        self.host.push_str(toml);
        self.host.push('\n');
        self
    }

    /// A `[host.extra.<name>]` entry; `settings` are its TOML lines (`unit = "x"`, `template = "t"`).
    pub fn unit(mut self, name: &str, settings: &str) -> Self {
        self.extras
            .push(format!("[host.extra.{name}]\n{settings}\n"));
        self
    }

    /// Drop the `[host.extra.<name>]` entry.
    pub fn without(mut self, name: &str) -> Self {
        let head = format!("[host.extra.{name}]\n");
        self.extras.retain(|e| !e.starts_with(&head));
        self
    }

    /// Write the composed `stack.toml`; its path.
    pub fn write(&self) -> PathBuf {
        let mut t = format!("[stack]\nname = \"{}\"\n\n", self.name);
        // Every builtin component, from the one list labctl itself iterates.
        for c in labctl::stack::builtin_components() {
            t.push_str(&format!("[{c}]\nenabled = false\n\n"));
        }
        t.push_str(&format!("[host]\n{}\n", self.host));
        for e in &self.extras {
            t.push_str(e);
            t.push('\n');
        }
        let path = self.stack_file();
        std::fs::write(&path, t).unwrap();
        path
    }

    /// The stack folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Its `stack.toml`.
    pub fn stack_file(&self) -> PathBuf {
        self.dir.join("stack.toml")
    }

    /// `labctl --stack <this> <args>`.
    pub fn labctl(&self, args: &[&str]) -> Labctl {
        Labctl::new().stack(self.stack_file()).args(args)
    }
}

/// `[stack]` plus every built-in component disabled: tests add their own `[kube.extra.*]` and
/// `[host.extra.*]` components so they do not depend on the shipped templates.
pub const BARE: &str = include_str!("../../fixtures/bare.toml");

/// A small web component: a ConfigMap and a Deployment whose image comes from `values.image`.
/// (Values printed in `.yaml` templates are JSON-quoted by the renderer: no quotes here.)
pub const WEB_TEMPLATE: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: {{ c.values.greeting }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {{ c.values.replicas }}
  selector:
    matchLabels:
      app.kubernetes.io/name: web
  template:
    metadata:
      labels:
        app.kubernetes.io/name: web
    spec:
      containers:
        - name: web
          image: {{ c.values.image }}
"#;

/// A stack with only the `web` component and a `hello` host unit.
pub fn web_stack(image: &str, replicas: u32) -> String {
    format!(
        "{BARE}\n[kube.extra.web]\nvalues = {{ image = \"{image}\", replicas = {replicas}, greeting = \"hi\" }}\n\n[host.extra.hello]\nvalues = {{ message = \"hello\" }}\n"
    )
}

/// The `hello` unit template.
pub const HELLO_UNIT: &str = "[Unit]\nDescription=says {{ c.values.message }}\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=default.target\n";

/// Write the web and hello templates into a stack folder.
pub fn with_web_templates(s: &Stack) {
    s.file("templates/web/web.yaml", WEB_TEMPLATE);
    s.file("systemd-templates/hello.service", HELLO_UNIT);
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------- one helper per job

/// A free loopback port (bound, then released for the server under test to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until `f` holds, polling; past `timeout`, fail naming `what` (formatted only then, so it
/// may show a log as it is at that moment).
#[track_caller]
pub fn wait_for(what: impl Display, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` from `addr` over HTTP/1.0: the status code and the body.
#[track_caller]
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (
        head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}

/// `git ARGS` in `dir` as a test author (no signing); its stdout, trimmed.
#[track_caller]
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Send signal `sig` (`TERM`, `KILL`, `HUP`) to process `pid`.
#[track_caller]
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

// ---------------------------------------------------------------- the test process itself

/// Whether the kernel may back labctl process `pid`'s memory with transparent huge pages (the
/// `THP_enabled` line of its status: 0 once `PR_SET_THP_DISABLE` is set). `None` before the
/// process runs labctl (between fork and exec), once it is gone, or on a kernel without the line.
pub fn huge_pages_enabled(pid: u32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.split_whitespace().next())
    };
    (field("Name:")? == "labctl").then_some(())?;
    Some(field("THP_enabled:")? == "1")
}

/// A test of labctl's huge pages must itself run with them allowed: a process started without
/// them keeps them off, whatever its command.
#[track_caller]
pub fn assert_huge_pages_allowed_here() {
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(
        own.contains("THP_enabled:\t1"),
        "this test must run with transparent huge pages allowed"
    );
}

/// Set in the copy of this binary that [`in_own_process`] starts: the name of the test it runs.
const OWN_PROCESS: &str = "IT_OWN_PROCESS";

/// Run `body`, the whole of test `path` (its `module_path!()` and name), in a copy of this test
/// binary running that test alone: for a test that changes its process for good (a global tracing
/// subscriber, signal handlers), which the other tests of this one binary share.
#[track_caller]
pub fn in_own_process(path: &str, body: impl FnOnce()) {
    // libtest names a test by its path without the crate.
    let name = path.split_once("::").map_or(path, |(_, rest)| rest);
    if std::env::var(OWN_PROCESS).as_deref() == Ok(name) {
        return body();
    }
    let out = Command::new(std::env::current_exe().expect("this test binary"))
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(OWN_PROCESS, name)
        .stdin(Stdio::null())
        .output()
        .expect("run this test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`{name}` failed in its own process ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // A filter that matches nothing passes too: the test must have run.
    assert!(
        stdout.contains("test result: ok. 1 passed;"),
        "`{name}` did not run in its own process:\n{stdout}\n{stderr}"
    );
}
