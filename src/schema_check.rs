//! Strict shape check of rendered objects against the Kubernetes API types: a misspelled or
//! misplaced field is an error at render time, not a silent drop at apply time.

use k8s_openapi::api::{apps, batch, core, networking, policy, rbac};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as crd;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How a rendered object does not fit its API type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// Fields the type does not have, by path (`spec.template.spec.containers.0.imagePullPolice`).
    #[error("unknown field `{}`", .0.join("`, `"))]
    Unknown(Vec<String>),
    /// A kind of a built-in API group that labctl does not know (a typo in either).
    #[error("`{api_version}` `{kind}` is not a kind labctl knows; check the apiVersion and kind")]
    UnknownKind {
        /// The apiVersion.
        api_version: String,
        /// The kind.
        kind: String,
    },
    /// A value of the wrong type or form at `path`.
    #[error("`{path}`: {message}")]
    Invalid {
        /// Where, as a dotted path.
        path: String,
        /// What is wrong.
        message: String,
    },
}

fn strict<T: DeserializeOwned>(v: &Value) -> Result<(), Mismatch> {
    let mut unknown = Vec::new();
    let res: Result<T, _> = {
        // serde_ignored writes `?` for every Option it passes through; people read plain paths.
        let mut track = |path: serde_ignored::Path<'_>| unknown.push(plain(&path.to_string()));
        // Read in place (`&Value` is a deserializer): a copy of every object was most of the
        // check's time.
        let de = serde_ignored::Deserializer::new(v, &mut track);
        serde_path_to_error::deserialize(de)
    };
    match res {
        Err(e) => Err(Mismatch::Invalid {
            path: plain(&e.path().to_string()),
            message: e.inner().to_string(),
        }),
        Ok(_) if !unknown.is_empty() => Err(Mismatch::Unknown(unknown)),
        Ok(_) => Ok(()),
    }
}

fn plain(path: &str) -> String {
    path.split('.')
        .filter(|seg| *seg != "?")
        .collect::<Vec<_>>()
        .join(".")
}

/// Check `obj` strictly against the type of `api_version`/`kind`. Kinds labctl does not know
/// (custom resources) pass: their schema lives in the cluster.
///
/// # Errors
/// [`Mismatch`] naming the unknown fields or the value of the wrong type.
pub fn check(api_version: &str, kind: &str, obj: &Value) -> Result<(), Mismatch> {
    match (api_version, kind) {
        ("v1", "Namespace") => strict::<core::v1::Namespace>(obj),
        ("v1", "ConfigMap") => strict::<core::v1::ConfigMap>(obj),
        ("v1", "Secret") => strict::<core::v1::Secret>(obj),
        ("v1", "Service") => strict::<core::v1::Service>(obj),
        ("v1", "ServiceAccount") => strict::<core::v1::ServiceAccount>(obj),
        ("v1", "PersistentVolumeClaim") => strict::<core::v1::PersistentVolumeClaim>(obj),
        ("v1", "Pod") => strict::<core::v1::Pod>(obj),
        ("apps/v1", "Deployment") => strict::<apps::v1::Deployment>(obj),
        ("apps/v1", "StatefulSet") => strict::<apps::v1::StatefulSet>(obj),
        ("apps/v1", "DaemonSet") => strict::<apps::v1::DaemonSet>(obj),
        ("batch/v1", "Job") => strict::<batch::v1::Job>(obj),
        ("batch/v1", "CronJob") => strict::<batch::v1::CronJob>(obj),
        ("networking.k8s.io/v1", "Ingress") => strict::<networking::v1::Ingress>(obj),
        ("networking.k8s.io/v1", "NetworkPolicy") => strict::<networking::v1::NetworkPolicy>(obj),
        ("policy/v1", "PodDisruptionBudget") => strict::<policy::v1::PodDisruptionBudget>(obj),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => strict::<rbac::v1::ClusterRole>(obj),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            strict::<rbac::v1::ClusterRoleBinding>(obj)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => strict::<rbac::v1::Role>(obj),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => strict::<rbac::v1::RoleBinding>(obj),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            strict::<crd::CustomResourceDefinition>(obj)
        }
        _ if is_builtin_group(api_version) => Err(Mismatch::UnknownKind {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        }),
        _ => Ok(()),
    }
}

fn is_builtin_group(api_version: &str) -> bool {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    group.is_empty() || ["apps", "batch", "policy"].contains(&group) || group.ends_with(".k8s.io")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn misspelled_field_is_named() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "a", "imagePullPolice": "x"}]}}}});
        let e = check("apps/v1", "Deployment", &d).unwrap_err().to_string();
        assert!(
            e.contains("spec.template.spec.containers.0.imagePullPolice"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_is_an_error_and_good_passes() {
        let bad = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": 1}});
        assert!(check("v1", "ConfigMap", &bad).is_err());
        let good = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1"}});
        assert_eq!(check("v1", "ConfigMap", &good), Ok(()));
        assert!(check("v1", "Sevrice", &good).is_err());
        assert_eq!(check("example.com/v1", "Widget", &good), Ok(()));
    }
}
