//! Templates → desired set. Default templates are embedded in the binary; a stack's own
//! `templates/` and `systemd-templates/` override them by name or add to them.
//! Rendering is pure: no network, no clock; secrets come in through a lookup the caller owns.

mod env_file;
mod objects;
mod templates;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use minijinja::{Environment, UndefinedBehavior, Value as JValue};
use serde_json::json;

use crate::error::Error;
use crate::resource::Desired;
use crate::sensitive::{Secrets, redacted};
use crate::stack::{LOCAL_HOST, Plane, Stack};

use env_file::{env_files, valid_env_var};
use objects::{kube_objects, unit_object};

pub use env_file::{env_file_content, env_file_text, sha256_hex};
pub use templates::{KUBE_DIR, Origin, Templates, UNIT_DIR};

/// Which secrets the templates ask for, by name, with the templates asking.
pub type Asked = BTreeMap<String, BTreeSet<String>>;

/// Render every enabled component (of `plane`, or all) into the desired set. Every value a
/// template gets from `secret(...)` is registered with the redactor ([`crate::sensitive::register`]).
///
/// # Errors
/// [`Error::Template`] for a template that fails (undefined variable, syntax),
/// [`Error::Manifest`] for output that is not a valid object or unit, [`Error::Duplicate`] when two
/// templates produce the same id, [`Error::MissingSecrets`] naming every secret a template asked
/// for that `secrets` has no value for.
pub fn render(
    stack: &Stack,
    templates: &Templates,
    secrets: &Secrets,
    plane: Option<Plane>,
) -> Result<Desired, Error> {
    Ok(render_asked(stack, templates, secrets, plane)?.0)
}

/// [`render`], and which secrets the templates asked for.
///
/// # Errors
/// As [`render`].
pub fn render_asked(
    stack: &Stack,
    templates: &Templates,
    secrets: &Secrets,
    plane: Option<Plane>,
) -> Result<(Desired, Asked), Error> {
    let (desired, asked, missing) = render_all(stack, templates, secrets, plane, true)?;
    if missing.is_empty() {
        return Ok((desired, asked));
    }
    Err(Error::MissingSecrets {
        missing: missing
            .iter()
            .map(|n| {
                let by = asked[n]
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                crate::error::MissingSecret {
                    name: n.clone(),
                    source: None,
                    cause: format!("no value for {by}; set `{}`", crate::stack::override_var(n)),
                    store: false,
                }
            })
            .collect(),
    })
}

/// Every secret the enabled components (of `plane`, or all) ask for, found by rendering them
/// with markers: exact, names built in a template (a pipeline's token) included.
///
/// # Errors
/// As [`render`], except that no secret is ever missing.
pub fn secrets_asked(
    stack: &Stack,
    templates: &Templates,
    plane: Option<Plane>,
) -> Result<Asked, Error> {
    Ok(render_all(stack, templates, &Secrets::redacted(), plane, false)?.1)
}

/// One `env_secret(file, var, secret)` call: the variable `var` of the env file `file` holds the
/// secret's value.
#[derive(Debug, Clone)]
struct EnvDecl {
    pub(super) file: String,
    pub(super) var: String,
    pub(super) value: String,
}

/// What the template functions record while one template renders.
#[derive(Debug, Default)]
struct Recorded {
    /// Secrets asked for.
    asked: BTreeSet<String>,
    /// Secrets without a value.
    missing: BTreeSet<String>,
    /// Env file declarations.
    env: Vec<EnvDecl>,
}

