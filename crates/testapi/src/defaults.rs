//! Defaulting, allocation and validation for the built-in kinds, following the real API
//! server where labctl's diff could notice (defaulted fields are never owned by an applier),
//! plus the rolled-out status a controller would write.

use serde_json::{Map, Value, json};

use crate::resources::ResourceDef;
use crate::status::{ApiError, Cause};
use crate::store::State;
use crate::util::parse_quantity;

fn set_default(obj: &mut Value, key: &str, v: Value) {
    if let Some(m) = obj.as_object_mut()
        && m.get(key).is_none_or(Value::is_null)
    {
        m.insert(key.into(), v);
    }
}

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    if !v[key].is_object() {
        v[key] = json!({});
    }
    &mut v[key]
}

fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                default_container(c);
            }
        }
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    if let Some(vs) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vs {
            for (src, field) in [("configMap", "defaultMode"), ("secret", "defaultMode")] {
                if v[src].is_object() {
                    set_default(&mut v[src], field, json!(420));
                }
            }
        }
    }
}

fn default_container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    let image = c["image"].as_str().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or_default();
    let pull = if !last.contains(':') && !image.contains('@') || image.ends_with(":latest") {
        "Always"
    } else {
        "IfNotPresent"
    };
    set_default(c, "imagePullPolicy", json!(pull));
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    set_default(c, "resources", json!({}));
    if let Some(ps) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ps {
            set_default(p, "protocol", json!("TCP"));
        }
    }
    if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
        for e in env {
            if let Some(fr) = e
                .get_mut("valueFrom")
                .and_then(|v| v.get_mut("fieldRef"))
                .filter(|f| f.is_object())
            {
                set_default(fr, "apiVersion", json!("v1"));
            }
        }
    }
}

fn default_template(spec: &mut Value) {
    if spec["template"].is_object() {
        let t = &mut spec["template"];
        if t.get("spec").is_some() {
            default_pod_spec(&mut t["spec"]);
        }
    }
}

/// Defaults (and allocates) fields of a new or updated object, as the real server does on
/// decode and in its REST strategies.
pub fn apply(state: &mut State, def: &ResourceDef, old: Option<&Value>, obj: &mut Value) {
    if def.group == "apiextensions.k8s.io" && def.kind == "CustomResourceDefinition" {
        default_crd(obj);
        return;
    }
    if def.group == "networking.k8s.io" && def.kind == "Ingress" {
        set_default(obj_mut(obj, "status"), "loadBalancer", json!({}));
        return;
    }
    if !def.group.is_empty() && def.group != "apps" {
        return;
    }
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match def.kind.as_str() {
        "Namespace" => {
            let labels = obj_mut(obj_mut(obj, "metadata"), "labels");
            labels["kubernetes.io/metadata.name"] = json!(name);
            set_default(obj_mut(obj, "spec"), "finalizers", json!(["kubernetes"]));
            set_default(obj_mut(obj, "status"), "phase", json!("Active"));
        }
        "Secret" => {
            set_default(obj, "type", json!("Opaque"));
            if let Some(Value::Object(sd)) =
                obj.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                let data = obj_mut(obj, "data");
                for (k, v) in sd {
                    data[k] = json!(base64(v.as_str().unwrap_or_default().as_bytes()));
                }
            }
        }
        "PersistentVolumeClaim" => {
            if old.is_none() {
                let meta = obj_mut(obj, "metadata");
                set_default(meta, "finalizers", json!(["kubernetes.io/pvc-protection"]));
            }
            let spec = obj_mut(obj, "spec");
            set_default(spec, "volumeMode", json!("Filesystem"));
            if old.is_none()
                && let Some(sc) = &state.default_storage_class
            {
                set_default(spec, "storageClassName", json!(sc));
            }
            set_default(obj_mut(obj, "status"), "phase", json!("Pending"));
        }
        "Pod" => {
            default_pod_spec(obj_mut(obj, "spec"));
            set_default(obj_mut(obj, "status"), "phase", json!("Pending"));
        }
        "Service" => default_service(state, old, obj),
        // The quota controller fills status in; until then the server stores it empty.
        "ResourceQuota" if old.is_none() => set_default(obj, "status", json!({})),
        "Deployment" => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            let strategy = obj_mut(spec, "strategy");
            set_default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let ru = obj_mut(strategy, "rollingUpdate");
                set_default(ru, "maxUnavailable", json!("25%"));
                set_default(ru, "maxSurge", json!("25%"));
            }
            default_template(spec);
        }
        "StatefulSet" => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            let us = obj_mut(spec, "updateStrategy");
            set_default(us, "type", json!("RollingUpdate"));
            if us["type"] == "RollingUpdate" {
                set_default(obj_mut(us, "rollingUpdate"), "partition", json!(0));
            }
            let pr = obj_mut(spec, "persistentVolumeClaimRetentionPolicy");
            set_default(pr, "whenDeleted", json!("Retain"));
            set_default(pr, "whenScaled", json!("Retain"));
            if let Some(vcts) = spec
                .get_mut("volumeClaimTemplates")
                .and_then(Value::as_array_mut)
            {
                for v in vcts {
                    if v.is_object() {
                        obj_mut(v, "metadata");
                        set_default(obj_mut(v, "spec"), "volumeMode", json!("Filesystem"));
                        set_default(obj_mut(v, "status"), "phase", json!("Pending"));
                        set_default(v, "apiVersion", json!("v1"));
                        set_default(v, "kind", json!("PersistentVolumeClaim"));
                    }
                }
            }
            default_template(spec);
        }
        "DaemonSet" => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "revisionHistoryLimit", json!(10));
            let us = obj_mut(spec, "updateStrategy");
            set_default(us, "type", json!("RollingUpdate"));
            if us["type"] == "RollingUpdate" {
                let ru = obj_mut(us, "rollingUpdate");
                set_default(ru, "maxUnavailable", json!(1));
                set_default(ru, "maxSurge", json!(0));
            }
            default_template(spec);
        }
        _ => {}
    }
    if matches!(
        def.kind.as_str(),
        "Deployment" | "StatefulSet" | "DaemonSet"
    ) && old.is_none()
    {
        set_default(obj, "status", json!({}));
    }
}

