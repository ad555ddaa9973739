//! Templates → desired set. Default templates are embedded in the binary; a stack's own
//! `templates/` and `systemd-templates/` override them by name or add to them.
//! Rendering is pure: no network, no clock; secrets come in through a lookup the caller owns.

use std::collections::BTreeMap;
use std::path::Path;

use include_dir::{Dir, include_dir};
use minijinja::{Environment, UndefinedBehavior, Value as JValue};
use serde_json::{Value, json};

use crate::error::Error;
use crate::resource::{
    COMPONENT, Content, Desired, DesiredObject, KindScope, MANAGED_BY, MANAGER, PART_OF,
    ResourceId, kind_spec,
};
use crate::stack::{Component, Plane, Stack};

static KUBE_TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");
static UNIT_TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/systemd-templates");

/// Folder of kube templates, relative to the stack.
pub const KUBE_DIR: &str = "templates";
/// Folder of unit templates, relative to the stack.
pub const UNIT_DIR: &str = "systemd-templates";

/// Every template by name (`templates/grafana/deployment.yaml`, `systemd-templates/proxy.service`),
/// with where it came from.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    sources: BTreeMap<String, (String, Origin)>,
}

/// Where a template came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Shipped inside labctl.
    Builtin,
    /// The stack's own folder (or its git revision).
    Stack,
}

impl Templates {
    /// The templates shipped in the binary.
    pub fn builtin() -> Self {
        let mut t = Templates::default();
        for (prefix, dir) in [(KUBE_DIR, &KUBE_TEMPLATES), (UNIT_DIR, &UNIT_TEMPLATES)] {
            let mut stack = vec![dir];
            while let Some(d) = stack.pop() {
                for f in d.files() {
                    if let Some(text) = f.contents_utf8() {
                        let name = format!("{prefix}/{}", f.path().display());
                        t.sources.insert(name, (text.to_string(), Origin::Builtin));
                    }
                }
                stack.extend(d.dirs());
            }
        }
        t
    }

    /// Builtin templates overridden by the stack's own folders next to its stack.toml.
    ///
    /// # Errors
    /// [`Error::Read`] when a template file cannot be read.
    pub fn for_stack_dir(dir: &Path) -> Result<Self, Error> {
        let mut t = Self::builtin();
        for prefix in [KUBE_DIR, UNIT_DIR] {
            let root = dir.join(prefix);
            if !root.is_dir() {
                continue;
            }
            let mut pending = vec![root.clone()];
            while let Some(d) = pending.pop() {
                let entries = std::fs::read_dir(&d).map_err(|source| Error::Read {
                    path: d.clone(),
                    source,
                })?;
                for e in entries {
                    let e = e.map_err(|source| Error::Read {
                        path: d.clone(),
                        source,
                    })?;
                    let p = e.path();
                    if p.is_dir() {
                        pending.push(p);
                        continue;
                    }
                    let text = std::fs::read_to_string(&p).map_err(|source| Error::Read {
                        path: p.clone(),
                        source,
                    })?;
                    let rel = p
                        .strip_prefix(&root)
                        .unwrap_or(&p)
                        .to_string_lossy()
                        .replace('\\', "/");
                    t.insert(&format!("{prefix}/{rel}"), text);
                }
            }
        }
        Ok(t)
    }

    /// Add or override a template from the stack.
    pub fn insert(&mut self, name: &str, text: String) {
        self.sources.insert(name.to_string(), (text, Origin::Stack));
    }

    /// Template names and origins.
    pub fn names(&self) -> impl Iterator<Item = (&str, Origin)> {
        self.sources.iter().map(|(k, (_, o))| (k.as_str(), *o))
    }

