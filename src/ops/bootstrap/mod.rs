//! `labctl bootstrap`: from a host with nothing on it to a secret store that a plain `labctl
//! apply` reads, and again on a set-up host, where it only fills what is missing.
//!
//! The sequence, and why in this order:
//! 1. apply the OpenBao unit alone ([`super::apply`] with a selection of it: it uses no secret,
//!    so nothing is read) and wait until the server answers;
//! 2. initialise it when it never was (`sys/init`), writing the unseal keys and the root token
//!    once, before anything else can fail, to a file that must not exist yet (or showing them
//!    once on a terminal); unseal it when sealed (with the keys just made, the keys file, or keys
//!    typed on a terminal);
//! 3. read every secret the stack needs from OpenBao with labctl's own token (`~/.vault-token`):
//!    when all are there and readable, nothing changes;
//! 4. otherwise, as an administrator (the root token just made, the keys file's, `BAO_TOKEN`, or
//!    one typed on a terminal): mount KV version 2 where the stack's secrets live, fill each
//!    missing field (generated, from `LABCTL_SECRET_<NAME>`, or typed; never one that has a
//!    value), write a policy that reads only the stack's secrets, and give labctl a token of that
//!    policy in `~/.vault-token`; the root token is never kept;
//! 5. clone `[host.proxy] repository` into `repo_dir` when that is not a checkout yet, over ssh
//!    with the secret `deploy-key` when the stack says so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{
    ApplyRequest, Events, LockRequest, PlanRequest, StackSource, apply, live, load, secrets_needed,
};
use crate::atomic::{self, Access};
use crate::backend::kube::Cluster;
use crate::backend::openbao::{Bao, BaoError, Connect, InitKeys, KvPath, SealStatus, Token};
use crate::error::{Error, MissingSecret, Remedy};
use crate::plan::Selection;
use crate::sensitive::SecretValue;
use crate::stack::{LoadedStack, Plane, SecretFrom, override_var};

mod fill;

pub use fill::{generate, generates, policy_rules};

/// The secret holding the proxy's ssh deploy key.
pub const DEPLOY_KEY: &str = "deploy-key";

/// How long labctl's token lives without being used: labctl renews it each time it reads
/// secrets, so only a lab left alone this long needs `labctl bootstrap` again for a new one.
pub const TOKEN_PERIOD: &str = "768h";

/// What `labctl bootstrap` asks for.
#[derive(Debug, Clone)]
pub struct BootstrapRequest {
    /// The stack.
    pub stack: StackSource,
    /// The calling user's systemd manager, whatever `host.scope` says.
    pub user: bool,
    /// Where the unseal keys and the root token go once (never replaced), and where
    /// `--unseal` reads them.
    pub keys_file: Option<PathBuf>,
    /// How many unseal keys `sys/init` makes.
    pub shares: u32,
    /// How many of them unseal it.
    pub threshold: u32,
    /// Only unseal a sealed store, change nothing else.
    pub unseal_only: bool,
    /// Ask before applying the OpenBao unit, and ask on a terminal for what cannot be made up.
    pub interactive: bool,
    /// How apply starts the unit.
    pub options: crate::apply::Options,
    /// The stack's lock while the unit is applied.
    pub lock: LockRequest,
    /// How long to wait for OpenBao to answer once its unit runs.
    pub wait: Duration,
}

/// What bootstrap reports besides the apply of the OpenBao unit ([`Events`]). Defaults ignore
/// the event or answer "no": a front end without a terminal asks nothing and shows no keys.
pub trait BootstrapEvents: Events {
    /// One thing bootstrap did or found, in a line (never a value).
    fn said(&mut self, line: &str) {
        let _ = line;
    }
    /// Whether [`BootstrapEvents::show_keys`] reaches a person, once (a terminal).
    fn can_show_keys(&self) -> bool {
        false
    }
    /// Show the unseal keys and root token, once: nowhere keeps them.
    fn show_keys(&mut self, keys: &InitKeys) {
        let _ = keys;
    }
    /// Ask for a value without echoing it; `None` when nobody can answer.
    ///
    /// # Errors
    /// Reading the answer failed.
    fn ask_hidden(&mut self, prompt: &str) -> Result<Option<SecretValue>, Error> {
        let _ = prompt;
        Ok(None)
    }
}

