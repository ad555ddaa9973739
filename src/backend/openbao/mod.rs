//! The only client of OpenBao: reads KV version 2 secrets over its HTTP API (reqwest, rustls) and
//! says what went wrong in the operator's terms. It never prints, logs or formats a token or a
//! secret value: [`Token`] and [`SecretValue`] redact themselves, and no error carries either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::{StatusCode, Url};
use serde_json::Value;

use super::Stats;
use crate::resource::At;
use crate::sensitive::SecretValue;

mod setup;
pub use setup::{InitKeys, SealStatus};

/// An OpenBao token. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wrap a token.
    pub fn new(token: impl Into<String>) -> Self {
        Token(token.into())
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Where OpenBao is and who we are to it.
#[derive(Debug, Clone)]
pub struct Connect {
    /// Base address, as `http://127.0.0.1:8200` (no trailing slash).
    pub addr: String,
    /// The token sent as `X-Vault-Token`.
    pub token: Token,
    /// Extra CA certificate (PEM) to trust, for a server with a private CA.
    pub ca_cert: Option<PathBuf>,
}

/// Reads one environment variable; `None` when unset or empty.
pub type Env<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

impl Connect {
    /// The address from `BAO_ADDR`, then `VAULT_ADDR`, then `listen` (the stack's
    /// `[host.openbao] listen`, served over plain HTTP); the token from `BAO_TOKEN`, then
    /// `VAULT_TOKEN`, then `~/.vault-token` (where `bao login` keeps it); a CA certificate from
    /// `BAO_CACERT` or `VAULT_CACERT`.
    ///
    /// # Errors
    /// [`BaoError::NoAddress`], [`BaoError::NoToken`], or [`BaoError::TokenFile`] when
    /// `~/.vault-token` exists but cannot be read.
    pub fn from_env(env: Env<'_>, listen: Option<&str>) -> Result<Connect, BaoError> {
        let addr = Self::address(env, listen)?;
        let token = match env("BAO_TOKEN").or_else(|| env("VAULT_TOKEN")) {
            Some(t) => t,
            None => {
                let home = env("HOME").ok_or(BaoError::NoToken { file: None })?;
                let file = PathBuf::from(home).join(".vault-token");
                match std::fs::read_to_string(&file) {
                    Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
                    Ok(_) => return Err(BaoError::NoToken { file: Some(file) }),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(BaoError::NoToken { file: Some(file) });
                    }
                    Err(e) => {
                        return Err(BaoError::TokenFile {
                            file,
                            cause: e.to_string(),
                        });
                    }
                }
            }
        };
        Ok(Connect {
            addr,
            token: Token(token.trim().to_string()),
            ca_cert: env("BAO_CACERT")
                .or_else(|| env("VAULT_CACERT"))
                .map(PathBuf::from),
        })
    }
}

impl Connect {
    /// The address alone, as [`Connect::from_env`] finds it: for the calls that need no token
    /// (seal status, init, unseal).
    ///
    /// # Errors
    /// [`BaoError::NoAddress`].
    pub fn address(env: Env<'_>, listen: Option<&str>) -> Result<String, BaoError> {
        match env("BAO_ADDR").or_else(|| env("VAULT_ADDR")) {
            Some(a) => Ok(a.trim_end_matches('/').to_string()),
            None => match listen {
                Some(l) => Ok(format!("http://{}", reachable(l))),
                None => Err(BaoError::NoAddress),
            },
        }
    }
}

/// A listen address as a client reaches it: a wildcard host means this host.
fn reachable(listen: &str) -> String {
    if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        return format!("127.0.0.1:{port}");
    }
    if let Some(port) = listen.strip_prefix("[::]:") {
        return format!("[::1]:{port}");
    }
    listen.to_string()
}

/// A KV version 2 secret's location: the mount and the path inside it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KvPath {
    /// The mount (`secret`).
    pub mount: String,
    /// The path inside the mount (`homelab/grafana`).
    pub path: String,
}

impl std::fmt::Display for KvPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.mount, self.path)
    }
}

