//! The store's own set-up, for `labctl bootstrap`: seal status, initialising and unsealing,
//! the KV v2 mount, versioned reads and check-and-set writes, the read-only policy and its token.
//! Like the reads, nothing here prints or formats a token, a key or a value.

use std::sync::atomic::AtomicU64;

use reqwest::StatusCode;
use serde_json::Value;

use super::{Bao, BaoError, KvPath, KvSecret, Token, errors, kv_fields};
use crate::resource::At;
use crate::sensitive::SecretValue;

/// `sys/seal-status`: whether the server is initialised and sealed, and how far unsealing got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealStatus {
    /// Whether it has been initialised.
    pub initialized: bool,
    /// Whether it is sealed.
    pub sealed: bool,
    /// How many unseal keys it needs.
    pub threshold: u32,
    /// How many it has been given so far.
    pub progress: u32,
}

/// What `sys/init` answers once, and never again: the unseal keys and the root token.
/// Neither `Debug` nor anything else formats them.
pub struct InitKeys {
    /// The unseal keys, base64 (as `bao operator unseal` takes them).
    pub keys_b64: Vec<SecretValue>,
    /// The same keys, hex.
    pub keys_hex: Vec<SecretValue>,
    /// How many keys unseal it.
    pub threshold: u32,
    /// The root token.
    pub root_token: Token,
}

impl std::fmt::Debug for InitKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "InitKeys({} keys, threshold {}, <redacted>)",
            self.keys_b64.len(),
            self.threshold
        )
    }
}

/// The strings of the array `key` of `doc`, as secret values (none when absent).
fn secrets_at(doc: &Value, key: &str) -> Vec<SecretValue> {
    doc.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(SecretValue::new)
                .collect()
        })
        .unwrap_or_default()
}

/// The token at `key` of `doc` (empty when absent).
fn token_at(doc: &Value, key: &str) -> Token {
    Token::new(doc.get(key).and_then(Value::as_str).unwrap_or_default())
}

impl InitKeys {
    /// The JSON `bao operator init -format=json` prints, which `bao` and `labctl bootstrap
    /// --unseal` both read back. The one place the keys are exposed.
    pub fn to_json(&self) -> String {
        let exposed = |v: &[SecretValue]| -> Vec<String> {
            v.iter().map(|k| k.expose().to_string()).collect()
        };
        let doc = serde_json::json!({
            "unseal_keys_b64": exposed(&self.keys_b64),
            "unseal_keys_hex": exposed(&self.keys_hex),
            "unseal_shares": self.keys_b64.len(),
            "unseal_threshold": self.threshold,
            "recovery_keys_b64": [],
            "recovery_keys_hex": [],
            "recovery_keys_shares": 0,
            "recovery_keys_threshold": 0,
            "root_token": self.root_token.0,
        });
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
    }

    /// Read a keys file as [`InitKeys::to_json`] writes it (and `bao operator init -format=json`
    /// prints it). `None` for text that is not one (the caller names the file).
    pub fn from_json(text: &str) -> Option<InitKeys> {
        let doc: Value = serde_json::from_str(text).ok()?;
        let keys_b64 = secrets_at(&doc, "unseal_keys_b64");
        if keys_b64.is_empty() {
            return None;
        }
        Some(InitKeys {
            threshold: doc
                .get("unseal_threshold")
                .and_then(Value::as_u64)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(u32::try_from(keys_b64.len()).unwrap_or(u32::MAX)),
            keys_hex: secrets_at(&doc, "unseal_keys_hex"),
            keys_b64,
            root_token: token_at(&doc, "root_token"),
        })
    }

    /// Remember every key and the token as sensitive ([`crate::sensitive::register`]): from
    /// now on no output of this process can show them.
    pub fn register(&self) {
        for k in self.keys_b64.iter().chain(&self.keys_hex) {
            crate::sensitive::register(k.expose());
        }
        crate::sensitive::register(&self.root_token.0);
    }
}

impl Token {
    /// Whether there is no token at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The token as `~/.vault-token` holds it. The one place a token is exposed, for the file
    /// `bao login` also writes.
    pub fn file_text(&self) -> String {
        format!("{}\n", self.0)
    }

    /// Remember the token as sensitive ([`crate::sensitive::register`]).
    pub fn register(&self) {
        crate::sensitive::register(&self.0);
    }
}

impl Bao {
    /// The same server, as another token.
    #[must_use]
    pub fn with_token(&self, token: Token) -> Bao {
        Bao {
            http: self.http.clone(),
            base: self.base.clone(),
            addr: self.addr.clone(),
            token,
            calls: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
        }
    }

