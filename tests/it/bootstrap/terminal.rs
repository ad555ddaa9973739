//! On a terminal: the keys shown once, a token asked for with a hidden prompt.

use super::*;

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
