//! The Kubernetes side of planning, all pure: what of a live object labctl compares (its own
//! managed fields plus the fields it wants), how desired objects are put in the form the server
//! stores, which kinds are observed, and which deletions need `--prune-volumes`.
//!
//! The comparison follows server-side apply's own model. The API server records, per field
//! manager, the set of fields each one applied (`metadata.managedFields`, `FieldsV1`). labctl
//! compares the desired object with the live object *projected* onto the union of
//! - the fields labctl's entry owns (so a field labctl used to set and no longer does shows as
//!   removed), and
//! - the fields present in the desired object (so a field another manager changed shows).
//!
//! Everything else (status, resourceVersion, uid, server defaults, controllers' annotations) is
//! outside the projection and can never show as a change.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::{Action, Body, Change, DryRunAnswer, Guard, Live, LiveObject, Plan};
pub use crate::observed::{DryRun, DryRunError, FIELD_MANAGER, Observed};
use crate::resource::{
    At, Content, Desired, KINDS, MANAGED_BY, MANAGER, PART_OF, ResourceId, RolloutRule, kind_spec,
};

/// The namespaces the stack's objects live in (an account limited to namespaces LISTs there).
pub fn namespaces_of(desired: &Desired) -> BTreeSet<String> {
    desired
        .objects
        .keys()
        .filter_map(|id| match id {
            ResourceId::Kube {
                namespace: Some(ns),
                ..
            } => Some(ns.clone()),
            _ => None,
        })
        .collect()
}

/// The OpenAPI v3 group-version paths (`api/v1`, `apis/apps/v1`) of apiVersions: the
/// documents that say how the lists of those objects merge.
pub fn openapi_paths<'a>(api_versions: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    api_versions
        .into_iter()
        .map(|v| {
            if v.contains('/') {
                format!("apis/{v}")
            } else {
                format!("api/{v}")
            }
        })
        .collect()
}

/// The ApplySet parent's own label: its id (see [`applyset_id`]).
pub const APPLYSET_ID: &str = "applyset.kubernetes.io/id";
/// The ApplySet parent's annotation naming the tool that manages it, as `labctl/v0.1.0`.
pub const APPLYSET_TOOLING: &str = "applyset.kubernetes.io/tooling";
/// The ApplySet parent's annotation listing the group-kinds of its members, as
/// `ConfigMap,Deployment.apps` (sorted, comma-separated).
pub const APPLYSET_GROUP_KINDS: &str = "applyset.kubernetes.io/contains-group-kinds";
/// The ApplySet parent's annotation listing the namespaces of its members besides its own.
pub const APPLYSET_NAMESPACES: &str = "applyset.kubernetes.io/additional-namespaces";

/// What a stack has in the cluster, as its ApplySet-style parent records it: every group-kind
/// (`Deployment.apps`, `ConfigMap`) and namespace of its objects. Planning lists these kinds
/// too, so an object of a kind the stack no longer renders is still found and pruned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Group-kinds, as Kubernetes writes them (`Kind.group`, `Kind` for the core group).
    pub group_kinds: BTreeSet<String>,
    /// Namespaces of namespaced members.
    pub namespaces: BTreeSet<String>,
}

/// The inventory for apply: where its parent is, what the cluster holds now, and what the
/// plan leaves there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryPlan {
    /// The parent object (a ConfigMap in the stack's namespace).
    pub parent: ResourceId,
    /// What the parent records now; `None` when there is none yet.
    pub stored: Option<Inventory>,
    /// What it records once the plan is applied.
    pub wanted: Inventory,
}

/// `Kind.group`, or `Kind` for the core group (Kubernetes' `GroupKind.String()`).
pub fn group_kind(api_version: &str, kind: &str) -> String {
    match api_version.rsplit_once('/') {
        Some((group, _)) => format!("{kind}.{group}"),
        None => kind.to_string(),
    }
}

impl Inventory {
    /// What the parent `obj` records (its annotations); its own namespace counts as one.
    pub fn read(obj: &Value) -> Self {
        let list = |key: &str| -> BTreeSet<String> {
            obj.at("/metadata/annotations")
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let mut namespaces = list(APPLYSET_NAMESPACES);
        if let Some(ns) = obj.at("/metadata/namespace").and_then(Value::as_str) {
            namespaces.insert(ns.to_string());
        }
        Inventory {
            group_kinds: list(APPLYSET_GROUP_KINDS),
            namespaces,
        }
    }

    /// What the cluster holds of the stack once `plan` is applied: every kube object it keeps
    /// (created, changed, left as is, kept from pruning), not what it deletes.
    pub fn after(plan: &Plan) -> Self {
        let mut inv = Inventory::default();
        for c in &plan.changes {
            if c.action == Action::Delete {
                continue;
            }
            if let ResourceId::Kube {
                namespace,
                kind,
                api_version,
                ..
            } = &c.id
            {
                inv.group_kinds.insert(group_kind(api_version, kind));
                if let Some(ns) = namespace {
                    inv.namespaces.insert(ns.clone());
                }
            }
        }
        inv
    }

    /// Both together.
    pub fn union(&self, other: &Inventory) -> Self {
        Inventory {
            group_kinds: self
                .group_kinds
                .union(&other.group_kinds)
                .cloned()
                .collect(),
            namespaces: self.namespaces.union(&other.namespaces).cloned().collect(),
        }
    }
}

/// The id of a stack's inventory parent: ConfigMap `labctl-<stack>` in the stack's namespace.
pub fn inventory_parent(stack: &str, namespace: &str) -> ResourceId {
    ResourceId::Kube {
        namespace: Some(namespace.to_string()),
        kind: "ConfigMap".into(),
        name: format!("labctl-{stack}"),
        api_version: "v1".into(),
    }
}

/// An ApplySet's id, as the ApplySet specification (KEP-3659) derives it from its parent:
/// `applyset-` + unpadded URL-safe base64 of the SHA-256 of `<name>.<namespace>.<kind>.<group>`
/// + `-v1`.
pub fn applyset_id(parent: &ResourceId) -> String {
    use sha2::Digest as _;
    let ResourceId::Kube {
        namespace,
        kind,
        name,
        api_version,
    } = parent
    else {
        return String::new();
    };
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let key = format!(
        "{name}.{}.{kind}.{group}",
        namespace.as_deref().unwrap_or_default()
    );
    let hash = sha2::Sha256::digest(key.as_bytes());
    format!(
        "applyset-{}-v1",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash)
    )
}

