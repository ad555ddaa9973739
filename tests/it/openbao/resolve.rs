//! Secrets resolved in this process against the dev server, and each way OpenBao can refuse.

use super::*;

/// Every error text and the Debug of the whole result: none may hold a value or the token.
fn assert_nothing_leaks(r: &Resolved, values: &[&str], token: &str) {
    let mut texts: Vec<String> = r.missing.iter().map(ToString::to_string).collect();
    texts.push(format!("{r:?}"));
    for t in &texts {
        for v in values {
            assert!(!t.contains(v), "a secret value leaked into: {t}");
        }
        assert!(!t.contains(token), "the token leaked into: {t}");
    }
}

#[test]
fn kv2_default_and_declared_sources_resolve() {
    let _read = SEAL.read().unwrap();
    put_kv(
        "kvlab",
        serde_json::json!({"grafana-admin-password": "g-Val-1", "other": "o-Val-2"}),
    );
    put_kv("kvlab-apps/db", serde_json::json!({"pw": "db-Val-3"}));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("minio.txt"), "file-Val-4\n").unwrap();
    let stack = parse(
        r#"[stack]
name = "kvlab"

[secrets]
postgres-password = { bao = "secret/kvlab-apps/db", key = "pw" }
minio-root-password = { file = "minio.txt" }
webhook-secret = { env = "HOOK" }
"#,
    );
    let mut env = bao_env(ROOT_TOKEN);
    env.push(("HOOK".into(), "env-Val-5".into()));
    let env = env_of(env);
    let want = names(&[
        "grafana-admin-password",
        "postgres-password",
        "minio-root-password",
        "webhook-secret",
    ]);
    let r = rt().block_on(secrets::resolve(&stack, dir.path(), &want, &env));
    assert!(r.missing.is_empty(), "{:?}", r.missing);
    assert_eq!(
        r.lookup("grafana-admin-password").as_deref(),
        Some("g-Val-1")
    );
    assert_eq!(r.lookup("postgres-password").as_deref(), Some("db-Val-3"));
    assert_eq!(
        r.lookup("minio-root-password").as_deref(),
        Some("file-Val-4")
    );
    assert_eq!(r.lookup("webhook-secret").as_deref(), Some("env-Val-5"));
    assert_nothing_leaks(
        &r,
        &["g-Val-1", "o-Val-2", "db-Val-3", "file-Val-4", "env-Val-5"],
        ROOT_TOKEN,
    );
    let values = r.require().unwrap();
    assert_eq!(values.len(), 4);
}

#[test]
fn the_labctl_secret_override_wins_over_any_source() {
    let _read = SEAL.read().unwrap();
    put_kv(
        "ovlab",
        serde_json::json!({"postgres-password": "from-bao"}),
    );
    let stack = parse("[stack]\nname = \"ovlab\"\n");
    let mut env = bao_env(ROOT_TOKEN);
    env.push((
        "LABCTL_SECRET_POSTGRES_PASSWORD".into(),
        "from-override".into(),
    ));
    let env = env_of(env);
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["postgres-password"]),
        &env,
    ));
    assert_eq!(
        r.lookup("postgres-password").as_deref(),
        Some("from-override")
    );
    // An override needs no OpenBao at all: no address, no token, still a value.
    let env = env_of(vec![(
        "LABCTL_SECRET_POSTGRES_PASSWORD".into(),
        "from-override".into(),
    )]);
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["postgres-password"]),
        &env,
    ));
    assert!(r.missing.is_empty(), "{:?}", r.missing);
}

