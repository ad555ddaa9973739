//! Step 4 of bootstrap: every secret the stack needs and the store lacks, filled (generated,
//! from the environment, or typed), and the policy that reads only them.

use super::*;

/// Whether bootstrap generates a value for the secret `name` when it has none: labctl's own
/// credentials (a `…-password`, a `…-secret`, a pipeline's bearer token), which nothing outside
/// the lab knows. Tokens issued by others (`github-token`) and keys (`deploy-key`) are given.
pub fn generates(name: &str) -> bool {
    name.ends_with("-password") || name.ends_with("-secret") || name.starts_with("pipeline-token-")
}

/// A strong random value: 40 letters and digits (238 bits), safe in a URL, a shell and YAML.
///
/// # Errors
/// [`Error::Backend`] when the system's random source fails.
pub fn generate() -> Result<SecretValue, Error> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(40);
    while out.len() < 40 {
        let mut buf = [0u8; 64];
        getrandom::fill(&mut buf)
            .map_err(|e| Error::backend("labctl", "read the system's random source", e))?;
        // 248 = 4 × 62: bytes at or above it are dropped, so every character is equally likely.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() < 40 {
                out.push(char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]));
            }
        }
    }
    crate::sensitive::register(&out);
    Ok(SecretValue::new(out))
}