    /// A template's text.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.sources.get(name).map(|(t, _)| t.as_str())
    }

    /// Templates a component renders: all of `templates/<t>/` for kube (skipping `_` partials),
    /// `systemd-templates/<t>.<suffix>` for units.
    pub fn for_component(&self, c: &Component) -> Vec<&str> {
        let (prefix, dot) = match c.plane {
            Plane::Kube => (format!("{KUBE_DIR}/{}/", c.template), false),
            Plane::Systemd => (format!("{UNIT_DIR}/{}.", c.template), true),
        };
        self.sources
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .filter(|k| {
                let rest = &k[prefix.len()..];
                if dot {
                    !rest.contains('/') && !rest.contains('.')
                } else {
                    !rest.contains('/') && !rest.starts_with('_')
                }
            })
            .map(String::as_str)
            .collect()
    }
}

/// Looks up a secret by name; `None` when it is not set.
pub type SecretLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The value a template gets for a secret nobody has set: apply refuses objects holding it.
pub fn unset_secret(name: &str) -> String {
    format!("<unset secret {name}>")
}

/// Render every enabled component into the desired set.
///
/// # Errors
/// [`Error::Template`] for a template that fails (undefined variable, syntax),
/// [`Error::Manifest`] for output that is not a valid object or unit, [`Error::Duplicate`] when two
/// templates produce the same id.
pub fn render(
    stack: &Stack,
    templates: &Templates,
    secrets: SecretLookup<'_>,
) -> Result<Desired, Error> {
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
    // minijinja functions must be 'static, so every known secret is looked up once here.
    let known: BTreeMap<String, String> = SECRET_NAMES
        .iter()
        .map(|n| (n.to_string(), secrets(n).unwrap_or_else(|| unset_secret(n))))
        .collect();
    env.add_function(
        "secret",
        move |name: String| -> Result<String, minijinja::Error> {
            known.get(&name).cloned().ok_or_else(|| {
                minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!(
                        "unknown secret `{name}` (known: {})",
                        SECRET_NAMES.join(", ")
                    ),
                )
            })
        },
    );

    let stack_json = {
        let mut v = serde_json::to_value(stack).expect("stack serialises");
        v["stack"]["namespace"] = json!(stack.stack.namespace());
        v
    };
    let namespace = stack.stack.namespace().to_string();
    let mut desired = Desired::default();
    for c in stack.components() {
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
        let ctx = JValue::from(minijinja::value::Serde(json!({
            "stack": stack_json,
            "c": c.settings,
            "component": c.name,
            "namespace": namespace,
            "labctl": stack.host.labctl_path,
            "version": env!("CARGO_PKG_VERSION"),
        })));
        for name in names {
            let tmpl = env
                .get_template(name)
                .map_err(|e| template_error(name, &templates.sources[name].0, &e))?;
            let out = tmpl.render(&ctx).map_err(|e| {
                let src = e
                    .name()
                    .and_then(|n| templates.sources.get(n))
                    .map_or("", |s| s.0.as_str());
                template_error(e.name().unwrap_or(name), src, &e)
            })?;
            let objects = match c.plane {
                Plane::Kube => kube_objects(stack, &c, name, &out)?,
                Plane::Systemd => vec![unit_object(stack, &c, name, &out)?],
            };
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
    Ok(desired)
}

/// The environment variable a secret comes from on the command line: `postgres-password` →
/// `LABCTL_SECRET_POSTGRES_PASSWORD`. The one place this naming is spelled out.
pub fn secret_env_var(name: &str) -> String {
    format!(
        "LABCTL_SECRET_{}",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// Secrets templates may ask for with `secret("name")`.
pub const SECRET_NAMES: &[&str] = &[
    "grafana-admin-password",
    "minio-root-password",
    "postgres-password",
    "webhook-secret",
];

fn template_error(name: &str, source: &str, e: &minijinja::Error) -> Error {
    let mut message = e
        .detail()
        .map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind()));
    if e.kind() == minijinja::ErrorKind::UndefinedError
        && let Some(expr) = e.range().and_then(|r| source.get(r))
    {
        message = format!("undefined variable `{}`", expr.trim());
    }
    Error::Template {
        template: name.to_string(),
        line: e.line(),
        message,
    }
}

fn kube_objects(
    stack: &Stack,
    c: &Component,
    template: &str,
    text: &str,
) -> Result<Vec<DesiredObject>, Error> {
    let bad = |document: usize, message: String| Error::Manifest {
        template: template.to_string(),
        document,
        message,
    };
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| bad(1, format!("not valid YAML: {}", first_line(&e.to_string()))))?;
    let mut out = Vec::new();
    for (i, mut doc) in docs.into_iter().enumerate() {
        let n = i + 1;
        if doc.is_null() {
            continue;
        }
        let Value::Object(_) = doc else {
            return Err(bad(
                n,
                "expected a mapping (an object), found a scalar or list".into(),
            ));
        };
        let field =
            |doc: &Value, key: &str| doc.pointer(key).and_then(Value::as_str).map(str::to_string);
        let api_version =
            field(&doc, "/apiVersion").ok_or_else(|| bad(n, "missing `apiVersion`".into()))?;
        let kind = field(&doc, "/kind").ok_or_else(|| bad(n, "missing `kind`".into()))?;
        let name = field(&doc, "/metadata/name")
            .ok_or_else(|| bad(n, "missing `metadata.name`".into()))?;
        let namespaced = kind_spec(&kind).scope == KindScope::Namespaced;
        let meta = doc["metadata"]
            .as_object_mut()
            .ok_or_else(|| bad(n, "`metadata` is not a mapping".into()))?;
        let namespace = if namespaced {
            let ns = meta
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or(stack.stack.namespace())
                .to_string();
            meta.insert("namespace".into(), json!(ns));
            Some(ns)
        } else {
            if meta.contains_key("namespace") {
                return Err(bad(
                    n,
                    format!("`{kind}` is cluster-scoped but has `metadata.namespace`"),
                ));
            }
            None
        };
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        let labels = labels
            .as_object_mut()
            .ok_or_else(|| bad(n, "`metadata.labels` is not a mapping".into()))?;
        labels.insert(MANAGED_BY.into(), json!(MANAGER));
        labels.insert(PART_OF.into(), json!(stack.stack.name));
        labels.entry(COMPONENT).or_insert_with(|| json!(c.name));
        crate::schema_check::check(&api_version, &kind, &doc)
            .map_err(|m| bad(n, format!("{kind} `{name}`: {m}")))?;
        out.push(DesiredObject {
            id: ResourceId::Kube {
                namespace,
                kind,
                name,
                api_version,
            },
            component: c.name.clone(),
            template: template.to_string(),
            content: Content::kube(doc),
            reload_on_change: false,
        });
    }
    Ok(out)
}