#[test]
fn every_missing_secret_is_reported_at_once_with_its_source() {
    let _read = SEAL.read().unwrap();
    put_kv("mslab", serde_json::json!({"present": "p-Val"}));
    let stack = parse(
        r#"[stack]
name = "mslab"

[host.openbao]
enabled = false

[secrets]
a = { bao = "secret/mslab", key = "absent" }
b = { bao = "secret/mslab-nothing-here" }
c = { bao = "nomount/x", key = "k" }
d = { env = "UNSET_VAR_FOR_LABCTL" }
e = { file = "/nonexistent/labctl/secret" }
"#,
    );
    let env = env_of(bao_env(ROOT_TOKEN));
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["a", "b", "c", "d", "e", "f"]),
        &env,
    ));
    let by: BTreeMap<&str, String> = r
        .missing
        .iter()
        .map(|m| (m.name.as_str(), m.to_string()))
        .collect();
    assert_eq!(by.len(), 6, "{by:#?}");
    assert!(
        by["a"].contains("no key `absent` in `secret/mslab` (it has `present`)"),
        "{}",
        by["a"]
    );
    assert!(by["a"].contains(r#"from { bao = "secret/mslab", key = "absent" }"#));
    assert!(
        by["b"].contains("no secret at `secret/mslab-nothing-here`"),
        "{}",
        by["b"]
    );
    assert!(
        by["c"].contains("no secrets engine is mounted at `nomount/`"),
        "{}",
        by["c"]
    );
    assert!(
        by["d"].contains("`UNSET_VAR_FOR_LABCTL` is not set"),
        "{}",
        by["d"]
    );
    assert!(
        by["e"].contains("cannot read `/nonexistent/labctl/secret`"),
        "{}",
        by["e"]
    );
    assert!(by["f"].contains("nothing provides it"), "{}", by["f"]);
    assert!(by["f"].contains("LABCTL_SECRET_F"), "{}", by["f"]);
    assert_nothing_leaks(&r, &["p-Val"], ROOT_TOKEN);
    let err = r.require().unwrap_err().to_string();
    assert!(err.starts_with("6 secret(s) have no value"), "{err}");
}

#[test]
fn a_deleted_version_and_a_kv1_mount_are_told_apart() {
    let _read = SEAL.read().unwrap();
    put_kv("dllab", serde_json::json!({"k": "dl-Val"}));
    let (s, _) = api("DELETE", "secret/data/dllab", None);
    assert_eq!(s, 204, "delete the latest version");
    let (s, _) = api(
        "POST",
        "sys/mounts/kv1lab",
        Some(serde_json::json!({"type": "kv", "options": {"version": "1"}})),
    );
    assert!(s == 204 || s == 400, "mount kv1lab: {s}");
    let (s, _) = api("POST", "kv1lab/x", Some(serde_json::json!({"k": "v1-Val"})));
    assert_eq!(s, 204, "write kv1lab/x");
    let stack = parse(
        "[stack]\nname = \"dllab\"\n\n[secrets]\nd = { bao = \"secret/dllab\", key = \"k\" }\nv = { bao = \"kv1lab/x\", key = \"k\" }\n",
    );
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["d", "v"]),
        &env_of(bao_env(ROOT_TOKEN)),
    ));
    assert_eq!(r.missing.len(), 2, "{:?}", r.missing);
    assert!(
        r.missing[0]
            .reason
            .contains("no secret at `secret/dllab` (its latest version is deleted)"),
        "{}",
        r.missing[0]
    );
    assert!(
        r.missing[1]
            .reason
            .contains("`kv1lab/` is not a KV version 2 mount"),
        "{}",
        r.missing[1]
    );
    assert_nothing_leaks(&r, &["dl-Val", "v1-Val"], ROOT_TOKEN);
}

#[test]
fn a_wrong_token_and_a_narrow_policy_each_say_so() {
    let _read = SEAL.read().unwrap();
    put_kv("tklab", serde_json::json!({"x": "tk-Val"}));
    put_kv("tklab-private", serde_json::json!({"x": "private-Val"}));
    let (s, _) = api(
        "PUT",
        "sys/policies/acl/tklab-read",
        Some(serde_json::json!({
            "policy": "path \"secret/data/tklab\" { capabilities = [\"read\"] }"
        })),
    );
    assert!(s == 204 || s == 200, "policy write: {s}");
    let (s, body) = api(
        "POST",
        "auth/token/create",
        Some(serde_json::json!({"policies": ["tklab-read"]})),
    );
    assert_eq!(s, 200);
    let narrow = body["auth"]["client_token"].as_str().unwrap().to_string();

    let stack = parse(
        "[stack]\nname = \"tklab\"\n\n[secrets]\nx = { bao = \"secret/tklab\" }\ny = { bao = \"secret/tklab-private\", key = \"x\" }\n",
    );
    let wanted = names(&["x", "y"]);

    let wrong = "not-a-real-token-0000";
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &wanted,
        &env_of(bao_env(wrong)),
    ));
    assert_eq!(r.missing.len(), 2);
    for m in &r.missing {
        assert!(m.reason.contains("refuses the token"), "{m}");
    }
    assert_nothing_leaks(&r, &["tk-Val", "private-Val"], wrong);

    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &wanted,
        &env_of(bao_env(&narrow)),
    ));
    assert_eq!(r.lookup("x").as_deref(), Some("tk-Val"));
    assert_eq!(r.missing.len(), 1, "{:?}", r.missing);
    assert!(
        r.missing[0]
            .reason
            .contains("permission denied reading `secret/tklab-private`"),
        "{}",
        r.missing[0]
    );
    assert_nothing_leaks(&r, &["tk-Val", "private-Val"], &narrow);
}

#[test]
fn nothing_listening_is_unreachable_and_no_token_is_said() {
    let _read = SEAL.read().unwrap();
    let stack = parse("[stack]\nname = \"unlab\"\n");
    let port = free_port();
    let env = env_of(vec![
        ("BAO_ADDR".into(), format!("http://127.0.0.1:{port}")),
        ("BAO_TOKEN".into(), ROOT_TOKEN.into()),
    ]);
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["postgres-password"]),
        &env,
    ));
    assert_eq!(r.missing.len(), 1);
    let m = r.missing[0].to_string();
    assert!(
        m.contains(&format!(
            "OpenBao at `http://127.0.0.1:{port}` is unreachable"
        )),
        "{m}"
    );
    assert_nothing_leaks(&r, &[], ROOT_TOKEN);

    let home = tempfile::tempdir().unwrap();
    let env = env_of(vec![
        ("BAO_ADDR".into(), server().addr.clone()),
        ("HOME".into(), home.path().display().to_string()),
    ]);
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["postgres-password"]),
        &env,
    ));
    assert!(
        r.missing[0].reason.contains("no OpenBao token"),
        "{}",
        r.missing[0]
    );
    // `bao login` leaves the token in ~/.vault-token: that is enough.
    put_kv(
        "unlab",
        serde_json::json!({"postgres-password": "login-Val"}),
    );
    std::fs::write(home.path().join(".vault-token"), ROOT_TOKEN).unwrap();
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["postgres-password"]),
        &env,
    ));
    assert_eq!(r.lookup("postgres-password").as_deref(), Some("login-Val"));
}

