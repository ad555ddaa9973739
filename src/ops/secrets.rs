//! The secrets a plan needs: which ones the templates ask for (rendering decides, names built in
//! a template included), resolved from their declared sources in one go.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Error;
use crate::render::Templates;
use crate::secrets::resolve;
use crate::sensitive::Secrets;
use crate::stack::{LoadedStack, Plane};

/// The secrets a command needs to render `loaded` (its components of `plane`, or all): every
/// secret the templates ask for, resolved from its source ([`crate::secrets::resolve`]) through the
/// process's environment.
///
/// # Errors
/// [`Error::MissingSecrets`] naming every secret without a value, with its source and why;
/// rendering errors as [`crate::render::render`].
pub async fn read(
    loaded: &LoadedStack,
    templates: &Templates,
    plane: Option<Plane>,
) -> Result<Secrets, Error> {
    let asked = crate::render::secrets_asked(&loaded.stack, templates, plane)?;
    let names: BTreeSet<String> = asked.into_keys().collect();
    if names.is_empty() {
        return Ok(Secrets::from_values(BTreeMap::new()));
    }
    let resolved = resolve(
        &loaded.stack,
        loaded.dir(),
        &names,
        &crate::secrets::process_env,
    )
    .await;
    Ok(Secrets::from_values(resolved.require()?))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn bundled_templates_ask_for_the_known_secrets() {
        let stack =
            crate::stack::parse(Path::new("stack.toml"), "[stack]\nname = \"lab\"\n").unwrap();
        let used = crate::render::secrets_asked(&stack, &Templates::builtin(), None).unwrap();
        let names: Vec<&str> = used.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "github-token",
                "grafana-admin-password",
                "minio-root-password",
                "postgres-password",
                "webhook-secret"
            ]
        );
        // Through the partial `_objstore.yaml`.
        assert!(used["minio-root-password"].contains("templates/thanos/secret.yaml"));
        assert!(used["postgres-password"].contains("systemd-templates/ingest.service"));
    }
}
