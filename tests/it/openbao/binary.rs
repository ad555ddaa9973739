//! End to end, through the binary: secrets from OpenBao reach the cluster and a unit's env file
//! and show nowhere; a render or validate without them, and OpenBao's refusals, as the user sees
//! them.

use super::*;

/// A kube component reading one secret into a Secret, a ConfigMap (inside a connection URL) and
/// an annotation; the test API server refuses the `leak` ConfigMap with a message quoting the
/// value, as a webhook might.
const E2E_KUBE: &str = r#"apiVersion: v1
kind: Secret
metadata:
  name: db-credentials
stringData:
  password: {{ secret("db-password") }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  annotations:
    example.com/dsn: {{ "postgres://app:" ~ secret("db-password") ~ "@db/app" }}
data:
  url: {{ "postgres://app:" ~ secret("db-password") ~ "@db/app" }}
  app.ini: |
    [db]
    host = db
    password = {{ secret("db-password") }}
    port = 5432
"#;

/// A host unit whose env file holds `API_TOKEN`; it writes the value it got to `out` so the
/// test can see what the unit read. (Its `Environment=` line holds a secret too: only to check
/// masking in a unit file, which a real template never does.)
const E2E_UNIT: &str = r#"{% import "systemd-templates/_lib/unit.j2" as u %}
[Unit]
Description=e2e worker

[Service]
ExecStart=/bin/sh -c 'printf %%s "$$API_TOKEN" > {{ c.values.out }}; exec sleep infinity'
Environment="DB_URL=postgres://app:{{ secret("db-password") }}@db/app"
{{ u.env_file(c.values.env, {"API_TOKEN": "api-token"}) -}}

[Install]
WantedBy=default.target
"#;

struct E2e {
    m: UserManager,
    srv: labctl_testapi::TestApiServer,
    rx: otlp::Receiver,
    stack: PathBuf,
    out: PathBuf,
    env_file: PathBuf,
    /// Every output seen, to check for values at the end.
    seen: Vec<(String, String)>,
}

impl E2e {
    /// A stack named `name` whose secrets all live in OpenBao at `secret/<name>`.
    fn new(name: &str) -> E2e {
        let m = UserManager::start();
        let srv = labctl_testapi::TestApiServer::start_blocking(labctl_testapi::Options {
            auto_rollout: true,
            ..labctl_testapi::Options::default()
        })
        .expect("test API server");
        let dir = m.scratch().join(name);
        std::fs::create_dir_all(dir.join("templates/creds")).unwrap();
        std::fs::create_dir_all(dir.join("systemd-templates")).unwrap();
        std::fs::write(dir.join("templates/creds/creds.yaml"), E2E_KUBE).unwrap();
        std::fs::write(dir.join("systemd-templates/worker.service"), E2E_UNIT).unwrap();
        let out = dir.join("worker.out");
        let text = format!(
            "{}\n[host]\nscope = \"user\"\n\n[secrets]\ndb-password = {{ bao = \"secret/{name}\" }}\napi-token = {{ bao = \"secret/{name}\", key = \"token\" }}\n\n[kube.extra.creds]\n\n[host.extra.{name}-worker]\ntemplate = \"worker\"\nvalues = {{ out = \"{}\", env = \"{name}\" }}\n",
            BARE,
            out.display()
        );
        let stack = dir.join("stack.toml");
        std::fs::write(&stack, text).unwrap();
        let env_file = m
            .scratch()
            .parent()
            .unwrap()
            .join(format!("config/labctl/{name}.env"));
        E2e {
            m,
            srv,
            rx: otlp::Receiver::start(),
            stack,
            out,
            env_file,
            seen: Vec::new(),
        }
    }

    /// `labctl --stack <stack> --kubeconfig <srv> <args>` with the manager's and OpenBao's
    /// environment and telemetry to the receiver; the code, stdout and stderr.
    fn labctl(&mut self, args: &[&str], token: &str) -> (i32, String, String) {
        let (code, out, err) = self
            .m
            .command(&self.stack, &["--kubeconfig"])
            .arg(self.srv.kubeconfig_path())
            .args(args)
            .env("BAO_ADDR", &server().addr)
            .env("BAO_TOKEN", token)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", self.rx.http_endpoint())
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .run()
            .parts();
        self.seen.push((format!("stdout of {args:?}"), out.clone()));
        self.seen.push((format!("stderr of {args:?}"), err.clone()));
        (code, out, err)
    }

    #[track_caller]
    fn ok(&mut self, args: &[&str]) -> String {
        let (code, out, err) = self.labctl(args, ROOT_TOKEN);
        assert_eq!(code, 0, "labctl {args:?}\nstdout:\n{out}\nstderr:\n{err}");
        out
    }

    #[track_caller]
    fn no_changes(&mut self) {
        let out = self.ok(&["plan", "--detailed-exitcode"]);
        assert!(out.contains("No changes."), "{out}");
    }

    /// Neither any output nor anything the receiver got holds any of `values` (nor their base64).
    #[track_caller]
    fn assert_nowhere(&self, values: &[&str]) {
        use base64::Engine as _;
        let mut all: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        all.extend(
            values
                .iter()
                .map(|v| base64::engine::general_purpose::STANDARD.encode(v)),
        );
        let mut places = self.seen.clone();
        places.push(("OTLP data".into(), self.rx.raw()));
        for (what, text) in &places {
            for v in &all {
                assert!(!text.contains(v.as_str()), "{what} shows `{v}`:\n{text}");
            }
        }
    }
}

#[test]
fn secrets_from_openbao_reach_the_cluster_and_the_env_file_and_show_nowhere() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let _read = SEAL.read().unwrap();
    let name = "e2elab";
    let (db1, tok1) = ("e2e-db-pass-One1", "e2e-api-token-One1");
    put_kv(name, serde_json::json!({"db-password": db1, "token": tok1}));
    let mut t = E2e::new(name);

    let plan = t.ok(&["plan"]);
    assert!(
        plan.contains(&format!("env file %E/labctl/{name}.env will be created")),
        "{plan}"
    );
    assert!(plan.contains("API_TOKEN: (sensitive value)"), "{plan}");
    assert!(plan.contains("password: (sensitive value)"), "{plan}");
    assert!(plan.contains("url: (sensitive value)"), "{plan}");
    assert!(
        plan.contains("example.com/dsn: (sensitive value)"),
        "{plan}"
    );
    assert!(
        plan.contains("Environment=\"DB_URL=postgres://app:(sensitive value)@db/app\""),
        "{plan}"
    );
    assert!(plan.contains("password = \"(sensitive value)\""), "{plan}");
    assert!(plan.contains("port = 5432"), "{plan}");
    t.ok(&["plan", "-o", "json"]);

    t.ok(&["apply", "--yes"]);
    let stored = t.srv.get("v1", "Secret", "lab", "db-credentials").unwrap();
    assert_eq!(stored["data"]["password"], b64(db1));
    let cm = t.srv.get("v1", "ConfigMap", "lab", "app-config").unwrap();
    assert_eq!(cm["data"]["url"], format!("postgres://app:{db1}@db/app"));
    let meta = std::fs::metadata(&t.env_file).expect("apply wrote the env file");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let unit = format!("{name}-worker.service");
    assert_eq!(t.m.active_state(&unit), "active");
    wait_for(
        "the unit to write what it read",
        Duration::from_secs(30),
        || std::fs::read_to_string(&t.out).is_ok_and(|s| s == tok1),
    );
    let pid = t.m.main_pid(&unit);
    t.no_changes();

    // The token rotated in OpenBao: only the env file changes, and it restarts the unit.
    let tok2 = "e2e-api-token-Two2";
    put_kv(name, serde_json::json!({"db-password": db1, "token": tok2}));
    let plan = t.ok(&["plan"]);
    assert!(
        plan.contains("API_TOKEN: (sensitive value changed)"),
        "{plan}"
    );
    assert!(
        plan.contains(&format!(
            "env file %E/labctl/{name}.env will be updated (restarts unit)"
        )),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{plan}"
    );
    t.ok(&["plan", "-o", "json"]);
    t.ok(&["apply", "--yes"]);
    wait_for(
        "the restarted unit to write the new token",
        Duration::from_secs(30),
        || std::fs::read_to_string(&t.out).is_ok_and(|s| s == tok2),
    );
    assert_ne!(t.m.main_pid(&unit), pid, "the unit was restarted");
    t.no_changes();

    // The password rotated: the Secret, the ConfigMap and the unit's line show it as changed.
    let db2 = "e2e-db-pass-Two2";
    put_kv(name, serde_json::json!({"db-password": db2, "token": tok2}));
    let plan = t.ok(&["plan"]);
    assert!(
        plan.contains("password: (sensitive value changed)"),
        "{plan}"
    );
    assert!(plan.contains("url: (sensitive value changed)"), "{plan}");
    assert!(
        plan.contains("+ Environment=\"DB_URL=postgres://app:(sensitive value changed)@db/app\""),
        "{plan}"
    );
    t.ok(&["plan", "-o", "markdown"]);
    t.ok(&["apply", "--yes"]);
    let stored = t.srv.get("v1", "Secret", "lab", "db-credentials").unwrap();
    assert_eq!(stored["data"]["password"], b64(db2));
    t.no_changes();

    // A server that echoes the value it was sent back in a refusal (as an admission webhook
    // may): the error and its span are masked.
    let db3 = "e2e-db-pass-Three3";
    t.srv.refuse_in(
        "lab",
        "ConfigMap",
        "app-config",
        labctl_testapi::ApiError {
            code: 422,
            reason: "Invalid".into(),
            message: format!("admission webhook denied `url` = postgres://app:{db3}@db/app"),
            details: None,
        },
    );
    put_kv(name, serde_json::json!({"db-password": db3, "token": tok2}));
    let (code, _, err) = t.labctl(&["apply", "--yes"], ROOT_TOKEN);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("admission webhook denied"), "{err}");
    t.rx.wait_for_spans(Duration::from_secs(10), |s| {
        s.iter().any(|s| s.attr("error.message").is_some())
    });
    assert!(
        err.contains("postgres://app:(sensitive value)@db/app"),
        "{err}"
    );
    t.assert_nowhere(&[db1, db2, db3, tok1, tok2]);
}

