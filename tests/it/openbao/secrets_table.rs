//! The `[secrets]` table of stack.toml: its sources, their problems located, and secrets used but
//! not provided.

use super::*;

/// `labctl validate` on `text` fails; its stderr.
fn invalid(text: &str) -> String {
    let s = Stack::new(text);
    let (code, stdout, stderr) = s.labctl(&["validate"]).run().parts();
    assert_eq!(code, 1, "expected failure; stderr:\n{stderr}");
    assert_eq!(stdout, "");
    stderr
}

#[test]
fn an_unknown_source_is_named_where_it_is() {
    let e = invalid("[stack]\nname = \"lab\"\n\n[secrets]\nx = { vault = \"secret/x\" }\n");
    assert!(e.contains("stack.toml:5:7: unknown field `vault`"), "{e}");
    assert!(
        e.contains("`bao`") && e.contains("`env`") && e.contains("`file`"),
        "{e}"
    );
}

#[test]
fn malformed_sources_are_located() {
    let e = invalid(
        "[stack]\nname = \"lab\"\n\n[secrets]\na = {}\nb = { env = \"A\", file = \"f\" }\nc = { bao = \"secret\" }\nd = { env = \"X\", key = \"k\" }\n\"Bad!\" = { env = \"Y\" }\n",
    );
    for want in [
        "stack.toml:5:5: secret `a`: no source: expected `bao`, `env` or `file`",
        "stack.toml:6:5: secret `b`: more than one source (`env`, `file`): give exactly one",
        "stack.toml:7:5: secret `c`: `bao = \"secret\"` must be `<mount>/<path>`",
        "stack.toml:8:5: secret `d`: `key` only goes with `bao`",
        "stack.toml:9:10: `Bad!` is not a valid secret name",
    ] {
        assert!(e.contains(want), "expected `{want}` in:\n{e}");
    }
}

#[test]
fn used_secrets_must_be_provided_and_declared_ones_used() {
    let text = "[stack]\nname = \"lab\"\n\n[host.openbao]\nenabled = false\n\n[secrets]\ngrafana-admin-password = { env = \"G\" }\nstale = { env = \"S\" }\n";
    let stack = parse(text);
    let file = stack::SourceFile::new(Path::new("stack.toml"), text);
    let used =
        labctl::render::secrets_asked(&stack, &labctl::render::Templates::builtin(), None).unwrap();
    let u = stack::secret_usage(&stack, &file, &used);
    let problems: Vec<String> = u.problems.iter().map(|p| p.message.clone()).collect();
    assert_eq!(
        problems,
        [
            "secret `github-token` is used by `systemd-templates/ingest.service`, but nothing provides it",
            "secret `minio-root-password` is used by `templates/minio/secret.yaml`, `templates/thanos/secret.yaml`, but nothing provides it",
            "secret `postgres-password` is used by `systemd-templates/ingest.service`, `templates/postgres/secret.yaml`, but nothing provides it",
            "secret `webhook-secret` is used by `systemd-templates/proxy.service`, but nothing provides it",
        ]
    );
    // Pointed at `[secrets]`, where the fix goes.
    let span = u.problems[0].span.clone().unwrap();
    assert_eq!(file.line_col(span.start), (7, 1));
    assert!(
        u.problems[2]
            .help
            .as_deref()
            .unwrap()
            .contains("LABCTL_SECRET_POSTGRES_PASSWORD")
    );
    assert_eq!(u.warnings.len(), 1);
    assert_eq!(
        u.warnings[0].message,
        "secret `stale` is declared but no template uses it"
    );
    assert_eq!(
        file.line_col(u.warnings[0].span.clone().unwrap().start),
        (9, 9)
    );

    // With OpenBao enabled, every used secret has its default source.
    let stack = parse("[stack]\nname = \"lab\"\n");
    let file = stack::SourceFile::new(Path::new("stack.toml"), "[stack]\nname = \"lab\"\n");
    let u = stack::secret_usage(&stack, &file, &used);
    assert!(u.problems.is_empty() && u.warnings.is_empty(), "{u:?}");
    assert_eq!(
        stack.secret_from("postgres-password"),
        Some(Ok(SecretFrom::Bao {
            mount: "secret".into(),
            path: "lab".into(),
            key: "postgres-password".into()
        }))
    );
}