impl BootstrapEvents for crate::apply::Silent {}

/// How a missing secret got its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filled {
    /// Generated: 40 random letters and digits.
    Generated,
    /// From `LABCTL_SECRET_<NAME>`.
    FromEnv,
    /// Typed on the terminal.
    Typed,
}

/// What a bootstrap did; `changed` is false on a host that was already set up.
#[derive(Debug, Default)]
pub struct Bootstrapped {
    /// The OpenBao unit was created or changed.
    pub unit_applied: bool,
    /// The store was initialised now.
    pub initialised: bool,
    /// The store was unsealed now.
    pub unsealed: bool,
    /// KV version 2 was mounted at these mounts.
    pub mounted: Vec<String>,
    /// Each secret filled now, and how.
    pub filled: Vec<(String, Filled)>,
    /// The stack's policy was written (created or changed).
    pub policy: Option<String>,
    /// labctl's token was written there.
    pub token_file: Option<PathBuf>,
    /// The repository was cloned there.
    pub cloned: Option<PathBuf>,
}

impl Bootstrapped {
    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        self.unit_applied
            || self.initialised
            || self.unsealed
            || !self.mounted.is_empty()
            || !self.filled.is_empty()
            || self.policy.is_some()
            || self.token_file.is_some()
            || self.cloned.is_some()
    }
}

fn bao_error(step: &str, e: BaoError) -> Error {
    Error::backend("openbao", step.to_string(), e)
}

/// Run the bootstrap `request` asks for (see the module's sequence). Never prints and never
/// reads stdin: [`BootstrapEvents`] shows and asks.
///
/// # Errors
/// [`Error::Refused`] when the keys file exists already or there is nowhere to put the keys;
/// [`Error::MissingSecrets`] naming the secrets that have no value and cannot be made up;
/// [`Error::Backend`] naming the OpenBao or git step that failed; the errors of [`apply`].
pub async fn bootstrap(
    request: &BootstrapRequest,
    events: &mut dyn BootstrapEvents,
) -> Result<Bootstrapped, Error> {
    let (loaded, templates) = load(&request.stack)?;
    let stack = &loaded.stack;
    let env = &crate::secrets::process_env;
    let mut out = Bootstrapped::default();
    let openbao = &stack.host.openbao;
    if openbao.enabled && !request.unseal_only {
        // As the plan names it: on another host, `unit nas:openbao.service`.
        let on = openbao
            .hosts
            .as_deref()
            .and_then(<[String]>::first)
            .filter(|h| *h != crate::stack::LOCAL_HOST)
            .map(|h| format!("{h}:"))
            .unwrap_or_default();
        let unit = format!("unit {on}{}.service", openbao.unit);
        let applied = apply(
            &ApplyRequest {
                plan: PlanRequest {
                    stack: request.stack.clone(),
                    plane: Some(Plane::Systemd),
                    against: live(Cluster::default(), request.user, false, false),
                    selection: Selection {
                        targets: vec![unit],
                        excludes: Vec::new(),
                    },
                    prune_volumes: false,
                },
                options: request.options,
                lock: request.lock.clone(),
                saved: None,
                confirm: request.interactive,
                who: crate::generations::Who::Command(request.lock.command.clone()),
                commit: None,
                rollback_on_failure: false,
                restores: None,
            },
            events,
        )
        .await?;
        out.unit_applied = applied.outcome.is_some();
    }
    let listen = openbao.enabled.then_some(openbao.listen.as_str());
    // Who we are comes later: seal status, init and unseal need no token.
    let addr = Connect::address(env, listen).map_err(|e| bao_error("find OpenBao", e))?;
    let ca_cert = env("BAO_CACERT")
        .or_else(|| env("VAULT_CACERT"))
        .map(PathBuf::from);
    let bao = Bao::new(&Connect {
        addr: addr.clone(),
        token: Token::new(""),
        ca_cert,
    })
    .map_err(|e| bao_error("connect", e))?;
    let status = wait_up(&bao, request.wait).await?;
    events.said(&format!(
        "OpenBao at `{addr}` answers: {}",
        match (status.initialized, status.sealed) {
            (false, _) => "not initialised",
            (true, true) => "initialised, sealed",
            (true, false) => "initialised, unsealed",
        }
    ));

    let mut admin: Option<Token> = None;
    if !status.initialized {
        if request.unseal_only {
            return Err(Error::Usage(format!(
                "OpenBao at `{addr}` is not initialised yet, so there is nothing to unseal: run \
                 `labctl bootstrap` (without `--unseal`) to initialise it"
            )));
        }
        let keys = initialise(request, &bao, events).await?;
        out.initialised = true;
        unseal(&bao, &keys, request.interactive, events).await?;
        out.unsealed = true;
        admin = Some(keys.root_token.clone());
    } else if status.sealed {
        let keys = keys_to_unseal(request, &addr, events)?;
        unseal(&bao, &keys, request.interactive, events).await?;
        out.unsealed = true;
        admin = Some(keys.root_token.clone()).filter(|t| !t.is_empty());
    } else if request.unseal_only {
        events.said("OpenBao is not sealed: nothing to unseal");
    }
    if request.unseal_only {
        return Ok(out);
    }

    fill::fill(request, &loaded, &templates, &bao, admin, events, &mut out).await?;
    clone_repository(&loaded, events, &mut out).await?;
    Ok(out)
}

