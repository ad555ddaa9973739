//! A request body's checks and the stored form of an object: fields in the server's order, server
//! fields out of what a client sends.

use super::*;

pub(super) fn status_ignored(def: &ResourceDef) -> bool {
    def.status
}

pub(super) fn order_top(v: Value) -> Value {
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

pub(super) fn strip_server_fields(v: &mut Value) {
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
