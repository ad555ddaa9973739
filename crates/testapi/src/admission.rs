//! Validating admission, after the object is merged, defaulted and validated (so dry runs
//! are refused the same way): the test hooks' refusals, then the ResourceQuota plugin.

use serde_json::{Value, json};

use crate::resources::ResourceDef;
use crate::status::ApiError;
use crate::store::State;
use crate::util::parse_quantity;

/// A refusal registered by [`crate::TestApiServer::refuse`]: writes (create, update, patch,
/// apply, dry run or not) of objects of this kind and name get `error`.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Kind, e.g. `Service`.
    pub kind: String,
    /// Object name.
    pub name: String,
    /// Namespace, or any when `None`.
    pub namespace: Option<String>,
    /// The answer.
    pub error: ApiError,
}

/// The quota resource name an object of this resource counts against (`services`,
/// `count/deployments.apps`).
fn quota_names(def: &ResourceDef) -> Vec<String> {
    let mut names = Vec::new();
    if def.group.is_empty()
        && matches!(
            def.plural.as_str(),
            "pods"
                | "services"
                | "secrets"
                | "configmaps"
                | "persistentvolumeclaims"
                | "resourcequotas"
                | "replicationcontrollers"
        )
    {
        names.push(def.plural.clone());
    }
    names.push(format!("count/{}", def.qualified()));
    names
}

fn quantity(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => parse_quantity(s),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn fmt_quantity(q: f64) -> String {
    if q.fract() == 0.0 {
        format!("{}", q as i64)
    } else {
        format!("{q}")
    }
}

impl State {
    /// Runs validating admission for a write of `obj` (`old` is the live object, `None` on
    /// create). On an admitted real create, quotas' `status.used` counts the new object as
    /// the quota plugin does.
    ///
    /// # Errors
    /// A registered refusal, or 403 Forbidden `exceeded quota`.
    pub fn admit(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        if let Some(r) = self.refusals.iter().find(|r| {
            r.kind == def.kind && r.name == name && r.namespace.as_deref().is_none_or(|n| n == ns)
        }) {
            return Err(r.error.clone());
        }
        if old.is_some() || !def.namespaced {
            return Ok(());
        }
        let keys = quota_names(def);
        // Objects are keyed (group, plural, namespace, name): the namespace's quotas are one
        // range, so a create does not scan the whole store.
        let from: crate::store::ObjKey = (
            String::new(),
            "resourcequotas".into(),
            ns.to_string(),
            String::new(),
        );
        let quotas: Vec<(crate::store::ObjKey, Value)> = self
            .objects
            .range(from..)
            .take_while(|((g, p, n, _), _)| g.is_empty() && p == "resourcequotas" && n == ns)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut bumps = Vec::new();
        for (key, q) in quotas {
            // Not enforced until the quota controller has written status.hard.
            let Some(hard) = q["status"]["hard"].as_object() else {
                continue;
            };
            for k in &keys {
                let Some(limit) = hard.get(k).and_then(quantity) else {
                    continue;
                };
                let used = quantity(&q["status"]["used"][k]).unwrap_or(0.0);
                if used + 1.0 > limit {
                    return Err(ApiError::custom(
                        403,
                        "Forbidden",
                        format!(
                            "{} \"{name}\" is forbidden: exceeded quota: {}, requested: {k}=1, used: {k}={}, limited: {k}={}",
                            def.qualified(),
                            q["metadata"]["name"].as_str().unwrap_or_default(),
                            fmt_quantity(used),
                            fmt_quantity(limit),
                        ),
                        Some(json!({"name": name, "kind": def.plural})),
                    ));
                }
                bumps.push((key.clone(), k.clone(), used + 1.0));
            }
        }
        if !dry_run {
            for (key, k, used) in bumps {
                self.rv += 1;
                let rv = self.rv.to_string();
                if let Some(q) = self.objects.get_mut(&key) {
                    q["status"]["used"][k.as_str()] = json!(fmt_quantity(used));
                    q["metadata"]["resourceVersion"] = json!(rv);
                }
            }
        }
        Ok(())
    }
}
