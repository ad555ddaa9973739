//! Templates → desired set. Default templates are embedded in the binary; a stack's own
//! `templates/` and `systemd-templates/` override them by name or add to them.
//! Rendering is pure: no network, no clock; secrets come in through a lookup the caller owns.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use include_dir::{Dir, include_dir};
use minijinja::{Environment, UndefinedBehavior, Value as JValue};
use serde_json::{Value, json};

use crate::error::Error;
use crate::resource::{
    At, COMPONENT, Content, Desired, DesiredObject, KindScope, MANAGED_BY, MANAGER, PART_OF,
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

/// A secret lookup: the value of a name, `None` when it has none.
type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Where `secret("name")` gets its value: a lookup (resolved secrets, the environment, a map in
/// tests) or, for output that must not hold values, a marker per secret ([`Secrets::redacted`]).
/// There is no placeholder for a missing value: [`render`] fails naming every one.
#[derive(Clone)]
pub struct Secrets(Option<Arc<Lookup>>);

impl Secrets {
    /// Secrets from a function (tests use a map).
    pub fn new(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Secrets(Some(Arc::new(lookup)))
    }

    /// Secrets from the environment only: `LABCTL_SECRET_<NAME>` (see [`secret_env_var`]); an
    /// empty variable is unset. The command line resolves `[secrets]` instead
    /// ([`crate::secrets::for_stack`]), which honours these variables too.
    pub fn from_env() -> Self {
        Secrets::new(|name| {
            std::env::var(secret_env_var(name))
                .ok()
                .filter(|v| !v.is_empty())
        })
    }

    /// Resolved values by name (see [`crate::secrets::resolve`]).
    pub fn from_values(values: BTreeMap<String, crate::secrets::SecretValue>) -> Self {
        Secrets::new(move |name| values.get(name).map(|v| v.expose().to_string()))
    }

    /// No values at all: every secret renders as [`redacted`] of its name. For `render --redact`
    /// and for plans that compare no values (`--offline`, `--base`).
    pub fn redacted() -> Self {
        Secrets(None)
    }

    /// Whether values are replaced by markers.
    pub fn is_redacted(&self) -> bool {
        self.0.is_none()
    }

    /// The value of `name`: its marker when redacted, `None` when it has none.
    pub fn get(&self, name: &str) -> Option<String> {
        match &self.0 {
            None => Some(redacted(name)),
            Some(f) => f(name),
        }
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_redacted() {
            "Secrets(redacted)"
        } else {
            "Secrets(..)"
        })
    }
}

/// What a secret renders as when values are left out (`render --redact`, offline plans).
pub fn redacted(name: &str) -> String {
    format!("(redacted secret {name})")
}

/// Which secrets the templates ask for, by name, with the templates asking.
pub type Asked = BTreeMap<String, BTreeSet<String>>;

/// Render every enabled component (of `plane`, or all) into the desired set. Every value a
/// template gets from `secret(...)` is registered with the redactor ([`crate::secrets::register`]).
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
                format!(
                    "`{n}` (used by {by}): no value; set `{}`",
                    secret_env_var(n)
                )
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
    file: String,
    var: String,
    value: String,
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
                    if !secrets.is_redacted() {
                        crate::secrets::register(&v);
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
                Plane::Systemd => vec![unit_object(stack, &c, name, &out)?],
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
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(_)) => Ok(text),
                Ok(_) => Err(bad(format!("`{name}` renders JSON that is not an object"))),
                Err(e) => Err(bad(format!(
                    "`{name}` does not render valid JSON: {e} of its rendered output"
                ))),
            }
        },
    );
}

