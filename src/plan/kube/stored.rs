//! Desired objects in the form the server stores them, so that comparison is like with like.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::resource::{Content, Desired};

/// A desired object in the form the server stores it: a Secret's `stringData` becomes base64
/// `data` (the server converts it on write and only ever returns `data`), so that comparison is
/// like with like and labctl owns `data` keys, whose removal the server then honours.
pub fn prepare(obj: &mut Value) {
    if obj.get("kind").and_then(Value::as_str) != Some("Secret") {
        return;
    }
    let Some(m) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(sd)) = m.remove("stringData") else {
        return;
    };
    let data = m.entry("data").or_insert_with(|| json!({}));
    if let Some(data) = data.as_object_mut() {
        for (k, v) in sd {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            data.insert(
                k,
                json!(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
    // Content is kept normalized (keys sorted); only such a Secret needs it again.
    *obj = crate::resource::normalize(std::mem::take(obj));
}

/// Put every kube object of a desired set in stored form (see [`prepare`]), in place: only a
/// Secret with `stringData` changes.
pub fn prepare_all(desired: &mut Desired) {
    for o in desired.objects.values_mut() {
        if let Content::Kube(v) = &mut o.content {
            prepare(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_becomes_data() {
        let mut s =
            json!({"kind": "Secret", "stringData": {"p": "hunter2"}, "data": {"z": "eg=="}});
        prepare(&mut s);
        assert_eq!(
            s,
            json!({"kind": "Secret", "data": {"p": "aHVudGVyMg==", "z": "eg=="}})
        );
        assert_eq!(s["data"].as_object().unwrap().keys().next().unwrap(), "p");
    }
}