/// `(code, stdout, stderr)` of `labctl render` on a stack, with `env`.
fn render(stack: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    Labctl::new()
        .stack(stack)
        .arg("render")
        .args(args)
        .env_remove("BAO_ADDR")
        .env_remove("BAO_TOKEN")
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .env("HOME", stack.parent().unwrap())
        .envs(env.iter().copied())
        .run()
        .parts()
}

fn kube_stack(dir: &Path, secrets: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("templates/creds")).unwrap();
    std::fs::write(dir.join("templates/creds/creds.yaml"), E2E_KUBE).unwrap();
    let stack = dir.join("stack.toml");
    std::fs::write(
        &stack,
        format!("{}\n[secrets]\n{secrets}\n\n[kube.extra.creds]\n", BARE),
    )
    .unwrap();
    stack
}

#[test]
fn render_without_secrets_refuses_naming_them_and_redact_renders_markers() {
    let dir = tempfile::tempdir().unwrap();
    let stack = kube_stack(dir.path(), "db-password = { env = \"E2E_DB_PASSWORD\" }");
    let (code, out, err) = render(&stack, &[], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "nothing is rendered: {out}");
    assert!(
        err.contains("`db-password` (from env `E2E_DB_PASSWORD`): `E2E_DB_PASSWORD` is not set"),
        "{err}"
    );

    let (code, out, err) = render(&stack, &["--redact"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(redacted secret db-password)"), "{out}");
    assert!(!out.contains("<unset secret"), "{out}");

    let (code, out, err) = render(&stack, &[], &[("E2E_DB_PASSWORD", "rd-Value-1")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("password: rd-Value-1"), "{out}");

    // CI's plans read no secret and say that values are not compared.
    let (code, out, err) = Labctl::new()
        .stack(&stack)
        .args(["plan", "--offline"])
        .run()
        .parts();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Secret values are not compared"), "{out}");
    assert!(out.contains("password: (sensitive value)"), "{out}");
}

#[test]
fn sealed_wrong_token_and_missing_key_each_say_so_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let stack = kube_stack(
        dir.path(),
        "db-password = { bao = \"secret/e2eseal\", key = \"nope\" }",
    );
    let addr = server().addr.clone();
    {
        let _read = SEAL.read().unwrap();
        put_kv("e2eseal", serde_json::json!({"db-password": "seal-Val-1"}));
        let (code, _, err) = render(
            &stack,
            &[],
            &[("BAO_ADDR", &addr), ("BAO_TOKEN", ROOT_TOKEN)],
        );
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("no key `nope` in `secret/e2eseal` (it has `db-password`)"),
            "{err}"
        );
        let (code, _, err) = render(
            &stack,
            &[],
            &[("BAO_ADDR", &addr), ("BAO_TOKEN", "wrong-token-e2e")],
        );
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("refuses the token"), "{err}");
        assert!(!err.contains("wrong-token-e2e"), "{err}");
    }
    let _write = SEAL.write().unwrap();
    let (s, _) = api("PUT", "sys/seal", None);
    assert_eq!(s, 204, "seal the dev server");
    let (code, _, err) = render(
        &stack,
        &[],
        &[("BAO_ADDR", &addr), ("BAO_TOKEN", ROOT_TOKEN)],
    );
    let (s, _) = api(
        "PUT",
        "sys/unseal",
        Some(serde_json::json!({"key": server().unseal_key})),
    );
    assert_eq!(s, 200, "unseal");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is sealed (it seals itself whenever it restarts)")
            && err.contains("it holds `db-password`")
            && err.contains("unseal it: `bao operator unseal`"),
        "{err}"
    );
    assert!(
        !err.contains("seal-Val-1") && !err.contains(ROOT_TOKEN),
        "{err}"
    );
}

#[test]
fn validate_names_a_secret_nothing_provides_and_warns_of_an_unused_one() {
    let dir = tempfile::tempdir().unwrap();
    let stack = kube_stack(dir.path(), "stale = { env = \"E2E_STALE\" }");
    let validate = |env: &[(&str, &str)]| {
        Labctl::new()
            .stack(&stack)
            .arg("validate")
            .envs(env.iter().copied())
            .run()
            .parts()
    };
    let (code, _, err) = validate(&[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "secret `db-password` is used by `templates/creds/creds.yaml`, but nothing provides it"
        ),
        "{err}"
    );
    // Given by its override, it is provided; the unused entry stays a warning.
    let (code, _, err) = validate(&[("LABCTL_SECRET_DB_PASSWORD", "v-Value-1")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("secret `stale` is declared but no template uses it"),
        "{err}"
    );
    assert!(!err.contains("v-Value-1"), "{err}");
}