fn default_crd(obj: &mut Value) {
    let spec = obj_mut(obj, "spec");
    let names = obj_mut(spec, "names");
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    set_default(names, "singular", json!(kind.to_lowercase()));
    set_default(names, "listKind", json!(format!("{kind}List")));
    let names = names.clone();
    set_default(obj_mut(spec, "conversion"), "strategy", json!("None"));
    let stored: Vec<Value> = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == json!(true))
        .map(|v| v["name"].clone())
        .collect();
    let now = crate::util::now_rfc3339();
    obj["status"] = json!({
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now,
             "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now,
             "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ],
        "storedVersions": stored,
    });
}

fn default_service(state: &mut State, old: Option<&Value>, obj: &mut Value) {
    let spec = obj_mut(obj, "spec");
    set_default(spec, "type", json!("ClusterIP"));
    let ty = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    set_default(spec, "sessionAffinity", json!("None"));
    if ty == "ExternalName" {
        return;
    }
    let old_ip = old
        .and_then(|o| o["spec"]["clusterIP"].as_str())
        .map(String::from);
    if spec["clusterIP"].as_str().is_none_or(str::is_empty) {
        let ip = match old_ip {
            Some(ip) if !ip.is_empty() => ip,
            _ => state.alloc_ip(),
        };
        spec["clusterIP"] = json!(ip);
    }
    if spec["clusterIPs"].as_array().is_none_or(Vec::is_empty) || old.is_some() {
        spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);
    }
    set_default(spec, "ipFamilies", json!(["IPv4"]));
    set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    let node_ports = ty == "NodePort" || ty == "LoadBalancer";
    if node_ports {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    let old_ports: Vec<Value> = old
        .and_then(|o| o["spec"]["ports"].as_array().cloned())
        .unwrap_or_default();
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut() {
            set_default(p, "protocol", json!("TCP"));
            let port = p["port"].clone();
            set_default(p, "targetPort", port);
        }
        for p in ports.iter_mut() {
            if node_ports && p["nodePort"].as_u64().is_none_or(|n| n == 0) {
                let prev = old_ports
                    .iter()
                    .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"])
                    .and_then(|o| o["nodePort"].as_u64());
                let np = match prev {
                    Some(n) => n,
                    None => state.alloc_node_port(),
                };
                p["nodePort"] = json!(np);
            }
        }
    }
    set_default(obj_mut(obj, "status"), "loadBalancer", json!({}));
}

pub(crate) fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// A value as the real server (1.34 and later) prints it in validation messages: compact JSON
/// with Go's field order and sorted map keys.
fn json_value(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// A LabelSelector as printed in validation messages (`{"matchLabels":{...}}`).
fn label_selector_value(v: &Value) -> String {
    let mut out = serde_json::Map::new();
    for k in ["matchLabels", "matchExpressions"] {
        if let Some(x) = v.get(k).filter(|x| !x.is_null()) {
            out.insert(
                k.into(),
                serde_json::from_str(&json_value(x)).unwrap_or(Value::Null),
            );
        }
    }
    Value::Object(out).to_string()
}

fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause {
        reason: reason.into(),
        field: field.into(),
        message,
    }
}

