//! Env files: the secrets a unit template declares with `env_secret` become a file of their own,
//! which the unit's `EnvironmentFile=` line names and apply writes owner-only.

use std::collections::BTreeMap;

use serde_json::json;

use super::EnvDecl;
use crate::error::Error;
use crate::resource::{Content, DesiredObject, ResourceId};
use crate::stack::{Component, Stack};

/// A name an environment variable can have in an env file: `[A-Za-z_][A-Za-z0-9_]*`.
pub(super) fn valid_env_var(v: &str) -> bool {
    let mut chars = v.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The env files a unit template declared with `env_secret`: one resource each, at the path the
/// unit's `EnvironmentFile=` line names for it (as written, `%E` and all: the manager expands it).
pub(super) fn env_files(
    stack: &Stack,
    c: &Component,
    template: &str,
    unit: &ResourceId,
    text: &str,
    decls: Vec<EnvDecl>,
) -> Result<Vec<DesiredObject>, Error> {
    let ResourceId::Systemd { host, unit } = unit else {
        return Err(Error::Template {
            template: template.to_string(),
            line: None,
            message: "`env_secret` is for unit templates".into(),
        });
    };
    let mut files: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for d in decls {
        files.entry(d.file).or_default().insert(d.var, d.value);
    }
    let named: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("EnvironmentFile="))
        .map(|p| p.trim().trim_start_matches('-'))
        .collect();
    let mut out = Vec::new();
    for (file, vars) in files {
        let want = format!("/{file}.env");
        let Some(path) = named.iter().find(|p| p.ends_with(&want)) else {
            return Err(Error::Template {
                template: template.to_string(),
                line: None,
                message: format!(
                    "declares secrets for `{file}.env` but no `EnvironmentFile=` line names it"
                ),
            });
        };
        let id = ResourceId::EnvFile {
            host: host.clone(),
            path: (*path).to_string(),
            unit: unit.clone(),
        };
        out.push(DesiredObject {
            id,
            component: c.name.clone(),
            template: template.to_string(),
            content: env_file_content(&stack.stack.name, &vars),
            reload_on_change: false,
        });
    }
    Ok(out)
}

/// An env file's text: labctl's marker, then `VAR=value` lines sorted by name, each value quoted
/// the way systemd's `EnvironmentFile=` parser reads it back unchanged (single quotes keep
/// everything literally; a value holding `'` goes in double quotes, with `\`, `"`, `` ` `` and
/// `$` escaped).
pub fn env_file_text(stack: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = format!(
        "{}
",
        crate::resource::unit_marker(stack)
    );
    for (k, v) in vars {
        if v.contains('\'') {
            let mut q = String::with_capacity(v.len() + 2);
            for ch in v.chars() {
                if matches!(ch, '\\' | '"' | '`' | '$') {
                    q.push('\\');
                }
                q.push(ch);
            }
            out.push_str(&format!("{k}=\"{q}\"\n"));
        } else {
            out.push_str(&format!("{k}='{v}'\n"));
        }
    }
    out
}

/// An env file as the plan holds it: its variables (values marked sensitive by the plan) and the
/// hash of the text apply writes, which is what is compared with the file on disk.
pub fn env_file_content(stack: &str, vars: &BTreeMap<String, String>) -> Content {
    Content::kube(json!({
        "env": vars,
        "sha256": sha256_hex(env_file_text(stack, vars).as_bytes()),
    }))
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
