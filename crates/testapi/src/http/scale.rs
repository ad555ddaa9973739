//! The `scale` subresource of workloads.

use super::*;

pub(super) fn scale_of(obj: &Value) -> Value {
    let m = &obj["metadata"];
    let selector = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|l| {
            l.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"]},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// The `scale` subresource of Deployments and StatefulSets.
#[allow(clippy::too_many_arguments)]
pub(super) fn scale(
    st: &mut State,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    method: &Method,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let live = st
        .get(def, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(def, name))?;
    let current = scale_of(&live);
    let wanted = match *method {
        Method::GET => return Ok(Reply::Json(200, current)),
        Method::PUT => decode_body(body)?,
        Method::PATCH => {
            let patch = decode_body(body)?;
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if ct.starts_with("application/json-patch+json") {
                json_patch(&current, &patch)?
            } else {
                let schema = crate::schema::Schema::new("autoscaling", "Scale");
                merge_patch(&schema, &current, &patch, false, &mut Vec::new())
            }
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    let mut new = live;
    new["spec"]["replicas"] = wanted["spec"]["replicas"].clone();
    let params = query.write_params("scale");
    let manager = update_manager(&params, headers);
    let out = st.update(def, ns, name, new, &manager, &params, false)?;
    Ok(Reply::Json(200, scale_of(&out)))
}
