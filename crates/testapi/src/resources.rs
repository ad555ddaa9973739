//! The resource kinds the server knows, and the discovery documents built from them.

use serde_json::{Value, json};

/// One served resource (a kind at a group-version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDef {
    /// API group ("" for core).
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Plural resource name, e.g. `deployments`.
    pub plural: String,
    /// Singular resource name.
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names (`deploy`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Verbs the main resource supports.
    pub verbs: Vec<String>,
    /// Whether `metadata.generation` tracks spec changes.
    pub generation: bool,
    /// Whether a `status` subresource exists (status is then ignored on the main resource).
    pub status: bool,
    /// Whether a `scale` subresource exists.
    pub scale: bool,
    /// Whether objects can be written (Pods are read-only here).
    pub writable: bool,
}

impl ResourceDef {
    /// `apiVersion` string (`v1`, `apps/v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group-qualified resource, as error messages name it (`deployments.apps`).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The group-qualified kind, as validation messages name it (`Deployment.apps`).
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

const ALL_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

#[allow(clippy::too_many_arguments)]
fn def(
    group: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    all: bool,
    generation: bool,
    status: bool,
) -> ResourceDef {
    ResourceDef {
        group: group.into(),
        version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: if all { vec!["all".into()] } else { Vec::new() },
        verbs: ALL_VERBS.iter().map(|s| s.to_string()).collect(),
        generation,
        status,
        scale: false,
        writable: true,
    }
}

/// The built-in resources.
pub fn builtin() -> Vec<ResourceDef> {
    let mut v = vec![
        def(
            "",
            "Namespace",
            "namespaces",
            false,
            &["ns"],
            false,
            false,
            true,
        ),
        def(
            "",
            "ConfigMap",
            "configmaps",
            true,
            &["cm"],
            false,
            false,
            false,
        ),
        def("", "Secret", "secrets", true, &[], false, false, false),
        def("", "Service", "services", true, &["svc"], true, false, true),
        def(
            "",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["sa"],
            false,
            false,
            false,
        ),
        def(
            "",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            &["pvc"],
            false,
            false,
            true,
        ),
        def("", "Pod", "pods", true, &["po"], true, false, true),
        def(
            "",
            "Endpoints",
            "endpoints",
            true,
            &["ep"],
            false,
            false,
            false,
        ),
        def("", "Event", "events", true, &["ev"], false, false, false),
        def(
            "",
            "ResourceQuota",
            "resourcequotas",
            true,
            &["quota"],
            false,
            false,
            true,
        ),
        def(
            "apps",
            "Deployment",
            "deployments",
            true,
            &["deploy"],
            true,
            true,
            true,
        ),
        def(
            "apps",
            "StatefulSet",
            "statefulsets",
            true,
            &["sts"],
            true,
            true,
            true,
        ),
        def(
            "apps",
            "DaemonSet",
            "daemonsets",
            true,
            &["ds"],
            true,
            true,
            true,
        ),
        def(
            "apps",
            "ReplicaSet",
            "replicasets",
            true,
            &["rs"],
            true,
            true,
            true,
        ),
        def(
            "apps",
            "ControllerRevision",
            "controllerrevisions",
            true,
            &[],
            false,
            false,
            false,
        ),
        def(
            "apiregistration.k8s.io",
            "APIService",
            "apiservices",
            false,
            &[],
            false,
            false,
            true,
        ),
        def(
            "events.k8s.io",
            "Event",
            "events",
            true,
            &["ev"],
            false,
            false,
            false,
        ),
        def(
            "rbac.authorization.k8s.io",
            "ClusterRole",
            "clusterroles",
            false,
            &[],
            false,
            false,
            false,
        ),
        def(
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            &[],
            false,
            false,
            false,
        ),
        def(
            "rbac.authorization.k8s.io",
            "Role",
            "roles",
            true,
            &[],
            false,
            false,
            false,
        ),
        def(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            "rolebindings",
            true,
            &[],
            false,
            false,
            false,
        ),
        def(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            false,
            true,
            true,
        ),
        def(
            "networking.k8s.io",
            "Ingress",
            "ingresses",
            true,
            &["ing"],
            false,
            true,
            true,
        ),
        // Leases, as leader election and labctl's apply lock use them (create, get, update
        // guarded by resourceVersion, delete).
        def(
            "coordination.k8s.io",
            "Lease",
            "leases",
            true,
            &[],
            false,
            false,
            false,
        ),
    ];
    for r in &mut v {
        match r.kind.as_str() {
            "Namespace" => r.verbs.retain(|v| v != "deletecollection"),
            "Deployment" | "StatefulSet" | "ReplicaSet" => r.scale = true,
            "Pod" => r.writable = true,
            "Endpoints" => r.singular = "endpoints".into(),
            _ => {}
        }
    }
    v
}

/// Resources declared by stored CustomResourceDefinitions.
pub fn from_crd(crd: &Value) -> Vec<ResourceDef> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let Some(plural) = names["plural"].as_str() else {
        return Vec::new();
    };
    let kind = names["kind"].as_str().unwrap_or_default();
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for ver in spec["versions"].as_array().into_iter().flatten() {
        if ver["served"].as_bool() == Some(false) {
            continue;
        }
        let has_status = ver["subresources"]["status"].is_object();
        out.push(ResourceDef {
            group: group.into(),
            version: ver["name"].as_str().unwrap_or("v1").into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: names["singular"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| kind.to_lowercase()),
            namespaced,
            short_names: strs(&names["shortNames"]),
            categories: strs(&names["categories"]),
            verbs: ALL_VERBS.iter().map(|s| s.to_string()).collect(),
            generation: true,
            status: has_status,
            scale: false,
            writable: true,
        });
    }
    out
}

