//! The object store and the write paths (create, update, patch, server-side apply, delete),
//! with managed fields, generation and resourceVersion handled as the real server does.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::defaults;
use crate::fieldset::{self, FieldSet, path_string};
use crate::resources::{self, ResourceDef};
use crate::schema::Schema;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, Cause};
use crate::util::{now_rfc3339, uid};

/// Identity of a stored object: group, plural, namespace ("" when cluster-scoped), name.
pub type ObjKey = (String, String, String, String);

/// A watch event broadcast to watchers.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// Group of the object's resource.
    pub group: String,
    /// Plural of the object's resource.
    pub plural: String,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    /// The object.
    pub object: Value,
    /// The resourceVersion of the event.
    pub rv: u64,
}

/// Mutable server state, behind one mutex.
#[derive(Debug)]
pub struct State {
    /// Built-in resource definitions.
    pub builtin: Vec<ResourceDef>,
    /// Built-in plus CRD-declared definitions.
    pub defs: Vec<ResourceDef>,
    /// The OpenAPI v3 documents served so far, by group-version path, serialized: like the real
    /// server, built once and served from memory until the definitions change.
    pub openapi: BTreeMap<String, axum::body::Bytes>,
    /// The objects.
    pub objects: BTreeMap<ObjKey, Value>,
    /// The global resourceVersion counter (last issued).
    pub rv: u64,
    uid_counter: u64,
    seed: u64,
    ip_counter: u32,
    node_port_counter: u32,
    /// Total requests served.
    pub requests: u64,
    /// Requests per `METHOD /path` (query excluded).
    pub per_route: BTreeMap<String, u64>,
    /// Every request in order, as `METHOD /path?query`, since the last reset.
    pub log: Vec<String>,
    /// Injected failures: method (or `*`), path prefix, the error, and how many more times.
    pub faults: Vec<(String, String, ApiError, usize)>,
    /// Injected latency per request.
    pub latency: Duration,
    /// When set, workloads report rolled-out status right after each write.
    pub auto_rollout: bool,
    /// Node count used for DaemonSet status in auto-rollout mode.
    pub nodes: u64,
    /// Storage class defaulted onto PVCs without one (k3s: `local-path`).
    pub default_storage_class: Option<String>,
    /// Watch event fan-out.
    pub events: broadcast::Sender<WatchEvent>,
    /// Recent events, for watches that start from an older resourceVersion.
    pub history: std::collections::VecDeque<WatchEvent>,
    /// Pod templates at the last completed rollout, per Deployment.
    pub rollout_templates: BTreeMap<ObjKey, Value>,
    /// Namespaces being deleted, and since when.
    pub terminating: BTreeMap<String, std::time::Instant>,
    /// How long a deleted namespace stays Terminating before it and its contents go.
    pub namespace_finalize_delay: Duration,
    /// Issued bearer tokens and whom they speak for.
    pub tokens: BTreeMap<String, crate::access::Identity>,
    /// Admission refusals registered by tests.
    pub refusals: Vec<crate::admission::Refusal>,
}

/// Parameters of a write request.
#[derive(Debug, Clone, Default)]
pub struct WriteParams {
    /// `fieldManager`.
    pub manager: Option<String>,
    /// `force=true`.
    pub force: bool,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// Subresource (`status`) or empty.
    pub subresource: String,
}

/// One managedFields entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// API version the set was recorded at.
    pub api_version: String,
    /// Time of the last change.
    pub time: String,
    /// Subresource, or empty.
    pub subresource: String,
    /// Owned fields.
    pub set: FieldSet,
}

impl Entry {
    fn same_identity(&self, manager: &str, operation: &str, subresource: &str, api: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == "Apply" || self.api_version == api)
    }

    /// The manager as conflict messages print it.
    pub fn printed(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        m.insert("time".into(), json!(self.time));
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.set.to_json());
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m)
    }
}