/// Rejects changes to immutable fields, with the real server's 422 messages.
///
/// # Errors
/// 422 Invalid.
pub fn validate_update(
    def: &ResourceDef,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let (os, ns) = (&old["spec"], &new["spec"]);
    match (def.group.as_str(), def.kind.as_str()) {
        ("apps", "Deployment" | "DaemonSet" | "ReplicaSet") if os["selector"] != ns["selector"] => {
            causes.push(cause(
                "FieldValueInvalid",
                "spec.selector",
                format!(
                    "Invalid value: {}: field is immutable",
                    label_selector_value(&ns["selector"])
                ),
            ));
        }
        ("apps", "StatefulSet") => {
            let strip = |s: &Value| {
                let mut s = s.as_object().cloned().unwrap_or_default();
                for k in [
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                ] {
                    s.remove(k);
                }
                s
            };
            if strip(os) != strip(ns) {
                causes.push(cause(
                    "FieldValueForbidden",
                    "spec",
                    "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".into(),
                ));
            }
        }
        ("", "Service") => {
            let (oi, ni) = (os["clusterIP"].as_str(), ns["clusterIP"].as_str());
            if let (Some(o), Some(n)) = (oi, ni)
                && !o.is_empty()
                && o != "None"
                && o != n
            {
                causes.push(cause(
                    "FieldValueInvalid",
                    "spec.clusterIPs[0]",
                    format!("Invalid value: {}: may not change once set", json!([n])),
                ));
            }
        }
        ("", "PersistentVolumeClaim") => {
            let storage = |s: &Value| {
                s["resources"]["requests"]["storage"]
                    .as_str()
                    .and_then(parse_quantity)
            };
            let strip = |s: &Value| {
                let mut s = s.clone();
                if let Some(r) = s
                    .get_mut("resources")
                    .and_then(|r| r.get_mut("requests"))
                    .and_then(Value::as_object_mut)
                {
                    r.remove("storage");
                }
                if let Some(m) = s.as_object_mut() {
                    m.remove("volumeAttributesClassName");
                    m.remove("volumeName");
                }
                s
            };
            if strip(os) != strip(ns) {
                causes.push(cause(
                    "FieldValueForbidden",
                    "spec",
                    "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".into(),
                ));
            } else if let (Some(o), Some(n)) = (storage(os), storage(ns))
                && n < o
            {
                causes.push(cause(
                    "FieldValueForbidden",
                    "spec.resources.requests.storage",
                    "Forbidden: field can not be less than previous value".into(),
                ));
            }
        }
        ("", "ConfigMap" | "Secret") => {
            if old["immutable"] == json!(true) {
                if new["immutable"] != json!(true) {
                    causes.push(cause(
                        "FieldValueForbidden",
                        "immutable",
                        "Forbidden: field is immutable when `immutable` is set".into(),
                    ));
                }
                for f in ["data", "binaryData"] {
                    if old.get(f) != new.get(f) {
                        causes.push(cause(
                            "FieldValueForbidden",
                            f,
                            "Forbidden: field is immutable when `immutable` is set".into(),
                        ));
                    }
                }
            }
            if def.kind == "Secret" && old["type"] != new["type"] {
                causes.push(cause(
                    "FieldValueInvalid",
                    "type",
                    format!(
                        "Invalid value: {:?}: field is immutable",
                        new["type"].as_str().unwrap_or_default()
                    ),
                ));
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding")
            if old["roleRef"] != new["roleRef"] =>
        {
            let r = &new["roleRef"];
            causes.push(cause(
                "FieldValueInvalid",
                "roleRef",
                format!(
                    "Invalid value: {}: cannot change roleRef",
                    json!({"apiGroup": r["apiGroup"].as_str().unwrap_or_default(),
                           "kind": r["kind"].as_str().unwrap_or_default(),
                           "name": r["name"].as_str().unwrap_or_default()})
                ),
            ));
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(def, name, causes))
    }
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| is_alnum(c) || c == '-')
        && s.starts_with(is_alnum)
        && s.ends_with(is_alnum)
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
fn dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns1123_label)
}

