//! The README's Use block: every command that needs no lab runs as written, and every other
//! one is classified.

use super::*;

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
    let commit_stack = |m: &str| {
        git(d, &["add", "stack.toml"]);
        commit(d, m);
    };
    commit_stack("the lab");
    git(d, &["update-ref", "refs/remotes/origin/main", "HEAD"]);
    std::fs::write(
        d.join("stack.toml"),
        text.replace("node_port = 30000", "node_port = 30001"),
    )
    .unwrap();
    commit_stack("grafana moves");

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
