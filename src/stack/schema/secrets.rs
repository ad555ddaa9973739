//! `[secrets]`: where each secret's value comes from.

use super::*;

/// One `[secrets]` entry: exactly one source. `key` goes with `bao` only.
///
/// Kept as optional fields rather than an enum so that a misspelt source is an unknown key the
/// parser locates (`unknown field \`vault\``), and validation says which combination is wrong.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// A KV version 2 secret in OpenBao: `<mount>/<path>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bao: Option<String>,
    /// The field of that secret (default: the secret's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// An environment variable of the labctl process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// A file holding the value (one trailing newline is dropped); relative to the stack's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// Where one secret's value comes from, checked: what [`SecretSource`] means.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretFrom {
    /// Field `key` of the KV version 2 secret at `path` in the mount `mount`.
    Bao {
        /// The KV v2 mount (`secret`).
        mount: String,
        /// The secret's path inside the mount (`homelab/grafana`).
        path: String,
        /// The field.
        key: String,
    },
    /// The environment variable.
    Env(String),
    /// The file, as written (relative to the stack's folder unless absolute).
    File(String),
}

impl std::fmt::Display for SecretFrom {
    /// As the user would write it in `[secrets]`, so a message points back at the declaration.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretFrom::Bao { mount, path, key } => {
                write!(f, "{{ bao = \"{mount}/{path}\", key = \"{key}\" }}")
            }
            SecretFrom::Env(v) => write!(f, "{{ env = \"{v}\" }}"),
            SecretFrom::File(p) => write!(f, "{{ file = \"{p}\" }}"),
        }
    }
}

/// The KV v2 mount every default secret lives in: the one `bao server -dev` and the OpenBao docs
/// set up.
pub const DEFAULT_BAO_MOUNT: &str = "secret";

impl SecretSource {
    /// The one source this entry names, for the secret `name` (the default `key`).
    ///
    /// # Errors
    /// What is wrong with the entry, lowercase, names in backticks, for a validation problem.
    pub fn from(&self, name: &str) -> Result<SecretFrom, NotOfForm> {
        let given: Vec<&str> = [
            ("bao", self.bao.is_some()),
            ("env", self.env.is_some()),
            ("file", self.file.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        match given.as_slice() {
            [] if self.key.is_some() => {
                return Err(
                    "`key` is set but `bao` is not: `key` names a field of an OpenBao secret"
                        .into(),
                );
            }
            [] => return Err("no source: expected `bao`, `env` or `file`".into()),
            [_] => {}
            many => {
                return Err(NotOfForm(format!(
                    "more than one source ({}): give exactly one",
                    many.iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        if self.key.is_some() && self.bao.is_none() {
            return Err("`key` only goes with `bao`".into());
        }
        if let Some(b) = &self.bao {
            let b = b.trim_matches('/');
            let Some((mount, path)) = b
                .split_once('/')
                .filter(|(m, p)| !m.is_empty() && !p.is_empty())
            else {
                return Err(NotOfForm(format!(
                    "`bao = \"{b}\"` must be `<mount>/<path>`, such as \"{DEFAULT_BAO_MOUNT}/homelab\""
                )));
            };
            if path
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            {
                return Err(NotOfForm(format!(
                    "`bao = \"{b}\"` has an empty, `.` or `..` path segment"
                )));
            }
            let key = self.key.clone().unwrap_or_else(|| name.to_string());
            if key.is_empty() {
                return Err("`key` is empty".into());
            }
            return Ok(SecretFrom::Bao {
                mount: mount.to_string(),
                path: path.to_string(),
                key,
            });
        }
        if let Some(v) = &self.env {
            if v.is_empty() || v.contains(['=', '\0']) {
                return Err(NotOfForm(format!(
                    "`env = \"{v}\"` is not an environment variable name"
                )));
            }
            return Ok(SecretFrom::Env(v.clone()));
        }
        // Exactly one source was given and it is neither `bao` nor `env`.
        let p = self.file.clone().unwrap_or_default();
        if p.is_empty() {
            return Err("`file` is empty".into());
        }
        Ok(SecretFrom::File(p))
    }
}