/// The parent object recording `inv`, as apply writes it. It carries `managed-by=labctl` but
/// not the stack's `part-of` label: it is bookkeeping, never a change in a plan.
pub fn inventory_object(parent: &ResourceId, inv: &Inventory) -> Value {
    let ResourceId::Kube {
        namespace, name, ..
    } = parent
    else {
        return Value::Null;
    };
    let others: Vec<&str> = inv
        .namespaces
        .iter()
        .filter(|n| Some(*n) != namespace.as_ref())
        .map(String::as_str)
        .collect();
    let kinds: Vec<&str> = inv.group_kinds.iter().map(String::as_str).collect();
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                MANAGED_BY: MANAGER,
                APPLYSET_ID: applyset_id(parent),
            },
            "annotations": {
                APPLYSET_TOOLING: format!("labctl/v{}", env!("CARGO_PKG_VERSION")),
                APPLYSET_GROUP_KINDS: kinds.join(","),
                APPLYSET_NAMESPACES: others.join(","),
            }
        }
    })
}

/// The label selector that finds this stack's objects.
pub fn selector(stack: &str) -> String {
    format!("{MANAGED_BY}={MANAGER},{PART_OF}={stack}")
}

/// Whether a live object carries this stack's ownership labels.
pub fn owned_by(obj: &Value, stack: &str) -> bool {
    let labels = obj.at("/metadata/labels");
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    label(MANAGED_BY) == Some(MANAGER) && label(PART_OF) == Some(stack)
}

/// The (apiVersion, kind) pairs to LIST: the desired set's kinds, and every kind whose
/// [`crate::resource::KindSpec::always_observed`] is set, so that the last object of such a kind,
/// removed from the stack, is still found and pruned. (An object of another kind whose last
/// template is removed is no longer seen: delete it with the component still present, or mark
/// its kind in [`KINDS`].)
pub fn kinds_to_observe(desired: &Desired) -> BTreeSet<(String, String)> {
    let mut kinds: BTreeSet<(String, String)> = KINDS
        .iter()
        .filter_map(|k| Some((k.always_observed?.to_string(), k.kind.to_string())))
        .collect();
    for id in desired.objects.keys() {
        if let ResourceId::Kube {
            kind, api_version, ..
        } = id
        {
            kinds.insert((api_version.clone(), kind.clone()));
        }
    }
    kinds
}

/// A desired object in the form the server stores it: a Secret's `stringData` becomes base64
/// `data` (the server converts it on write and only ever returns `data`), so that comparison is
/// like with like and labctl owns `data` keys, whose removal the server then honours.
pub fn prepare(obj: &mut Value) {
    if obj.get("kind").and_then(Value::as_str) != Some("Secret") {
        return;
    }
    let Some(m) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(sd)) = m.remove("stringData") else {
        return;
    };
    let data = m.entry("data").or_insert_with(|| json!({}));
    if let Some(data) = data.as_object_mut() {
        for (k, v) in sd {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            data.insert(
                k,
                json!(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
    // Content is kept normalized (keys sorted); only such a Secret needs it again.
    *obj = crate::resource::normalize(std::mem::take(obj));
}

/// Put every kube object of a desired set in stored form (see [`prepare`]), in place: only a
/// Secret with `stringData` changes.
pub fn prepare_all(desired: &mut Desired) {
    for o in desired.objects.values_mut() {
        if let Content::Kube(v) = &mut o.content {
            prepare(v);
        }
    }
}

/// Whether a `managedFields` entry is labctl's own server-side apply of the object.
fn is_labctl_apply(e: &Value) -> bool {
    e.get("manager").and_then(Value::as_str) == Some(FIELD_MANAGER)
        && e.get("operation").and_then(Value::as_str) == Some("Apply")
        && e.get("subresource").is_none_or(|s| s.as_str() == Some(""))
}

/// The `FieldsV1` set labctl's `Apply` entry owns on a live object, if any.
pub fn labctl_fields(live: &Value) -> Option<&Value> {
    live.at("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| is_labctl_apply(e))
        .and_then(|e| e.get("fieldsV1"))
}

/// Metadata the server sets: never compared, whatever the field sets say.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// How the API server merges a list in a server-side apply (`x-kubernetes-list-type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole by whoever applies it.
    Atomic,
    /// A set of scalars: each value is owned on its own.
    Set,
    /// A list of objects merged by these key fields (`x-kubernetes-list-map-keys`): each item
    /// is owned on its own.
    Map(Vec<String>),
}

/// Where [`ListTypes`] came from, for `-v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListTypesSource {
    /// The server's own OpenAPI v3 documents.
    Server,
    /// The table recorded from a real kube-apiserver 1.36, compiled in.
    Compiled,
}

/// The list merge types of each kind, by path (dot-joined field names; a list's items add no
/// segment: `spec.template.spec.containers.ports`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListTypes {
    by_kind: BTreeMap<(String, String), BTreeMap<String, ListType>>,
}

fn list_type(name: &str, keys: impl IntoIterator<Item = String>) -> Option<ListType> {
    match name {
        "atomic" => Some(ListType::Atomic),
        "set" => Some(ListType::Set),
        "map" => Some(ListType::Map(keys.into_iter().collect())),
        _ => None,
    }
}

impl ListTypes {
    /// The recorded table of the built-in kinds (core/v1, apps/v1 and the other kinds labctl
    /// knows), as a real kube-apiserver 1.36 serves it.
    pub fn compiled() -> Self {
        let mut by_kind: BTreeMap<(String, String), BTreeMap<String, ListType>> = BTreeMap::new();
        for (group, kind, path, lt, keys) in super::list_types::COMPILED {
            if let Some(t) = list_type(lt, keys.iter().map(|k| k.to_string())) {
                by_kind
                    .entry((group.to_string(), kind.to_string()))
                    .or_default()
                    .insert(path.to_string(), t);
            }
        }
        ListTypes { by_kind }
    }

    /// The list types of every kind an OpenAPI v3 group-version document (`/openapi/v3/apis/
    /// apps/v1`) describes, walked from each schema carrying `x-kubernetes-group-version-kind`.
    pub fn from_openapi(doc: &Value) -> Self {
        let Some(schemas) = doc.at("/components/schemas").and_then(Value::as_object) else {
            return ListTypes::default();
        };
        let mut by_kind = BTreeMap::new();
        for (name, schema) in schemas {
            let Some(gvks) = schema
                .get("x-kubernetes-group-version-kind")
                .and_then(Value::as_array)
            else {
                continue;
            };
            let mut paths = BTreeMap::new();
            walk_schema(schemas, schema, "", &mut vec![name.as_str()], &mut paths);
            for gvk in gvks {
                let s = |k: &str| gvk.get(k).and_then(Value::as_str).unwrap_or_default();
                by_kind.insert(
                    (s("group").to_string(), s("kind").to_string()),
                    paths.clone(),
                );
            }
        }
        ListTypes { by_kind }
    }

    /// `self`, with the kinds `other` does not describe taken from `fallback`.
    pub fn or(mut self, fallback: &ListTypes) -> Self {
        for (k, v) in &fallback.by_kind {
            self.by_kind.entry(k.clone()).or_insert_with(|| v.clone());
        }
        self
    }

    /// Whether any kind is described.
    pub fn is_empty(&self) -> bool {
        self.by_kind.is_empty()
    }

    /// The list types of one kind.
    fn of(&self, api_version: &str, kind: &str) -> Option<&BTreeMap<String, ListType>> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        self.by_kind.get(&(group.to_string(), kind.to_string()))
    }
}

