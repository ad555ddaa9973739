//! The templates: built into the binary, overridden or added to by a stack's own `templates/` and
//! `systemd-templates/` folders, by name.

use std::collections::BTreeMap;
use std::path::Path;

use include_dir::{Dir, include_dir};

use crate::error::Error;
use crate::stack::{Component, Plane};

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
    pub(super) sources: BTreeMap<String, (String, Origin)>,
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