#[test]
fn a_sealed_server_says_sealed() {
    let _write = SEAL.write().unwrap();
    put_kv("sllab", serde_json::json!({"postgres-password": "sl-Val"}));
    let (s, _) = api("PUT", "sys/seal", None);
    assert_eq!(s, 204, "seal the dev server");
    let stack = parse("[stack]\nname = \"sllab\"\n");
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["postgres-password"]),
        &env_of(bao_env(ROOT_TOKEN)),
    ));
    // Unseal before asserting, so a failure here does not take the other tests down with it.
    let (s, body) = api(
        "PUT",
        "sys/unseal",
        Some(serde_json::json!({"key": server().unseal_key})),
    );
    assert_eq!(s, 200, "unseal");
    assert_eq!(body["sealed"], false);
    assert_eq!(r.missing.len(), 1);
    let m = r.missing[0].to_string();
    assert!(
        m.contains("is sealed: unseal it with `bao operator unseal`"),
        "{m}"
    );
    assert_nothing_leaks(&r, &["sl-Val"], ROOT_TOKEN);
}

/// A TCP relay in front of the dev server that counts connections and the request lines sent.
struct Relay {
    addr: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

fn relay() -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let upstream = server().addr.trim_start_matches("http://").to_string();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (conns, reqs) = (connections.clone(), requests.clone());
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            conns.fetch_add(1, Ordering::SeqCst);
            let mut up = TcpStream::connect(&upstream).unwrap();
            let (mut c2, mut u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut u2, &mut c2);
            });
            let reqs = reqs.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    let n = match client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let text = String::from_utf8_lossy(&buf[..n]);
                    for line in text.lines().filter(|l| l.starts_with("GET /v1/")) {
                        reqs.lock().unwrap().push(line.to_string());
                    }
                    if up.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Relay {
        addr,
        connections,
        requests,
    }
}

#[test]
fn each_path_is_read_once_and_all_paths_at_once() {
    let _read = SEAL.read().unwrap();
    for p in ["prlab/a", "prlab/b", "prlab/c"] {
        put_kv(p, serde_json::json!({"one": "1", "two": "2"}));
    }
    let stack = parse(
        r#"[stack]
name = "prlab"

[secrets]
a1 = { bao = "secret/prlab/a", key = "one" }
a2 = { bao = "secret/prlab/a", key = "two" }
b1 = { bao = "secret/prlab/b", key = "one" }
b2 = { bao = "secret/prlab/b", key = "two" }
c1 = { bao = "secret/prlab/c", key = "one" }
"#,
    );
    let relay = relay();
    let env = env_of(vec![
        ("BAO_ADDR".into(), relay.addr.clone()),
        ("BAO_TOKEN".into(), ROOT_TOKEN.into()),
    ]);
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["a1", "a2", "b1", "b2", "c1"]),
        &env,
    ));
    assert!(r.missing.is_empty(), "{:?}", r.missing);
    let mut seen = relay.requests.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            "GET /v1/secret/data/prlab/a HTTP/1.1",
            "GET /v1/secret/data/prlab/b HTTP/1.1",
            "GET /v1/secret/data/prlab/c HTTP/1.1",
        ]
    );
    // Sent at once: each request needed its own connection (one after the other would have
    // reused the first).
    assert_eq!(relay.connections.load(Ordering::SeqCst), 3);
}

#[test]
fn the_client_reports_health_and_counts_requests() {
    let _read = SEAL.read().unwrap();
    let bao = Bao::new(&Connect {
        addr: server().addr.clone(),
        token: Token::new(ROOT_TOKEN),
        ca_cert: None,
    })
    .unwrap();
    let rt = rt();
    let h = rt.block_on(bao.health()).unwrap();
    assert!(h.initialized && !h.sealed, "{h:?}");
    assert!(h.version.starts_with('2'), "OpenBao 2.x, got {}", h.version);
    put_kv("hclab", serde_json::json!({"k": "v"}));
    let paths: BTreeSet<KvPath> = [KvPath {
        mount: "secret".into(),
        path: "hclab".into(),
    }]
    .into();
    let before = bao.stats().calls;
    let got = rt.block_on(bao.read_all(&paths));
    assert_eq!(bao.stats().calls - before, 1);
    let fields = got.values().next().unwrap().as_ref().unwrap();
    assert_eq!(fields["k"].expose(), "v");
    assert_eq!(format!("{fields:?}"), r#"{"k": SecretValue(<redacted>)}"#);
}