    /// An answer that is not what `what` expects.
    fn unexpected(status: StatusCode, what: &str, body: &Value) -> BaoError {
        BaoError::Server {
            status: status.as_u16(),
            what: what.to_string(),
            message: errors(body),
        }
    }

    /// `sys/seal-status` (no token needed).
    ///
    /// # Errors
    /// [`BaoError::Unreachable`] when nothing answers; [`BaoError::Server`] otherwise.
    pub async fn seal_status(&self) -> Result<SealStatus, BaoError> {
        let (status, body) = self.get(self.url(&["sys/seal-status"]), false).await?;
        seal_status_of(status, &body, "sys/seal-status")
    }

    /// Initialise the server (`sys/init`) with `shares` unseal keys, `threshold` of which unseal
    /// it. It answers this once in its life: the caller keeps what comes back.
    ///
    /// # Errors
    /// [`BaoError::Server`] when it refuses (already initialised, bad numbers).
    pub async fn init(&self, shares: u32, threshold: u32) -> Result<InitKeys, BaoError> {
        let body = serde_json::json!({"secret_shares": shares, "secret_threshold": threshold});
        let (status, body) = self
            .send(
                reqwest::Method::PUT,
                self.url(&["sys/init"]),
                false,
                Some(&body),
            )
            .await?;
        if status != StatusCode::OK {
            return Err(Self::unexpected(status, "sys/init", &body));
        }
        let keys = InitKeys {
            keys_b64: secrets_at(&body, "keys_base64"),
            keys_hex: secrets_at(&body, "keys"),
            threshold,
            root_token: token_at(&body, "root_token"),
        };
        keys.register();
        if keys.keys_b64.is_empty() || keys.root_token.is_empty() {
            return Err(BaoError::Server {
                status: 200,
                what: "sys/init".into(),
                message: "the answer has no keys or no root token".into(),
            });
        }
        Ok(keys)
    }

    /// Give the server one unseal key (`sys/unseal`); its state after it.
    ///
    /// # Errors
    /// [`BaoError::Server`] when it refuses the key (not one of its keys).
    pub async fn unseal(&self, key: &SecretValue) -> Result<SealStatus, BaoError> {
        let body = serde_json::json!({"key": key.expose()});
        let (status, body) = self
            .send(
                reqwest::Method::PUT,
                self.url(&["sys/unseal"]),
                false,
                Some(&body),
            )
            .await?;
        seal_status_of(status, &body, "sys/unseal")
    }

    /// What is mounted at `mount` (`sys/mounts/<mount>`): `None` when nothing, else its type and
    /// KV version (`("kv", Some("2"))`).
    ///
    /// # Errors
    /// [`BaoError::Server`] (a token that may not look).
    pub async fn mount(&self, mount: &str) -> Result<Option<(String, Option<String>)>, BaoError> {
        let (status, body) = self.get(self.url(&["sys/mounts", mount]), true).await?;
        match status {
            StatusCode::OK => {
                let data = body.get("data").unwrap_or(&body);
                let kind = data
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let version = data
                    .at("/options/version")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                Ok(Some((kind, version)))
            }
            // OpenBao answers 400 "no matching mount" for a path nothing is mounted at.
            StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => Ok(None),
            s => Err(Self::unexpected(s, &format!("sys/mounts/{mount}"), &body)),
        }
    }