/// Render every enabled component of `plane` (or all). With `build_objects` false only the templates
/// run: what they ask for is known without parsing their output (the secrets pass before the
/// real render), and the returned [`Desired`] is empty.
fn render_all(
    stack: &Stack,
    templates: &Templates,
    secrets: &Secrets,
    plane: Option<Plane>,
    build_objects: bool,
) -> Result<(Desired, Asked, BTreeSet<String>), Error> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Block tags on their own line leave no blank line behind: YAML indentation stays intact.
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .expect("default delimiters are valid");
    env.set_syntax(syntax);
    for (name, (text, _)) in &templates.sources {
        env.add_template_owned(name.clone(), text.clone())
            .map_err(|e| template_error(name, text, &e))?;
    }
    // `{{ config | sha256 }}` in a pod annotation makes a config change roll the pods.
    env.add_filter("sha256", |text: String| -> String {
        use sha2::Digest;
        sha2::Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    });
    dashboard_functions(&mut env, templates);
    let recorded = Arc::new(Mutex::new(Recorded::default()));
    let lookup = {
        let secrets = secrets.clone();
        let recorded = recorded.clone();
        move |name: &str| -> Result<String, minijinja::Error> {
            if let Err(why) = crate::stack::check_secret_name(name) {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("`{name}` is not a valid secret name: {why}"),
                ));
            }
            let mut r = recorded.lock().unwrap_or_else(PoisonError::into_inner);
            r.asked.insert(name.to_string());
            match secrets.get(name) {
                Some(v) => {
                    if !secrets.is_marker(name) {
                        crate::sensitive::register(&v);
                    }
                    Ok(v)
                }
                None => {
                    r.missing.insert(name.to_string());
                    // Rendering goes on so that every missing secret is named at once; the
                    // output is thrown away.
                    Ok(redacted(name))
                }
            }
        }
    };
    let lookup = Arc::new(lookup);
    {
        let lookup = lookup.clone();
        env.add_function("secret", move |name: String| lookup(&name));
    }
    {
        let lookup = lookup.clone();
        let recorded = recorded.clone();
        // `env_secret("proxy", "GITHUB_TOKEN", "github-token")`: the unit's env file `proxy.env`
        // holds the secret as that variable. Renders as nothing; the env file is a resource of
        // its own (see `env_files`).
        env.add_function(
            "env_secret",
            move |file: String, var: String, secret: String| -> Result<String, minijinja::Error> {
                if !valid_env_var(&var) {
                    return Err(minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("`{var}` is not an environment variable name"),
                    ));
                }
                if file.is_empty() || file.contains(['/', '\0']) {
                    return Err(minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("`{file}` is not an env file name (a name, no `/`)"),
                    ));
                }
                let value = lookup(&secret)?;
                recorded
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .env
                    .push(EnvDecl { file, var, value });
                Ok(String::new())
            },
        );
    }

    let stack_json = {
        let mut v = serde_json::to_value(stack).expect("stack serialises");
        v["stack"]["namespace"] = json!(stack.stack.namespace());
        v
    };
    let namespace = stack.stack.namespace().to_string();
    let mut desired = Desired::default();
    let mut asked = Asked::new();
    let mut missing = BTreeSet::new();
    for c in stack.components() {
        if plane.is_some_and(|p| p != c.plane) {
            continue;
        }
        let names = templates.for_component(&c);
        if names.is_empty() {
            let wher = match c.plane {
                Plane::Kube => format!("{KUBE_DIR}/{}/", c.template),
                Plane::Systemd => format!("{UNIT_DIR}/{}.<suffix>", c.template),
            };
            return Err(Error::Template {
                template: wher,
                line: None,
                message: format!("component `{}` has no templates", c.name),
            });
        }
        // A kube component renders once; a host component once per host it is placed on, each
        // time seeing that host's manager as `stack.host.scope` and `stack.host.unit_dir`.
        let places: Vec<Option<&str>> = match c.plane {
            Plane::Kube => vec![None],
            Plane::Systemd => c
                .hosts
                .iter()
                .map(|h| (h != LOCAL_HOST).then_some(h.as_str()))
                .collect(),
        };
        for (place, name) in places
            .iter()
            .flat_map(|p| names.iter().map(move |n| (*p, *n)))
        {
            let mut seen = stack_json.clone();
            if let Some(remote) = place.and_then(|h| stack.hosts.get(h)) {
                seen["host"]["scope"] = json!(remote.scope);
                seen["host"]["unit_dir"] = json!(remote.unit_dir);
            }
            let ctx = JValue::from(minijinja::value::Serde(json!({
                "stack": seen,
                "c": c.settings,
                "component": c.name,
                "namespace": namespace,
                "labctl": stack.host.labctl_path,
                "version": env!("CARGO_PKG_VERSION"),
                "host": place.unwrap_or(LOCAL_HOST),
            })));
            let tmpl = env
                .get_template(name)
                .map_err(|e| template_error(name, &templates.sources[name].0, &e))?;
            let out = tmpl.render(&ctx).map_err(|e| {
                let src = e
                    .name()
                    .and_then(|n| templates.sources.get(n))
                    .map_or("", |s| s.0.as_str());
                template_error(e.name().unwrap_or(name), src, &e)
            });
            let rec = std::mem::take(&mut *recorded.lock().unwrap_or_else(PoisonError::into_inner));
            let out = out?;
            for s in rec.asked {
                asked.entry(s).or_default().insert(name.to_string());
            }
            missing.extend(rec.missing);
            if !build_objects {
                continue;
            }
            let mut objects = match c.plane {
                Plane::Kube => kube_objects(stack, &c, name, &out)?,
                Plane::Systemd => vec![unit_object(stack, &c, place, name, &out)?],
            };
            if !rec.env.is_empty() {
                let unit = objects[0].id.clone();
                objects.extend(env_files(stack, &c, name, &unit, &out, rec.env)?);
            }
            for o in objects {
                if let Some(prev) = desired.objects.get(&o.id) {
                    return Err(Error::Duplicate {
                        id: o.id.to_string(),
                        first: prev.template.clone(),
                        second: o.template.clone(),
                    });
                }
                desired.objects.insert(o.id.clone(), o);
            }
        }
    }
    Ok((desired, asked, missing))
}