/// Poll `sys/seal-status` until the server answers, for at most `wait`.
async fn wait_up(bao: &Bao, wait: Duration) -> Result<SealStatus, Error> {
    let deadline = Instant::now() + wait;
    loop {
        match bao.seal_status().await {
            Ok(s) => return Ok(s),
            Err(BaoError::Unreachable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => {
                return Err(bao_error(
                    &format!(
                        "wait for OpenBao to answer (waited {})",
                        humantime::format_duration(wait)
                    ),
                    e,
                ));
            }
        }
    }
}

/// `sys/init`, with the keys put where the request says before anything else can fail.
async fn initialise(
    request: &BootstrapRequest,
    bao: &Bao,
    events: &mut dyn BootstrapEvents,
) -> Result<InitKeys, Error> {
    if request.threshold == 0 || request.threshold > request.shares {
        return Err(Error::Usage(format!(
            "`--key-threshold {}` must be at least 1 and at most `--key-shares {}`",
            request.threshold, request.shares
        )));
    }
    // Checked before `sys/init`, which answers only once: keys with nowhere to go are lost.
    match &request.keys_file {
        Some(f) if f.symlink_metadata().is_ok() => {
            return Err(Error::Refused {
                what: "initialise OpenBao".into(),
                why: format!(
                    "the keys file `{}` exists already, and a keys file is never replaced",
                    f.display()
                ),
                remedy: Remedy::Say(
                    "name a file that does not exist yet with `--keys-file`".into(),
                ),
            });
        }
        Some(_) => {}
        None if !events.can_show_keys() => {
            return Err(Error::Refused {
                what: "initialise OpenBao".into(),
                why: "its unseal keys and root token are shown once, and there is no terminal \
                      to show them on"
                    .into(),
                remedy: Remedy::Say(
                    "pass `--keys-file FILE` (written once, owner-only, never replaced)".into(),
                ),
            });
        }
        None => {}
    }
    let keys = bao
        .init(request.shares, request.threshold)
        .await
        .map_err(|e| bao_error("initialise (sys/init)", e))?;
    match &request.keys_file {
        Some(f) => {
            atomic::create_new(f, keys.to_json().as_bytes(), Access::Private)?;
            events.said(&format!(
                "initialised OpenBao ({} unseal key{}, {} to unseal): the keys and the root \
                 token are in `{}` (owner-only); keep a copy away from this host",
                request.shares,
                if request.shares == 1 { "" } else { "s" },
                request.threshold,
                f.display()
            ));
        }
        None => events.show_keys(&keys),
    }
    Ok(keys)
}

/// The keys to unseal a sealed store with: the keys file, else typed on a terminal.
fn keys_to_unseal(
    request: &BootstrapRequest,
    addr: &str,
    events: &mut dyn BootstrapEvents,
) -> Result<InitKeys, Error> {
    if let Some(f) = &request.keys_file
        && f.exists()
    {
        let text = std::fs::read_to_string(f).map_err(|source| Error::Read {
            path: f.clone(),
            source,
        })?;
        return InitKeys::from_json(&text)
            .inspect(InitKeys::register)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "`{}` is not a keys file: expected the JSON `bao operator init -format=json` \
                     prints (`unseal_keys_b64`, `root_token`)",
                    f.display()
                ))
            });
    }
    if request.interactive
        && let Some(key) = events.ask_hidden("OpenBao is sealed; unseal key (hidden): ")?
    {
        crate::sensitive::register(key.expose());
        return Ok(InitKeys {
            keys_b64: vec![key],
            keys_hex: Vec::new(),
            threshold: 0,
            root_token: Token::new(""),
        });
    }
    Err(Error::Refused {
        what: format!("unseal OpenBao at `{addr}`"),
        why: "it is sealed (it seals itself whenever it restarts) and no unseal key was given"
            .into(),
        remedy: Remedy::Say(
            "pass `--keys-file FILE` (the file bootstrap wrote when it initialised OpenBao), run \
             `labctl bootstrap` on a terminal to type the keys, or use `bao operator unseal`"
                .into(),
        ),
    })
}