fn subresources(r: &ResourceDef) -> Vec<(&'static str, String, Vec<&'static str>)> {
    let mut subs = Vec::new();
    if r.status {
        subs.push(("status", r.kind.clone(), vec!["get", "patch", "update"]));
    }
    if r.scale {
        subs.push(("scale", "Scale".to_string(), vec!["get", "patch", "update"]));
    }
    if r.kind == "Namespace" {
        subs.push(("finalize", "Namespace".to_string(), vec!["update"]));
    }
    if r.kind == "ServiceAccount" && r.group.is_empty() {
        subs.push(("token", "TokenRequest".to_string(), vec!["create"]));
    }
    subs.sort_by_key(|(name, _, _)| *name);
    subs
}

/// The group order of the real server's discovery (its built-in group priorities); groups
/// it does not know (custom resources) follow, in first-seen order.
const GROUP_ORDER: [&str; 20] = [
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "resource.k8s.io",
    "flowcontrol.apiserver.k8s.io",
];

/// `storageVersionHash`: the first 8 bytes of SHA-256 of `group/version/kind`, base64, as
/// the real server computes it for its storage version.
pub fn storage_version_hash(r: &ResourceDef) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{}/{}/{}", r.group, r.version, r.kind));
    crate::defaults::base64(&digest[..8])
}

/// The definitions of one group-version, in the real server's order (by resource name).
fn sorted_of<'a>(defs: &'a [ResourceDef], group: &str, version: &str) -> Vec<&'a ResourceDef> {
    let mut v: Vec<&ResourceDef> = defs
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    v.sort_by(|a, b| a.plural.cmp(&b.plural));
    v
}

/// `APIResourceList` for one group-version.
pub fn resource_list(defs: &[ResourceDef], group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in sorted_of(defs, group, version) {
        let mut e = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        e["storageVersionHash"] = json!(storage_version_hash(r));
        resources.push(e);
        for (sub, kind, verbs) in subresources(r) {
            let mut s = json!({
                "name": format!("{}/{}", r.plural, sub),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if sub == "scale" {
                s["group"] = json!("autoscaling");
                s["version"] = json!("v1");
            }
            if sub == "token" {
                s["group"] = json!("authentication.k8s.io");
                s["version"] = json!("v1");
            }
            resources.push(s);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    })
}

/// The non-core groups, in first-seen order, with their versions.
pub fn groups(defs: &[ResourceDef]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in defs.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) => {
                if !vs.contains(&r.version) {
                    vs.push(r.version.clone());
                }
            }
            None => out.push((r.group.clone(), vec![r.version.clone()])),
        }
    }
    let rank = |g: &str| {
        GROUP_ORDER
            .iter()
            .position(|o| *o == g)
            .unwrap_or(GROUP_ORDER.len())
    };
    out.sort_by_key(|(g, _)| rank(g));
    out
}