/// Follow `$ref` and a single-element `allOf` (how OpenAPI v3 wraps a reference with a
/// default) to the schema meant.
fn resolve<'a>(schemas: &'a Map<String, Value>, s: &'a Value) -> (&'a Value, Option<&'a str>) {
    let reference = s.get("$ref").or_else(|| {
        s.get("allOf")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 1)
            .and_then(|a| a[0].get("$ref"))
    });
    match reference
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        Some(name) => (schemas.get(name).unwrap_or(s), Some(name)),
        None => (s, None),
    }
}

fn walk_schema<'a>(
    schemas: &'a Map<String, Value>,
    schema: &'a Value,
    path: &str,
    seen: &mut Vec<&'a str>,
    out: &mut BTreeMap<String, ListType>,
) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (field, prop) in props {
        let p = if path.is_empty() {
            field.clone()
        } else {
            format!("{path}.{field}")
        };
        let mut target = prop;
        if prop.get("type").and_then(Value::as_str) == Some("array") {
            let keys: Vec<String> = prop
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if let Some(t) = prop
                .get("x-kubernetes-list-type")
                .and_then(Value::as_str)
                .and_then(|n| list_type(n, keys))
            {
                out.insert(p.clone(), t);
            }
            match prop.get("items") {
                Some(items) => target = items,
                None => continue,
            }
        }
        let (inner, name) = resolve(schemas, target);
        if name.is_some_and(|n| seen.contains(&n)) || seen.len() > 16 {
            continue;
        }
        if let Some(n) = name {
            seen.push(n);
        }
        walk_schema(schemas, inner, &p, seen, out);
        if name.is_some() {
            seen.pop();
        }
    }
}

/// What labctl compares of a live object: its own managed fields plus the fields `desired` has
/// (see the module docs), without server-set metadata and status. Lists are compared by
/// position unless labctl's own field set keys them; [`comparable_by`] knows list types.
pub fn comparable(live: &Value, desired: Option<&Value>) -> Value {
    comparable_by(live, desired, None).0
}

/// [`comparable`], with lists compared the way the server merges them (`types`): a keyed
/// list's items are matched by key and a set's by value, and an item another manager owns that
/// labctl does not want is left out (the merge keeps it). Also returns a note for each such
/// list, as ``spec.ports` is merged by key (port, protocol): adds port 9000 `api`; port 9999
/// `api` owned by `kubectl-patch` stays``.
pub fn comparable_by(
    live: &Value,
    desired: Option<&Value>,
    types: Option<&ListTypes>,
) -> (Value, Vec<String>) {
    let fs = labctl_fields(live);
    // Every other manager's field set: who keeps an item labctl does not want.
    let others: Vec<(&str, &Value)> = live
        .at("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter(|e| !is_labctl_apply(e))
                .filter_map(|e| Some((e.get("manager")?.as_str()?, e.get("fieldsV1")?)))
                .collect()
        })
        .unwrap_or_default();
    let s = |k: &str| live.get(k).and_then(Value::as_str).unwrap_or_default();
    let mut walk = Walk {
        types: types.and_then(|t| t.of(s("apiVersion"), s("kind"))),
        notes: Vec::new(),
    };
    let mut out = project(live, fs, desired, "", &others, &mut walk).unwrap_or_else(|| json!({}));
    if let Some(m) = out.as_object_mut() {
        m.remove("status");
        for k in ["apiVersion", "kind"] {
            if let Some(v) = live.get(k) {
                m.insert(k.into(), v.clone());
            }
        }
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in SERVER_METADATA {
                meta.remove(*k);
            }
        }
    }
    (crate::resource::normalize(out), walk.notes)
}

/// What a projection knows beyond the values: the object's list types, and the notes it makes.
struct Walk<'a> {
    types: Option<&'a BTreeMap<String, ListType>>,
    notes: Vec<String>,
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// The field sets of other managers one level down, at object field `fs_key` (`f:<field>`).
fn others_at<'a>(others: &[(&'a str, &'a Value)], fs_key: &str) -> Vec<(&'a str, &'a Value)> {
    others
        .iter()
        .filter_map(|(m, f)| Some((*m, f.get(fs_key)?)))
        .collect()
}

/// The field sets of other managers for list item `item` (at `index`).
fn others_item<'a>(
    others: &OthersElements<'a>,
    item: &Value,
    index: usize,
) -> Vec<(&'a str, &'a Value)> {
    others
        .iter()
        .filter_map(|(m, elements)| {
            let (_, sub) = elements.iter().find(|(e, _)| e.matches(item, index))?;
            Some((*m, *sub))
        })
        .collect()
}