/// RFC 1035 label: like RFC 1123 but starting with a letter.
fn dns1035_label(s: &str) -> bool {
    dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// A qualified name part / label value: `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn label_part(s: &str) -> bool {
    let an = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| an(c) || matches!(c, '-' | '_' | '.'))
        && s.starts_with(an)
        && s.ends_with(an)
}

const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn validate_labels(labels: &Value, field: &str, causes: &mut Vec<Cause>) {
    let Some(m) = labels.as_object() else {
        return;
    };
    for (k, v) in m {
        let (prefix, name) = match k.split_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, k.as_str()),
        };
        if !label_part(name) || prefix.is_some_and(|p| !dns1123_subdomain(p)) {
            causes.push(cause(
                "FieldValueInvalid",
                field,
                format!("Invalid value: {k:?}: {QUALIFIED_NAME_MSG}"),
            ));
        }
        let val = v.as_str().unwrap_or_default();
        if !val.is_empty() && !label_part(val) {
            let why = if val.len() > 63 {
                "must be no more than 63 characters".to_string()
            } else {
                LABEL_VALUE_MSG.to_string()
            };
            causes.push(cause(
                "FieldValueInvalid",
                field,
                format!("Invalid value: {val:?}: {why}"),
            ));
        }
    }
}

fn validate_pod_spec(spec: &Value, field: &str, causes: &mut Vec<Cause>) {
    match spec["containers"].as_array() {
        None => causes.push(cause(
            "FieldValueRequired",
            &format!("{field}.containers"),
            "Required value".into(),
        )),
        Some(cs) if cs.is_empty() => causes.push(cause(
            "FieldValueRequired",
            &format!("{field}.containers"),
            "Required value".into(),
        )),
        Some(cs) => {
            for (i, c) in cs.iter().enumerate() {
                if c["name"].as_str().is_none_or(str::is_empty) {
                    causes.push(cause(
                        "FieldValueRequired",
                        &format!("{field}.containers[{i}].name"),
                        "Required value".into(),
                    ));
                }
                if c["image"].as_str().is_none_or(str::is_empty) {
                    causes.push(cause(
                        "FieldValueRequired",
                        &format!("{field}.containers[{i}].image"),
                        "Required value".into(),
                    ));
                }
            }
        }
    }
}

/// Validation of any write: names, labels, and the required parts of the built-in kinds,
/// with the real server's messages.
///
/// # Errors
/// 422 Invalid.
pub fn validate(def: &ResourceDef, name: &str, obj: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let rbac = def.group == "rbac.authorization.k8s.io";
    if name.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required".into(),
        ));
    } else if def.group.is_empty() && matches!(def.kind.as_str(), "Namespace") {
        if !dns1123_label(name) {
            causes.push(cause("FieldValueInvalid", "metadata.name", format!("Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")));
        }
    } else if def.group.is_empty() && def.kind == "Service" {
        if !dns1035_label(name) {
            causes.push(cause("FieldValueInvalid", "metadata.name", format!("Invalid value: {name:?}: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")));
        }
    } else if rbac {
        if name == "." || name == ".." || name.contains('/') || name.contains('%') {
            causes.push(cause(
                "FieldValueInvalid",
                "metadata.name",
                format!("Invalid value: {name:?}: may not contain '/' or '%'"),
            ));
        }
    } else if !dns1123_subdomain(name) {
        causes.push(cause("FieldValueInvalid", "metadata.name", format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")));
    }
    validate_labels(&obj["metadata"]["labels"], "metadata.labels", &mut causes);
    match (def.group.as_str(), def.kind.as_str()) {
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet") => {
            let spec = &obj["spec"];
            let template_labels = &spec["template"]["metadata"]["labels"];
            validate_labels(
                template_labels,
                "spec.template.metadata.labels",
                &mut causes,
            );
            match spec["selector"].as_object() {
                None => causes.push(cause(
                    "FieldValueRequired",
                    "spec.selector",
                    "Required value".into(),
                )),
                Some(sel) => {
                    let empty = sel["matchLabels"].as_object().is_none_or(|m| m.is_empty())
                        && sel["matchExpressions"].as_array().is_none_or(Vec::is_empty);
                    if empty {
                        causes.push(cause(
                            "FieldValueInvalid",
                            "spec.selector",
                            format!(
                                "Invalid value: {}: empty selector is invalid for deployment",
                                label_selector_value(&spec["selector"])
                            ),
                        ));
                    }
                    let mismatch = sel["matchLabels"]
                        .as_object()
                        .is_some_and(|m| m.iter().any(|(k, v)| template_labels.get(k) != Some(v)));
                    if mismatch {
                        causes.push(cause(
                            "FieldValueInvalid",
                            "spec.template.metadata.labels",
                            format!(
                                "Invalid value: {}: `selector` does not match template `labels`",
                                json_value(template_labels)
                            ),
                        ));
                    }
                }
            }
            validate_pod_spec(&spec["template"]["spec"], "spec.template.spec", &mut causes);
        }
        ("", "Pod") => validate_pod_spec(&obj["spec"], "spec", &mut causes),
        ("", "Service") => {
            let spec = &obj["spec"];
            let headless_or_external =
                spec["type"] == "ExternalName" || spec["clusterIP"] == "None";
            if !headless_or_external && spec["ports"].as_array().is_none_or(Vec::is_empty) {
                causes.push(cause(
                    "FieldValueRequired",
                    "spec.ports",
                    "Required value".into(),
                ));
            }
            let ports = spec["ports"].as_array().cloned().unwrap_or_default();
            let mut names: Vec<&str> = Vec::new();
            for (i, p) in ports.iter().enumerate() {
                let pname = p["name"].as_str().unwrap_or_default();
                if ports.len() > 1 && pname.is_empty() {
                    causes.push(cause(
                        "FieldValueRequired",
                        &format!("spec.ports[{i}].name"),
                        "Required value".into(),
                    ));
                } else if !pname.is_empty() {
                    if names.contains(&pname) {
                        causes.push(cause(
                            "FieldValueDuplicate",
                            &format!("spec.ports[{i}].name"),
                            format!("Duplicate value: {pname:?}"),
                        ));
                    }
                    names.push(pname);
                }
                let port = p["port"].as_i64().unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    causes.push(cause(
                        "FieldValueInvalid",
                        &format!("spec.ports[{i}].port"),
                        format!("Invalid value: {port}: must be between 1 and 65535, inclusive"),
                    ));
                }
                if let Some(np) = p["nodePort"].as_i64()
                    && np != 0
                    && !(30000..=32767).contains(&np)
                {
                    causes.push(cause(
                        "FieldValueInvalid",
                        &format!("spec.ports[{i}].nodePort"),
                        format!("Invalid value: {np}: provided port is not in the valid range. The range of valid ports is 30000-32767"),
                    ));
                }
            }
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(def, name, causes))
    }
}

