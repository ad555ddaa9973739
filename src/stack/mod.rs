//! Reading `stack.toml`: parse, reject unknown keys, validate, and hand the rest of labctl a typed
//! [`Stack`] plus a uniform list of [`Component`]s. The only IO here is reading the file.

mod schema;
mod source;
mod validate;

use std::path::{Path, PathBuf};

pub use crate::resource::Plane;
pub use crate::source::{KeyPath, Problem, Seg, SourceFile};
pub use schema::*;
pub use validate::{NotOfForm, SecretUsage, secret_name as check_secret_name, secret_usage};

use crate::error::Error;

/// One component of the stack, in the shape the renderer needs.
#[derive(Debug, Clone)]
pub struct Component {
    /// Plane it renders for.
    pub plane: Plane,
    /// Name as written in stack.toml (`otel-collector`, `reading-sync`).
    pub name: String,
    /// Whether it is enabled (a disabled one renders nothing, and its objects are pruned).
    pub enabled: bool,
    /// Whether it is one of the stack's own (`[kube.extra.*]`, `[host.extra.*]`).
    pub extra: bool,
    /// Kube: template folder; systemd: template stem.
    pub template: String,
    /// Systemd only: the unit base name.
    pub unit: Option<String>,
    /// Systemd only: reload rather than restart on change.
    pub reload_on_change: bool,
    /// Kube only: pruning needs `--prune-volumes`.
    pub protect: bool,
    /// Systemd only: the hosts its units go to ([`LOCAL_HOST`] and `[hosts.<name>]` names),
    /// in the order written; `["local"]` unless the stack places it.
    pub hosts: Vec<String>,
    /// The component's settings, handed to its templates as `c`.
    pub settings: serde_json::Value,
}

/// A parsed, validated stack and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedStack {
    /// The stack.
    pub stack: Stack,
    /// The file it was read from (for override folders and messages).
    pub path: PathBuf,
}

impl LoadedStack {
    /// Folder holding `stack.toml`, `templates/` and `systemd-templates/`.
    pub fn dir(&self) -> &Path {
        self.path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }
}

/// Read, parse and validate the stack at `path`.
///
/// # Errors
/// [`Error::Read`] when the file cannot be read; [`Error::Invalid`] with every syntax, schema or
/// semantic problem, each located in the file.
pub fn load(path: &Path) -> Result<LoadedStack, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let stack = parse(path, &text)?;
    Ok(LoadedStack {
        stack,
        path: path.to_path_buf(),
    })
}