/// A name an environment variable can have in an env file: `[A-Za-z_][A-Za-z0-9_]*`.
fn valid_env_var(v: &str) -> bool {
    let mut chars = v.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The env files a unit template declared with `env_secret`: one resource each, at the path the
/// unit's `EnvironmentFile=` line names for it (as written, `%E` and all: the manager expands it).
fn env_files(
    stack: &Stack,
    c: &Component,
    template: &str,
    unit: &ResourceId,
    text: &str,
    decls: Vec<EnvDecl>,
) -> Result<Vec<DesiredObject>, Error> {
    let ResourceId::Systemd { unit } = unit else {
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

/// The environment variable a secret comes from on the command line: `postgres-password` →
/// `LABCTL_SECRET_POSTGRES_PASSWORD`. The one place this naming is spelled out.
pub fn secret_env_var(name: &str) -> String {
    format!(
        "LABCTL_SECRET_{}",
        name.to_ascii_uppercase().replace('-', "_")
    )
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

fn kube_objects(
    stack: &Stack,
    c: &Component,
    template: &str,
    text: &str,
) -> Result<Vec<DesiredObject>, Error> {
    // A template that renders many objects (a loop) is parsed and checked on every core: its
    // documents are independent, and this is most of a large plan's own time.
    let chunks = document_chunks(text, PARALLEL_PARSE_AT);
    let parsed = crate::par::map(chunks, 2, crate::yaml::documents);
    let mut docs = Vec::new();
    for p in parsed {
        match p {
            Ok(d) => docs.extend(d),
            // Parsed again whole, so that the parser's line numbers are the template output's.
            Err(e) => {
                let e = crate::yaml::documents(text).map_or_else(|e| e, |_| e);
                return Err(Error::Manifest {
                    template: template.to_string(),
                    document: 1,
                    message: format!("not valid YAML: {e}"),
                });
            }
        }
    }
    let numbered: Vec<(usize, Value)> = docs
        .into_iter()
        .enumerate()
        .map(|(i, d)| (i + 1, d))
        .filter(|(_, d)| !d.is_null())
        .collect();
    // In document order: the first failing document is the one reported.
    crate::par::map(numbered, PARALLEL_CHECK_AT, |(n, doc)| {
        kube_object(stack, c, template, n, doc)
    })
    .into_iter()
    .collect()
}

/// Rendered manifests at least this large are parsed on every core.
const PARALLEL_PARSE_AT: usize = 64 * 1024;

/// Templates rendering at least this many objects have them checked on every core.
const PARALLEL_CHECK_AT: usize = 256;

/// `text` cut into one piece per core, each starting at a `---` line (an explicit document
/// start, which no block scalar can contain: it ends one), so that parsing the pieces one by one
/// gives the documents of the whole, in order. One piece when `text` is shorter than `min`, on
/// one core, or has directives (`%YAML`), which belong to the document after them.
fn document_chunks(text: &str, min: usize) -> Vec<&str> {
    let cores = crate::par::cores();
    if text.len() < min || cores < 2 || text.lines().any(|l| l.starts_with('%')) {
        return vec![text];
    }
    let mut starts: Vec<usize> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let marker = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\n', '\r']));
        if marker && offset > 0 {
            starts.push(offset);
        }
        offset += line.len();
    }
    let target = text.len() / cores;
    let mut cuts = vec![0];
    for s in starts {
        if s - cuts[cuts.len() - 1] >= target && cuts.len() < cores {
            cuts.push(s);
        }
    }
    cuts.push(text.len());
    cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

/// Document `n` of a kube template's output, checked, as the object labctl applies.
fn kube_object(
    stack: &Stack,
    c: &Component,
    template: &str,
    n: usize,
    mut doc: Value,
) -> Result<DesiredObject, Error> {
    let bad = |document: usize, message: String| Error::Manifest {
        template: template.to_string(),
        document,
        message,
    };
    let Value::Object(_) = doc else {
        return Err(bad(
            n,
            "expected a mapping (an object), found a scalar or list".into(),
        ));
    };
    let field = |doc: &Value, key: &str| doc.at(key).and_then(Value::as_str).map(str::to_string);
    let api_version =
        field(&doc, "/apiVersion").ok_or_else(|| bad(n, "missing `apiVersion`".into()))?;
    let kind = field(&doc, "/kind").ok_or_else(|| bad(n, "missing `kind`".into()))?;
    let name =
        field(&doc, "/metadata/name").ok_or_else(|| bad(n, "missing `metadata.name`".into()))?;
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
    Ok(DesiredObject {
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
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Stack {
        crate::stack::parse(Path::new("stack.toml"), text).unwrap()
    }

    const PROXY_ONLY: &str = "[stack]\nname = \"lab\"\n\n[host]\nscope = \"user\"\n\n[host.proxy.pipelines.nightly-etl]\nunit = \"etl\"\n";

    #[test]
    fn a_large_manifest_parses_in_pieces_to_the_documents_of_the_whole() {
        let mut text = String::from("# leading comment\n");
        for i in 0..300 {
            // A block scalar holding `---` indented (content) and a document ended by `...`.
            text.push_str(&format!(
                "---\nkind: ConfigMap\nname: cm-{i}\ndata:\n  x: |\n    ---\n    line {i}\n"
            ));
            if i % 7 == 0 {
                text.push_str("...\n");
            }
            if i % 11 == 0 {
                text.push_str("---\n# an empty document\n");
            }
        }
        let pieces = document_chunks(&text, 0);
        let cores = crate::par::cores();
        assert!(
            pieces.len() <= cores && (cores < 2 || pieces.len() > 1),
            "{}",
            pieces.len()
        );
        assert_eq!(pieces.concat(), text);
        for p in &pieces[1..] {
            assert!(p.starts_with("---\n"), "{}", &p[..20]);
        }
        let whole: Vec<Value> = crate::yaml::documents(&text).unwrap();
        let joined: Vec<Value> = pieces
            .iter()
            .flat_map(|p| crate::yaml::documents(p).unwrap())
            .collect();
        assert_eq!(whole, joined);
        assert!(whole.len() >= 300, "{}", whole.len());
        // Small text, or directives, stay whole.
        assert_eq!(document_chunks(&text, text.len() + 1).len(), 1);
        assert_eq!(document_chunks(&format!("%YAML 1.2\n{text}"), 0).len(), 1);
    }

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
        let unit = ResourceId::Systemd {
            unit: "labctl-proxy.service".into(),
        };
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
