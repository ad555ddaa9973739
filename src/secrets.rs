//! Secret values: where each secret the templates ask for ([`crate::render::secrets_asked`])
//! comes from (`[secrets]`, the OpenBao default, the `LABCTL_SECRET_<NAME>` override), resolving
//! them all in one go so that every missing secret is reported at once with its source and the
//! reason, and the process-wide redactor that masks every value seen.
//!
//! Values travel as [`SecretValue`], whose `Debug` and `Display` never show them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::backend::openbao::{Bao, BaoError, Connect, KvPath};
use crate::error::Error;
use crate::sensitive::{SecretValue, register};
use crate::stack::{SecretFrom, Stack, override_var};

pub use crate::backend::openbao::Env;

/// The process's environment, as [`resolve`] reads it: unset and empty are the same.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A secret without a value, with where it should have come from and why it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The secret's name.
    pub name: String,
    /// Its declared (or default) source; `None` when nothing provides it.
    pub source: Option<SecretFrom>,
    /// Why there is no value, in the user's terms (never a value or a token).
    pub reason: String,
    /// The cause is the secret store (OpenBao): `labctl bootstrap` sets it up and fills it.
    pub store: bool,
    /// The store is sealed: its address.
    pub sealed: Option<String>,
}

impl Missing {
    /// The same, as the error type carries it.
    pub fn to_error(&self) -> crate::error::MissingSecret {
        crate::error::MissingSecret {
            name: self.name.clone(),
            source: self.source.as_ref().map(|s| match s {
                SecretFrom::Bao { mount, path, key } if key == &self.name => {
                    format!("OpenBao `{mount}/{path}`")
                }
                SecretFrom::Bao { mount, path, key } => {
                    format!("OpenBao `{mount}/{path}` key `{key}`")
                }
                SecretFrom::Env(v) => format!("env `{v}`"),
                SecretFrom::File(p) => format!("file `{p}`"),
            }),
            cause: self.reason.clone(),
            store: self.store,
        }
    }
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Some(s) => write!(f, "`{}` from {s}: {}", self.name, self.reason),
            None => write!(f, "`{}`: {}", self.name, self.reason),
        }
    }
}

/// The outcome of [`resolve`]: a value for every secret that has one, and every one that has not.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// Values by secret name.
    pub values: BTreeMap<String, SecretValue>,
    /// Secrets without a value, sorted by name.
    pub missing: Vec<Missing>,
}

impl Resolved {
    /// The value of `name`, shaped as [`crate::render::SecretLookup`] wants it:
    /// `render(stack, templates, &|n| resolved.lookup(n))`.
    pub fn lookup(&self, name: &str) -> Option<String> {
        self.values.get(name).map(|v| v.expose().to_string())
    }

    /// Every value, or [`Error::MissingSecrets`] naming every missing secret.
    ///
    /// # Errors
    /// [`Error::MissingSecrets`] when any secret has no value.
    /// [`Error::Sealed`] when the store holding some of them is sealed (the others named too).
    pub fn require(self) -> Result<BTreeMap<String, SecretValue>, Error> {
        if self.missing.is_empty() {
            return Ok(self.values);
        }
        if let Some(addr) = self.missing.iter().find_map(|m| m.sealed.clone()) {
            let (blocked, others): (Vec<&Missing>, Vec<&Missing>) =
                self.missing.iter().partition(|m| m.sealed.is_some());
            return Err(Error::Sealed {
                addr,
                blocked: blocked.iter().map(|m| m.name.clone()).collect(),
                others: others.iter().map(|m| m.to_error()).collect(),
            });
        }
        Err(Error::MissingSecrets {
            missing: self.missing.iter().map(Missing::to_error).collect(),
        })
    }
}