/// The fields of one KV version 2 secret (its latest version).
pub type KvSecret = BTreeMap<String, SecretValue>;

/// What went wrong talking to OpenBao. Messages name the server or the secret's path and the
/// cause, never a token or a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaoError {
    /// No address configured anywhere.
    #[error(
        "no OpenBao address: set BAO_ADDR (or VAULT_ADDR), or enable [host.openbao] in the stack"
    )]
    NoAddress,
    /// No token configured anywhere.
    #[error("no OpenBao token: set BAO_TOKEN (or VAULT_TOKEN), or log in with `bao login`{}", file.as_ref().map(|f| format!(" (no token in `{}`)", f.display())).unwrap_or_default())]
    NoToken {
        /// The token file looked at, when `HOME` is set.
        file: Option<PathBuf>,
    },
    /// The token file exists but cannot be read.
    #[error("cannot read the OpenBao token file `{}`: {cause}", file.display())]
    TokenFile {
        /// `~/.vault-token`.
        file: PathBuf,
        /// Why.
        cause: String,
    },
    /// The address or the CA certificate is unusable.
    #[error("cannot use OpenBao at `{addr}`: {cause}")]
    Config {
        /// The address.
        addr: String,
        /// Why.
        cause: String,
    },
    /// Nothing answers at the address.
    #[error("OpenBao at `{addr}` is unreachable: {cause}")]
    Unreachable {
        /// The address.
        addr: String,
        /// The connection error.
        cause: String,
    },
    /// The server runs but has never been initialised.
    #[error(
        "OpenBao at `{addr}` is not initialised: initialise it once with `labctl bootstrap` (or `bao operator init`, then unseal it)"
    )]
    NotInitialised {
        /// The address.
        addr: String,
    },
    /// The server is sealed.
    #[error(
        "OpenBao at `{addr}` is sealed: unseal it with `bao operator unseal` (once per unseal key, up to the threshold) or `labctl bootstrap --unseal --keys-file FILE`; it seals itself whenever it restarts"
    )]
    Sealed {
        /// The address.
        addr: String,
    },
    /// The token is not valid (wrong, expired or revoked).
    #[error(
        "OpenBao at `{addr}` refuses the token: it is wrong, expired or revoked (log in again with `bao login`, or check BAO_TOKEN)"
    )]
    BadToken {
        /// The address.
        addr: String,
    },
    /// The token is valid but its policies do not allow reading this path.
    #[error("permission denied reading `{path}`: the token's policies need `read` on `{}/data/{}`", path.mount, path.path)]
    PermissionDenied {
        /// The secret.
        path: KvPath,
    },
    /// The mount does not exist.
    #[error("no secrets engine is mounted at `{}/` (reading `{path}`): enable one with `bao secrets enable -path={} kv-v2`", path.mount, path.mount)]
    NoSuchMount {
        /// The secret.
        path: KvPath,
    },
    /// The mount is not a KV version 2 engine.
    #[error("`{}/` is not a KV version 2 mount (reading `{path}`): labctl reads KV version 2 only; upgrade it with `bao kv enable-versioning {}`", path.mount, path.mount)]
    NotKv2 {
        /// The secret.
        path: KvPath,
    },
    /// Nothing is stored at the path (or its latest version is deleted).
    #[error("no secret at `{path}`{}: write it with `bao kv put -mount={} {} <key>=<value>`", if *deleted { " (its latest version is deleted)" } else { "" }, path.mount, path.path)]
    NoSuchPath {
        /// The secret.
        path: KvPath,
        /// The path has versions, but the latest one is deleted or destroyed.
        deleted: bool,
    },
    /// Any other answer.
    #[error("OpenBao answered {status} reading `{what}`: {message}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The secret's path or the API path.
        what: String,
        /// OpenBao's own error messages.
        message: String,
    },
}

/// `/v1/sys/health`: the server's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The HTTP status (200 active, 429 standby, 501 not initialised, 503 sealed, ...).
    pub status: u16,
    /// Whether the server has been initialised.
    pub initialized: bool,
    /// Whether it is sealed.
    pub sealed: bool,
    /// The server's version (`2.7.2`).
    pub version: String,
}

