//! The secrets a plan needs: which ones the templates ask for (rendering decides, names built in
//! a template included), resolved from their declared sources in one go. A plan cut down by
//! `--target`/`--exclude` needs only the secrets of the objects it keeps.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Error;
use crate::plan::{self, Live, Selection};
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
    read_selected(loaded, templates, plane, &Selection::default()).await
}

/// As [`read`], for a plan cut down to `selection`: only the secrets that the templates of the
/// objects it keeps (targeted, what they depend on, less what is excluded) ask for are read;
/// every other secret renders as its marker, in objects the selection then leaves out.
///
/// # Errors
/// As [`read`]; [`Error::Usage`] for a pattern that is not a glob.
pub async fn read_selected(
    loaded: &LoadedStack,
    templates: &Templates,
    plane: Option<Plane>,
    selection: &Selection,
) -> Result<Secrets, Error> {
    let names = needed(loaded, templates, plane, selection)?;
    if names.is_empty() {
        return Ok(Secrets::from_values(BTreeMap::new()).only(names));
    }
    let resolved = resolve(
        &loaded.stack,
        loaded.dir(),
        &names,
        &crate::secrets::process_env,
    )
    .await;
    let values = resolved.require()?;
    crate::secrets::renew_token(&loaded.stack, &names, &crate::secrets::process_env).await;
    Ok(Secrets::from_values(values).only(names))
}

/// The secrets the objects `selection` keeps ask for, by the templates that render them: a
/// template asks for a secret for every object it renders (a unit and its env file alike).
///
/// # Errors
/// Rendering errors; [`Error::Usage`] for a pattern that is not a glob.
pub fn needed(
    loaded: &LoadedStack,
    templates: &Templates,
    plane: Option<Plane>,
    selection: &Selection,
) -> Result<BTreeSet<String>, Error> {
    if selection.is_empty() {
        let asked = crate::render::secrets_asked(&loaded.stack, templates, plane)?;
        return Ok(asked.into_keys().collect());
    }
    let (desired, asked) =
        crate::render::render_asked(&loaded.stack, templates, &Secrets::redacted(), plane)?;
    // Everything is new against nothing: the selection keeps what it would keep of a live plan
    // but the deletions, which render nothing.
    let offline = plan::diff(&desired, &Live::default());
    let kept = plan::kept_ids(&offline, selection)?;
    let rendering: BTreeSet<&str> = kept
        .iter()
        .filter_map(|id| desired.objects.get(id))
        .map(|o| o.template.as_str())
        .collect();
    Ok(asked
        .into_iter()
        .filter(|(_, by)| by.iter().any(|t| rendering.contains(t.as_str())))
        .map(|(name, _)| name)
        .collect())
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