/// Give the store keys until it is unsealed; on a terminal, ask for more while it wants them.
async fn unseal(
    bao: &Bao,
    keys: &InitKeys,
    interactive: bool,
    events: &mut dyn BootstrapEvents,
) -> Result<(), Error> {
    let mut status = None;
    for k in &keys.keys_b64 {
        let s = bao
            .unseal(k)
            .await
            .map_err(|e| bao_error("unseal (sys/unseal)", e))?;
        let done = !s.sealed;
        status = Some(s);
        if done {
            break;
        }
    }
    while let Some(s) = status.as_ref().filter(|s| s.sealed) {
        let prompt = format!(
            "OpenBao needs {} more unseal key{} (hidden): ",
            s.threshold.saturating_sub(s.progress),
            if s.threshold.saturating_sub(s.progress) == 1 {
                ""
            } else {
                "s"
            }
        );
        let typed = if interactive {
            events.ask_hidden(&prompt)?
        } else {
            None
        };
        let Some(k) = typed else {
            return Err(Error::Usage(format!(
                "OpenBao is still sealed: it has {} of the {} unseal keys it needs; give the \
                 others with `bao operator unseal`",
                s.progress, s.threshold
            )));
        };
        crate::sensitive::register(k.expose());
        status = Some(
            bao.unseal(&k)
                .await
                .map_err(|e| bao_error("unseal (sys/unseal)", e))?,
        );
    }
    // Unsealed is not yet serving: raft elects this node its leader a moment later, and until
    // then every request but health answers 500.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match bao.health().await {
            Ok(h) if h.status == 200 => break,
            _ if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(h) => {
                return Err(Error::backend(
                    "openbao",
                    "wait for the unsealed server to become active",
                    format!("it still answers {} to sys/health after 30 s", h.status),
                ));
            }
            Err(e) => {
                return Err(bao_error(
                    "wait for the unsealed server to become active",
                    e,
                ));
            }
        }
    }
    events.said("unsealed OpenBao");
    Ok(())
}

/// Where labctl's own token lives: `~/.vault-token`, where `bao login` keeps one.
fn token_file() -> Result<PathBuf, Error> {
    crate::secrets::process_env("HOME")
        .map(|h| Path::new(&h).join(".vault-token"))
        .ok_or_else(|| {
            Error::Usage("`HOME` is not set: labctl keeps its token in `~/.vault-token`".into())
        })
}

/// A token that may set up the store: the keys file's root token, else `BAO_TOKEN` /
/// `VAULT_TOKEN`, else one typed on a terminal.
fn admin_token(
    request: &BootstrapRequest,
    events: &mut dyn BootstrapEvents,
) -> Result<Token, Error> {
    if let Some(f) = &request.keys_file
        && let Ok(text) = std::fs::read_to_string(f)
        && let Some(keys) = InitKeys::from_json(&text)
        && !keys.root_token.is_empty()
    {
        keys.register();
        return Ok(keys.root_token);
    }
    let env = &crate::secrets::process_env;
    if let Some(t) = env("BAO_TOKEN").or_else(|| env("VAULT_TOKEN")) {
        let t = Token::new(t.trim());
        t.register();
        return Ok(t);
    }
    if request.interactive
        && let Some(t) =
            events.ask_hidden("a token that may set OpenBao up (the root token; hidden): ")?
    {
        let t = Token::new(t.expose().trim());
        t.register();
        return Ok(t);
    }
    Err(Error::Refused {
        what: "fill the stack's secrets in OpenBao".into(),
        why: "some are missing, and filling them takes a token that may write them and set up \
              labctl's policy"
            .into(),
        remedy: Remedy::Say(
            "pass `--keys-file FILE` with the root token bootstrap wrote, or set `BAO_TOKEN` for \
             this run"
                .into(),
        ),
    })
}