/// `APIGroupList` (legacy `/apis`).
pub fn group_list(defs: &[ResourceDef]) -> Value {
    let groups: Vec<Value> = groups(defs)
        .into_iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({
                "name": g,
                "versions": versions,
                "preferredVersion": versions[0].clone(),
            })
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `APIGroup` (legacy `/apis/<group>`).
pub fn group(defs: &[ResourceDef], name: &str) -> Option<Value> {
    group_list(defs)["groups"]
        .as_array()?
        .iter()
        .find(|g| g["name"] == name)
        .map(|g| {
            let mut g = g.clone();
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            g
        })
}

/// `APIVersions` (legacy `/api`).
pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
    })
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`) for the core
/// group (`core == true`, served at `/api`) or for all other groups (`/apis`).
pub fn aggregated(defs: &[ResourceDef], core: bool) -> Value {
    let group_names: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".to_string()])]
    } else {
        groups(defs)
    };
    let items: Vec<Value> = group_names
        .into_iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = sorted_of(defs, &g, v)
                        .into_iter()
                        .map(|r| {
                            // The resource's own group-version is left empty.
                            let mut e = json!({
                                "resource": r.plural,
                                "responseKind": {"group": "", "version": "", "kind": r.kind},
                                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": r.singular,
                                "verbs": r.verbs,
                            });
                            if !r.short_names.is_empty() {
                                e["shortNames"] = json!(r.short_names);
                            }
                            if !r.categories.is_empty() {
                                e["categories"] = json!(r.categories);
                            }
                            let subs: Vec<Value> = subresources(r)
                                .into_iter()
                                .map(|(sub, kind, verbs)| {
                                    let (gr, ve) = match sub {
                                        "scale" => ("autoscaling", "v1"),
                                        "token" => ("authentication.k8s.io", "v1"),
                                        _ => ("", ""),
                                    };
                                    json!({
                                        "subresource": sub,
                                        "responseKind": {"group": gr, "version": ve, "kind": kind},
                                        "verbs": verbs,
                                    })
                                })
                                .collect();
                            if !subs.is_empty() {
                                e["subresources"] = json!(subs);
                            }
                            e
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut item = json!({"metadata": {}, "versions": versions});
            if !g.is_empty() {
                item["metadata"]["name"] = json!(g);
            }
            item
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// Group-version path as OpenAPI v3 names it: `api/v1`, `apis/apps/v1`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The OpenAPI v3 root (`/openapi/v3`): one entry per served group-version.
pub fn openapi_v3_root(defs: &[ResourceDef]) -> Value {
    let mut paths = serde_json::Map::new();
    for d in defs {
        let p = gv_path(&d.group, &d.version);
        let url = format!("/openapi/v3/{p}?hash={:016X}", fnv(&p));
        paths.insert(p, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Schema name of a type of the generated type table (`io.k8s.api.core.v1.ServiceSpec`).
fn schema_name(ty: &str) -> String {
    format!("io.k8s.{ty}")
}

/// One property of an OpenAPI schema: a reference to its type (an array of it when the
/// recorded table says it is a list), with the list/map extensions of the real server.
fn property(parent: &str, field: &str, child: &str) -> Value {
    let ext = crate::list_semantics::PROPERTIES
        .iter()
        .find(|e| e.key == format!("io.k8s.{parent}.{field}"));
    let (inner, is_map) = match child.strip_prefix("map:") {
        Some(i) => (i, true),
        None => (child, false),
    };
    let target = if inner.is_empty() {
        json!({})
    } else {
        json!({"$ref": format!("#/components/schemas/{}", schema_name(inner))})
    };
    let mut p = if ext.is_some_and(|e| e.list_type.is_some()) {
        json!({"type": "array", "items": target})
    } else if is_map {
        json!({"type": "object", "additionalProperties": target})
    } else if inner.is_empty() {
        json!({})
    } else {
        json!({"allOf": [target], "default": {}})
    };
    if let Some(e) = ext {
        if let Some(t) = e.list_type {
            p["x-kubernetes-list-type"] = json!(t);
        }
        if !e.list_map_keys.is_empty() {
            p["x-kubernetes-list-map-keys"] = json!(e.list_map_keys);
        }
        if let Some(t) = e.map_type {
            p["x-kubernetes-map-type"] = json!(t);
        }
        if let Some(k) = e.patch_merge_key {
            p["x-kubernetes-patch-merge-key"] = json!(k);
        }
        if let Some(k) = e.patch_strategy {
            p["x-kubernetes-patch-strategy"] = json!(k);
        }
    }
    p
}

/// Adds the schema of `ty` and of every type it reaches.
fn add_schemas(ty: &str, schemas: &mut serde_json::Map<String, Value>) {
    let name = schema_name(ty);
    if schemas.contains_key(&name) {
        return;
    }
    let Some((_, fields)) = crate::schema_fields::TYPES.iter().find(|(t, _)| *t == ty) else {
        return;
    };
    let mut props = serde_json::Map::new();
    for (f, child) in fields.iter() {
        props.insert((*f).to_string(), property(ty, f, child));
    }
    let mut schema = json!({"type": "object", "properties": props});
    if let Some(e) = crate::list_semantics::PROPERTIES
        .iter()
        .find(|e| e.key == name)
        && let Some(t) = e.map_type
    {
        schema["x-kubernetes-map-type"] = json!(t);
    }
    schemas.insert(name, schema);
    for (_, child) in fields.iter() {
        let inner = child.strip_prefix("map:").unwrap_or(child);
        if !inner.is_empty() {
            add_schemas(inner, schemas);
        }
    }
}

/// The rest of the recorded table for the core/v1 and apps/v1 documents: the schemas of kinds
/// the server does not serve (Node, PersistentVolume, ...) and fields the generated type table
/// lacks still carry their extensions, as the real documents do.
fn add_recorded_extensions(gv: &str, schemas: &mut serde_json::Map<String, Value>) {
    let carried = |schema: &str| match gv {
        "api/v1" => {
            schema.starts_with("io.k8s.api.core.v1.")
                || schema.starts_with("io.k8s.apimachinery.")
                || schema.starts_with("io.k8s.api.authentication.v1.")
        }
        "apis/apps/v1" => {
            schema.starts_with("io.k8s.api.apps.v1.")
                || schema.starts_with("io.k8s.api.core.v1.")
                || schema.starts_with("io.k8s.apimachinery.")
        }
        _ => false,
    };
    for e in crate::list_semantics::PROPERTIES {
        let (schema, prop) = match e.key.rsplit_once('.') {
            Some((s, p)) if p.starts_with(|c: char| c.is_ascii_lowercase()) => (s, Some(p)),
            _ => (e.key, None),
        };
        if !carried(schema) {
            continue;
        }
        let entry = schemas
            .entry(schema.to_string())
            .or_insert_with(|| json!({"type": "object", "properties": {}}));
        let Some(prop) = prop else {
            if let Some(t) = e.map_type {
                entry["x-kubernetes-map-type"] = json!(t);
            }
            continue;
        };
        if entry["properties"].get(prop).is_some() {
            continue;
        }
        let parent = schema.strip_prefix("io.k8s.").unwrap_or(schema);
        entry["properties"][prop] = property(parent, prop, "");
    }
}

/// The OpenAPI v3 document of one group-version (`/openapi/v3/api/v1`,
/// `/openapi/v3/apis/apps/v1`): the item paths with their operations,
/// `x-kubernetes-group-version-kind` and the write query parameters (kubectl checks
/// `fieldValidation` there to leave validation to the server), and, for built-in kinds, the
/// schemas of every type they reach with the real server's `x-kubernetes-list-type`,
/// `x-kubernetes-list-map-keys` and `x-kubernetes-map-type` extensions (from the recorded
/// table). Custom resources get a permissive schema.
pub fn openapi_v3_gv(defs: &[ResourceDef], gv: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let mut found = false;
    for d in defs.iter().filter(|d| gv_path(&d.group, &d.version) == gv) {
        found = true;
        let gvk = json!({"group": d.group, "version": d.version, "kind": d.kind});
        let params: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force", "pretty"]
            .iter()
            .map(|n| json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
            .collect();
        let root = crate::schema_fields::ROOTS
            .iter()
            .find(|(g, k, _)| *g == d.group && *k == d.kind)
            .map(|(_, _, t)| *t);
        let name = match root {
            Some(t) => schema_name(t),
            None => {
                let reversed: Vec<&str> = d.group.split('.').rev().collect();
                format!("{}.{}.{}", reversed.join("."), d.version, d.kind)
            }
        };
        let op = |verb: &str| {
            json!({
                "operationId": format!("{verb}{}", d.kind),
                "parameters": params,
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}}},
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        let base = if d.namespaced {
            format!("/{gv}/namespaces/{{namespace}}/{}/{{name}}", d.plural)
        } else {
            format!("/{gv}/{}/{{name}}", d.plural)
        };
        paths.insert(
            base,
            json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}),
        );
        match root {
            Some(t) => {
                add_schemas(t, &mut schemas);
                if let Some(s) = schemas.get_mut(&name) {
                    s["x-kubernetes-group-version-kind"] = json!([gvk]);
                }
            }
            None => {
                schemas.insert(
                    name,
                    json!({
                        "type": "object",
                        "x-kubernetes-group-version-kind": [gvk],
                        "x-kubernetes-preserve-unknown-fields": true,
                    }),
                );
            }
        }
    }
    if found && defs.iter().any(|d| d.group.is_empty() || d.group == "apps") {
        add_recorded_extensions(gv, &mut schemas);
    }
    found.then(|| {
        json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.36.2"},
            "paths": paths,
            "components": {"schemas": schemas},
        })
    })
}