/// Resolve every secret in `names` for `stack` (whose folder is `dir`, for relative `file`
/// sources), reading the environment through `env`:
///
/// 1. `LABCTL_SECRET_<NAME>`, when set, wins over any source;
/// 2. else the `[secrets]` entry, else OpenBao's default (`secret/<stack name>`, field `<name>`)
///    when `[host.openbao]` is enabled;
/// 3. `env` and `file` sources are read directly; OpenBao secrets are read over one connection,
///    each KV path once, all paths at once.
///
/// Never fails as a whole: whatever has no value is in [`Resolved::missing`] with its reason.
pub async fn resolve(
    stack: &Stack,
    dir: &Path,
    names: &BTreeSet<String>,
    env: Env<'_>,
) -> Resolved {
    let mut out = Resolved::default();
    let mut from_bao: Vec<(String, SecretFrom, KvPath, String)> = Vec::new();
    for name in names {
        if let Some(v) = env(&override_var(name)) {
            out.values.insert(name.clone(), SecretValue::new(v));
            continue;
        }
        let missing = |source: Option<SecretFrom>, reason: String| Missing {
            name: name.clone(),
            source,
            reason,
            store: false,
            sealed: None,
        };
        let source = match stack.secret_from(name) {
            None => {
                out.missing.push(missing(
                    None,
                    format!(
                        "nothing provides it: declare it in [secrets], enable [host.openbao], or set {}",
                        override_var(name)
                    ),
                ));
                continue;
            }
            Some(Err(why)) => {
                out.missing.push(missing(
                    None,
                    format!("its [secrets] entry is invalid: {why}"),
                ));
                continue;
            }
            Some(Ok(s)) => s,
        };
        match &source {
            SecretFrom::Env(var) => match env(var) {
                Some(v) => {
                    out.values.insert(name.clone(), SecretValue::new(v));
                }
                None => out
                    .missing
                    .push(missing(Some(source.clone()), format!("`{var}` is not set"))),
            },
            SecretFrom::File(p) => match read_file(&dir.join(p)) {
                Ok(v) => {
                    out.values.insert(name.clone(), SecretValue::new(v));
                }
                Err(why) => out.missing.push(missing(Some(source.clone()), why)),
            },
            SecretFrom::Bao { mount, path, key } => {
                let kv = KvPath {
                    mount: mount.clone(),
                    path: path.clone(),
                };
                from_bao.push((name.clone(), source.clone(), kv, key.clone()));
            }
        }
    }
    if !from_bao.is_empty() {
        let listen = stack
            .host
            .openbao
            .enabled
            .then_some(stack.host.openbao.listen.as_str());
        let read = match Connect::from_env(env, listen).and_then(|c| Bao::new(&c)) {
            Ok(bao) => {
                let paths: BTreeSet<KvPath> =
                    from_bao.iter().map(|(_, _, p, _)| p.clone()).collect();
                Ok(bao.read_all(&paths).await)
            }
            Err(e @ BaoError::NoToken { .. }) => Err(without_token(env, listen, e).await),
            Err(e) => Err(e),
        };
        for (name, source, kv, key) in from_bao {
            let sealed = |e: &BaoError| match e {
                BaoError::Sealed { addr } => Some(addr.clone()),
                _ => None,
            };
            let result: Result<SecretValue, (String, Option<String>)> = match &read {
                Err(e) => Err((e.to_string(), sealed(e))),
                Ok(all) => match all.get(&kv) {
                    Some(Ok(fields)) => fields
                        .get(&key)
                        .cloned()
                        .ok_or_else(|| (no_key(&kv, &key, fields), None)),
                    Some(Err(e)) => Err((e.to_string(), sealed(e))),
                    None => Err((
                        BaoError::NoSuchPath {
                            path: kv.clone(),
                            deleted: false,
                        }
                        .to_string(),
                        None,
                    )),
                },
            };
            match result {
                Ok(v) => {
                    out.values.insert(name, v);
                }
                Err((reason, sealed)) => out.missing.push(Missing {
                    name,
                    source: Some(source),
                    reason,
                    store: sealed.is_none(),
                    sealed,
                }),
            }
        }
    }
    out.missing.sort_by(|a, b| a.name.cmp(&b.name));
    for v in out.values.values() {
        register(v.expose());
    }
    out
}

/// Renew the OpenBao token labctl reads with, when any of `names` was read from OpenBao: the
/// token `labctl bootstrap` makes is periodic and lives on while it is used. Best effort: a token
/// that cannot be renewed (a root token) stays as it is, and nothing is said.
pub async fn renew_token(stack: &Stack, names: &BTreeSet<String>, env: Env<'_>) {
    let from_bao = names.iter().any(|n| {
        env(&override_var(n)).is_none()
            && matches!(stack.secret_from(n), Some(Ok(SecretFrom::Bao { .. })))
    });
    if !from_bao {
        return;
    }
    let listen = (stack.host.openbao.enabled).then_some(stack.host.openbao.listen.as_str());
    if let Ok(bao) = Connect::from_env(env, listen).and_then(|c| Bao::new(&c)) {
        let _ = bao.renew_self().await;
    }
}

/// Why there is no token, or the more basic cause behind it: on a fresh host there is no token
/// because there is no OpenBao yet, and that is what to say.
async fn without_token(env: Env<'_>, listen: Option<&str>, no_token: BaoError) -> BaoError {
    let Ok(addr) = Connect::address(env, listen) else {
        return no_token;
    };
    let anonymous = Connect {
        addr: addr.clone(),
        token: crate::backend::openbao::Token::new(""),
        ca_cert: None,
    };
    let Ok(bao) = Bao::new(&anonymous) else {
        return no_token;
    };
    match bao.health().await {
        Err(e @ BaoError::Unreachable { .. }) => e,
        Ok(h) if !h.initialized => BaoError::NotInitialised { addr },
        Ok(h) if h.sealed => BaoError::Sealed { addr },
        _ => no_token,
    }
}

/// [`resolve`] on a runtime of its own, for callers without one.
///
/// # Errors
/// [`Error::Backend`] when no async runtime can be started.
///
/// # Panics
/// When called from inside an async runtime (use [`resolve`] there).
pub fn resolve_blocking(
    stack: &Stack,
    dir: &Path,
    names: &BTreeSet<String>,
    env: Env<'_>,
) -> Result<Resolved, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::backend("openbao", "start the async runtime", e))?;
    Ok(rt.block_on(resolve(stack, dir, names, env)))
}

/// The field is not in the secret: name the fields it has (names only).
fn no_key(kv: &KvPath, key: &str, fields: &BTreeMap<String, SecretValue>) -> String {
    let has = if fields.is_empty() {
        "it has no keys".to_string()
    } else {
        format!(
            "it has {}",
            fields
                .keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "no key `{key}` in `{kv}` ({has}): add it with `bao kv patch -mount={} {} {key}=<value>`",
        kv.mount, kv.path
    )
}

/// A `file` source's value: the file without one trailing newline.
fn read_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let v = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if v.is_empty() {
        return Err(format!("`{}` is empty", path.display()));
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_format() {
        let v = SecretValue::new("hunter2");
        assert_eq!(format!("{v}"), "<redacted>");
        assert!(!format!("{v:?}").contains("hunter2"));
        let r = Resolved {
            values: [("a".to_string(), v)].into(),
            missing: vec![],
        };
        assert!(!format!("{r:?}").contains("hunter2"));
        assert_eq!(r.lookup("a").as_deref(), Some("hunter2"));
    }
}
