//! Authentication (bearer tokens) and authorization (RBAC), as the real server answers a
//! ServiceAccount's requests.
//!
//! Requests without a token, or with the kubeconfig's own token, act as the cluster admin
//! (the recordings' TLS client certificate in `system:masters`). Tokens come from a
//! `TokenRequest` (`POST .../serviceaccounts/<name>/token`), whose ServiceAccount is then
//! authorized by the Roles, ClusterRoles and their bindings stored in the server, or from
//! [`crate::TestApiServer::namespaced_token`], an account allowed everything in some
//! namespaces and nothing else. Any other token is 401 Unauthorized.

use serde_json::Value;

use crate::resources::ResourceDef;
use crate::status::ApiError;
use crate::store::State;

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The cluster admin (no token, or the kubeconfig's).
    Admin,
    /// A ServiceAccount, authorized by the stored RBAC objects.
    ServiceAccount {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A test account allowed every verb on namespaced resources in these namespaces only.
    Namespaced {
        /// The user name refusals name.
        user: String,
        /// The namespaces it may use.
        namespaces: Vec<String>,
    },
}

impl Identity {
    /// The user name the real server's refusals print.
    pub fn user(&self) -> String {
        match self {
            Identity::Admin => "system:admin".into(),
            Identity::ServiceAccount { namespace, name } => {
                format!("system:serviceaccount:{namespace}:{name}")
            }
            Identity::Namespaced { user, .. } => user.clone(),
        }
    }
}

/// The token of the kubeconfig the server writes (the admin).
pub const ADMIN_TOKEN: &str = "labctl-testapi-dummy-token";

/// The identity of a request's `Authorization` header.
///
/// # Errors
/// 401 for a bearer token the server did not issue.
pub fn authenticate(st: &State, authorization: Option<&str>) -> Result<Identity, ApiError> {
    let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
        return Ok(Identity::Admin);
    };
    let token = token.trim();
    if token == ADMIN_TOKEN {
        return Ok(Identity::Admin);
    }
    st.tokens
        .get(token)
        .cloned()
        .ok_or_else(ApiError::unauthorized)
}

/// The RBAC verb of a request.
pub fn verb(method: &str, named: bool, watch: bool) -> &'static str {
    match (method, named) {
        ("GET", _) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

fn has(list: &Value, want: &str) -> bool {
    list.as_array()
        .is_some_and(|a| a.iter().any(|v| v == "*" || v == want))
}

fn rule_allows(rule: &Value, verb: &str, group: &str, resource: &str, name: Option<&str>) -> bool {
    has(&rule["verbs"], verb)
        && has(&rule["apiGroups"], group)
        && has(&rule["resources"], resource)
        && match rule["resourceNames"].as_array() {
            Some(names) if !names.is_empty() => name.is_some_and(|n| names.iter().any(|v| v == n)),
            _ => true,
        }
}

fn subject_matches(binding: &Value, sa_ns: &str, sa_name: &str) -> bool {
    binding["subjects"].as_array().is_some_and(|subs| {
        subs.iter().any(|s| {
            s["kind"] == "ServiceAccount"
                && s["name"] == sa_name
                && s["namespace"].as_str().unwrap_or_default() == sa_ns
        })
    })
}

/// Whether a ServiceAccount's bindings allow the request (the RBAC authorizer: a RoleBinding
/// grants its Role or ClusterRole in its namespace, a ClusterRoleBinding its ClusterRole
/// everywhere).
fn rbac_allows(
    st: &State,
    sa: (&str, &str),
    verb: &str,
    group: &str,
    resource: &str,
    name: Option<&str>,
    namespace: Option<&str>,
) -> bool {
    let rbac = "rbac.authorization.k8s.io";
    let of = |plural: &str, ns: Option<&str>| -> Vec<&Value> {
        st.objects
            .iter()
            .filter(|((g, p, n, _), _)| g == rbac && p == plural && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
            .collect()
    };
    let role_rules = |kind: &str, role_ns: &str, role: &str| -> Vec<Value> {
        let (plural, ns) = if kind == "ClusterRole" {
            ("clusterroles", "")
        } else {
            ("roles", role_ns)
        };
        st.objects
            .get(&(rbac.into(), plural.into(), ns.into(), role.into()))
            .and_then(|r| r["rules"].as_array().cloned())
            .unwrap_or_default()
    };
    let grants = |binding: &Value, ns: &str| {
        subject_matches(binding, sa.0, sa.1)
            && role_rules(
                binding["roleRef"]["kind"].as_str().unwrap_or_default(),
                ns,
                binding["roleRef"]["name"].as_str().unwrap_or_default(),
            )
            .iter()
            .any(|r| rule_allows(r, verb, group, resource, name))
    };
    if of("clusterrolebindings", None)
        .into_iter()
        .any(|b| grants(b, ""))
    {
        return true;
    }
    let Some(ns) = namespace else {
        return false;
    };
    of("rolebindings", Some(ns))
        .into_iter()
        .any(|b| grants(b, ns))
}

/// Authorizes a resource request.
///
/// # Errors
/// 403 Forbidden worded as the real RBAC authorizer's refusal.
pub fn authorize(
    st: &State,
    who: &Identity,
    def: &ResourceDef,
    verb: &str,
    sub: Option<&str>,
    name: Option<&str>,
    namespace: Option<&str>,
) -> Result<(), ApiError> {
    // A Namespace's own namespace is its name.
    let namespace = if def.group.is_empty() && def.kind == "Namespace" {
        name.or(namespace)
    } else {
        namespace
    };
    let resource = match sub {
        Some(s) => format!("{}/{s}", def.plural),
        None => def.plural.clone(),
    };
    let allowed = match who {
        Identity::Admin => true,
        Identity::Namespaced { namespaces, .. } => {
            def.namespaced && namespace.is_some_and(|ns| namespaces.iter().any(|n| n == ns))
        }
        Identity::ServiceAccount {
            namespace: sa_ns,
            name: sa_name,
        } => rbac_allows(
            st,
            (sa_ns, sa_name),
            verb,
            &def.group,
            &resource,
            name,
            namespace,
        ),
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::rbac_forbidden(
            &who.user(),
            verb,
            &def.plural,
            &resource,
            &def.group,
            name,
            namespace,
        ))
    }
}