/// What the Grafana templates need to provision every dashboard template, the stack's own
/// included: `templates_in(folder, suffix)` lists the templates in `folder` (not below it) whose
/// names end in `suffix`, sorted; `text | json_checked(name)` passes `text` on when it is a JSON
/// object, and otherwise fails naming template `name` and the line and column of its output;
/// `"5m" | duration_seconds` is 300 (alert windows derived from a setting).
fn dashboard_functions(env: &mut Environment<'_>, templates: &Templates) {
    let names: Vec<String> = templates.sources.keys().cloned().collect();
    env.add_function("templates_in", move |folder: String, suffix: String| {
        names
            .iter()
            .filter(|n| {
                n.strip_prefix(&folder)
                    .is_some_and(|rest| !rest.contains('/') && rest.ends_with(&suffix))
            })
            .cloned()
            .collect::<Vec<String>>()
    });
    env.add_filter(
        "duration_seconds",
        |d: String| -> Result<u64, minijinja::Error> {
            humantime::parse_duration(&d)
                .map(|d| d.as_secs())
                .map_err(|e| {
                    minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("`{d}` is not a duration: {e}"),
                    )
                })
        },
    );
    env.add_filter(
        "json_checked",
        |text: String, name: String| -> Result<String, minijinja::Error> {
            let bad = |message: String| {
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message)
            };
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(serde_json::Value::Object(_)) => Ok(text),
                Ok(_) => Err(bad(format!("`{name}` renders JSON that is not an object"))),
                Err(e) => Err(bad(format!(
                    "`{name}` does not render valid JSON: {e} of its rendered output"
                ))),
            }
        },
    );
}

