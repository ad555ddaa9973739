//! What of a live object labctl compares: its managed-fields projection (the fields labctl's
//! entry owns plus the fields the desired object has, lists merged by their type), and the live
//! set built from it.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::*;
use crate::plan::{Action, Live, LiveObject, Plan};
use crate::resource::{At, Content, Desired, ResourceId};

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

#[cfg(test)]
mod tests {
    use serde_json::json;

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
}
