//! API errors as `metav1.Status` bodies, spelled as the real API server spells them.

use serde_json::{Map, Value, json};

use crate::resources::ResourceDef;

/// An API error: the HTTP status and the `Status` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason`.
    pub reason: String,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`, if any.
    pub details: Option<Box<Value>>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// One `StatusCause`.
#[derive(Debug, Clone)]
pub struct Cause {
    /// `reason`, e.g. `FieldValueInvalid`.
    pub reason: String,
    /// `message`.
    pub message: String,
    /// `field`.
    pub field: String,
}

impl ApiError {
    /// The `Status` JSON body.
    pub fn body(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!("Status"));
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("metadata".into(), json!({}));
        m.insert("status".into(), json!("Failure"));
        m.insert("message".into(), json!(self.message));
        if !self.reason.is_empty() {
            m.insert("reason".into(), json!(self.reason));
        }
        if let Some(d) = &self.details {
            m.insert("details".into(), (**d).clone());
        }
        m.insert("code".into(), json!(self.code));
        Value::Object(m)
    }

    fn new(code: u16, reason: &str, message: String, details: Option<Value>) -> Self {
        ApiError {
            code,
            reason: reason.into(),
            message,
            details: details.map(Box::new),
        }
    }

    /// Any error, as a test hook would refuse a request (e.g. an admission webhook's
    /// `403 Forbidden` or `422 Invalid`): the status code, `reason`, `message` and optional
    /// `details` of the `Status` body.
    pub fn custom(
        code: u16,
        reason: &str,
        message: impl Into<String>,
        details: Option<Value>,
    ) -> Self {
        Self::new(code, reason, message.into(), details)
    }

    /// 401 Unauthorized (an unknown bearer token).
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized".into(), None)
    }

    /// 403 from authorization, worded as the real RBAC authorizer's refusal: `resource` is
    /// the resource (with `/subresource`), `name` the object's name when the request names
    /// one, `namespace` the request's namespace (`None` at the cluster scope).
    pub fn rbac_forbidden(
        user: &str,
        verb: &str,
        plural: &str,
        resource: &str,
        group: &str,
        name: Option<&str>,
        namespace: Option<&str>,
    ) -> Self {
        let qualified = if group.is_empty() {
            plural.to_string()
        } else {
            format!("{plural}.{group}")
        };
        let subject = match name {
            Some(n) => format!("{qualified} \"{n}\""),
            None => qualified,
        };
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        let mut details = Map::new();
        if let Some(n) = name {
            details.insert("name".into(), json!(n));
        }
        if !group.is_empty() {
            details.insert("group".into(), json!(group));
        }
        details.insert("kind".into(), json!(plural));
        Self::new(
            403,
            "Forbidden",
            format!(
                "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}"
            ),
            Some(Value::Object(details)),
        )
    }

    /// 404 NotFound for an object.
    pub fn not_found(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", def.qualified()),
            Some(group_details(name, &def.group, &def.plural)),
        )
    }

    /// 404 NotFound for a missing namespace.
    pub fn namespace_not_found(ns: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("namespaces \"{ns}\" not found"),
            Some(json!({"name": ns, "kind": "namespaces"})),
        )
    }

    /// 404 for a path that names no resource.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            Some(json!({})),
        )
    }

    /// 409 AlreadyExists.
    pub fn already_exists(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", def.qualified()),
            Some(group_details(name, &def.group, &def.plural)),
        )
    }

    /// 409 Conflict for a stale `resourceVersion`.
    pub fn stale(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                def.qualified()
            ),
            Some(group_details(name, &def.group, &def.plural)),
        )
    }

    /// 409 Conflict from server-side apply, with `FieldManagerConflict` causes.
    pub fn apply_conflict(message: String, causes: Vec<Cause>) -> Self {
        Self::new(
            409,
            "Conflict",
            message,
            Some(json!({"causes": causes_json(&causes)})),
        )
    }

    /// 403 Forbidden for an object.
    pub fn forbidden(def: &ResourceDef, name: &str, why: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {why}", def.qualified()),
            Some(group_details(name, &def.group, &def.plural)),
        )
    }

    /// 500 with no reason: an error the real server did not convert to a Status (its
    /// message is passed through, as for malformed server-side apply bodies).
    pub fn internal(message: String) -> Self {
        Self::new(500, "", message, None)
    }

    /// 429 TooManyRequests with `Retry-After: secs` (API priority and fairness, or a
    /// rate-limited webhook), as the real server words it.
    pub fn too_many_requests(secs: u64) -> Self {
        Self::new(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later".into(),
            Some(serde_json::json!({ "retryAfterSeconds": secs })),
        )
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into(), None)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
            Some(json!({})),
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(ct: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct:?})"
            ),
            None,
        )
    }

    /// 422 Invalid with field causes; the message is built as the real server builds it.
    pub fn invalid(def: &ResourceDef, name: &str, causes: Vec<Cause>) -> Self {
        let parts: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let joined = if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("[{}]", parts.join(", "))
        };
        let mut details = json!({"name": name, "kind": def.kind, "causes": causes_json(&causes)});
        if !def.group.is_empty() {
            details["group"] = json!(def.group);
        }
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {joined}", def.qualified_kind()),
            Some(reorder_details(details)),
        )
    }
}

fn group_details(name: &str, group: &str, plural: &str) -> Value {
    let mut d = Map::new();
    d.insert("name".into(), json!(name));
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    d.insert("kind".into(), json!(plural));
    Value::Object(d)
}

fn reorder_details(d: Value) -> Value {
    let mut m = Map::new();
    for k in ["name", "group", "kind", "causes"] {
        if let Some(v) = d.get(k) {
            m.insert(k.into(), v.clone());
        }
    }
    Value::Object(m)
}

fn causes_json(causes: &[Cause]) -> Value {
    Value::Array(
        causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect(),
    )
}

/// The `Status` body of a successful delete.
pub fn delete_success(def: &ResourceDef, name: &str, uid: &str) -> Value {
    let mut d = group_details(name, &def.group, &def.plural);
    d["uid"] = json!(uid);
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": d,
    })
}
