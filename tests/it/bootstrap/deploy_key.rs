//! A private repository cloned and synced over ssh with the stack's deploy key (a loopback sshd).

use super::*;

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
    commit(work, what);
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
        serde_json::from_str(include_str!("../../fixtures/github-push.json")).unwrap();
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