/// Parses `metadata.managedFields`.
pub fn entries_of(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or_default().into(),
                    operation: e["operation"].as_str().unwrap_or("Update").into(),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
                    time: e["time"].as_str().unwrap_or_default().into(),
                    subresource: e["subresource"].as_str().unwrap_or_default().into(),
                    set: FieldSet::from_json(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

const SERVER_META: [&str; 10] = [
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "clusterName",
    "name",
];

fn p(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| format!("f:{s}")).collect()
}

/// Removes the paths structured-merge-diff strips from every managed set.
fn strip_set(set: &mut FieldSet) {
    for path in [
        p(&["apiVersion"]),
        p(&["kind"]),
        p(&["metadata"]),
        p(&["metadata", "name"]),
        p(&["metadata", "namespace"]),
        p(&["metadata", "creationTimestamp"]),
        p(&["metadata", "selfLink"]),
        p(&["metadata", "uid"]),
        p(&["metadata", "clusterName"]),
        p(&["metadata", "generation"]),
        p(&["metadata", "managedFields"]),
        p(&["metadata", "resourceVersion"]),
    ] {
        set.unset(&path);
    }
}

/// Clears the `.` marker of struct fields that an empty typed object already has, so Update
/// entries look like the real server's (`f:spec` without `.`).
fn unset_struct_members(set: &mut FieldSet) {
    for path in [
        p(&["spec"]),
        p(&["status"]),
        p(&["spec", "template"]),
        p(&["spec", "template", "spec"]),
        p(&["spec", "template", "metadata"]),
        p(&["spec", "strategy"]),
        p(&["spec", "updateStrategy"]),
        p(&["spec", "resources"]),
    ] {
        set.unset(&path);
    }
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj["metadata"][field].as_str()
}

fn without_managed(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    o
}

fn without_times(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(entries) = o
        .get_mut("metadata")
        .and_then(|m| m.get_mut("managedFields"))
        .and_then(Value::as_array_mut)
    {
        for e in entries {
            if let Some(m) = e.as_object_mut() {
                m.remove("time");
            }
        }
    }
    o
}

fn status_ignored(def: &ResourceDef) -> bool {
    def.status
}

impl State {
    /// Fresh state.
    pub fn new(seed: u64) -> Self {
        let builtin = resources::builtin();
        let (events, _) = broadcast::channel(4096);
        State {
            defs: builtin.clone(),
            openapi: BTreeMap::new(),
            builtin,
            objects: BTreeMap::new(),
            rv: 1000,
            uid_counter: 0,
            seed,
            ip_counter: 10,
            node_port_counter: 0,
            requests: 0,
            per_route: BTreeMap::new(),
            log: Vec::new(),
            faults: Vec::new(),
            latency: Duration::ZERO,
            auto_rollout: false,
            nodes: 1,
            default_storage_class: Some("local-path".into()),
            events,
            history: std::collections::VecDeque::new(),
            terminating: BTreeMap::new(),
            rollout_templates: BTreeMap::new(),
            namespace_finalize_delay: Duration::from_millis(100),
            tokens: BTreeMap::new(),
            refusals: Vec::new(),
        }
    }

    /// The injected failure for a request, if one matches (consuming one use of it).
    pub fn take_fault(&mut self, method: &str, path: &str) -> Option<ApiError> {
        let i = self.faults.iter().position(|(m, p, _, n)| {
            *n > 0 && (m == "*" || m == method) && path.starts_with(p.as_str())
        })?;
        let f = &mut self.faults[i];
        f.3 -= 1;
        let e = f.2.clone();
        if f.3 == 0 {
            self.faults.remove(i);
        }
        Some(e)
    }

    /// Finds the definition for a group/version/plural.
    pub fn def_by_plural(&self, group: &str, version: &str, plural: &str) -> Option<ResourceDef> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.version == version && d.plural == plural)
            .cloned()
    }

    /// Finds the definition for an apiVersion and kind.
    pub fn def_by_kind(&self, api_version: &str, kind: &str) -> Option<ResourceDef> {
        self.defs
            .iter()
            .find(|d| d.api_version() == api_version && d.kind == kind)
            .cloned()
    }

    fn key(def: &ResourceDef, ns: &str, name: &str) -> ObjKey {
        (
            def.group.clone(),
            def.plural.clone(),
            if def.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            name.to_string(),
        )
    }

    /// An object, if present.
    pub fn get(&self, def: &ResourceDef, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&Self::key(def, ns, name))
    }

    /// Checks that a namespace exists.
    ///
    /// # Errors
    /// 404 naming the namespace.
    pub fn require_namespace(&self, def: &ResourceDef, ns: &str) -> Result<(), ApiError> {
        if !def.namespaced {
            return Ok(());
        }
        let key = (
            String::new(),
            "namespaces".into(),
            String::new(),
            ns.to_string(),
        );
        if self.objects.contains_key(&key) {
            Ok(())
        } else {
            Err(ApiError::namespace_not_found(ns))
        }
    }

    /// A list object (`kind: XList`).
    pub fn list(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Value {
        let items: Vec<Value> = self
            .in_range(def, ns)
            .filter(|v| labels.matches_object(v) && fields.matches(v))
            .cloned()
            .collect();
        let mut list = json!({
            "kind": format!("{}List", def.kind),
            "apiVersion": def.api_version(),
            "metadata": {"resourceVersion": self.rv.to_string()},
        });
        // Put in place, not through `json!`, which would copy every item once more.
        list["items"] = Value::Array(items);
        list
    }

    /// The list object of [`State::list`] with its items typed as [`State::strip_item_types`]
    /// leaves them, serialized straight from the store: the common LIST (no table, no paging)
    /// of a large kind copies no object, as the real server encodes its watch cache.
    pub fn list_bytes(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<u8> {
        let strip = self.is_builtin(def);
        let items: Vec<ListItem<'_>> = self
            .in_range(def, ns)
            .filter(|v| labels.matches_object(v) && fields.matches(v))
            .map(|v| ListItem(v, strip))
            .collect();
        let list = ListOut {
            kind: format!("{}List", def.kind),
            api_version: def.api_version(),
            resource_version: self.rv.to_string(),
            items,
        };
        serde_json::to_vec(&list).expect("JSON values serialize")
    }

    /// The stored objects of a kind, in one namespace or all of them, in key order.
    fn in_range<'s>(
        &'s self,
        def: &'s ResourceDef,
        ns: Option<&'s str>,
    ) -> impl Iterator<Item = &'s Value> + 's {
        // Objects are keyed by (group, plural, namespace, name): the kind's (or the
        // namespace's) objects are one range of keys, as in the real server's storage.
        let from = (
            def.group.clone(),
            def.plural.clone(),
            ns.unwrap_or_default().to_string(),
            String::new(),
        );
        self.objects
            .range(from..)
            .take_while(move |((g, pl, n, _), _)| {
                *g == def.group && *pl == def.plural && ns.is_none_or(|ns| ns == n)
            })
            .map(|(_, v)| v)
    }

    fn is_builtin(&self, def: &ResourceDef) -> bool {
        self.builtin
            .iter()
            .any(|b| b.group == def.group && b.plural == def.plural)
    }

    /// Removes `apiVersion` and `kind` from the items of a list of a built-in kind, as the
    /// real server serializes typed lists (custom resources keep them).
    pub fn strip_item_types(&self, def: &ResourceDef, list: &mut Value) {
        if !self.is_builtin(def) {
            return;
        }
        for item in list
            .get_mut("items")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(m) = item.as_object_mut() {
                // In place, keeping the order of the other fields (as `list_bytes` does).
                m.shift_remove("apiVersion");
                m.shift_remove("kind");
            }
        }
    }

    fn next_uid(&mut self) -> String {
        self.uid_counter += 1;
        uid(self.uid_counter, self.seed)
    }

    /// Allocates a Service cluster IP.
    pub fn alloc_ip(&mut self) -> String {
        self.ip_counter += 1;
        let c = self.ip_counter;
        format!("10.43.{}.{}", (c / 250) % 256, c % 250 + 1)
    }

    /// Allocates a free NodePort.
    pub fn alloc_node_port(&mut self) -> u64 {
        let used: Vec<u64> = self
            .objects
            .iter()
            .filter(|((g, pl, _, _), _)| g.is_empty() && pl == "services")
            .flat_map(|(_, v)| {
                v["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["nodePort"].as_u64())
                    .collect::<Vec<_>>()
            })
            .collect();
        loop {
            self.node_port_counter = (self.node_port_counter + 7919) % 2768;
            let port = 30000 + self.node_port_counter as u64;
            if !used.contains(&port) {
                return port;
            }
        }
    }

    /// Rejects a Service whose cluster IP or node ports another Service already holds.
    fn check_allocations(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        svc: &Value,
    ) -> Result<(), ApiError> {
        let others: Vec<&Value> = self
            .objects
            .iter()
            .filter(|((g, pl, n, nm), _)| {
                g.is_empty() && pl == "services" && !(n == ns && nm == name)
            })
            .map(|(_, v)| v)
            .collect();
        let mut causes = Vec::new();
        if let Some(ip) = svc["spec"]["clusterIP"].as_str()
            && !ip.is_empty()
            && ip != "None"
            && others.iter().any(|o| o["spec"]["clusterIP"] == ip)
        {
            causes.push(Cause {
                reason: "FieldValueInvalid".into(),
                field: "spec.clusterIPs".into(),
                message: format!(
                    "Invalid value: [{ip:?}]: failed to allocate IP {ip}: provided IP is already allocated"
                ),
            });
        }
        for (i, p) in svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(np) = p["nodePort"].as_u64() else {
                continue;
            };
            let taken = others.iter().any(|o| {
                o["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|q| q["nodePort"].as_u64() == Some(np))
            });
            if taken {
                causes.push(Cause {
                    reason: "FieldValueInvalid".into(),
                    field: format!("spec.ports[{i}].nodePort"),
                    message: format!("Invalid value: {np}: provided port is already allocated"),
                });
            }
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(def, name, causes))
        }
    }

    fn emit(&mut self, def: &ResourceDef, kind: &'static str, object: Value) {
        let ev = WatchEvent {
            group: def.group.clone(),
            plural: def.plural.clone(),
            kind,
            object,
            rv: self.rv,
        };
        if self.history.len() >= 2048 {
            self.history.pop_front();
        }
        self.history.push_back(ev.clone());
        let _ = self.events.send(ev);
    }

    fn refresh_defs(&mut self) {
        let mut defs = self.builtin.clone();
        let crds: Vec<Value> = self
            .objects
            .iter()
            .filter(|((g, pl, _, _), _)| {
                g == "apiextensions.k8s.io" && pl == "customresourcedefinitions"
            })
            .map(|(_, v)| v.clone())
            .collect();
        for crd in crds {
            for d in resources::from_crd(&crd) {
                if !defs
                    .iter()
                    .any(|e| e.group == d.group && e.version == d.version && e.plural == d.plural)
                {
                    defs.push(d);
                }
            }
        }
        self.defs = defs;
        self.openapi.clear();
    }

    /// Final step of every write: defaulting, validation, server-set fields, generation,
    /// resourceVersion, storage and events. Returns the object as stored (or as it would be
    /// stored, for dry runs).
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        old: Option<&Value>,
        mut new: Value,
        entries: Vec<Entry>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        {
            let meta = new
                .as_object_mut()
                .ok_or_else(|| ApiError::bad_request("object is not a JSON object"))?
                .entry("metadata")
                .or_insert_with(|| json!({}));
            if !meta.is_object() {
                *meta = json!({});
            }
            meta["name"] = json!(name);
            if def.namespaced {
                meta["namespace"] = json!(ns);
            } else if let Some(m) = meta.as_object_mut() {
                m.remove("namespace");
            }
        }
        new["apiVersion"] = json!(def.api_version());
        new["kind"] = json!(def.kind);
        defaults::apply(self, def, old, &mut new);
        if let Some(old) = old {
            defaults::validate_update(def, name, old, &new)?;
        }
        defaults::validate(def, name, &new)?;
        if def.kind == "Service" && def.group.is_empty() {
            self.check_allocations(def, ns, name, &new)?;
        }
        self.admit(def, ns, name, old, dry_run)?;
        let meta = new
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .expect("metadata is an object");
        for k in SERVER_META.iter().filter(|k| **k != "name") {
            meta.remove(*k);
        }
        let mut ordered = Map::new();
        ordered.insert("name".into(), json!(name));
        if def.namespaced {
            ordered.insert("namespace".into(), json!(ns));
        }
        let (uid, created, generation) = match old {
            Some(o) => {
                let mut generation = o["metadata"]["generation"].as_i64();
                if def.generation && o.get("spec") != new.get("spec") {
                    generation = Some(generation.unwrap_or(0) + 1);
                }
                (
                    meta_str(o, "uid").unwrap_or_default().to_string(),
                    meta_str(o, "creationTimestamp")
                        .unwrap_or_default()
                        .to_string(),
                    generation,
                )
            }
            None => (self.next_uid(), now_rfc3339(), def.generation.then_some(1)),
        };
        ordered.insert("uid".into(), json!(uid));
        ordered.insert("resourceVersion".into(), json!(""));
        if let Some(g) = generation {
            ordered.insert("generation".into(), json!(g));
        }
        ordered.insert("creationTimestamp".into(), json!(created));
        if let Some(o) = old
            && let Some(dt) = o["metadata"].get("deletionTimestamp")
        {
            ordered.insert("deletionTimestamp".into(), dt.clone());
        }
        let meta = new
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .expect("metadata is an object");
        for (k, v) in std::mem::take(meta) {
            if k != "name" && k != "namespace" {
                ordered.insert(k, v);
            }
        }
        let mut entries: Vec<Entry> = entries.into_iter().filter(|e| !e.set.is_empty()).collect();
        // The real server's order: operation, time, manager, apiVersion, subresource.
        entries.sort_by(|a, b| {
            (
                &a.operation,
                &a.time,
                &a.manager,
                &a.api_version,
                &a.subresource,
            )
                .cmp(&(
                    &b.operation,
                    &b.time,
                    &b.manager,
                    &b.api_version,
                    &b.subresource,
                ))
        });
        if !entries.is_empty() {
            ordered.insert(
                "managedFields".into(),
                Value::Array(entries.iter().map(Entry::to_json).collect()),
            );
        }
        *meta = ordered;
        let new = order_top(new);

        // A write that changes nothing but managedFields times is no write (the real
        // server's IgnoreManagedFieldsTimestampsTransformer): the old object, old times and
        // all, is the answer. A changed entry order is a change.
        if let Some(o) = old {
            let mut cmp_new = without_times(&new);
            cmp_new["metadata"]["resourceVersion"] = o["metadata"]["resourceVersion"].clone();
            if cmp_new == without_times(o) {
                return Ok(o.clone());
            }
        }
        let mut new = new;
        if dry_run {
            match old {
                Some(o) => {
                    new["metadata"]["resourceVersion"] = o["metadata"]["resourceVersion"].clone()
                }
                None => {
                    new["metadata"]
                        .as_object_mut()
                        .expect("metadata")
                        .remove("resourceVersion");
                }
            }
            return Ok(new);
        }
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert(Self::key(def, ns, name), new.clone());
        self.emit(
            def,
            if old.is_some() { "MODIFIED" } else { "ADDED" },
            new.clone(),
        );
        if def.group == "apiextensions.k8s.io" {
            self.refresh_defs();
        }
        if self.auto_rollout
            && matches!(
                def.kind.as_str(),
                "Deployment" | "StatefulSet" | "DaemonSet"
            )
        {
            return self.complete_rollout(def, ns, name);
        }
        Ok(new)
    }

    /// The StatefulSet controller's claims: `<template>-<set>-<ordinal>` for every
    /// volumeClaimTemplate and replica, labelled with the template's labels and the set's
    /// selector, owned by the set when its retention policy deletes them.
    fn create_claims(&mut self, sts: &Value, ns: &str, name: &str) -> Result<(), ApiError> {
        let Some(pvc_def) = self.def_by_kind("v1", "PersistentVolumeClaim") else {
            return Ok(());
        };
        let replicas = sts["spec"]["replicas"].as_u64().unwrap_or(1);
        let templates = sts["spec"]["volumeClaimTemplates"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let owned = sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete";
        for t in templates {
            let Some(tname) = t["metadata"]["name"].as_str() else {
                continue;
            };
            for i in 0..replicas {
                let claim = format!("{tname}-{name}-{i}");
                if self.get(&pvc_def, ns, &claim).is_some() {
                    continue;
                }
                let mut labels = t["metadata"]["labels"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                if let Some(sel) = sts["spec"]["selector"]["matchLabels"].as_object() {
                    labels.extend(sel.clone());
                }
                let mut meta = json!({"name": claim, "namespace": ns});
                if !labels.is_empty() {
                    meta["labels"] = Value::Object(labels);
                }
                if let Some(a) = t["metadata"].get("annotations") {
                    meta["annotations"] = a.clone();
                }
                if owned {
                    meta["ownerReferences"] = json!([{
                        "apiVersion": "apps/v1", "kind": "StatefulSet", "name": name,
                        "uid": sts["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
                    }]);
                }
                let pvc = json!({
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": meta,
                    "spec": t["spec"].clone(),
                });
                self.update(
                    &pvc_def,
                    ns,
                    &claim,
                    pvc,
                    "kube-controller-manager",
                    &WriteParams::default(),
                    true,
                )?;
            }
        }
        Ok(())
    }

    /// Acts as the workload controllers after a rollout completed: a Deployment gets its
    /// `deployment.kubernetes.io/revision` annotation (bumped when the pod template changed),
    /// then the status reports every replica updated, ready and available at the current
    /// generation. A StatefulSet's claims are created as its controller creates them.
    ///
    /// # Errors
    /// 404 when the object is absent.
    pub fn complete_rollout(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let mut obj = self
            .get(def, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))?;
        let auto = std::mem::replace(&mut self.auto_rollout, false);
        let result = (|| {
            if def.kind == "Deployment" && def.group == "apps" {
                let key = Self::key(def, ns, name);
                let template = obj["spec"]["template"].clone();
                let current: u64 =
                    obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                        .as_str()
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0);
                let revision = match self.rollout_templates.get(&key) {
                    Some(t) if *t == template && current > 0 => current,
                    _ => current + 1,
                };
                self.rollout_templates.insert(key, template);
                if revision != current {
                    let mut new = obj.clone();
                    new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                        json!(revision.to_string());
                    obj = self.update(
                        def,
                        ns,
                        name,
                        new,
                        "kube-controller-manager",
                        &WriteParams::default(),
                        false,
                    )?;
                }
            }
            if def.kind == "StatefulSet" && def.group == "apps" {
                self.create_claims(&obj, ns, name)?;
            }
            let status = defaults::rolled_out_status(&obj, self.nodes);
            self.set_status(def, ns, name, status, "kube-controller-manager")
        })();
        self.auto_rollout = auto;
        result
    }

    /// Server-side apply of `body` (PATCH with `application/apply-patch+yaml`).
    ///
    /// # Errors
    /// 400 for a missing field manager or mismatched name, 404 for a missing namespace,
    /// 409 for conflicts with other managers (unless forced), 422 for invalid updates.
    pub fn apply(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        body: Value,
        params: &WriteParams,
    ) -> Result<Value, ApiError> {
        let manager = params
            .manager
            .clone()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| ApiError::bad_request("fieldManager is required for apply requests"))?;
        let status_sub = params.subresource == "status";
        check_body(def, ns, name, &body, true)?;
        let live = self.get(def, ns, name).cloned();
        if live.is_none() {
            if status_sub {
                return Err(ApiError::not_found(def, name));
            }
            self.require_namespace(def, ns)?;
            self.require_live_namespace(def, ns, name)?;
        }
        if let (Some(l), Some(want)) = (&live, meta_str(&body, "resourceVersion"))
            && !want.is_empty()
            && meta_str(l, "resourceVersion") != Some(want)
        {
            return Err(ApiError::stale(def, name));
        }
        let schema = Schema::new(&def.group, &def.kind);
        let mut applied = body;
        strip_server_fields(&mut applied);
        if status_sub {
            if let Some(m) = applied.as_object_mut() {
                m.retain(|k, _| {
                    matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status")
                });
            }
            if let Some(m) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
                m.retain(|k, _| k == "name" || k == "namespace");
            }
        } else if status_ignored(def)
            && let Some(m) = applied.as_object_mut()
        {
            m.remove("status");
        }
        let mut dups = fieldset::duplicate_keys(&schema, &applied);
        dups.extend(
            fieldset::undeclared_fields(&schema, &applied)
                .into_iter()
                .map(|(p, _)| format!("{p}: field not declared in schema")),
        );
        if !dups.is_empty() {
            let gv = if def.group.is_empty() {
                format!("/{}", def.version)
            } else {
                def.api_version()
            };
            let errs = if dups.len() == 1 {
                dups[0].clone()
            } else {
                format!("errors:\n  {}", dups.join("\n  "))
            };
            return Err(ApiError::internal(format!(
                "failed to create typed patch object ({ns}/{name}; {gv}, Kind={}): {errs}",
                def.kind
            )));
        }
        let skeleton =
            json!({"apiVersion": def.api_version(), "kind": def.kind, "metadata": {"name": name}});
        let live_c = live.as_ref().map(without_managed).unwrap_or(skeleton);
        let mut entries = live.as_ref().map(entries_of).unwrap_or_default();

        let mut new_set = fieldset::to_field_set(&schema, &applied);
        strip_set(&mut new_set);
        let mut merged = fieldset::merge(&schema, &live_c, &applied);
        let mine = entries
            .iter()
            .position(|e| e.same_identity(&manager, "Apply", &params.subresource, ""));
        let last = mine.map(|i| entries[i].set.clone()).unwrap_or_default();
        let others = entries
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != mine)
            .fold(FieldSet::default(), |acc, (_, e)| acc.union(&e.set));
        let keep = new_set.union(&others);
        fieldset::prune(&schema, &mut merged, &last.difference(&new_set), &keep);

        let cmp = fieldset::compare(&schema, &live_c, &merged);
        let changed = cmp.modified.union(&cmp.added);
        let mut conflicts: Vec<(usize, Vec<Vec<String>>)> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if Some(i) == mine {
                continue;
            }
            let c = e.set.intersection(&changed);
            if !c.is_empty() {
                conflicts.push((i, c.paths()));
            }
        }
        if !conflicts.is_empty() && !params.force {
            return Err(conflict_error(&entries, &conflicts));
        }
        for (i, e) in entries.iter_mut().enumerate() {
            if Some(i) == mine {
                continue;
            }
            e.set = e.set.difference(&changed).difference(&cmp.removed);
        }
        let object_changed = merged != live_c;
        let now = now_rfc3339();
        let entry = Entry {
            manager: manager.clone(),
            operation: "Apply".into(),
            api_version: def.api_version(),
            time: now.clone(),
            subresource: params.subresource.clone(),
            set: new_set,
        };
        match mine {
            Some(i) => {
                let old = &entries[i];
                let time = if object_changed
                    || old.set != entry.set
                    || old.api_version != entry.api_version
                {
                    now
                } else {
                    old.time.clone()
                };
                entries[i] = Entry { time, ..entry };
            }
            None => entries.push(entry),
        }
        let out = self.commit(
            def,
            ns,
            name,
            live.as_ref(),
            merged,
            entries,
            params.dry_run,
        )?;
        Ok(out)
    }

    /// An Update-operation write (POST, PUT, merge/strategic patch, status writes): `new` is
    /// the complete desired object; ownership of changed fields moves to `manager`.
    ///
    /// # Errors
    /// 404/409/422 as the real server.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        new: Value,
        manager: &str,
        params: &WriteParams,
        create: bool,
    ) -> Result<Value, ApiError> {
        let live = self.get(def, ns, name).cloned();
        match (&live, create) {
            (Some(_), true) => return Err(ApiError::already_exists(def, name)),
            (None, false) => return Err(ApiError::not_found(def, name)),
            (None, true) => {
                self.require_namespace(def, ns)?;
                self.require_live_namespace(def, ns, name)?;
            }
            _ => {}
        }
        if let (Some(l), Some(want)) = (&live, meta_str(&new, "resourceVersion"))
            && !want.is_empty()
            && meta_str(l, "resourceVersion") != Some(want)
        {
            return Err(ApiError::stale(def, name));
        }
        let schema = Schema::new(&def.group, &def.kind);
        let skeleton =
            json!({"apiVersion": def.api_version(), "kind": def.kind, "metadata": {"name": name}});
        let live_c = live.as_ref().map(without_managed).unwrap_or(skeleton);
        let mut new_c = without_managed(&new);
        let status_sub = params.subresource == "status";
        if status_sub {
            let mut s = live_c.clone();
            match new_c.get("status") {
                Some(st) => s["status"] = st.clone(),
                None => {
                    if let Some(m) = s.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            new_c = s;
        } else if status_ignored(def) {
            match live_c.get("status") {
                Some(st) => new_c["status"] = st.clone(),
                None => {
                    if let Some(m) = new_c.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        // The real server decodes (and so defaults) the new object before the field manager
        // compares it: Update managers own the defaults they caused.
        if !status_sub && new_c.is_object() {
            if !new_c["metadata"].is_object() {
                new_c["metadata"] = json!({"name": name});
            }
            defaults::apply(self, def, live.as_ref(), &mut new_c);
            // The Namespace strategy (after the field manager) adds the `kubernetes`
            // finalizer: the writer does not own it.
            if def.group.is_empty()
                && def.kind == "Namespace"
                && new["spec"].get("finalizers").is_none()
                && let Some(spec) = new_c.get_mut("spec").and_then(Value::as_object_mut)
            {
                spec.remove("finalizers");
                if spec.is_empty() {
                    new_c.as_object_mut().map(|m| m.remove("spec"));
                }
            }
        }
        // Server-set metadata comes from the live object.
        if let Some(m) = new_c.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in SERVER_META.iter().filter(|k| **k != "name") {
                m.remove(*k);
            }
        }
        let mut live_cmp = live_c.clone();
        if let Some(m) = live_cmp.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in SERVER_META.iter().filter(|k| **k != "name") {
                m.remove(*k);
            }
        }
        let cmp = fieldset::compare(&schema, &live_cmp, &new_c);
        let changed = cmp.modified.union(&cmp.added);
        // A client may rewrite managedFields (kubectl does, migrating client-side apply
        // ownership); a non-empty list that differs from the live one is taken as given
        // (entries without a manager are dropped, so `[{}]` clears them all).
        let live_mf = live
            .as_ref()
            .map(|l| l["metadata"]["managedFields"].clone());
        let given = &new["metadata"]["managedFields"];
        let mut entries =
            if given.as_array().is_some_and(|a| !a.is_empty()) && Some(given) != live_mf.as_ref() {
                entries_of(&new)
                    .into_iter()
                    .filter(|e| !e.manager.is_empty())
                    .collect()
            } else {
                live.as_ref().map(entries_of).unwrap_or_default()
            };
        let api = def.api_version();
        let mine = entries
            .iter()
            .position(|e| e.same_identity(manager, "Update", &params.subresource, &api));
        for (i, e) in entries.iter_mut().enumerate() {
            if Some(i) != mine {
                e.set = e.set.difference(&changed).difference(&cmp.removed);
            }
        }
        let prev = mine.map(|i| entries[i].set.clone()).unwrap_or_default();
        let mut set = prev.difference(&cmp.removed).union(&changed);
        strip_set(&mut set);
        if status_sub {
            let keep_status = set.get(&p(&["status"])).cloned();
            set = FieldSet::default();
            if let Some(s) = keep_status {
                set.children.insert("f:status".into(), s);
            }
        } else if status_ignored(def) {
            set = set.without_subtrees(&[p(&["status"])]);
        }
        unset_struct_members(&mut set);
        let time = if set != prev || new_c != live_cmp {
            now_rfc3339()
        } else {
            mine.map(|i| entries[i].time.clone())
                .unwrap_or_else(now_rfc3339)
        };
        let entry = Entry {
            manager: manager.to_string(),
            operation: "Update".into(),
            api_version: api,
            time,
            subresource: params.subresource.clone(),
            set,
        };
        match mine {
            Some(i) => entries[i] = entry,
            None => entries.push(entry),
        }
        self.commit(def, ns, name, live.as_ref(), new_c, entries, params.dry_run)
    }

    /// A `TokenRequest` for a ServiceAccount (`POST .../serviceaccounts/<name>/token`): issues
    /// a bearer token that then acts as that ServiceAccount. The answer is shaped as the real
    /// server's: the ServiceAccount's name, namespace, uid and creationTimestamp, an `Update`
    /// entry for the token subresource, no resourceVersion.
    ///
    /// # Errors
    /// 404 when the ServiceAccount does not exist.
    pub fn token_request(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        body: &Value,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let sa = self
            .get(def, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))?;
        let mut spec = body["spec"].as_object().cloned().unwrap_or_default();
        let secs = spec
            .get("expirationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(3600);
        let mut out_spec = Map::new();
        out_spec.insert(
            "audiences".into(),
            spec.remove("audiences")
                .unwrap_or_else(|| json!(["https://kubernetes.default.svc.cluster.local"])),
        );
        out_spec.insert("expirationSeconds".into(), json!(secs));
        out_spec.insert(
            "boundObjectRef".into(),
            spec.remove("boundObjectRef").unwrap_or(Value::Null),
        );
        let schema = Schema::new("authentication.k8s.io", "TokenRequest");
        let set = fieldset::to_field_set(&schema, &json!({"spec": body["spec"].clone()}));
        let now = now_rfc3339();
        let mut meta = Map::new();
        meta.insert("name".into(), json!(name));
        meta.insert("namespace".into(), json!(ns));
        meta.insert("uid".into(), sa["metadata"]["uid"].clone());
        meta.insert(
            "creationTimestamp".into(),
            sa["metadata"]["creationTimestamp"].clone(),
        );
        if !set.is_empty() {
            let entry = Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: "authentication.k8s.io/v1".into(),
                time: now.clone(),
                subresource: "token".into(),
                set,
            };
            meta.insert("managedFields".into(), json!([entry.to_json()]));
        }
        self.uid_counter += 1;
        let token = format!(
            "testapi-sa.{}",
            uid(self.uid_counter, self.seed).replace('-', "")
        );
        self.tokens.insert(
            token.clone(),
            crate::access::Identity::ServiceAccount {
                namespace: ns.to_string(),
                name: name.to_string(),
            },
        );
        let expires = crate::util::parse_rfc3339(&now).unwrap_or(0) + secs;
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": meta,
            "spec": out_spec,
            "status": {"token": token, "expirationTimestamp": crate::util::rfc3339(expires)},
        }))
    }

    /// With `fieldValidation=Strict`, rejects fields the type does not declare, as the real
    /// server's strict decoding does for create, update and (non-apply) patch.
    ///
    /// # Errors
    /// 400 BadRequest naming every unknown field.
    pub fn strict_check(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
        let schema = Schema::new(&def.group, &def.kind);
        let unknown = fieldset::undeclared_fields(&schema, obj);
        if unknown.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = unknown
            .iter()
            .map(|(_, j)| format!("unknown field {j:?}"))
            .collect();
        Err(ApiError::bad_request(format!(
            "{kind} in version {v:?} cannot be handled as a {kind}: strict decoding error: {}",
            list.join(", "),
            kind = def.kind,
            v = def.version,
        )))
    }

    /// Sets an object's status as a controller would (an Update on the `status` subresource).
    ///
    /// # Errors
    /// 404 when the object is absent.
    pub fn set_status(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        status: Value,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let live = self
            .get(def, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))?;
        let mut new = live;
        new["status"] = status;
        let params = WriteParams {
            subresource: "status".into(),
            ..WriteParams::default()
        };
        let auto = std::mem::replace(&mut self.auto_rollout, false);
        let r = self.update(def, ns, name, new, manager, &params, false);
        self.auto_rollout = auto;
        r
    }

    /// Deletes an object (and, for a Namespace, everything in it).
    ///
    /// # Errors
    /// 404 when absent.
    pub fn delete(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let key = Self::key(def, ns, name);
        let obj = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))?;
        let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
        let body = match def.kind.as_str() {
            "Namespace" => {
                let mut o = obj.clone();
                o["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                o["status"]["phase"] = json!("Terminating");
                o
            }
            "Pod" => obj.clone(),
            _ => crate::status::delete_success(def, name, &uid),
        };
        if dry_run {
            return Ok(body);
        }
        if def.kind == "Namespace" && def.group.is_empty() {
            // Like the real server: the namespace turns Terminating now; it and its contents
            // go away when the namespace controller (the reaper) finalizes it.
            if !self.terminating.contains_key(name) {
                self.rv += 1;
                let mut o = body.clone();
                o["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                self.objects.insert(key, o.clone());
                self.emit(def, "MODIFIED", o.clone());
                self.terminating
                    .insert(name.to_string(), std::time::Instant::now());
                return Ok(o);
            }
            return Ok(obj);
        }
        self.objects.remove(&key);
        self.rv += 1;
        let mut gone = obj;
        gone["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.emit(def, "DELETED", gone);
        if def.group == "apiextensions.k8s.io" {
            self.refresh_defs();
        }
        Ok(body)
    }

    /// Finalizes namespaces that have been Terminating for at least `delay`: deletes their
    /// contents, then the namespace (the namespace controller's job).
    pub fn reap(&mut self, delay: Duration) {
        let due: Vec<String> = self
            .terminating
            .iter()
            .filter(|(_, t)| t.elapsed() >= delay)
            .map(|(n, _)| n.clone())
            .collect();
        for ns in due {
            self.terminating.remove(&ns);
            let inside: Vec<ObjKey> = self
                .objects
                .keys()
                .filter(|(_, _, n, _)| *n == ns)
                .cloned()
                .collect();
            for k in inside.into_iter().chain(std::iter::once((
                String::new(),
                "namespaces".to_string(),
                String::new(),
                ns.clone(),
            ))) {
                if let Some(mut o) = self.objects.remove(&k) {
                    self.rv += 1;
                    o["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                    if let Some(d) = self
                        .defs
                        .iter()
                        .find(|d| d.group == k.0 && d.plural == k.1)
                        .cloned()
                    {
                        self.emit(&d, "DELETED", o);
                    }
                }
            }
        }
    }

    /// Rejects creation in a namespace that is being deleted.
    ///
    /// # Errors
    /// 403 Forbidden, as the NamespaceLifecycle admission plugin answers.
    pub fn require_live_namespace(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        if def.namespaced && self.terminating.contains_key(ns) {
            return Err(ApiError::forbidden(
                def,
                name,
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            ));
        }
        Ok(())
    }

    /// Stores an object verbatim except for server-set metadata (uid, resourceVersion,
    /// creationTimestamp, generation), bypassing managed fields, defaulting and validation.
    ///
    /// # Errors
    /// 400 when the kind is unknown or the name is missing.
    pub fn put_raw(&mut self, mut obj: Value) -> Result<Value, ApiError> {
        let api = obj["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let def = self
            .def_by_kind(&api, &kind)
            .ok_or_else(|| ApiError::bad_request(format!("unknown kind {api} {kind}")))?;
        let name = meta_str(&obj, "name")
            .ok_or_else(|| ApiError::bad_request("metadata.name is required"))?
            .to_string();
        let ns = meta_str(&obj, "namespace").unwrap_or("default").to_string();
        let key = Self::key(&def, &ns, &name);
        let old = self.objects.get(&key).cloned();
        let meta = obj
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .expect("metadata");
        if !def.namespaced {
            meta.remove("namespace");
        }
        if !meta.contains_key("uid") {
            let u = match &old {
                Some(o) => meta_str(o, "uid").unwrap_or_default().to_string(),
                None => {
                    self.uid_counter += 1;
                    uid(self.uid_counter, self.seed)
                }
            };
            obj["metadata"]["uid"] = json!(u);
        }
        if obj["metadata"].get("creationTimestamp").is_none() {
            obj["metadata"]["creationTimestamp"] = json!(now_rfc3339());
        }
        if def.generation && obj["metadata"].get("generation").is_none() {
            let g = old
                .as_ref()
                .and_then(|o| o["metadata"]["generation"].as_i64())
                .map(|g| {
                    g + i64::from(old.as_ref().map(|o| o.get("spec")) != Some(obj.get("spec")))
                })
                .unwrap_or(1);
            obj["metadata"]["generation"] = json!(g);
        }
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert(key, obj.clone());
        self.emit(
            &def,
            if old.is_some() { "MODIFIED" } else { "ADDED" },
            obj.clone(),
        );
        if def.group == "apiextensions.k8s.io" {
            self.refresh_defs();
        }
        Ok(obj)
    }
}

fn order_top(v: Value) -> Value {
    let Value::Object(mut m) = v else { return v };
    let mut out = Map::new();
    for k in ["kind", "apiVersion", "metadata"] {
        if let Some(x) = m.remove(k) {
            out.insert(k.into(), x);
        }
    }
    let status = m.remove("status");
    out.extend(m);
    if let Some(s) = status {
        out.insert("status".into(), s);
    }
    Value::Object(out)
}

fn strip_server_fields(v: &mut Value) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in SERVER_META.iter().filter(|k| **k != "name") {
            m.remove(*k);
        }
    }
}

/// Checks a request body against the URL: kind, apiVersion, name, namespace.
///
/// # Errors
/// 400 BadRequest with the real server's wording.
pub fn check_body(
    def: &ResourceDef,
    ns: &str,
    name: &str,
    body: &Value,
    need_type: bool,
) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request was in an unknown format",
        ));
    }
    if need_type {
        let api = body["apiVersion"].as_str().unwrap_or_default();
        let kind = body["kind"].as_str().unwrap_or_default();
        if api.is_empty() || kind.is_empty() {
            return Err(ApiError::bad_request(format!(
                "error decoding YAML: Object 'Kind' is missing in '{body}'"
            )));
        }
        if api != def.api_version() || kind != def.kind {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api}) does not match the expected API version ({})",
                def.api_version()
            )));
        }
    }
    if let Some(n) = meta_str(body, "name")
        && !name.is_empty()
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    if def.namespaced
        && let Some(n) = meta_str(body, "namespace")
        && !n.is_empty()
        && n != ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

