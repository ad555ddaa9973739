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
use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::{Action, Guard, Live, LiveObject, Plan};
use crate::error::Error;
use crate::render::{SECRET_NAMES, secret_env_var, unset_secret};
use crate::resource::{
    Content, Desired, KINDS, MANAGED_BY, MANAGER, PART_OF, ResourceId, RolloutRule, kind_spec,
};

/// The field manager labctl applies as.
pub const FIELD_MANAGER: &str = "labctl";

/// What the kube backend observed, raw: objects by id as the server returned them, and the
/// desired kinds the server does not serve (yet: a CRD applied in the same run defines them).
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Objects carrying the stack's labels (from the LISTs), and desired objects that exist
    /// without them (from GETs).
    pub objects: BTreeMap<ResourceId, Value>,
    /// Desired kinds the server does not serve; their objects are planned as creations.
    pub unknown_kinds: BTreeSet<(String, String)>,
}

/// A server-side dry-run apply, served by the backend: what the server would store for `obj`.
/// Planning uses it to confirm a local difference (`--server-dry-run`).
pub trait DryRun: Sync {
    /// The object the server would store if `obj` were applied as labctl, without storing it.
    ///
    /// # Errors
    /// Whatever the server answers; planning treats a failure as "not confirmed".
    fn dry_run<'a>(
        &'a self,
        id: &'a ResourceId,
        obj: &'a Value,
    ) -> BoxFuture<'a, Result<Value, Error>>;
}

/// The label selector that finds this stack's objects.
pub fn selector(stack: &str) -> String {
    format!("{MANAGED_BY}={MANAGER},{PART_OF}={stack}")
}

/// Whether a live object carries this stack's ownership labels.
pub fn owned_by(obj: &Value, stack: &str) -> bool {
    let labels = obj.pointer("/metadata/labels");
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

/// The id of a live object.
pub fn id_of(obj: &Value) -> Option<ResourceId> {
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).map(str::to_string);
    Some(ResourceId::Kube {
        namespace: s("/metadata/namespace").filter(|n| !n.is_empty()),
        kind: s("/kind")?,
        name: s("/metadata/name")?,
        api_version: s("/apiVersion")?,
    })
}

/// A desired object in the form the server stores it: a Secret's `stringData` becomes base64
/// `data` (the server converts it on write and only ever returns `data`), so that comparison is
/// like with like and labctl owns `data` keys, whose removal the server then honours.
pub fn prepare(obj: &Value) -> Value {
    let mut out = obj.clone();
    if out.get("kind").and_then(Value::as_str) == Some("Secret")
        && let Some(Value::Object(sd)) = out.as_object_mut().and_then(|m| m.remove("stringData"))
    {
        let data = out
            .as_object_mut()
            .expect("a Secret is a mapping")
            .entry("data")
            .or_insert_with(|| json!({}));
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
    }
    out
}

/// Put every kube object of a desired set in stored form (see [`prepare`]).
pub fn prepare_all(desired: &mut Desired) {
    for o in desired.objects.values_mut() {
        if let Content::Kube(v) = &o.content {
            o.content = Content::kube(prepare(v));
        }
    }
}

