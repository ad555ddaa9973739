//! Secret values never leave labctl: plans carry key names and whether a value changed, only.

use serde_json::{Value, json};

/// Shown for a secret value that is unchanged (or new).
pub const SENSITIVE: &str = "(sensitive value)";
/// Shown for a secret value that differs from before.
pub const SENSITIVE_CHANGED: &str = "(sensitive value changed)";

/// A copy of a Secret with every `data`/`stringData` value replaced; a value that differs from the
/// same key in `before` is marked as changed.
pub fn redact_secret(secret: &Value, before: Option<&Value>) -> Value {
    let mut out = secret.clone();
    for field in ["data", "stringData"] {
        let Some(map) = out.get_mut(field).and_then(Value::as_object_mut) else {
            continue;
        };
        for (key, value) in map.iter_mut() {
            let old = before.and_then(|b| b.get(field)).and_then(|m| m.get(key));
            let changed = before.is_some() && old != Some(value);
            *value = json!(if changed {
                SENSITIVE_CHANGED
            } else {
                SENSITIVE
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_survive() {
        let old = json!({"kind": "Secret", "stringData": {"a": "hunter2", "b": "same"}});
        let new = json!({"kind": "Secret", "stringData": {"a": "hunter3", "b": "same"}});
        let r = redact_secret(&new, Some(&old));
        let text = r.to_string();
        assert!(!text.contains("hunter"), "{text}");
        assert_eq!(r["stringData"]["a"], SENSITIVE_CHANGED);
        assert_eq!(r["stringData"]["b"], SENSITIVE);
    }
}