/// `live` restricted to the field set `fs` (`FieldsV1`: `f:`, `k:`, `v:`, `i:` children; a leaf
/// owns its whole value) united with the shape of `want`.
fn project(
    live: &Value,
    fs: Option<&Value>,
    want: Option<&Value>,
    path: &str,
    others: &[(&str, &Value)],
    walk: &mut Walk<'_>,
) -> Option<Value> {
    let fs_children = fs.and_then(Value::as_object).filter(|m| {
        // `{}` or only `.`: this node is owned as a whole.
        m.keys().any(|k| k != ".")
    });
    let leaf = fs.is_some() && fs_children.is_none();
    match live {
        Value::Object(lm) => {
            if leaf && want.is_none() {
                return Some(live.clone());
            }
            let wm = want.and_then(Value::as_object);
            let mut out = Map::new();
            // Most live fields (status, metadata the server keeps) are neither owned nor wanted:
            // they are passed over before any path or field set is built for them.
            let mut fs_key = String::new();
            for (k, lv) in lm {
                fs_key.clear();
                fs_key.push_str("f:");
                fs_key.push_str(k);
                let child_fs = fs_children.and_then(|c| c.get(fs_key.as_str()));
                let child_want = wm.and_then(|w| w.get(k));
                // An atomic map labctl owns is compared whole when labctl no longer wants it,
                // by the desired shape otherwise (so server defaults inside it never show).
                if leaf {
                    if let Some(w) = child_want
                        && let Some(v) = project(lv, None, Some(w), &join(path, k), &[], walk)
                    {
                        out.insert(k.clone(), v);
                    }
                    continue;
                }
                if child_fs.is_none() && child_want.is_none() {
                    continue;
                }
                let child_path = join(path, k);
                let child_others = others_at(others, &fs_key);
                if let Some(v) = project(lv, child_fs, child_want, &child_path, &child_others, walk)
                {
                    out.insert(k.clone(), v);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => {
            if leaf && want.is_none() {
                return Some(live.clone());
            }
            let merged = walk.types.and_then(|t| t.get(path)).cloned();
            match merged {
                Some(ListType::Map(keys)) if !keys.is_empty() => Some(project_merged(
                    items,
                    fs_children,
                    want,
                    path,
                    others,
                    walk,
                    &keys,
                )),
                Some(ListType::Set) => Some(project_merged(
                    items,
                    fs_children,
                    want,
                    path,
                    others,
                    walk,
                    &[],
                )),
                _ => project_positional(items, fs_children, want, path, others, walk),
            }
        }
        scalar => Some(scalar.clone()),
    }
}

/// A list the server merges by position or as a whole (atomic), or of unknown type: items are
/// matched by labctl's `k:`/`v:`/`i:` entries when it has them, by position otherwise.
fn project_positional(
    items: &[Value],
    fs_children: Option<&Map<String, Value>>,
    want: Option<&Value>,
    path: &str,
    others: &[(&str, &Value)],
    walk: &mut Walk<'_>,
) -> Option<Value> {
    let wl = want.and_then(Value::as_array);
    let mine = fs_children.map(elements).unwrap_or_default();
    let keyed = !mine.is_empty();
    let others = others_elements(others);
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let (item_fs, item_want) = if keyed {
            let found = mine.iter().find(|(e, _)| e.matches(item, i));
            let w = match found {
                Some((e, _)) => wl.and_then(|w| {
                    w.iter()
                        .enumerate()
                        .find(|(j, x)| e.matches_want(x, *j))
                        .map(|(_, x)| x)
                }),
                None => wl.and_then(|w| w.get(i)),
            };
            (found.map(|(_, f)| *f), w)
        } else {
            (None, wl.and_then(|w| w.get(i)))
        };
        if item_fs.is_none() && item_want.is_none() {
            // Beyond the desired list and not labctl's: a real difference in length
            // when the list is wanted at all.
            if wl.is_some() && !keyed {
                out.push(item.clone());
            }
            continue;
        }
        let item_others = others_item(&others, item, i);
        if let Some(v) = project(item, item_fs, item_want, path, &item_others, walk) {
            out.push(v);
        }
    }
    Some(Value::Array(out))
}

/// Whether a desired list item is the live item `item` by `keys` (a set: by value). A key the
/// desired item leaves out (a port's `protocol`) is the server's default: it matches.
fn same_item(keys: &[String], want: &Value, item: &Value) -> bool {
    if keys.is_empty() {
        return want == item;
    }
    keys.iter()
        .all(|k| want.get(k).is_none_or(|w| item.get(k) == Some(w)))
        && keys.iter().any(|k| want.get(k).is_some())
}

/// A list the server merges item by item (`map` by `keys`, `set` by value when `keys` is
/// empty): each live item is compared with the desired item of the same key. An item labctl
/// neither owns nor wants is another manager's: the merge keeps it, so it is left out of the
/// comparison and said in a note.
fn project_merged(
    items: &[Value],
    fs_children: Option<&Map<String, Value>>,
    want: Option<&Value>,
    path: &str,
    others: &[(&str, &Value)],
    walk: &mut Walk<'_>,
    keys: &[String],
) -> Value {
    let wl: &[Value] = want.and_then(Value::as_array).map_or(&[], Vec::as_slice);
    // (position in the desired list, or after it; projected item)
    let mut out: Vec<(usize, Value)> = Vec::new();
    let mut matched = vec![false; wl.len()];
    let mut kept = Vec::new();
    let mut removed = Vec::new();
    let mine = fs_children.map(elements).unwrap_or_default();
    let others = others_elements(others);
    for (i, item) in items.iter().enumerate() {
        let item_fs = mine
            .iter()
            .find(|(e, _)| e.matches(item, i))
            .map(|(_, f)| *f);
        let want_at = wl
            .iter()
            .enumerate()
            .find(|(j, w)| !matched[*j] && same_item(keys, w, item))
            .map(|(j, _)| j);
        let item_others = others_item(&others, item, i);
        match (want_at, item_fs) {
            (Some(j), _) => {
                matched[j] = true;
                if let Some(v) = project(item, item_fs, Some(&wl[j]), path, &item_others, walk) {
                    out.push((j, v));
                }
            }
            (None, Some(f)) => {
                removed.push(describe(path, keys, item));
                if let Some(v) = project(item, Some(f), None, path, &item_others, walk) {
                    out.push((wl.len() + i, v));
                }
            }
            (None, None) => {
                let owners: Vec<String> =
                    item_others.iter().map(|(m, _)| format!("`{m}`")).collect();
                let by = if owners.is_empty() {
                    String::new()
                } else {
                    format!(" owned by {}", owners.join(", "))
                };
                kept.push(format!("{}{by} stays", describe(path, keys, item)));
            }
        }
    }
    out.sort_by_key(|(at, _)| *at);
    if !kept.is_empty() {
        let added: Vec<String> = wl
            .iter()
            .zip(&matched)
            .filter(|(_, m)| !**m)
            .map(|(w, _)| format!("adds {}", describe(path, keys, w)))
            .collect();
        let how = if keys.is_empty() {
            "by value".to_string()
        } else {
            format!("by key ({})", keys.join(", "))
        };
        let mut parts = added;
        parts.extend(removed.into_iter().map(|r| format!("removes {r}")));
        parts.extend(kept);
        walk.notes
            .push(format!("`{path}` is merged {how}: {}", parts.join("; ")));
    }
    Value::Array(out.into_iter().map(|(_, v)| v).collect())
}

/// A list item in words: `port 9000 `api``, `container `sidecar``, `value `x``.
fn describe(path: &str, keys: &[String], item: &Value) -> String {
    let field = path.rsplit('.').next().unwrap_or(path);
    let singular = field.strip_suffix('s').unwrap_or(field);
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if keys.is_empty() {
        return format!("{singular} `{}`", text(item));
    }
    let mut words = vec![singular.to_string()];
    for k in keys.iter().filter(|k| *k != "name") {
        let Some(v) = item.get(k) else { continue };
        // TCP is the protocol every port has unless it says otherwise: not worth a word.
        if k == "protocol" && v == "TCP" {
            continue;
        }
        if k == singular {
            words.push(text(v));
        } else {
            words.push(format!("{k} {}", text(v)));
        }
    }
    if let Some(name) = item.get("name") {
        words.push(format!("`{}`", text(name)));
    }
    words.join(" ")
}

/// A `FieldsV1` list element (`k:{"name":"a"}`, `v:"x"`, `i:0`), parsed once per list rather
/// than once per item it is compared with.
enum Element {
    Keys(Map<String, Value>),
    Value(Value),
    Index(usize),
    Other,
}

impl Element {
    fn parse(pe: &str) -> Self {
        if let Some(keys) = pe.strip_prefix("k:") {
            match serde_json::from_str::<Value>(keys) {
                Ok(Value::Object(keys)) => Element::Keys(keys),
                _ => Element::Other,
            }
        } else if let Some(v) = pe.strip_prefix("v:") {
            serde_json::from_str::<Value>(v).map_or(Element::Other, Element::Value)
        } else if let Some(i) = pe.strip_prefix("i:") {
            i.parse().map_or(Element::Other, Element::Index)
        } else {
            Element::Other
        }
    }

    /// Whether this element is the live item `item` at `index`.
    fn matches(&self, item: &Value, index: usize) -> bool {
        match self {
            Element::Keys(keys) => keys.iter().all(|(k, v)| item.get(k) == Some(v)),
            Element::Value(v) => v == item,
            Element::Index(i) => *i == index,
            Element::Other => false,
        }
    }

    /// Like [`Element::matches`], for a desired item, which may leave defaulted key fields (a
    /// port's `protocol: TCP`) unset.
    fn matches_want(&self, item: &Value, index: usize) -> bool {
        match self {
            Element::Keys(keys) => keys.iter().all(|(k, v)| item.get(k).is_none_or(|x| x == v)),
            other => other.matches(item, index),
        }
    }
}

/// The list elements of a field set's children, parsed, with each one's field set.
fn elements(children: &Map<String, Value>) -> Vec<(Element, &Value)> {
    children
        .iter()
        .filter(|(pe, _)| pe.starts_with("k:") || pe.starts_with("v:") || pe.starts_with("i:"))
        .map(|(pe, f)| (Element::parse(pe), f))
        .collect()
}

/// Each other manager's list elements at one list.
type OthersElements<'a> = Vec<(&'a str, Vec<(Element, &'a Value)>)>;

fn others_elements<'a>(others: &[(&'a str, &'a Value)]) -> OthersElements<'a> {
    others
        .iter()
        .filter_map(|(m, f)| Some((*m, elements(f.as_object()?))))
        .collect()
}

/// Whether an object's kind holds data (see [`crate::resource::KindSpec::holds_data`]).
pub fn holds_data(id: &ResourceId) -> bool {
    id.kind().is_some_and(|k| kind_spec(k).holds_data)
}

/// The live set the diff compares with: each observed object projected onto what labctl
/// compares ([`comparable_by`], lists by `types`), with whether it carries this stack's labels;
/// and the notes on lists the merge keeps others' items in, by object.
pub fn live_set(
    observed: &BTreeMap<ResourceId, Value>,
    desired: &Desired,
    stack: &str,
    types: &ListTypes,
) -> (Live, BTreeMap<ResourceId, Vec<String>>) {
    type Projected = (ResourceId, LiveObject, Vec<String>);
    let one = |(id, raw): (&ResourceId, &Value)| -> Projected {
        let want = desired.objects.get(id).and_then(|o| o.content.as_kube());
        let (content, n) = comparable_by(raw, want, Some(types));
        let live = LiveObject {
            content: Content::kube(content),
            owned: owned_by(raw, stack),
            unit: None,
        };
        (id.clone(), live, n)
    };
    // Objects project independently: a large cluster's are split over the cores.
    let projected: Vec<Projected> = crate::par::map(observed.iter().collect(), 256, one);
    // In key order already: collected, the maps are built in bulk, not searched per insert.
    let mut notes = Vec::new();
    let mut objects = Vec::with_capacity(projected.len());
    for (id, live, n) in projected {
        if !n.is_empty() {
            notes.push((id.clone(), n));
        }
        objects.push((id, live));
    }
    let objects = objects.into_iter().collect();
    (Live { objects }, notes.into_iter().collect())
}

/// Add the merge notes of [`live_set`] to the changes that do something (an object that does
/// not change needs no explanation of how it would).
pub fn note_merges(plan: &mut Plan, notes: &BTreeMap<ResourceId, Vec<String>>) {
    for c in &mut plan.changes {
        if matches!(c.action, Action::Update | Action::Adopt)
            && let Some(n) = notes.get(&c.id)
        {
            c.notes.extend(n.iter().cloned());
        }
    }
}

/// Keep volumes and protected components: unless `prune_volumes`, the deletion of a PVC, or of
/// anything whose component stack.toml marks `protect`, becomes "left as is" with a note saying
/// which flag deletes it. A PVC is never replaced: that is left to apply to refuse, but the plan
/// says so.
pub fn keep_volumes(plan: &mut Plan, protected: &BTreeSet<String>, prune_volumes: bool) {
    for c in &mut plan.changes {
        if c.id.plane() != crate::stack::Plane::Kube {
            continue;
        }
        let guarded = holds_data(&c.id) || protected.contains(&c.component);
        if c.action == Action::Delete && guarded && !prune_volumes {
            c.action = Action::NoOp;
            c.after = c.before.clone();
            c.guards.clear();
            let why = if c.id.kind() == Some("Namespace") {
                "deleting it deletes every claim in it"
            } else if holds_data(&c.id) {
                "it holds data"
            } else {
                "its component is marked `protect`"
            };
            c.notes = vec![format!(
                "no longer rendered, but kept: {why}; `--prune-volumes` deletes it"
            )];
        }
        if c.action == Action::Replace && holds_data(&c.id) {
            c.notes.push(
                "a PersistentVolumeClaim is never replaced (its data would be lost): apply refuses; \
                 change it back, or move the data and delete the claim by hand"
                    .into(),
            );
            c.guards.push(Guard::ReplaceData);
        }
    }
}

/// Apply order of a kind (lower first); deletions run in the reverse order.
pub fn apply_rank(kind: &str) -> u8 {
    kind_spec(kind).tier
}

/// Whether change `c` needs change `on` to have been made first: its namespace, the definition
/// of its kind, or (for a workload) a ConfigMap, Secret, PersistentVolumeClaim or
/// ServiceAccount its pods use. Apply skips `c` when `on` failed: its pods would not start.
pub fn depends_on(c: &Change, on: &Change) -> bool {
    let (
        ResourceId::Kube {
            namespace,
            kind,
            api_version,
            ..
        },
        ResourceId::Kube {
            namespace: on_ns,
            kind: on_kind,
            name: on_name,
            ..
        },
    ) = (&c.id, &on.id)
    else {
        return false;
    };
    if on_kind == "Namespace" && namespace.as_ref() == Some(on_name) {
        return true;
    }
    let on_obj = on.after.as_ref().and_then(|b| b.content().as_kube());
    if on_kind == "CustomResourceDefinition" {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        return on_obj.is_some_and(|d| {
            d.at("/spec/group").and_then(Value::as_str) == Some(group)
                && d.at("/spec/names/kind").and_then(Value::as_str) == Some(kind.as_str())
        });
    }
    if on_ns != namespace {
        return false;
    }
    let Some(obj) = c.after.as_ref().and_then(|b| b.content().as_kube()) else {
        return false;
    };
    pod_refs(obj)
        .iter()
        .any(|(k, n)| k == on_kind && n == on_name)
}

/// The (kind, name) of what a workload's pods use in their namespace.
fn pod_refs(obj: &Value) -> Vec<(&'static str, String)> {
    let Some(pod) = obj
        .at("/spec/template/spec")
        .or_else(|| obj.at("/spec/jobTemplate/spec/template/spec"))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut add = |kind: &'static str, v: Option<&Value>| {
        if let Some(n) = v.and_then(Value::as_str) {
            out.push((kind, n.to_string()));
        }
    };
    add("ServiceAccount", pod.get("serviceAccountName"));
    let each = |p: &str| {
        pod.at(p)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for s in each("/imagePullSecrets") {
        add("Secret", s.get("name"));
    }
    for v in each("/volumes") {
        add("ConfigMap", v.at("/configMap/name"));
        add("Secret", v.at("/secret/secretName"));
        add(
            "PersistentVolumeClaim",
            v.at("/persistentVolumeClaim/claimName"),
        );
        for src in v
            .at("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            add("ConfigMap", src.at("/configMap/name"));
            add("Secret", src.at("/secret/name"));
        }
    }
    for list in ["/containers", "/initContainers"] {
        for c in each(list) {
            for e in c
                .get("envFrom")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                add("ConfigMap", e.at("/configMapRef/name"));
                add("Secret", e.at("/secretRef/name"));
            }
            for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                add("ConfigMap", e.at("/valueFrom/configMapKeyRef/name"));
                add("Secret", e.at("/valueFrom/secretKeyRef/name"));
            }
        }
    }
    out
}

/// Whether labctl waits for this kind to roll out.
pub fn is_workload(kind: &str) -> bool {
    kind_spec(kind).rollout.is_some()
}

/// Where a workload's rollout stands, read from its status (kubectl rollout status' rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// Observed, updated, ready and available at the current generation.
    Complete,
    /// Still going: progress text, and the unready condition (as `Available=False
    /// (MinimumReplicasUnavailable): ...`) or, without conditions, what is missing.
    Progressing {
        /// Counts, as `1/2 updated, 0/2 available`.
        progress: String,
        /// Why it is not done.
        condition: String,
    },
    /// It can no longer complete (a Deployment past its progress deadline).
    Failed(String),
}

