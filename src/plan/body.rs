//! What a plan holds for one side of a change: the real content (apply writes exactly it) with
//! marks on the values that are sensitive. Every way of showing a [`Body`] (its `Debug`, and
//! [`Body::shown`], which views use) replaces the marked values, as Terraform's sensitivity marks
//! do; only [`Body::content`] hands out real values, and only apply calls it.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Value, json};

use crate::resource::{Content, ResourceId, kind_spec};

/// Shown for a sensitive value that is unchanged (or new).
pub const SENSITIVE: &str = "(sensitive value)";
/// Shown for a sensitive value that differs from before.
pub const SENSITIVE_CHANGED: &str = "(sensitive value changed)";

/// Content with its sensitive values marked.
#[derive(Clone, PartialEq)]
pub struct Body {
    content: Content,
    /// JSON pointers (RFC 6901) of the sensitive values, as `/data/password`.
    sensitive: BTreeSet<String>,
}

impl Body {
    /// Mark `content` as the kind of `id` says: every value under a sensitive field of its
    /// [`crate::resource::KindSpec`] (a Secret's `data` and `stringData`). Marking is not
    /// optional: this is the only way to make a `Body`.
    pub fn new(id: &ResourceId, content: Content) -> Self {
        let mut sensitive = BTreeSet::new();
        if let (Content::Kube(v), Some(spec)) = (&content, id.kind().map(kind_spec)) {
            for field in spec.sensitive {
                for key in v
                    .pointer(field)
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    sensitive.insert(format!("{field}/{}", escape(key.0)));
                }
            }
        }
        Body { content, sensitive }
    }

    /// The real content, sensitive values included: for apply, never for output.
    pub fn content(&self) -> &Content {
        &self.content
    }

    /// The pointers of the sensitive values.
    pub fn sensitive(&self) -> impl Iterator<Item = &str> {
        self.sensitive.iter().map(String::as_str)
    }

    /// The text a view may show: each sensitive value replaced by [`SENSITIVE`], or by
    /// [`SENSITIVE_CHANGED`] where it differs from the same value in `before`.
    pub fn shown(&self, before: Option<&Body>) -> String {
        let Content::Kube(v) = &self.content else {
            return self.content.text();
        };
        if self.sensitive.is_empty() {
            return self.content.text();
        }
        let old = before.and_then(|b| b.content.as_kube());
        let mut out = v.clone();
        for p in &self.sensitive {
            let changed = before.is_some() && old.and_then(|o| o.pointer(p)) != v.pointer(p);
            if let Some(slot) = out.pointer_mut(p) {
                *slot = json!(if changed {
                    SENSITIVE_CHANGED
                } else {
                    SENSITIVE
                });
            }
        }
        crate::resource::to_yaml(&out)
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("shown", &self.shown(None))
            .field("sensitive", &self.sensitive)
            .finish()
    }
}

/// A map key as one JSON pointer segment.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(v: Value) -> Body {
        let id = ResourceId::Kube {
            namespace: Some("lab".into()),
            kind: "Secret".into(),
            name: "s".into(),
            api_version: "v1".into(),
        };
        Body::new(&id, Content::kube(v))
    }

    #[test]
    fn values_are_kept_but_never_shown() {
        let old =
            secret(json!({"kind": "Secret", "data": {"a": "aHVudGVyMg==", "b/c": "c2FtZQ=="}}));
        let new =
            secret(json!({"kind": "Secret", "data": {"a": "aHVudGVyMw==", "b/c": "c2FtZQ=="}}));
        assert_eq!(
            new.content().as_kube().unwrap()["data"]["a"],
            "aHVudGVyMw=="
        );
        let shown = new.shown(Some(&old));
        assert!(!shown.contains("aHVudGVy"), "{shown}");
        assert!(
            shown.contains(&format!("a: {SENSITIVE_CHANGED}")),
            "{shown}"
        );
        assert!(shown.contains(&format!("b/c: {SENSITIVE}")), "{shown}");
        let debug = format!("{new:?}");
        assert!(
            !debug.contains("aHVudGVy") && !debug.contains("c2FtZQ"),
            "{debug}"
        );
    }

    #[test]
    fn other_kinds_are_not_marked() {
        let id = ResourceId::Kube {
            namespace: None,
            kind: "ConfigMap".into(),
            name: "c".into(),
            api_version: "v1".into(),
        };
        let b = Body::new(&id, Content::kube(json!({"data": {"a": "plain"}})));
        assert_eq!(b.sensitive().count(), 0);
        assert!(b.shown(None).contains("a: plain"));
    }
}
