//! What labctl manages, independent of where it came from: ids, desired objects, live objects, and
//! the normalisation that makes equal content compare equal.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// The plane a component or resource lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Plane {
    /// Objects on the Kubernetes cluster.
    Kube,
    /// Unit files under systemd on the host.
    Systemd,
}

impl std::fmt::Display for Plane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Plane::Kube => "kube",
            Plane::Systemd => "systemd",
        })
    }
}

/// Label every labctl-owned kube object carries.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label naming the stack that owns a kube object.
pub const PART_OF: &str = "app.kubernetes.io/part-of";
/// Label naming the component that rendered a kube object.
pub const COMPONENT: &str = "app.kubernetes.io/name";
/// Value of [`MANAGED_BY`].
pub const MANAGER: &str = "labctl";

/// A path lookup into a JSON value, as [`Value::pointer`] without its allocations (it copies
/// every path segment to unescape `~0` and `~1`): for literal paths, which never hold either.
pub trait At {
    /// The value at `path` (`/metadata/name`; an array index is a number), if there is one.
    fn at(&self, path: &str) -> Option<&Value>;
}

impl At for Value {
    fn at(&self, path: &str) -> Option<&Value> {
        debug_assert!(path.is_empty() || path.starts_with('/'), "{path}");
        debug_assert!(!path.contains('~'), "{path}");
        path.split('/').skip(1).try_fold(self, |v, key| match v {
            Value::Object(m) => m.get(key),
            Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        })
    }
}

/// Identity of one managed thing. Ordering is the order plans are shown in: kube objects by
/// namespace, kind and name, then host units by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "plane", rename_all = "lowercase")]
pub enum ResourceId {
    /// A Kubernetes object.
    Kube {
        /// Namespace; none for cluster-scoped kinds.
        namespace: Option<String>,
        /// Kind, as `Deployment`.
        kind: String,
        /// `metadata.name`.
        name: String,
        /// `apiVersion`, as `apps/v1`.
        api_version: String,
    },
    /// A systemd unit file.
    Systemd {
        /// The `[hosts.<name>]` it is on; `None` for the machine labctl runs on. First, so that
        /// a plan sorts the local units first, then each host's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// Full unit name, as `labctl-proxy.service`.
        unit: String,
    },
    /// A unit's env file of secrets, written owner-only next to the unit's other settings.
    #[serde(rename = "env-file")]
    EnvFile {
        /// The host of its unit (`None`: the machine labctl runs on).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// The path as the unit's `EnvironmentFile=` line names it, as `%E/labctl/proxy.env`.
        path: String,
        /// The unit reading it, restarted when it changes.
        unit: String,
    },
}

impl ResourceId {
    /// The plane this id lives on.
    pub fn plane(&self) -> Plane {
        match self {
            ResourceId::Kube { .. } => Plane::Kube,
            ResourceId::Systemd { .. } | ResourceId::EnvFile { .. } => Plane::Systemd,
        }
    }

    /// The `[hosts.<name>]` a host resource is on; `None` for a kube object and for what is on
    /// the machine labctl runs on.
    pub fn host(&self) -> Option<&str> {
        match self {
            ResourceId::Kube { .. } => None,
            ResourceId::Systemd { host, .. } | ResourceId::EnvFile { host, .. } => host.as_deref(),
        }
    }

    /// A unit's id on `host` (`None`: this machine).
    pub fn unit(host: Option<&str>, unit: impl Into<String>) -> Self {
        ResourceId::Systemd {
            host: host.map(str::to_string),
            unit: unit.into(),
        }
    }

    /// Kube kind, if a kube object.
    pub fn kind(&self) -> Option<&str> {
        match self {
            ResourceId::Kube { kind, .. } => Some(kind),
            ResourceId::Systemd { .. } | ResourceId::EnvFile { .. } => None,
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceId::Kube {
                namespace: Some(ns),
                kind,
                name,
                ..
            } => write!(f, "{kind} {ns}/{name}"),
            ResourceId::Kube {
                namespace: None,
                kind,
                name,
                ..
            } => write!(f, "{kind} {name}"),
            ResourceId::Systemd { host: None, unit } => write!(f, "unit {unit}"),
            ResourceId::Systemd {
                host: Some(h),
                unit,
            } => write!(f, "unit {h}:{unit}"),
            ResourceId::EnvFile {
                host: None, path, ..
            } => write!(f, "env file {path}"),
            ResourceId::EnvFile {
                host: Some(h),
                path,
                ..
            } => write!(f, "env file {h}:{path}"),
        }
    }
}

/// The content of a managed thing, normalised.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// A kube object with keys sorted and nulls dropped.
    Kube(Value),
    /// A unit file's text with trailing white space trimmed and one final newline.
    Unit(String),
}

impl Content {
    /// Normalise a kube object.
    pub fn kube(v: Value) -> Self {
        Content::Kube(normalize(v))
    }

