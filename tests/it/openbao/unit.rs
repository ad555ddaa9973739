//! The bundled `openbao.service`, rendered and run under a real systemd user manager.

use super::*;

#[test]
fn the_rendered_openbao_unit_runs_a_real_server() {
    let bao = server().binary.clone();
    let m = UserManager::start();
    let dir = m.scratch();
    let (api_port, cluster_port) = (free_port(), free_port());
    let data = dir.join("bao-data");
    let stack_path = dir.join("stack.toml");
    let mut text = String::from(BARE);
    text = text.replace("[host.openbao]\nenabled = false\n", "");
    text.push_str(&format!(
        "\n[host]\nscope = \"user\"\n\n[host.openbao]\nunit = \"obt-openbao\"\nbinary = \"{}\"\nlisten = \"127.0.0.1:{api_port}\"\ncluster_port = {cluster_port}\nstorage_path = \"{}\"\n",
        bao.display(),
        data.display()
    ));
    std::fs::write(&stack_path, &text).unwrap();

    let rendered = m.labctl(&stack_path, &["render", "--plane", "systemd"]);
    rendered.code(0);
    assert!(
        rendered.stdout.contains(r#""raft": {"#),
        "{}",
        rendered.stdout
    );
    assert!(
        !rendered.stdout.contains("disable_mlock"),
        "{}",
        rendered.stdout
    );
    assert!(
        !rendered.stdout.contains(r#""file": "#),
        "{}",
        rendered.stdout
    );

    m.labctl(&stack_path, &["apply", "--plane", "systemd", "--yes"])
        .code(0);
    assert_eq!(m.active_state("obt-openbao.service"), "active");

    let client = Bao::new(&Connect {
        addr: format!("http://127.0.0.1:{api_port}"),
        token: Token::new(ROOT_TOKEN),
        ca_cert: None,
    })
    .unwrap();
    let rt = rt();
    let deadline = Instant::now() + Duration::from_secs(60);
    let health = loop {
        match rt.block_on(client.health()) {
            Ok(h) => break h,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "openbao.service never answered: {e}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    // 501: up, on raft, and waiting for `bao operator init`.
    assert_eq!(health.status, 501, "{health:?}");
    assert!(!health.initialized && health.sealed, "{health:?}");
    assert!(
        data.join("raft").exists() || data.join("vault.db").exists(),
        "raft data in {}",
        data.display()
    );

    // A plan that needs its secrets says so in the operator's terms.
    let paths: BTreeSet<KvPath> = [KvPath {
        mount: "secret".into(),
        path: "lab".into(),
    }]
    .into();
    let got = rt.block_on(client.read_all(&paths));
    let err = got.into_values().next().unwrap().unwrap_err();
    assert!(matches!(err, BaoError::NotInitialised { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("is not initialised: initialise it once with `labctl bootstrap`"),
        "{err}"
    );

    m.labctl(
        &stack_path,
        &["plan", "--plane", "systemd", "--detailed-exitcode"],
    )
    .code(0)
    .stdout_has("No changes.");
}