/// A connection to one OpenBao server.
#[derive(Debug)]
pub struct Bao {
    http: reqwest::Client,
    base: Url,
    addr: String,
    token: Token,
    calls: AtomicU64,
    nanos: AtomicU64,
}

/// How long to wait for a connection: a local server answers at once, an absent one should not
/// hold up a plan.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Bao {
    /// A client for `c` (no request is sent yet).
    ///
    /// # Errors
    /// [`BaoError::Config`] for an address that is not an `http(s)://` URL or an unreadable CA
    /// certificate.
    pub fn new(c: &Connect) -> Result<Bao, BaoError> {
        let bad = |cause: String| BaoError::Config {
            addr: c.addr.clone(),
            cause,
        };
        let base = Url::parse(&c.addr).map_err(|e| bad(format!("not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad("expected an http:// or https:// address".into()));
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("labctl/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &c.ca_cert {
            let pem = std::fs::read(ca).map_err(|e| {
                bad(format!(
                    "cannot read CA certificate `{}`: {e}",
                    ca.display()
                ))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| bad(format!("CA certificate `{}`: {e}", ca.display())))?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|e| bad(e.to_string()))?;
        Ok(Bao {
            http,
            base,
            addr: c.addr.clone(),
            token: c.token.clone(),
            calls: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
        })
    }

    /// The server's address, for messages.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Requests sent so far and the time spent in them.
    pub fn stats(&self) -> Stats {
        Stats {
            calls: self.calls.load(Ordering::Relaxed),
            elapsed: Duration::from_nanos(self.nanos.load(Ordering::Relaxed)),
        }
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut u = self.base.clone();
        {
            // `cannot_be_a_base` was ruled out in `new`.
            let mut p = u.path_segments_mut().expect("an http(s) URL has a path");
            p.pop_if_empty();
            p.push("v1");
            for s in segments {
                p.extend(s.split('/').filter(|s| !s.is_empty()));
            }
        }
        u
    }

    /// GET an API path; the status and the JSON body (`Null` when there is none).
    async fn get(&self, url: Url, auth: bool) -> Result<(StatusCode, Value), BaoError> {
        self.send(reqwest::Method::GET, url, auth, None).await
    }

    /// Send a request to an API path; the status and the JSON body (`Null` when there is none).
    async fn send(
        &self,
        method: reqwest::Method,
        url: Url,
        auth: bool,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), BaoError> {
        let started = Instant::now();
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut req = self.http.request(method, url);
        if auth {
            req = req.header("X-Vault-Token", &self.token.0);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let result = async {
            let resp = req.send().await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        }
        .await;
        self.nanos.fetch_add(
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let (status, body) = result.map_err(|e| BaoError::Unreachable {
            addr: self.addr.clone(),
            cause: cause_chain(&e),
        })?;
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok((status, json))
    }

    /// The server's state, from `/v1/sys/health` (which answers without a token).
    ///
    /// # Errors
    /// [`BaoError::Unreachable`] when nothing answers; [`BaoError::Server`] for an answer that is
    /// not a health document.
    pub async fn health(&self) -> Result<Health, BaoError> {
        let (status, body) = self.get(self.url(&["sys/health"]), false).await?;
        let flag = |k: &str| body.get(k).and_then(Value::as_bool);
        match (flag("initialized"), flag("sealed")) {
            (Some(initialized), Some(sealed)) => Ok(Health {
                status: status.as_u16(),
                initialized,
                sealed,
                version: body
                    .get("version")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            }),
            _ => Err(BaoError::Server {
                status: status.as_u16(),
                what: "sys/health".into(),
                message: errors(&body),
            }),
        }
    }

    /// Read the latest version of every secret in `paths`, all at once, each path once. A failure
    /// is the path's own: one unreadable secret does not hide the others.
    pub async fn read_all(
        &self,
        paths: &BTreeSet<KvPath>,
    ) -> BTreeMap<KvPath, Result<KvSecret, BaoError>> {
        let reads = paths
            .iter()
            .map(|p| async move { (p, self.read_raw(p).await) });
        let raw: Vec<(&KvPath, Result<KvSecret, Raw>)> = join_all(reads).await;

        // What a refusal means is asked once for the whole batch: a 403 is a bad token or a
        // policy, a 503 sealed or not initialised.
        let needs_token_check = raw.iter().any(|(_, r)| matches!(r, Err(Raw::Forbidden)));
        let needs_health = raw
            .iter()
            .any(|(_, r)| matches!(r, Err(Raw::Unavailable(..))));
        let token_ok = if needs_token_check {
            Some(self.token_valid().await)
        } else {
            None
        };
        let health = if needs_health {
            Some(self.health().await)
        } else {
            None
        };

        let mut out = BTreeMap::new();
        for (p, r) in raw {
            let r = match r {
                Ok(s) => Ok(s),
                Err(Raw::Err(e)) => Err(e),
                Err(Raw::Forbidden) => match &token_ok {
                    Some(Ok(false)) => Err(BaoError::BadToken {
                        addr: self.addr.clone(),
                    }),
                    Some(Err(e)) => Err(e.clone()),
                    _ => Err(BaoError::PermissionDenied { path: p.clone() }),
                },
                Err(Raw::Unavailable(status, message)) => match &health {
                    Some(Ok(h)) if !h.initialized => Err(BaoError::NotInitialised {
                        addr: self.addr.clone(),
                    }),
                    Some(Ok(h)) if h.sealed => Err(BaoError::Sealed {
                        addr: self.addr.clone(),
                    }),
                    Some(Err(e @ BaoError::Unreachable { .. })) => Err(e.clone()),
                    _ => Err(BaoError::Server {
                        status,
                        what: p.to_string(),
                        message,
                    }),
                },
                Err(Raw::NotFound(message)) => Err(self.not_found(p, message).await),
            };
            out.insert(p.clone(), r);
        }
        out
    }

    /// Whether the token is valid at all (`auth/token/lookup-self` answers 200).
    async fn token_valid(&self) -> Result<bool, BaoError> {
        let (status, body) = self
            .get(self.url(&["auth/token/lookup-self"]), true)
            .await?;
        match status {
            StatusCode::OK => Ok(true),
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Ok(false),
            s => Err(BaoError::Server {
                status: s.as_u16(),
                what: "auth/token/lookup-self".into(),
                message: errors(&body),
            }),
        }
    }

    /// A 404: no such path, no such mount, or a KV version 1 mount. OpenBao says which when asked
    /// about the mount (`sys/internal/ui/mounts/<path>`, readable with any capability on the path).
    async fn not_found(&self, p: &KvPath, message: String) -> BaoError {
        let mount = self
            .get(
                self.url(&["sys/internal/ui/mounts", &p.mount, &p.path]),
                true,
            )
            .await;
        match mount {
            Ok((StatusCode::OK, body)) => {
                let version = body
                    .at("/data/options/version")
                    .and_then(Value::as_str)
                    .unwrap_or("1");
                if version == "2" {
                    BaoError::NoSuchPath {
                        path: p.clone(),
                        deleted: false,
                    }
                } else {
                    BaoError::NotKv2 { path: p.clone() }
                }
            }
            // The mount could not be looked up (a narrow policy): OpenBao's own answer says
            // whether a route exists at all.
            _ if message.is_empty() => BaoError::NoSuchPath {
                path: p.clone(),
                deleted: false,
            },
            _ => BaoError::NoSuchMount { path: p.clone() },
        }
    }

    /// One read, with refusals left for [`Bao::read_all`] to explain.
    async fn read_raw(&self, p: &KvPath) -> Result<KvSecret, Raw> {
        let (status, body) = self
            .get(self.url(&[&p.mount, "data", &p.path]), true)
            .await
            .map_err(Raw::Err)?;
        match status {
            StatusCode::OK => {
                let data = body.at("/data/data");
                match data {
                    Some(Value::Object(fields)) => Ok(kv_fields(fields)),
                    // A deleted latest version reads as 200 on some servers, 404 on others.
                    Some(Value::Null) => Err(Raw::Err(BaoError::NoSuchPath {
                        path: p.clone(),
                        deleted: true,
                    })),
                    _ => Err(Raw::Err(BaoError::Server {
                        status: 200,
                        what: p.to_string(),
                        message: "the answer is not a KV version 2 secret".into(),
                    })),
                }
            }
            StatusCode::NOT_FOUND => {
                if body.at("/data/metadata/deletion_time").is_some()
                    || body.at("/data/metadata/destroyed") == Some(&Value::Bool(true))
                {
                    return Err(Raw::Err(BaoError::NoSuchPath {
                        path: p.clone(),
                        deleted: true,
                    }));
                }
                Err(Raw::NotFound(errors(&body)))
            }
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Err(Raw::Forbidden),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::NOT_IMPLEMENTED => {
                Err(Raw::Unavailable(status.as_u16(), errors(&body)))
            }
            s => Err(Raw::Err(BaoError::Server {
                status: s.as_u16(),
                what: p.to_string(),
                message: errors(&body),
            })),
        }
    }
}

/// A read's outcome before the batch explains refusals.
enum Raw {
    Err(BaoError),
    Forbidden,
    Unavailable(u16, String),
    NotFound(String),
}

/// OpenBao's `{"errors": [...]}`, joined; empty when there are none.
/// A KV v2 secret's fields as values: a string as it is, anything else as its JSON text.
fn kv_fields(fields: &serde_json::Map<String, Value>) -> KvSecret {
    fields
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), SecretValue::new(v))
        })
        .collect()
}

fn errors(body: &Value) -> String {
    body.get("errors")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// A reqwest error with its causes (`connection refused` is three levels down).
fn cause_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p: &String| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    // reqwest's top line repeats the URL, which names no secret; keep only the causes.
    if parts.len() > 1 {
        parts.remove(0);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_is_redacted() {
        let t = Token::new("hvs.very-secret");
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        let c = Connect {
            addr: "http://x".into(),
            token: t,
            ca_cert: None,
        };
        assert!(!format!("{c:?}").contains("very-secret"));
    }

    #[test]
    fn address_and_token_precedence() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let e = env(&[
            ("VAULT_ADDR", "http://v:1/"),
            ("BAO_ADDR", "http://b:2/"),
            ("VAULT_TOKEN", "vt"),
            ("BAO_TOKEN", "bt"),
        ]);
        let c = Connect::from_env(&e, Some("0.0.0.0:8200")).unwrap();
        assert_eq!(c.addr, "http://b:2");
        assert_eq!(c.token, Token::new("bt"));
        let e = env(&[("VAULT_TOKEN", "vt")]);
        let c = Connect::from_env(&e, Some("0.0.0.0:8200")).unwrap();
        assert_eq!(c.addr, "http://127.0.0.1:8200");
        assert_eq!(c.token, Token::new("vt"));
        assert_eq!(
            Connect::from_env(&e, None).unwrap_err(),
            BaoError::NoAddress
        );
        let home = tempfile::tempdir().unwrap();
        let h = home.path().display().to_string();
        let e = move |k: &str| (k == "HOME").then(|| h.clone());
        let err = Connect::from_env(&e, Some("127.0.0.1:8200")).unwrap_err();
        assert!(matches!(err, BaoError::NoToken { file: Some(_) }), "{err}");
        std::fs::write(home.path().join(".vault-token"), "from-file\n").unwrap();
        let c = Connect::from_env(&e, Some("127.0.0.1:8200")).unwrap();
        assert_eq!(c.token, Token::new("from-file"));
    }

    #[test]
    fn urls_are_built_by_segment() {
        let c = Connect {
            addr: "http://127.0.0.1:8200/".into(),
            token: Token::new("t"),
            ca_cert: None,
        };
        let b = Bao::new(&c).unwrap();
        assert_eq!(
            b.url(&["secret", "data", "lab/a b"]).as_str(),
            "http://127.0.0.1:8200/v1/secret/data/lab/a%20b"
        );
    }
}