fn revision(obj: &Value) -> String {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let g = obj["metadata"]["generation"].as_u64().unwrap_or(1);
    let h = g.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ name.len() as u64;
    format!("{name}-{:x}", h % 0xff_ffff_ffff)
}

/// The status a controller reports once a workload has fully rolled out.
pub fn rolled_out_status(obj: &Value, nodes: u64) -> Value {
    let generation = obj["metadata"]["generation"].as_i64().unwrap_or(1);
    let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    let now = crate::util::now_rfc3339();
    let mut s = Map::new();
    s.insert("observedGeneration".into(), json!(generation));
    match obj["kind"].as_str().unwrap_or_default() {
        "Deployment" => {
            if replicas > 0 {
                for k in [
                    "replicas",
                    "updatedReplicas",
                    "readyReplicas",
                    "availableReplicas",
                ] {
                    s.insert(k.into(), json!(replicas));
                }
            }
            s.insert(
                "conditions".into(),
                json!([
                    {"type": "Available", "status": "True", "lastUpdateTime": now, "lastTransitionTime": now,
                     "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
                    {"type": "Progressing", "status": "True", "lastUpdateTime": now, "lastTransitionTime": now,
                     "reason": "NewReplicaSetAvailable",
                     "message": format!("ReplicaSet \"{}\" has successfully progressed.", revision(obj))},
                ]),
            );
        }
        "StatefulSet" => {
            s.insert("replicas".into(), json!(replicas));
            for k in [
                "readyReplicas",
                "currentReplicas",
                "updatedReplicas",
                "availableReplicas",
            ] {
                if replicas > 0 {
                    s.insert(k.into(), json!(replicas));
                }
            }
            let rev = revision(obj);
            s.insert("currentRevision".into(), json!(rev));
            s.insert("updateRevision".into(), json!(rev));
            s.insert("collisionCount".into(), json!(0));
        }
        "DaemonSet" => {
            for k in [
                "currentNumberScheduled",
                "desiredNumberScheduled",
                "numberAvailable",
                "numberReady",
                "updatedNumberScheduled",
            ] {
                s.insert(k.into(), json!(nodes));
            }
            s.insert("numberMisscheduled".into(), json!(0));
        }
        _ => {}
    }
    Value::Object(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"s3cret"), "czNjcmV0");
    }
}