    /// Mount a KV version 2 secrets engine at `mount`.
    ///
    /// # Errors
    /// [`BaoError::Server`] when it refuses.
    pub async fn enable_kv2(&self, mount: &str) -> Result<(), BaoError> {
        let body = serde_json::json!({"type": "kv", "options": {"version": "2"}});
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                self.url(&["sys/mounts", mount]),
                true,
                Some(&body),
            )
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Self::unexpected(
                status,
                &format!("sys/mounts/{mount}"),
                &body,
            ))
        }
    }

    /// The fields of the latest version of `path` and that version (0: nothing written yet), as
    /// a token that may read it.
    ///
    /// # Errors
    /// As [`Bao::read_all`] for one path, except that no secret there is `Ok` with version 0.
    pub async fn read_versioned(&self, path: &KvPath) -> Result<(KvSecret, u64), BaoError> {
        let (status, body) = self
            .get(self.url(&[&path.mount, "data", &path.path]), true)
            .await?;
        let version = body
            .at("/data/metadata/version")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match status {
            StatusCode::OK => {
                let fields = match body.at("/data/data") {
                    Some(Value::Object(fields)) => kv_fields(fields),
                    _ => KvSecret::new(),
                };
                Ok((fields, version))
            }
            StatusCode::NOT_FOUND => Ok((KvSecret::new(), version)),
            _ => Err(self
                .read_all(&[path.clone()].into())
                .await
                .into_values()
                .next()
                .and_then(Result::err)
                .unwrap_or_else(|| Self::unexpected(status, &path.to_string(), &body))),
        }
    }

    /// Write `fields` as the new version of `path`, only if its latest version is still
    /// `version` (KV v2's check-and-set: 0 when nothing is there): a value written meanwhile is
    /// never overwritten.
    ///
    /// # Errors
    /// [`BaoError::Server`] when it refuses (the check-and-set failed, a narrow policy).
    pub async fn write_cas(
        &self,
        path: &KvPath,
        fields: &KvSecret,
        version: u64,
    ) -> Result<(), BaoError> {
        let data: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.expose().to_string())))
            .collect();
        let body = serde_json::json!({"options": {"cas": version}, "data": data});
        let (status, answer) = self
            .send(
                reqwest::Method::POST,
                self.url(&[&path.mount, "data", &path.path]),
                true,
                Some(&body),
            )
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Self::unexpected(status, &path.to_string(), &answer))
        }
    }

    /// Write the ACL policy `name` (`sys/policies/acl/<name>`); `Ok(false)` when it already
    /// said exactly that.
    ///
    /// # Errors
    /// [`BaoError::Server`] when it refuses.
    pub async fn put_policy(&self, name: &str, rules: &str) -> Result<bool, BaoError> {
        let (status, body) = self
            .get(self.url(&["sys/policies/acl", name]), true)
            .await?;
        if status == StatusCode::OK
            && body.at("/data/policy").and_then(Value::as_str) == Some(rules)
        {
            return Ok(false);
        }
        let (status, body) = self
            .send(
                reqwest::Method::PUT,
                self.url(&["sys/policies/acl", name]),
                true,
                Some(&serde_json::json!({ "policy": rules })),
            )
            .await?;
        if status.is_success() {
            Ok(true)
        } else {
            Err(Self::unexpected(
                status,
                &format!("sys/policies/acl/{name}"),
                &body,
            ))
        }
    }

    /// The policies of `token` (`auth/token/lookup`), or `None` when it is not a valid token.
    ///
    /// # Errors
    /// [`BaoError::Server`] when this client's token may not look tokens up.
    pub async fn token_policies(&self, token: &Token) -> Result<Option<Vec<String>>, BaoError> {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                self.url(&["auth/token/lookup"]),
                true,
                Some(&serde_json::json!({ "token": token.0 })),
            )
            .await?;
        match status {
            StatusCode::OK => Ok(Some(
                body.at("/data/policies")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            )),
            // A token that does not exist (or expired) is "bad token".
            StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST => Ok(None),
            s => Err(Self::unexpected(s, "auth/token/lookup", &body)),
        }
    }

    /// A new periodic token with `policies` (and `default`, which lets it look itself up and
    /// renew itself): it lives as long as it is renewed within `period`.
    ///
    /// # Errors
    /// [`BaoError::Server`] when it refuses.
    pub async fn create_token(
        &self,
        policies: &[&str],
        period: &str,
        display_name: &str,
    ) -> Result<Token, BaoError> {
        let body = serde_json::json!({
            "policies": policies,
            "period": period,
            "display_name": display_name,
            "no_parent": true,
            "renewable": true,
        });
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                self.url(&["auth/token/create"]),
                true,
                Some(&body),
            )
            .await?;
        let token = body
            .at("/auth/client_token")
            .and_then(Value::as_str)
            .filter(|_| status.is_success());
        match token {
            Some(t) => {
                let t = Token::new(t);
                t.register();
                Ok(t)
            }
            None => Err(Self::unexpected(status, "auth/token/create", &body)),
        }
    }

    /// Renew this client's own token (`auth/token/renew-self`), so that a periodic token lives
    /// on while it is used. Best effort: a token that cannot be renewed (a root token) says so.
    ///
    /// # Errors
    /// [`BaoError::Server`] when the server refuses.
    pub async fn renew_self(&self) -> Result<(), BaoError> {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                self.url(&["auth/token/renew-self"]),
                true,
                Some(&serde_json::json!({})),
            )
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Self::unexpected(status, "auth/token/renew-self", &body))
        }
    }
}

fn seal_status_of(status: StatusCode, body: &Value, what: &str) -> Result<SealStatus, BaoError> {
    let flag = |k: &str| body.get(k).and_then(Value::as_bool);
    let num = |k: &str| {
        body.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    };
    match (status, flag("initialized"), flag("sealed")) {
        (StatusCode::OK, Some(initialized), Some(sealed)) => Ok(SealStatus {
            initialized,
            sealed,
            threshold: num("t"),
            progress: num("progress"),
        }),
        _ => Err(Bao::unexpected(status, what, body)),
    }
}
