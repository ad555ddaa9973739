//! `Accept: application/json;as=Table` answers, as kubectl's `get` asks for them.

use super::*;

pub(super) fn age(created: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let secs = crate::util::parse_rfc3339(created).map_or(0, |c| (now - c).max(0));
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Computes one table cell from an object.
pub(super) type Cell = fn(&Value) -> Value;

/// Renders a `meta.k8s.io/v1` Table when the client asks for one (kubectl's `get`).
pub(super) fn maybe_table(headers: &HeaderMap, def: &ResourceDef, v: Value, list: bool) -> Value {
    if !wants_table(headers) {
        return v;
    }
    let items: Vec<Value> = if list {
        v["items"].as_array().cloned().unwrap_or_default()
    } else {
        vec![v.clone()]
    };
    let mut t = table_of(def, &items, v["metadata"]["resourceVersion"].clone());
    if let Some(c) = v["metadata"].get("continue") {
        t["metadata"]["continue"] = c.clone();
    }
    t
}

/// A Table of `items`.
pub(super) fn table_of(def: &ResourceDef, items: &[Value], rv: Value) -> Value {
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    let extra: Vec<(&str, Cell)> = match def.kind.as_str() {
        "Namespace" => vec![("Status", |o| o["status"]["phase"].clone())],
        "ConfigMap" => vec![("Data", |o| {
            json!(
                o["data"].as_object().map_or(0, |m| m.len())
                    + o["binaryData"].as_object().map_or(0, |m| m.len())
            )
        })],
        "Secret" => vec![
            ("Type", |o| o["type"].clone()),
            ("Data", |o| {
                json!(o["data"].as_object().map_or(0, |m| m.len()))
            }),
        ],
        "Deployment" => vec![
            ("Ready", |o| {
                json!(format!(
                    "{}/{}",
                    o["status"]["readyReplicas"].as_i64().unwrap_or(0),
                    o["spec"]["replicas"].as_i64().unwrap_or(1)
                ))
            }),
            ("Up-to-date", |o| {
                json!(o["status"]["updatedReplicas"].as_i64().unwrap_or(0))
            }),
            ("Available", |o| {
                json!(o["status"]["availableReplicas"].as_i64().unwrap_or(0))
            }),
        ],
        "Service" => vec![
            ("Type", |o| o["spec"]["type"].clone()),
            ("Cluster-IP", |o| o["spec"]["clusterIP"].clone()),
            ("External-IP", |_| json!("<none>")),
            ("Port(s)", |o| {
                let ports: Vec<String> = o["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| match p["nodePort"].as_u64() {
                        Some(np) => format!(
                            "{}:{}/{}",
                            p["port"],
                            np,
                            p["protocol"].as_str().unwrap_or("TCP")
                        ),
                        None => {
                            format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP"))
                        }
                    })
                    .collect();
                json!(ports.join(","))
            }),
        ],
        _ => vec![],
    };
    for (n, _) in &extra {
        columns.push(
            json!({"name": n, "type": "string", "format": "", "description": n, "priority": 0}),
        );
    }
    columns.push(json!({"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0}));
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            for (_, f) in &extra {
                cells.push(f(o));
            }
            cells.push(json!(age(o["metadata"]["creationTimestamp"].as_str().unwrap_or_default())));
            let mut meta = o["metadata"].clone();
            if let Some(m) = meta.as_object_mut() {
                m.remove("managedFields");
            }
            json!({
                "cells": cells,
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta},
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": columns,
        "rows": rows,
    })
}