    /// Normalise a unit file's text: trailing white space trimmed, runs of blank lines folded to
    /// one, and one blank line before every `[Section]` (templates assemble sections from macros,
    /// and people should not see a diff over spacing).
    pub fn unit(text: &str) -> Self {
        let mut out = String::with_capacity(text.len() + 16);
        let mut prev: Option<&str> = None;
        for line in text.trim_end().lines().map(str::trim_end) {
            let blank = line.is_empty();
            if blank && prev.is_none_or(str::is_empty) {
                continue;
            }
            if line.starts_with('[') && prev.is_some_and(|p| !p.is_empty() && !p.starts_with('#')) {
                out.push('\n');
            }
            out.push_str(line);
            out.push('\n');
            prev = Some(line);
        }
        Content::Unit(out)
    }

    /// The text diffs are made of: YAML for objects, the file for units.
    pub fn text(&self) -> String {
        match self {
            Content::Kube(v) => to_yaml(v),
            Content::Unit(s) => s.clone(),
        }
    }

    /// The kube object, if one.
    pub fn as_kube(&self) -> Option<&Value> {
        match self {
            Content::Kube(v) => Some(v),
            Content::Unit(_) => None,
        }
    }
}

/// One object labctl wants to exist.
#[derive(Debug, Clone)]
pub struct DesiredObject {
    /// Its id.
    pub id: ResourceId,
    /// Component that rendered it.
    pub component: String,
    /// Template that rendered it.
    pub template: String,
    /// Its content.
    pub content: Content,
    /// Unit only: reload rather than restart when it changes.
    pub reload_on_change: bool,
}

/// The whole desired state, keyed and ordered by id.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// Objects by id.
    pub objects: BTreeMap<ResourceId, DesiredObject>,
}

impl Desired {
    /// Keep only the objects of `plane` (all of them when `None`).
    pub fn retain_plane(&mut self, plane: Option<Plane>) {
        if let Some(p) = plane {
            self.objects.retain(|id, _| id.plane() == p);
        }
    }
}

/// Recursively sort map keys and drop null members, so that key order and `x: null` versus an
/// absent `x` never show as differences.
pub fn normalize(mut v: Value) -> Value {
    // In place: every desired and live object passes through here, and rebuilding each map
    // was a large part of a big plan's time.
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.retain(|_, v| !v.is_null());
                m.values_mut().for_each(walk);
                // Maps ordered by insertion (serde_json's `preserve_order`) are sorted here;
                // sorted maps stay as they are.
                m.sort_keys();
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// YAML text of an object, block style, as diffs and `render` show it.
pub fn to_yaml(v: &Value) -> String {
    // Values are plain JSON data, which always serialises.
    serde_saphyr::to_string(v).expect("JSON values serialise to YAML")
}

/// The first line of every unit file labctl writes; it is how ownership is recognised.
pub fn unit_marker(stack: &str) -> String {
    format!("# Managed by labctl (stack: {stack}). Local edits are overwritten by `labctl apply`.")
}

/// The stack that owns a unit file, read from its marker line.
pub fn unit_owner(text: &str) -> Option<&str> {
    let first = text.lines().next()?;
    let rest = first.strip_prefix("# Managed by labctl (stack: ")?;
    rest.split_once(')').map(|(name, _)| name)
}

/// Whether objects of a kind live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindScope {
    /// In a namespace (the stack's, unless the manifest names one).
    Namespaced,
    /// Cluster-wide: a manifest of this kind must not name a namespace.
    Cluster,
}

/// How apply tells that a workload has rolled out (kubectl rollout status' rules per kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutRule {
    /// Updated and available replicas, and no old replicas left; fails past its progress deadline.
    Deployment,
    /// Ready and updated replicas (minus the partition), and the update revision current.
    StatefulSet,
    /// Updated and available pods on every node it is scheduled to.
    DaemonSet,
}

/// Everything labctl knows about one Kubernetes kind. [`KINDS`] is the one table: rendering,
/// observing, diffing, apply order, waits, pruning guards and redaction all read it, so adding a
/// kind is one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindSpec {
    /// The kind, as `Deployment`.
    pub kind: &'static str,
    /// Namespaced or cluster-wide.
    pub scope: KindScope,
    /// Workloads: changing the pod template rolls pods, and apply waits for the rollout by this
    /// rule.
    pub rollout: Option<RolloutRule>,
    /// JSON pointers the API server refuses to change in place: a change to one is a replace.
    pub immutable: &'static [&'static str],
    /// Whether `immutable: true` on the object freezes its data (ConfigMap, Secret).
    pub immutable_flag: bool,
    /// Apply order, lower first (deletions run in reverse): namespaces, definitions, accounts,
    /// configuration, storage, services, then workloads.
    pub tier: u8,
    /// Deleting an object of this kind loses data: it needs `--prune-volumes`, and it is never
    /// replaced.
    pub holds_data: bool,
    /// Fields whose every value is sensitive (a Secret's `data`): plans mark them, views redact.
    pub sensitive: &'static [&'static str],
    /// The apiVersion to LIST on every observation, even when the stack renders none of this
    /// kind (so that the last one, removed from the stack, is still found and pruned).
    pub always_observed: Option<&'static str>,
}

