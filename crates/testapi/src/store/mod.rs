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

mod body;
mod cluster;
mod list;
mod managed;
mod write;

pub use body::check_body;
use body::*;
use managed::*;
pub use managed::{Entry, entries_of};

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
    /// Transport faults: `(method or "*", path prefix, fault, remaining uses)`.
    pub transport_faults: Vec<(String, String, TransportFault, usize)>,
    /// Injected latency per request.
    pub latency: Duration,
    /// When set, workloads report rolled-out status right after each write.
    pub auto_rollout: bool,
    /// Images whose workloads never finish rolling out, even in auto-rollout mode.
    pub stuck_images: Vec<String>,
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
            transport_faults: Vec::new(),
            latency: Duration::ZERO,
            auto_rollout: false,
            stuck_images: Vec::new(),
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

    /// The injected transport fault for a request, if one matches (consuming one use of it).
    pub fn take_transport_fault(&mut self, method: &str, path: &str) -> Option<TransportFault> {
        let i = self.transport_faults.iter().position(|(m, p, _, n)| {
            *n > 0 && (m == "*" || m == method) && path.starts_with(p.as_str())
        })?;
        let f = &mut self.transport_faults[i];
        f.3 -= 1;
        let t = f.2;
        if f.3 == 0 {
            self.transport_faults.remove(i);
        }
        Some(t)
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

    fn is_builtin(&self, def: &ResourceDef) -> bool {
        self.builtin
            .iter()
            .any(|b| b.group == def.group && b.plural == def.plural)
    }

    fn next_uid(&mut self) -> String {
        self.uid_counter += 1;
        uid(self.uid_counter, self.seed)
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

/// A failure below the API: what a dying server or a broken network does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFault {
    /// The connection is closed in the middle of the answer (headers sent, the body cut).
    Close,
    /// The answer comes after this long (a stalled server, a black-holed connection).
    Stall(std::time::Duration),
}
