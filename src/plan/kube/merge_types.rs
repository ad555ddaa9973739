//! How lists merge (`x-kubernetes-list-type`, `list-map-keys`): read from the server's OpenAPI v3
//! documents, or from the recorded table when they cannot be read.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::resource::At;

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
        for (group, kind, path, lt, keys) in super::compiled::COMPILED {
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
    pub(super) fn of(&self, api_version: &str, kind: &str) -> Option<&BTreeMap<String, ListType>> {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
}