fn conflict_error(entries: &[Entry], conflicts: &[(usize, Vec<Vec<String>>)]) -> ApiError {
    let mut causes = Vec::new();
    for (i, paths) in conflicts {
        for path in paths {
            causes.push(Cause {
                reason: "FieldManagerConflict".into(),
                message: format!("conflict with {}", entries[*i].printed()),
                field: path_string(path),
            });
        }
    }
    let message = if causes.len() == 1 {
        format!(
            "Apply failed with 1 conflict: {}: {}",
            causes[0].message, causes[0].field
        )
    } else {
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, paths) in conflicts {
            by.entry(entries[*i].printed())
                .or_default()
                .extend(paths.iter().map(|p| path_string(p)));
        }
        let mut lines = Vec::new();
        for (m, ps) in by {
            lines.push(format!("conflicts with {m}:"));
            lines.extend(ps.into_iter().map(|p| format!("- {p}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            causes.len(),
            lines.join("\n")
        )
    };
    ApiError::apply_conflict(message, causes)
}

/// A list object as the real server writes it (`kind`, `apiVersion`, `metadata`, `items`).
struct ListOut<'a> {
    kind: String,
    api_version: String,
    resource_version: String,
    items: Vec<ListItem<'a>>,
}

impl serde::Serialize for ListOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("kind", &self.kind)?;
        m.serialize_entry("apiVersion", &self.api_version)?;
        m.serialize_entry(
            "metadata",
            &json!({"resourceVersion": self.resource_version}),
        )?;
        m.serialize_entry("items", &self.items)?;
        m.end()
    }
}

/// A stored object in a list: without `apiVersion` and `kind` when the flag says so (typed
/// lists of built-in kinds).
struct ListItem<'a>(&'a Value, bool);

impl serde::Serialize for ListItem<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            ListItem(Value::Object(o), true) => {
                let kept = o.iter().filter(|(k, _)| *k != "apiVersion" && *k != "kind");
                let mut m = s.serialize_map(None)?;
                for (k, v) in kept {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
            ListItem(v, _) => v.serialize(s),
        }
    }
}