/// The stack's policy: `read` on each KV version 2 path its secrets live at, nothing else.
pub fn policy_rules(paths: &BTreeSet<KvPath>) -> String {
    paths
        .iter()
        .map(|p| {
            format!(
                "path \"{}/data/{}\" {{\n  capabilities = [\"read\"]\n}}\n",
                p.mount, p.path
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Step 3 and 4 of the module's sequence.
pub(super) async fn fill(
    request: &BootstrapRequest,
    loaded: &LoadedStack,
    templates: &crate::render::Templates,
    bao: &Bao,
    admin: Option<Token>,
    events: &mut dyn BootstrapEvents,
    out: &mut Bootstrapped,
) -> Result<(), Error> {
    let stack = &loaded.stack;
    let env = &crate::secrets::process_env;
    let names = secrets_needed(loaded, templates, None, &Selection::default())?;
    // Each KV path, and the secrets (with their field) that live there.
    let mut wanted: BTreeMap<KvPath, Vec<(String, String)>> = BTreeMap::new();
    for name in &names {
        match stack.secret_from(name) {
            Some(Ok(SecretFrom::Bao { mount, path, key })) => wanted
                .entry(KvPath { mount, path })
                .or_default()
                .push((name.clone(), key)),
            Some(Ok(other)) => events.said(&format!(
                "`{name}` comes from {other}, not from OpenBao: bootstrap leaves it to you"
            )),
            _ => events.said(&format!(
                "`{name}` has no source in OpenBao: declare one in [secrets] or set `{}`",
                override_var(name)
            )),
        }
    }
    let paths: BTreeSet<KvPath> = wanted.keys().cloned().collect();
    if paths.is_empty() {
        events.said("the stack takes no secret from OpenBao: nothing to fill");
        return Ok(());
    }
    let policy_name = format!("labctl-{}", stack.stack.name);
    let file = token_file()?;
    let daily = match std::fs::read_to_string(&file) {
        Ok(t) if !t.trim().is_empty() => Some(Token::new(t.trim())),
        _ => None,
    };
    if let Some(t) = &daily {
        t.register();
        let read = bao.with_token(t.clone()).read_all(&paths).await;
        let complete = wanted.iter().all(|(p, fields)| {
            matches!(read.get(p), Some(Ok(have)) if fields.iter().all(|(_, k)| have.contains_key(k)))
        });
        if complete {
            events.said(&format!(
                "every secret the stack takes from OpenBao has a value, and labctl's token \
                 (`{}`) reads them: nothing to fill",
                file.display()
            ));
            return Ok(());
        }
    }

    // Something is missing: that takes an administrator's token.
    let admin = match admin {
        Some(t) => t,
        None => admin_token(request, events)?,
    };
    let root = bao.with_token(admin);
    for mount in paths
        .iter()
        .map(|p| p.mount.as_str())
        .collect::<BTreeSet<_>>()
    {
        match root
            .mount(mount)
            .await
            .map_err(|e| bao_error(&format!("look at the mount `{mount}/`"), e))?
        {
            None => {
                root.enable_kv2(mount)
                    .await
                    .map_err(|e| bao_error(&format!("mount KV version 2 at `{mount}/`"), e))?;
                events.said(&format!("mounted KV version 2 at `{mount}/`"));
                out.mounted.push(mount.to_string());
            }
            Some((kind, version)) if kind == "kv" && version.as_deref() == Some("2") => {}
            Some((kind, version)) => {
                return Err(Error::Refused {
                    what: format!("keep the stack's secrets in `{mount}/`"),
                    why: format!(
                        "it is a `{kind}` mount{}, not KV version 2",
                        version
                            .map(|v| format!(" (version {v})"))
                            .unwrap_or_default()
                    ),
                    remedy: Remedy::Say(format!(
                        "upgrade it with `bao kv enable-versioning {mount}`, or name another \
                         mount in [secrets]"
                    )),
                });
            }
        }
    }
    // Every value first: a secret nobody can give fails the run before anything is written.
    let mut writes = Vec::new();
    let mut unfilled: Vec<MissingSecret> = Vec::new();
    for (path, fields) in &wanted {
        let (mut have, version) = read_when_mounted(&root, path, !out.mounted.is_empty())
            .await
            .map_err(|e| bao_error(&format!("read `{path}`"), e))?;
        let mut added = Vec::new();
        for (name, key) in fields {
            if have.contains_key(key) {
                continue;
            }
            let value = if let Some(v) = env(&override_var(name)) {
                Some((SecretValue::new(v), Filled::FromEnv))
            } else if generates(name) {
                Some((generate()?, Filled::Generated))
            } else if request.interactive {
                events
                    .ask_hidden(&format!("value of secret `{name}` (hidden): "))?
                    .map(|v| (v, Filled::Typed))
            } else {
                None
            };
            match value {
                Some((v, how)) => {
                    crate::sensitive::register(v.expose());
                    have.insert(key.clone(), v);
                    added.push((name.clone(), how));
                }
                None => unfilled.push(MissingSecret {
                    name: name.clone(),
                    source: Some(format!("OpenBao `{path}`")),
                    cause: "bootstrap cannot make it up: give it in its `LABCTL_SECRET_<NAME>` \
                            variable, or run `labctl bootstrap` on a terminal to type it"
                        .into(),
                    store: false,
                }),
            }
        }
        if !added.is_empty() {
            writes.push((path.clone(), have, version, added));
        }
    }
    if !unfilled.is_empty() {
        return Err(Error::MissingSecrets { missing: unfilled });
    }
    for (path, fields, version, added) in writes {
        root.write_cas(&path, &fields, version)
            .await
            .map_err(|e| bao_error(&format!("write `{path}`"), e))?;
        for (name, how) in added {
            events.said(&format!(
                "filled `{name}` in `{path}` ({})",
                match how {
                    Filled::Generated => "generated".to_string(),
                    Filled::FromEnv => format!("from `{}`", override_var(&name)),
                    Filled::Typed => "typed".to_string(),
                }
            ));
            out.filled.push((name, how));
        }
    }
    if root
        .put_policy(&policy_name, &policy_rules(&paths))
        .await
        .map_err(|e| bao_error(&format!("write the policy `{policy_name}`"), e))?
    {
        events.said(&format!(
            "wrote the policy `{policy_name}`: read on the stack's secrets, nothing else"
        ));
        out.policy = Some(policy_name.clone());
    }
    let keep = match &daily {
        Some(t) => root
            .token_policies(t)
            .await
            .map_err(|e| bao_error("look up labctl's token", e))?
            .is_some_and(|p| p.contains(&policy_name)),
        None => false,
    };
    if !keep {
        let token = root
            .create_token(&[&policy_name], TOKEN_PERIOD, &policy_name)
            .await
            .map_err(|e| bao_error("create labctl's token", e))?;
        atomic::write(&file, token.file_text().as_bytes(), Access::Private)?;
        events.said(&format!(
            "wrote labctl's token (policy `{policy_name}`, renewed on each use) to `{}`",
            file.display()
        ));
        out.token_file = Some(file);
    }
    if env("BAO_TOKEN").is_some() || env("VAULT_TOKEN").is_some() {
        events.warning(
            "warning: BAO_TOKEN or VAULT_TOKEN is set: labctl (as bao) uses it before \
             `~/.vault-token`; unset it for daily use, so the root token stays put away",
        );
    }
    Ok(())
}

/// [`Bao::read_versioned`]; right after a KV version 2 mount is made, the engine answers only
/// once it has set itself up (a moment), so a fresh mount is asked again for a few seconds.
async fn read_when_mounted(
    root: &Bao,
    path: &KvPath,
    fresh: bool,
) -> Result<(crate::backend::openbao::KvSecret, u64), BaoError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match root.read_versioned(path).await {
            Err(_) if fresh && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}