/// Step 5: the proxy's checkout, cloned when it is not one yet.
async fn clone_repository(
    loaded: &LoadedStack,
    events: &mut dyn BootstrapEvents,
    out: &mut Bootstrapped,
) -> Result<(), Error> {
    let proxy = &loaded.stack.host.proxy;
    if !proxy.enabled || proxy.repository.is_empty() {
        return Ok(());
    }
    let dir = PathBuf::from(&proxy.repo_dir);
    if dir.join(".git").exists() {
        return Ok(());
    }
    let step = format!("clone `{}` into `{}`", proxy.repository, dir.display());
    let scratch = tempfile::tempdir().map_err(|source| Error::Write {
        path: std::env::temp_dir(),
        source,
    })?;
    let ssh = if proxy.deploy_key == Some(true) {
        let names: BTreeSet<String> = [DEPLOY_KEY.to_string()].into();
        let resolved = crate::secrets::resolve(
            &loaded.stack,
            loaded.dir(),
            &names,
            &crate::secrets::process_env,
        )
        .await;
        let key = resolved
            .require()?
            .remove(DEPLOY_KEY)
            .unwrap_or_else(|| SecretValue::new(""));
        let key_file = scratch.path().join("deploy-key");
        atomic::write(&key_file, key_text(&key).as_bytes(), Access::Private)?;
        Some(crate::git::ssh_command(
            &key_file,
            &scratch.path().join("known_hosts"),
        ))
    } else {
        None
    };
    let (url, branch, target) = (proxy.repository.clone(), proxy.branch.clone(), dir.clone());
    tokio::task::spawn_blocking(move || crate::git::clone(&url, &target, &branch, ssh.as_deref()))
        .await
        .map_err(|e| Error::backend("git", step.clone(), e))?
        .map_err(|e| match e {
            Error::Git { message, .. } => Error::backend("git", step.clone(), message),
            other => other,
        })?;
    // The host key bootstrap trusted is the one the proxy's syncs expect.
    let known = scratch.path().join("known_hosts");
    if let Ok(text) = std::fs::read(&known) {
        let state = dir.join(".git/labctl-proxy");
        atomic::write(&state.join("known_hosts"), &text, Access::Private)?;
    }
    events.said(&format!(
        "cloned `{}` (branch `{}`) into `{}`",
        proxy.repository,
        proxy.branch,
        dir.display()
    ));
    out.cloned = Some(dir);
    Ok(())
}

/// A private key as ssh reads it: ending in a newline (a value from an environment variable or
/// a prompt often lost it).
pub fn key_text(key: &SecretValue) -> String {
    let k = key.expose().trim_end();
    format!("{k}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_values_are_long_random_and_registered() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.expose().len(), 40);
        assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert!(crate::sensitive::holds_secret(a.expose()));
    }

    #[test]
    fn only_labctl_s_own_credentials_are_generated() {
        for n in [
            "postgres-password",
            "grafana-admin-password",
            "webhook-secret",
            "pipeline-token-etl",
        ] {
            assert!(generates(n), "{n}");
        }
        for n in ["github-token", DEPLOY_KEY, "api-key"] {
            assert!(!generates(n), "{n}");
        }
    }

    #[test]
    fn the_policy_reads_each_path_and_nothing_else() {
        let paths = [
            KvPath {
                mount: "secret".into(),
                path: "homelab".into(),
            },
            KvPath {
                mount: "kv".into(),
                path: "x/y".into(),
            },
        ]
        .into();
        assert_eq!(
            policy_rules(&paths),
            "path \"kv/data/x/y\" {\n  capabilities = [\"read\"]\n}\n\npath \"secret/data/homelab\" {\n  capabilities = [\"read\"]\n}\n"
        );
    }
}