fn template_error(name: &str, source: &str, e: &minijinja::Error) -> Error {
    let mut message = e
        .detail()
        .map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind()));
    if e.kind() == minijinja::ErrorKind::UndefinedError
        && let Some(expr) = e.range().and_then(|r| source.get(r))
    {
        message = format!("undefined variable `{}`", expr.trim());
    }
    // An error inside an included template is wrapped ("could not render include"): say what
    // and where it was, in the included template's own words.
    let mut cause = std::error::Error::source(e);
    while let Some(inner) = cause.and_then(|c| c.downcast_ref::<minijinja::Error>()) {
        let what = inner.detail().unwrap_or_default();
        let wher = match (inner.name(), inner.line()) {
            (Some(n), Some(l)) => format!(" (`{n}` line {l})"),
            (Some(n), None) => format!(" (`{n}`)"),
            _ => String::new(),
        };
        message = format!(
            "{message}: {}{}{wher}",
            inner.kind(),
            if what.is_empty() {
                String::new()
            } else {
                format!(": {what}")
            }
        );
        cause = std::error::Error::source(inner);
    }
    Error::Template {
        template: name.to_string(),
        line: e.line(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::resource::ResourceId;

    fn parse(text: &str) -> Stack {
        crate::stack::parse(Path::new("stack.toml"), text).unwrap()
    }

    const PROXY_ONLY: &str = "[stack]\nname = \"lab\"\n\n[host]\nscope = \"user\"\n\n[host.proxy.pipelines.nightly-etl]\nunit = \"etl\"\n";

    #[test]
    fn names_built_in_a_template_are_asked_for() {
        let stack = parse(PROXY_ONLY);
        let asked = secrets_asked(&stack, &Templates::builtin(), Some(Plane::Systemd)).unwrap();
        assert!(asked.contains_key("webhook-secret"), "{asked:?}");
        assert!(
            asked.contains_key("pipeline-token-nightly-etl"),
            "{asked:?}"
        );
        assert!(asked.contains_key("github-token"), "{asked:?}");
        assert!(
            asked["github-token"].contains("systemd-templates/ingest.service"),
            "{asked:?}"
        );
        // Only the plane asked for.
        assert!(!asked.contains_key("grafana-admin-password"), "{asked:?}");
    }

    #[test]
    fn a_missing_secret_fails_the_render_naming_every_one() {
        let stack = parse(PROXY_ONLY);
        let only_webhook = Secrets::new(|n| (n == "webhook-secret").then(|| "wh-value".into()));
        let e = render(
            &stack,
            &Templates::builtin(),
            &only_webhook,
            Some(Plane::Systemd),
        )
        .unwrap_err();
        let text = e.to_string();
        for name in [
            "github-token",
            "pipeline-token-nightly-etl",
            "postgres-password",
        ] {
            assert!(text.contains(&format!("`{name}`")), "{text}");
        }
        assert!(!text.contains("`webhook-secret`"), "{text}");
        assert!(!text.contains("wh-value"), "{text}");
    }

    #[test]
    fn unit_env_files_are_resources_of_their_own() {
        let stack = parse(PROXY_ONLY);
        let all = Secrets::new(|n| Some(format!("{n}-value")));
        let d = render(&stack, &Templates::builtin(), &all, Some(Plane::Systemd)).unwrap();
        let id = ResourceId::EnvFile {
            host: None,
            path: "%E/labctl/proxy.env".into(),
            unit: "labctl-proxy.service".into(),
        };
        let env = d.objects[&id].content.as_kube().unwrap()["env"].clone();
        assert_eq!(
            env,
            json!({
                "LABCTL_PIPELINE_TOKEN_NIGHTLY_ETL": "pipeline-token-nightly-etl-value",
                "LABCTL_WEBHOOK_SECRET": "webhook-secret-value"
            })
        );
        // The unit itself holds no value.
        let unit = ResourceId::unit(None, "labctl-proxy.service");
        let text = d.objects[&unit].content.text();
        assert!(!text.contains("-value"), "{text}");
        assert!(
            text.contains("EnvironmentFile=-%E/labctl/proxy.env"),
            "{text}"
        );
        // Redacted, every value is a marker.
        let d = render(
            &stack,
            &Templates::builtin(),
            &Secrets::redacted(),
            Some(Plane::Systemd),
        )
        .unwrap();
        let env = d.objects[&id].content.as_kube().unwrap()["env"].clone();
        assert_eq!(
            env["LABCTL_WEBHOOK_SECRET"],
            "(redacted secret webhook-secret)"
        );
    }
}