/// The rollout state of a Deployment, StatefulSet or DaemonSet.
pub fn rollout(obj: &Value) -> Rollout {
    let n = |p: &str| obj.at(p).and_then(Value::as_i64);
    let generation = n("/metadata/generation").unwrap_or(0);
    let observed = n("/status/observedGeneration").unwrap_or(0);
    let conditions: Vec<&Value> = obj
        .at("/status/conditions")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let unready = || {
        conditions.iter().find(|c| c["status"] != "True").map(|c| {
            format!(
                "{}={} ({}): {}",
                c["type"].as_str().unwrap_or("?"),
                c["status"].as_str().unwrap_or("?"),
                c["reason"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or("")
            )
        })
    };
    let rule = kind_spec(obj["kind"].as_str().unwrap_or_default()).rollout;
    if observed < generation {
        return Rollout::Progressing {
            progress: "waiting for the controller".into(),
            condition: unready().unwrap_or_else(|| {
                format!("status.observedGeneration {observed} < metadata.generation {generation}")
            }),
        };
    }
    let (want, parts): (i64, Vec<(&str, i64)>) = match rule {
        Some(RolloutRule::Deployment) => {
            if let Some(c) = conditions
                .iter()
                .find(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
            {
                return Rollout::Failed(format!(
                    "Progressing=False (ProgressDeadlineExceeded): {}",
                    c["message"].as_str().unwrap_or("")
                ));
            }
            let want = n("/spec/replicas").unwrap_or(1);
            let total = n("/status/replicas").unwrap_or(0);
            let parts = vec![
                ("updated", n("/status/updatedReplicas").unwrap_or(0)),
                ("available", n("/status/availableReplicas").unwrap_or(0)),
            ];
            // Old replicas still running count against completion.
            if total > want {
                return Rollout::Progressing {
                    progress: format!("{} old replicas pending termination", total - want),
                    condition: unready()
                        .unwrap_or_else(|| format!("{total} replicas, {want} wanted")),
                };
            }
            (want, parts)
        }
        Some(RolloutRule::StatefulSet) => {
            let want = n("/spec/replicas").unwrap_or(1);
            let partition = n("/spec/updateStrategy/rollingUpdate/partition").unwrap_or(0);
            let rev_ok = obj.at("/status/updateRevision") == obj.at("/status/currentRevision")
                || partition > 0;
            let parts = vec![
                ("ready", n("/status/readyReplicas").unwrap_or(0)),
                (
                    "updated",
                    n("/status/updatedReplicas").unwrap_or(0) + partition.min(want),
                ),
            ];
            if !rev_ok && parts.iter().all(|(_, v)| *v >= want) {
                return Rollout::Progressing {
                    progress: "waiting for the update revision".into(),
                    condition: "status.currentRevision != status.updateRevision".into(),
                };
            }
            (want, parts)
        }
        Some(RolloutRule::DaemonSet) => {
            let want = n("/status/desiredNumberScheduled").unwrap_or(0);
            (
                want,
                vec![
                    ("updated", n("/status/updatedNumberScheduled").unwrap_or(0)),
                    ("available", n("/status/numberAvailable").unwrap_or(0)),
                ],
            )
        }
        None => return Rollout::Complete,
    };
    if parts.iter().all(|(_, v)| *v >= want) {
        return Rollout::Complete;
    }
    let progress = parts
        .iter()
        .map(|(what, v)| format!("{v}/{want} {what}"))
        .collect::<Vec<_>>()
        .join(", ");
    let condition = unready().unwrap_or_else(|| progress.clone());
    Rollout::Progressing {
        progress,
        condition,
    }
}

/// Check every kube change that writes with the server (`--server-dry-run`): a server-side
/// dry-run apply of its `after`, all at once (at most 16 in flight). What the server would
/// store is kept as [`DryRunAnswer::Stored`] (an update the server would not change anything
/// with becomes a no-op), a refusal as [`DryRunAnswer::Refused`]. A change the server cannot
/// judge yet (its namespace or its kind's definition is created by the same apply) gets a note.
/// `force` is `--force-conflicts`; adopting always takes ownership.
pub async fn check_with_server(
    plan: &mut Plan,
    server: &dyn DryRun,
    types: &ListTypes,
    force: bool,
) {
    use futures_util::StreamExt as _;
    let new_namespaces: BTreeSet<String> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Create && c.id.kind() == Some("Namespace"))
        .filter_map(|c| match &c.id {
            ResourceId::Kube { name, .. } => Some(name.clone()),
            ResourceId::Systemd { .. } | ResourceId::EnvFile { .. } => None,
        })
        .collect();
    let mut asks = Vec::new();
    for (i, c) in plan.changes.iter_mut().enumerate() {
        if c.id.plane() != crate::stack::Plane::Kube
            || !matches!(c.action, Action::Create | Action::Update | Action::Adopt)
        {
            continue;
        }
        if let ResourceId::Kube {
            namespace: Some(ns),
            ..
        } = &c.id
            && new_namespaces.contains(ns)
        {
            c.notes.push(format!(
                "not checked with the server: its namespace `{ns}` is created by this apply"
            ));
            continue;
        }
        if let Some(obj) = c.after.as_ref().and_then(|b| b.content().as_kube()) {
            asks.push((
                i,
                c.id.clone(),
                obj.clone(),
                force || c.action == Action::Adopt,
            ));
        }
    }
    let answers: Vec<(usize, Result<Value, DryRunError>)> = futures_util::stream::iter(asks)
        .map(|(i, id, obj, force)| async move { (i, server.dry_run(&id, &obj, force).await) })
        .buffer_unordered(16)
        .collect()
        .await;
    for (i, answer) in answers {
        let c = &mut plan.changes[i];
        let obj = c
            .after
            .as_ref()
            .and_then(|b| b.content().as_kube())
            .cloned();
        match answer {
            Ok(result) => {
                let (stored, _) = comparable_by(&result, obj.as_ref(), Some(types));
                let stored = Content::kube(stored);
                let unchanged = c.before.as_ref().map(|b| b.content()) == Some(&stored);
                if unchanged && c.action == Action::Update && c.impact.is_empty() {
                    // The server would store what is live: nothing to do.
                    c.action = Action::NoOp;
                    c.notes.clear();
                    c.before = None;
                    c.after = None;
                } else {
                    c.dry_run = Some(DryRunAnswer::Stored(Body::new(&c.id, stored)));
                }
            }
            Err(DryRunError::Refused(why)) => c.dry_run = Some(DryRunAnswer::Refused(why)),
            Err(DryRunError::Unchecked(why)) => {
                c.notes.push(format!("not checked with the server: {why}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live_cm() -> Value {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": "c", "namespace": "lab", "uid": "x", "resourceVersion": "7",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"a": "1", "other": "2"},
                "annotations": {"controller/rev": "3"},
                "managedFields": [
                    {"manager": "labctl", "operation": "Apply", "apiVersion": "v1",
                     "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:data": {"f:k1": {}, "f:old": {}}, "f:metadata": {"f:labels": {"f:a": {}}}}},
                    {"manager": "other", "operation": "Update", "apiVersion": "v1",
                     "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:data": {"f:theirs": {}}, "f:metadata": {"f:labels": {"f:other": {}}}}}
                ]
            },
            "data": {"k1": "v1", "old": "x", "theirs": "t"}
        })
    }

    #[test]
    fn projection_keeps_labctl_fields_and_desired_fields_only() {
        let want = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "lab", "labels": {"a": "1"}},
            "data": {"k1": "v1"}});
        let got = comparable(&live_cm(), Some(&want));
        assert_eq!(
            got,
            crate::resource::normalize(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": "lab", "labels": {"a": "1"}},
                "data": {"k1": "v1", "old": "x"}}))
        );
    }

    #[test]
    fn keyed_lists_project_by_key_and_skip_defaults() {
        let live = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "managedFields": [{"manager": "labctl", "operation": "Apply",
              "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}}}]},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1", "terminationMessagePath": "/dev/termination-log"}]}}}});
        let want = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}});
        assert_eq!(
            comparable(&live, Some(&want)),
            crate::resource::normalize(want)
        );
    }

    #[test]
    fn string_data_becomes_data() {
        let mut s =
            json!({"kind": "Secret", "stringData": {"p": "hunter2"}, "data": {"z": "eg=="}});
        prepare(&mut s);
        assert_eq!(
            s,
            json!({"kind": "Secret", "data": {"p": "aHVudGVyMg==", "z": "eg=="}})
        );
        assert_eq!(s["data"].as_object().unwrap().keys().next().unwrap(), "p");
    }

    #[test]
    fn rollout_reads_status() {
        let d = json!({"kind": "Deployment", "metadata": {"generation": 2},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1,
              "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "message": "no"}]}});
        assert!(matches!(rollout(&d), Rollout::Progressing { condition, .. }
            if condition.starts_with("Available=False (MinimumReplicasUnavailable)")));
        let mut done = d.clone();
        done["status"]["availableReplicas"] = json!(2);
        assert_eq!(rollout(&done), Rollout::Complete);
    }

    #[test]
    fn a_field_labctl_no_longer_sets_is_compared_and_shows() {
        let want = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "lab", "labels": {"a": "1"}},
            "data": {"k1": "v1"}});
        let got = comparable(&live_cm(), Some(&want));
        assert_ne!(got, crate::resource::normalize(want));
        assert_eq!(got["data"]["old"], "x");
        assert!(got["data"].get("theirs").is_none());
        assert!(got["metadata"].get("annotations").is_none());
    }

    #[test]
    fn statefulsets_and_daemonsets_roll_out_by_their_own_counts() {
        let sts = json!({"kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2,
                       "currentRevision": "a", "updateRevision": "b"}});
        assert!(matches!(rollout(&sts), Rollout::Progressing { .. }));
        let mut done = sts.clone();
        done["status"]["currentRevision"] = json!("b");
        assert_eq!(rollout(&done), Rollout::Complete);
        let ds = json!({"kind": "DaemonSet", "metadata": {"generation": 3},
            "status": {"observedGeneration": 3, "desiredNumberScheduled": 2,
                       "updatedNumberScheduled": 2, "numberAvailable": 1}});
        assert!(
            matches!(rollout(&ds), Rollout::Progressing { progress, .. } if progress == "2/2 updated, 1/2 available")
        );
        let stale = json!({"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 1},
            "status": {"observedGeneration": 1}});
        assert!(
            matches!(rollout(&stale), Rollout::Progressing { condition, .. }
            if condition.contains("observedGeneration 1 < metadata.generation 2"))
        );
    }

    #[test]
    fn namespaces_come_first_and_workloads_last() {
        let mut kinds = vec![
            "Deployment",
            "Service",
            "ConfigMap",
            "Namespace",
            "PersistentVolumeClaim",
            "ServiceAccount",
            "CustomResourceDefinition",
        ];
        kinds.sort_by_key(|k| apply_rank(k));
        assert_eq!(
            kinds,
            [
                "Namespace",
                "CustomResourceDefinition",
                "ServiceAccount",
                "ConfigMap",
                "PersistentVolumeClaim",
                "Service",
                "Deployment"
            ]
        );
    }

    /// The recorded case (transcript 04): ports api:9000 and console:9001 applied by labctl,
    /// then kubectl-patch renumbered 9000 to 9999.
    fn renumbered_service() -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "minio", "namespace": "demo", "managedFields": [
                {"manager": "labctl", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:spec": {"f:ports": {"k:{\"port\":9001,\"protocol\":\"TCP\"}":
                    {".": {}, "f:name": {}, "f:port": {}, "f:targetPort": {}}}, "f:selector": {}}}},
                {"manager": "kubectl-patch", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:spec": {"f:ports": {"k:{\"port\":9999,\"protocol\":\"TCP\"}":
                    {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}}}}}]},
            "spec": {"selector": {"app": "minio"}, "ports": [
                {"name": "api", "protocol": "TCP", "port": 9999, "targetPort": "api"},
                {"name": "console", "protocol": "TCP", "port": 9001, "targetPort": "console"}]}})
    }

    fn minio_wanted() -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "minio", "namespace": "demo"},
            "spec": {"selector": {"app": "minio"}, "ports": [
                {"name": "api", "port": 9000, "targetPort": "api"},
                {"name": "console", "port": 9001, "targetPort": "console"}]}})
    }

    #[test]
    fn a_keyed_list_is_compared_by_key_not_by_position() {
        let types = ListTypes::compiled();
        let (got, notes) =
            comparable_by(&renumbered_service(), Some(&minio_wanted()), Some(&types));
        // Only the console port is compared: 9000 is added, 9999 is kubectl-patch's and stays.
        assert_eq!(
            got["spec"]["ports"],
            json!([{"name": "console", "port": 9001, "targetPort": "console"}])
        );
        assert_eq!(
            notes,
            [
                "`spec.ports` is merged by key (port, protocol): adds port 9000 `api`; port 9999 \
              `api` owned by `kubectl-patch` stays"
            ]
        );
        // Without list types, the old positional comparison shows a renumbering.
        let positional = comparable(&renumbered_service(), Some(&minio_wanted()));
        assert_eq!(positional["spec"]["ports"][0]["port"], 9999);
    }

    #[test]
    fn list_types_come_from_openapi_v3_through_refs() {
        let doc = json!({"components": {"schemas": {
            "io.k8s.api.core.v1.Service": {
                "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Service"}],
                "properties": {"spec": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ServiceSpec"}], "default": {}}}},
            "io.k8s.api.core.v1.ServiceSpec": {"properties": {
                "ports": {"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ServicePort"}]},
                          "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"]},
                "externalIPs": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "atomic"}}},
            "io.k8s.api.core.v1.ServicePort": {"properties": {"port": {"type": "integer"}}}}}});
        let t = ListTypes::from_openapi(&doc);
        let svc = t.of("v1", "Service").unwrap();
        assert_eq!(
            svc.get("spec.ports"),
            Some(&ListType::Map(vec!["port".into(), "protocol".into()]))
        );
        assert_eq!(svc.get("spec.externalIPs"), Some(&ListType::Atomic));
        // The compiled table agrees with the recorded server, and fills in kinds the server
        // documents do not cover.
        let all = t.or(&ListTypes::compiled());
        assert_eq!(
            all.of("apps/v1", "Deployment")
                .and_then(|d| d.get("spec.template.spec.containers")),
            Some(&ListType::Map(vec!["name".into()]))
        );
    }

    #[test]
    fn a_workload_depends_on_what_its_pods_use_and_nothing_else() {
        let change = |kind: &str, name: &str, after: Value| Change {
            id: ResourceId::Kube {
                namespace: Some("lab".into()),
                kind: kind.into(),
                name: name.into(),
                api_version: if kind == "Deployment" {
                    "apps/v1"
                } else {
                    "v1"
                }
                .into(),
            },
            component: "c".into(),
            action: Action::Update,
            before: None,
            after: Some(Body::new(
                &ResourceId::Systemd { unit: "x".into() },
                Content::kube(after),
            )),
            impact: Vec::new(),
            notes: Vec::new(),
            guards: Vec::new(),
            dry_run: None,
        };
        let app = change(
            "Deployment",
            "app",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a",
                "envFrom": [{"secretRef": {"name": "creds"}}]}],
                "volumes": [{"name": "c", "configMap": {"name": "app-config"}}]}}}}),
        );
        let cm = |n: &str| change("ConfigMap", n, json!({}));
        assert!(depends_on(&app, &cm("app-config")));
        assert!(depends_on(&app, &change("Secret", "creds", json!({}))));
        assert!(!depends_on(&app, &cm("other")));
        assert!(!depends_on(&cm("other"), &app));
        let mut ns = change("Namespace", "lab", json!({}));
        ns.id = ResourceId::Kube {
            namespace: None,
            kind: "Namespace".into(),
            name: "lab".into(),
            api_version: "v1".into(),
        };
        assert!(depends_on(&cm("other"), &ns));
    }

    #[test]
    fn the_applyset_id_follows_the_specification() {
        let parent = inventory_parent("lab", "lab");
        // sha256("labctl-lab.lab.ConfigMap."), unpadded URL-safe base64.
        assert_eq!(
            applyset_id(&parent),
            "applyset-xzT4aMhp_qMNyoIM8ioCmoImO4Lcd06JMfIj-ic3sGE-v1"
        );
        let inv = Inventory {
            group_kinds: ["Role.rbac.authorization.k8s.io", "ConfigMap"]
                .map(String::from)
                .into(),
            namespaces: ["lab", "other"].map(String::from).into(),
        };
        let obj = inventory_object(&parent, &inv);
        assert_eq!(
            obj["metadata"]["annotations"][APPLYSET_GROUP_KINDS],
            "ConfigMap,Role.rbac.authorization.k8s.io"
        );
        assert_eq!(obj["metadata"]["annotations"][APPLYSET_NAMESPACES], "other");
        assert_eq!(Inventory::read(&obj), inv);
        assert_eq!(group_kind("apps/v1", "Deployment"), "Deployment.apps");
        assert_eq!(group_kind("v1", "Secret"), "Secret");
    }
}