fn unit_object(
    stack: &Stack,
    c: &Component,
    template: &str,
    text: &str,
) -> Result<DesiredObject, Error> {
    let suffix = template.rsplit('.').next().unwrap_or("service");
    let unit = format!("{}.{suffix}", c.unit.as_deref().unwrap_or(&c.name));
    let bad = |line: usize, message: String| Error::Template {
        template: template.to_string(),
        line: Some(line),
        message,
    };
    let mut sections = 0;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if l.starts_with('[') {
            if !l.ends_with(']') {
                return Err(bad(i + 1, format!("section header `{l}` is not closed")));
            }
            sections += 1;
        } else if sections == 0 {
            return Err(bad(i + 1, format!("`{l}` comes before any [Section]")));
        } else if !l.contains('=')
            && !text
                .lines()
                .nth(i.wrapping_sub(1))
                .is_some_and(|p| p.trim_end().ends_with('\\'))
        {
            return Err(bad(i + 1, format!("`{l}` is not `Key=Value`")));
        }
    }
    if sections == 0 {
        return Err(bad(1, "renders no [Unit] or [Service] section".into()));
    }
    let text = format!(
        "{}\n{text}",
        crate::resource::unit_marker(&stack.stack.name)
    );
    Ok(DesiredObject {
        id: ResourceId::Systemd { unit },
        component: c.name.clone(),
        template: template.to_string(),
        content: Content::unit(&text),
        reload_on_change: c.reload_on_change,
    })
}

/// The parser's first line ("line 6 column 15: ..."); the rest is a snippet of rendered output.
fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or(s);
    l.strip_prefix("error: ").unwrap_or(l).to_string()
}
