//! Rules on `[secrets]`: each entry's source, and what the templates ask of them.

use std::collections::{BTreeMap, BTreeSet};

use super::Checker;
use super::formats::*;
use crate::source::{Problem, Seg, SourceFile};
use crate::stack::schema::Stack;
use Seg::Key as K;

/// Every `[secrets]` entry names one well-formed source.
pub(super) fn secrets(c: &mut Checker<'_>, stack: &Stack) {
    for (name, decl) in &stack.secrets {
        let path = [K("secrets"), K(name)];
        if let Err(why) = secret_name(name) {
            c.push(
                &path,
                format!("`{name}` is not a valid secret name: {why}"),
                None,
            );
        }
        if let Err(why) = decl.from(name) {
            c.push(
                &path,
                format!("secret `{name}`: {why}"),
                Some(
                    "a source is `{ bao = \"<mount>/<path>\", key = \"<field>\" }`, \
                     `{ env = \"VAR\" }` or `{ file = \"PATH\" }`"
                        .into(),
                ),
            );
        }
    }
}

/// What the templates ask of `[secrets]`, checked against it: see [`secret_usage`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretUsage {
    /// Secrets a template uses that nothing provides (errors).
    pub problems: Vec<Problem>,
    /// Secrets declared in `[secrets]` that no template uses (warnings).
    pub warnings: Vec<Problem>,
}

/// Check `[secrets]` against `used`: each secret name the enabled components' templates ask for,
/// with the templates asking. A used secret is provided by its `[secrets]` entry or, when
/// `[host.openbao]` is enabled, by the default OpenBao source; a declared one nobody uses is a
/// warning. Malformed entries are [`validate`]'s business, not repeated here.
pub fn secret_usage(
    stack: &Stack,
    file: &SourceFile,
    used: &BTreeMap<String, BTreeSet<String>>,
) -> SecretUsage {
    let mut out = SecretUsage::default();
    for (name, templates) in used {
        if stack.secret_from(name).is_some() {
            continue;
        }
        let by = templates
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let var = format!(
            "LABCTL_SECRET_{}",
            name.to_ascii_uppercase().replace('-', "_")
        );
        // Point at `[secrets]` when the file has one: that is where the fix goes.
        let span = file.locate(&[K("secrets")]);
        out.problems.push(
            Problem::at(
                format!("secret `{name}` is used by {by}, but nothing provides it"),
                span,
            )
            .help(format!(
                "add `{name} = {{ env = \"{var}\" }}` (or a `bao`/`file` source) to [secrets], \
                 or enable [host.openbao] to read it from OpenBao"
            )),
        );
    }
    for name in stack.secrets.keys() {
        if !used.contains_key(name) {
            out.warnings.push(
                Problem::at(
                    format!("secret `{name}` is declared but no template uses it"),
                    file.locate(&[K("secrets"), K(name)]),
                )
                .help("remove it from [secrets], or check the name for a typo"),
            );
        }
    }
    out
}