const fn spec(kind: &'static str, tier: u8) -> KindSpec {
    KindSpec {
        kind,
        scope: KindScope::Namespaced,
        rollout: None,
        immutable: &[],
        immutable_flag: false,
        tier,
        holds_data: false,
        sensitive: &[],
        always_observed: None,
    }
}

const fn cluster(kind: &'static str, tier: u8) -> KindSpec {
    KindSpec {
        scope: KindScope::Cluster,
        ..spec(kind, tier)
    }
}

/// Every kind labctl knows something about. Kinds not listed are namespaced, tier 6, and
/// nothing else.
pub const KINDS: &[KindSpec] = &[
    KindSpec {
        holds_data: true, // deleting it deletes every claim in it
        always_observed: Some("v1"),
        ..cluster("Namespace", 0)
    },
    cluster("CustomResourceDefinition", 1),
    KindSpec {
        always_observed: Some("v1"),
        ..spec("ServiceAccount", 2)
    },
    spec("Role", 2),
    spec("RoleBinding", 2),
    cluster("ClusterRole", 2),
    cluster("ClusterRoleBinding", 2),
    KindSpec {
        immutable_flag: true,
        always_observed: Some("v1"),
        ..spec("ConfigMap", 3)
    },
    KindSpec {
        immutable_flag: true,
        sensitive: &["/data", "/stringData"],
        always_observed: Some("v1"),
        ..spec("Secret", 3)
    },
    KindSpec {
        immutable: &[
            "/spec/storageClassName",
            "/spec/accessModes",
            "/spec/volumeMode",
        ],
        holds_data: true,
        always_observed: Some("v1"),
        ..spec("PersistentVolumeClaim", 4)
    },
    cluster("PersistentVolume", 4),
    cluster("StorageClass", 4),
    KindSpec {
        immutable: &["/spec/clusterIP"],
        always_observed: Some("v1"),
        ..spec("Service", 5)
    },
    cluster("PriorityClass", 6),
    cluster("IngressClass", 6),
    KindSpec {
        rollout: Some(RolloutRule::Deployment),
        immutable: &["/spec/selector"],
        always_observed: Some("apps/v1"),
        ..spec("Deployment", 7)
    },
    KindSpec {
        rollout: Some(RolloutRule::StatefulSet),
        immutable: &[
            "/spec/selector",
            "/spec/volumeClaimTemplates",
            "/spec/serviceName",
            "/spec/podManagementPolicy",
        ],
        always_observed: Some("apps/v1"),
        ..spec("StatefulSet", 7)
    },
    KindSpec {
        rollout: Some(RolloutRule::DaemonSet),
        immutable: &["/spec/selector"],
        always_observed: Some("apps/v1"),
        ..spec("DaemonSet", 7)
    },
    KindSpec {
        immutable: &["/spec/selector", "/spec/template"],
        ..spec("Job", 7)
    },
    spec("CronJob", 7),
    spec("ReplicaSet", 7),
    spec("Pod", 7),
];

/// What labctl knows about `kind` (the defaults for a kind not in [`KINDS`]).
pub fn kind_spec(kind: &str) -> &'static KindSpec {
    const OTHER: KindSpec = spec("", 6);
    KINDS.iter().find(|k| k.kind == kind).unwrap_or(&OTHER)
}

/// The id of a kube object (as the server returns it, or rendered).
pub fn kube_id(obj: &Value) -> Option<ResourceId> {
    let s = |p: &str| obj.at(p).and_then(Value::as_str).map(str::to_string);
    Some(ResourceId::Kube {
        namespace: s("/metadata/namespace").filter(|n| !n.is_empty()),
        kind: s("/kind")?,
        name: s("/metadata/name")?,
        api_version: s("/apiVersion")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_nulls_do_not_matter() {
        let a = Content::kube(json!({"b": 1, "a": {"y": null, "x": [ {"d": 1, "c": 2} ]}}));
        let b = Content::kube(json!({"a": {"x": [ {"c": 2, "d": 1} ]}, "b": 1}));
        assert_eq!(a, b);
        assert_eq!(a.text(), b.text());
    }

    #[test]
    fn unit_whitespace_does_not_matter() {
        assert_eq!(
            Content::unit("[Unit]  \nA=b\n\n\n"),
            Content::unit("[Unit]\nA=b")
        );
    }

    #[test]
    fn marker_round_trips() {
        assert_eq!(
            unit_owner(&format!("{}\n[Unit]\n", unit_marker("lab"))),
            Some("lab")
        );
        assert_eq!(unit_owner("[Unit]\n"), None);
    }
}