/// The environment variable that overrides the secret `name` whatever its source:
/// `postgres-password` → `LABCTL_SECRET_POSTGRES_PASSWORD`.
pub fn override_var(name: &str) -> String {
    format!(
        "LABCTL_SECRET_{}",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// Check the loaded stack's `[secrets]` against `asked` (each secret the templates ask for, with
/// the templates asking): a secret nothing provides is a problem, unless `env` has its
/// `LABCTL_SECRET_<NAME>` override; one declared but unused is a warning, returned as text.
///
/// # Errors
/// [`Error::Read`] when the file cannot be read again; [`Error::Invalid`] with every secret that
/// nothing provides, located at `[secrets]`.
pub fn check_secrets(
    loaded: &LoadedStack,
    asked: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, Error> {
    let text = std::fs::read_to_string(&loaded.path).map_err(|source| Error::Read {
        path: loaded.path.clone(),
        source,
    })?;
    let file = SourceFile::new(&loaded.path, &text);
    let mut usage = secret_usage(&loaded.stack, &file, asked);
    // A secret given by its `LABCTL_SECRET_<NAME>` override is provided.
    usage.problems.retain(|p| {
        !asked.keys().any(|n| {
            p.message.starts_with(&format!("secret `{n}` ")) && env(&override_var(n)).is_some()
        })
    });
    if !usage.problems.is_empty() {
        return Err(Error::Invalid {
            file,
            problems: usage.problems,
        });
    }
    Ok(usage
        .warnings
        .into_iter()
        .map(|w| match &w.help {
            Some(h) => format!("{}: {} ({h})", loaded.path.display(), w.message),
            None => format!("{}: {}", loaded.path.display(), w.message),
        })
        .collect())
}

/// Parse and validate stack text; `path` is only used to name the file in messages.
///
/// # Errors
/// [`Error::Invalid`] with every problem found.
pub fn parse(path: &Path, text: &str) -> Result<Stack, Error> {
    let file = SourceFile::new(path, text);
    // Unknown keys, wrong types and semantic problems, all in one report (the view sorts them).
    let (stack, mut problems) = source::deserialize::<Stack>(text);
    if let Some(mut stack) = stack {
        stack.derive_defaults();
        problems.extend(validate::validate(&stack, &file));
        if problems.is_empty() {
            return Ok(stack);
        }
    }
    Err(Error::Invalid { file, problems })
}

impl Stack {
    /// Every enabled component, kube first, in schema order: what renders.
    pub fn components(&self) -> Vec<Component> {
        self.all_components()
            .into_iter()
            .filter(|c| c.enabled)
            .collect()
    }

    /// Names of the kube components marked `protect`, enabled or not (a disabled component's
    /// objects are exactly the ones pruning would delete).
    pub fn protected(&self) -> std::collections::BTreeSet<String> {
        self.all_components()
            .into_iter()
            .filter(|c| c.plane == Plane::Kube && c.protect)
            .map(|c| c.name)
            .collect()
    }

    /// Every component stack.toml declares, enabled or not, kube first, in schema order. This is
    /// the one list of components: rendering, validation, protection and the tests' stacks
    /// ([`builtin_components`]) all iterate it.
    pub fn all_components(&self) -> Vec<Component> {
        let mut out: Vec<Component> = Vec::new();
        let k = &self.kube;
        let kube = |name: &str, enabled: bool, protect: bool, v: serde_json::Value| {
            Some(Component {
                plane: Plane::Kube,
                name: name.into(),
                enabled,
                extra: false,
                template: name.into(),
                unit: None,
                reload_on_change: false,
                protect,
                hosts: Vec::new(),
                settings: v,
            })
        };
        // The stack itself renders its namespace (and anything else in `templates/stack/`).
        out.extend(kube("stack", true, false, json(&self.stack)));
        out.extend(kube(
            "collectors",
            k.collectors.enabled,
            k.collectors.protect,
            json(&k.collectors),
        ));
        out.extend(kube(
            "grafana",
            k.grafana.enabled,
            k.grafana.protect,
            json(&k.grafana),
        ));
        out.extend(kube("loki", k.loki.enabled, k.loki.protect, json(&k.loki)));
        out.extend(kube(
            "minio",
            k.minio.enabled,
            k.minio.protect,
            json(&k.minio),
        ));
        out.extend(kube(
            "otel-collector",
            k.otel_collector.enabled,
            k.otel_collector.protect,
            json(&k.otel_collector),
        ));
        out.extend(kube(
            "postgres",
            k.postgres.enabled,
            k.postgres.protect,
            json(&k.postgres),
        ));
        out.extend(kube(
            "prometheus",
            k.prometheus.enabled,
            k.prometheus.protect,
            json(&k.prometheus),
        ));
        out.extend(kube(
            "tempo",
            k.tempo.enabled,
            k.tempo.protect,
            json(&k.tempo),
        ));
        out.extend(kube(
            "thanos",
            k.thanos.enabled,
            k.thanos.protect,
            json(&k.thanos),
        ));
        for (name, x) in &k.extra {
            let mut c = kube(name, x.enabled, x.protect, json(x));
            if let Some(c) = c.as_mut() {
                c.extra = true;
                if let Some(t) = &x.template {
                    c.template = t.clone();
                }
            }
            out.extend(c);
        }

        let h = &self.host;
        let host = |name: &str, enabled: bool, unit: &str, reload: bool, v: serde_json::Value| {
            let hosts = v
                .get("hosts")
                .and_then(|h| serde_json::from_value::<Vec<String>>(h.clone()).ok())
                .unwrap_or_else(|| vec![LOCAL_HOST.to_string()]);
            Some(Component {
                plane: Plane::Systemd,
                name: name.into(),
                enabled,
                extra: false,
                template: name.into(),
                unit: Some(unit.into()),
                reload_on_change: reload,
                protect: false,
                hosts,
                settings: v,
            })
        };
        out.extend(host(
            "proxy",
            h.proxy.enabled,
            &h.proxy.unit,
            h.proxy.reload_on_change,
            json(&h.proxy),
        ));
        out.extend(host(
            "collector",
            h.collector.enabled,
            &h.collector.unit,
            h.collector.reload_on_change,
            json(&h.collector),
        ));
        out.extend(host(
            "ingest",
            h.ingest.enabled,
            &h.ingest.unit,
            h.ingest.reload_on_change,
            json(&h.ingest),
        ));
        out.extend(host(
            "gate",
            h.gate.enabled,
            &h.gate.unit,
            h.gate.reload_on_change,
            json(&h.gate),
        ));
        out.extend(host(
            "openbao",
            h.openbao.enabled,
            &h.openbao.unit,
            h.openbao.reload_on_change,
            json(&h.openbao),
        ));
        out.extend(host(
            "reading-sync",
            h.reading_sync.enabled,
            &h.reading_sync.unit,
            h.reading_sync.reload_on_change,
            json(&h.reading_sync),
        ));
        for (name, x) in &h.extra {
            let unit = x.unit.as_deref().unwrap_or(name);
            let mut c = host(name, x.enabled, unit, x.reload_on_change, json(x));
            if let Some(c) = c.as_mut() {
                c.extra = true;
                if let Some(t) = &x.template {
                    c.template = t.clone();
                }
            }
            out.extend(c);
        }
        out
    }
}

/// The builtin components a stack can switch off, as their stack.toml tables (`kube.grafana`,
/// `host.proxy`), in schema order: [`Stack::all_components`] of an empty stack, without the
/// stack's own `stack` component.
pub fn builtin_components() -> Vec<String> {
    let empty: Stack = toml::from_str("[stack]\nname = \"x\"\n").expect("an empty stack parses");
    empty
        .all_components()
        .into_iter()
        .filter(|c| !(c.extra || c.plane == Plane::Kube && c.name == "stack"))
        .map(|c| {
            let table = match c.plane {
                Plane::Kube => "kube",
                Plane::Systemd => "host",
            };
            format!("{table}.{}", c.name)
        })
        .collect()
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    // Schema types are plain data (strings, numbers, maps): serialising them cannot fail.
    serde_json::to_value(v).expect("stack settings serialise to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_components_are_the_schema_tables() {
        let names = builtin_components();
        assert_eq!(names.first().map(String::as_str), Some("kube.collectors"));
        assert!(names.contains(&"host.reading-sync".to_string()));
        assert!(!names.iter().any(|n| n == "kube.stack"));
        // Disabling every one of them leaves nothing but the stack's own component.
        let text: String = std::iter::once("[stack]\nname = \"x\"\n".to_string())
            .chain(names.iter().map(|n| format!("[{n}]\nenabled = false\n")))
            .collect();
        let stack = parse(Path::new("stack.toml"), &text).unwrap();
        let on: Vec<String> = stack.components().into_iter().map(|c| c.name).collect();
        assert_eq!(on, ["stack"]);
    }

    #[test]
    fn the_bare_fixture_disables_every_builtin_component() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bare.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let tables: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix('[')?.strip_suffix(']'))
            .filter(|t| *t != "stack")
            .map(str::to_string)
            .collect();
        assert_eq!(tables, builtin_components(), "{}", path.display());
        let stack = parse(&path, &text).unwrap();
        assert_eq!(stack.components().len(), 1, "only `stack` stays on");
    }
}