/// Secrets an object still holds the "unset" placeholder for (in plain text, or base64 in a
/// Secret's `data`): apply refuses such an object and names each.
pub fn unset_secrets(obj: &Value, known: &[&str]) -> Vec<String> {
    let mut text = obj.to_string();
    if let Some(data) = obj.get("data").and_then(Value::as_object) {
        for v in data.values().filter_map(Value::as_str) {
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(v) {
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    known
        .iter()
        .filter(|n| text.contains(&unset_secret(n)))
        .map(|n| n.to_string())
        .collect()
}

/// The `FieldsV1` set labctl's `Apply` entry owns on a live object, if any.
pub fn labctl_fields(live: &Value) -> Option<&Value> {
    live.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| {
            e.get("manager").and_then(Value::as_str) == Some(FIELD_MANAGER)
                && e.get("operation").and_then(Value::as_str) == Some("Apply")
                && e.get("subresource").is_none_or(|s| s.as_str() == Some(""))
        })
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
/// (see the module docs), without server-set metadata and status.
pub fn comparable(live: &Value, desired: Option<&Value>) -> Value {
    let fs = labctl_fields(live);
    let mut out = project(live, fs, desired).unwrap_or_else(|| json!({}));
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
    crate::resource::normalize(out)
}

/// `live` restricted to the field set `fs` (`FieldsV1`: `f:`, `k:`, `v:`, `i:` children; a leaf
/// owns its whole value) united with the shape of `want`.
fn project(live: &Value, fs: Option<&Value>, want: Option<&Value>) -> Option<Value> {
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
            for (k, lv) in lm {
                let child_fs = fs_children.and_then(|c| c.get(&format!("f:{k}")));
                let child_want = wm.and_then(|w| w.get(k));
                // An atomic map labctl owns is compared whole when labctl no longer wants it,
                // by the desired shape otherwise (so server defaults inside it never show).
                if leaf {
                    if let Some(w) = child_want
                        && let Some(v) = project(lv, None, Some(w))
                    {
                        out.insert(k.clone(), v);
                    }
                    continue;
                }
                if child_fs.is_none() && child_want.is_none() {
                    continue;
                }
                if let Some(v) = project(lv, child_fs, child_want) {
                    out.insert(k.clone(), v);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => {
            if leaf && want.is_none() {
                return Some(live.clone());
            }
            let wl = want.and_then(Value::as_array);
            let keyed = fs_children.is_some_and(|c| {
                c.keys()
                    .any(|k| k.starts_with("k:") || k.starts_with("v:") || k.starts_with("i:"))
            });
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let (item_fs, item_want) = if keyed {
                    let c = fs_children.expect("keyed implies children");
                    let found = c.iter().find(|(pe, _)| element_matches(pe, item, i));
                    let w = match found {
                        Some((pe, _)) => wl.and_then(|w| {
                            w.iter()
                                .enumerate()
                                .find(|(j, x)| element_matches_want(pe, x, *j))
                                .map(|(_, x)| x)
                        }),
                        None => wl.and_then(|w| w.get(i)),
                    };
                    (found.map(|(_, f)| f), w)
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
                if let Some(v) = project(item, item_fs, item_want) {
                    out.push(v);
                }
            }
            Some(Value::Array(out))
        }
        scalar => Some(scalar.clone()),
    }
}

/// Whether a live list element is the one a `FieldsV1` path element names.
fn element_matches(pe: &str, item: &Value, index: usize) -> bool {
    if let Some(keys) = pe.strip_prefix("k:") {
        let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(keys) else {
            return false;
        };
        keys.iter().all(|(k, v)| item.get(k) == Some(v))
    } else if let Some(v) = pe.strip_prefix("v:") {
        serde_json::from_str::<Value>(v).is_ok_and(|v| &v == item)
    } else if let Some(i) = pe.strip_prefix("i:") {
        i.parse::<usize>() == Ok(index)
    } else {
        false
    }
}

/// Like [`element_matches`], for a desired element, which may leave defaulted key fields (a
/// port's `protocol: TCP`) unset.
fn element_matches_want(pe: &str, item: &Value, index: usize) -> bool {
    if let Some(keys) = pe.strip_prefix("k:") {
        let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(keys) else {
            return false;
        };
        keys.iter().all(|(k, v)| item.get(k).is_none_or(|x| x == v))
    } else {
        element_matches(pe, item, index)
    }
}

/// Whether an object's kind holds data (see [`crate::resource::KindSpec::holds_data`]).
pub fn holds_data(id: &ResourceId) -> bool {
    id.kind().is_some_and(|k| kind_spec(k).holds_data)
}

/// The live set the diff compares with: each observed object projected onto what labctl
/// compares ([`comparable`]), with whether it carries this stack's labels.
pub fn live_set(observed: &BTreeMap<ResourceId, Value>, desired: &Desired, stack: &str) -> Live {
    let objects = observed
        .iter()
        .map(|(id, raw)| {
            let want = desired.objects.get(id).and_then(|o| o.content.as_kube());
            (
                id.clone(),
                LiveObject {
                    content: Content::kube(comparable(raw, want)),
                    owned: owned_by(raw, stack),
                    unit: None,
                },
            )
        })
        .collect();
    Live { objects }
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

/// Guard each kube change whose object still holds the placeholder of a secret nobody set: apply
/// refuses it, and a note says which variable to set.
pub fn guard_unset_secrets(plan: &mut Plan) {
    for c in &mut plan.changes {
        if c.action == Action::Delete || c.id.plane() != crate::stack::Plane::Kube {
            continue;
        }
        let Some(obj) = c.after.as_ref().and_then(|b| b.content().as_kube()) else {
            continue;
        };
        let unset = unset_secrets(obj, SECRET_NAMES);
        if unset.is_empty() {
            continue;
        }
        for name in &unset {
            c.notes.push(format!(
                "secret `{name}` is not set: apply refuses this object until `{}` is set",
                secret_env_var(name)
            ));
        }
        c.guards.push(Guard::UnsetSecrets(unset));
    }
}

/// Apply order of a kind (lower first); deletions run in the reverse order.
pub fn apply_rank(kind: &str) -> u8 {
    kind_spec(kind).tier
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
    let n = |p: &str| obj.pointer(p).and_then(Value::as_i64);
    let generation = n("/metadata/generation").unwrap_or(0);
    let observed = n("/status/observedGeneration").unwrap_or(0);
    let conditions: Vec<&Value> = obj
        .pointer("/status/conditions")
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
            let rev_ok = obj.pointer("/status/updateRevision")
                == obj.pointer("/status/currentRevision")
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

/// The live set of the cluster for a plan: the observed objects projected for comparison
/// ([`live_set`]). With `dry_run`, each owned object that differs locally is confirmed by a
/// server-side dry-run apply, and counts as unchanged when the server would store what is live.
pub async fn live(
    observed: &Observed,
    desired: &Desired,
    stack: &str,
    dry_run: Option<&dyn DryRun>,
) -> Live {
    let mut live = live_set(&observed.objects, desired, stack);
    let Some(server) = dry_run else {
        return live;
    };
    for (id, want) in &desired.objects {
        let (Some(have), Some(obj)) = (live.objects.get_mut(id), want.content.as_kube()) else {
            continue;
        };
        if have.content == want.content || !have.owned {
            continue;
        }
        // A dry run that fails (a conflict, say) confirms nothing: the local diff stands, and
        // apply reports the failure.
        if let Ok(result) = server.dry_run(id, obj).await
            && Content::kube(comparable(&result, Some(obj))) == have.content
        {
            have.content = want.content.clone();
        }
    }
    live
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
        let s = prepare(&json!({"kind": "Secret", "stringData": {"p": "hunter2"}}));
        assert_eq!(s, json!({"kind": "Secret", "data": {"p": "aHVudGVyMg=="}}));
        let unset = prepare(
            &json!({"kind": "Secret", "stringData": {"p": unset_secret("postgres-password")}}),
        );
        assert_eq!(
            unset_secrets(&unset, &["postgres-password", "webhook-secret"]),
            vec!["postgres-password"]
        );
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
}
