//! What a plan holds for one side of a change: the real content (apply writes exactly it) with
//! marks on the values that are sensitive. Every way of showing a [`Body`] (its `Debug`,
//! [`Body::shown`] and [`Body::shown_before`], which views use) replaces the marked values, as
//! Terraform's sensitivity marks do; only [`Body::content`] hands out real values, and only apply
//! calls it.
//!
//! Sensitivity follows the value, not only the field: besides a kind's sensitive fields (a
//! Secret's `data`) and an env file's variables, any string holding a secret value the process
//! has seen ([`crate::sensitive::register`]: every value rendering handed a template, with its
//! base64 and JSON forms) is marked, wherever it is: a ConfigMap, an annotation, a unit's
//! `Environment=` line. A one-line string is masked whole; in text of several lines (a unit, a
//! config file in a ConfigMap) each line holding a value is masked from the value on, and so is
//! the same line on the other side of the change, which may hold an older value nobody knows.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Value, json};

use crate::resource::{Content, ResourceId, kind_spec};

/// Shown for a sensitive value that is unchanged (or new).
pub const SENSITIVE: &str = "(sensitive value)";
/// Shown for a sensitive value that differs from before.
pub const SENSITIVE_CHANGED: &str = "(sensitive value changed)";

/// How one marked value is masked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mask {
    /// The whole value.
    Whole,
    /// Lines of a text: each line with one of these prefixes and suffixes is masked between
    /// them.
    Lines(BTreeSet<(String, String)>),
}

/// Content with its sensitive values marked.
#[derive(Clone, PartialEq)]
pub struct Body {
    content: Content,
    /// JSON pointers (RFC 6901) of the sensitive values, as `/data/password`; `""` is a unit's
    /// whole text.
    sensitive: BTreeMap<String, Mask>,
}

impl Body {
    /// Mark `content`: the sensitive fields of its kind's [`crate::resource::KindSpec`], every
    /// variable of an env file, and every string holding a registered secret value. Marking is
    /// not optional: this is the only way to make a `Body`.
    pub fn new(id: &ResourceId, content: Content) -> Self {
        let mut sensitive = BTreeMap::new();
        let fields: &[&str] = match id {
            ResourceId::EnvFile { .. } => &["/env"],
            _ => id.kind().map_or(&[][..], |k| kind_spec(k).sensitive),
        };
        if let Content::Kube(v) = &content {
            for field in fields {
                for key in v
                    .pointer(field)
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    sensitive.insert(format!("{field}/{}", escape(key.0)), Mask::Whole);
                }
            }
            if matches!(id, ResourceId::EnvFile { .. }) {
                sensitive.insert("/sha256".into(), Mask::Whole);
            }
        }
        let values = crate::sensitive::registered();
        if !values.is_empty() {
            match &content {
                Content::Kube(v) => mark_leaves(v, &mut String::new(), &values, &mut sensitive),
                Content::Unit(text) => {
                    let prefixes = line_prefixes(text, &values);
                    if !prefixes.is_empty() {
                        sensitive.insert(String::new(), Mask::Lines(prefixes));
                    }
                }
            }
        }
        Body { content, sensitive }
    }

    /// The real content, sensitive values included: for apply, never for output.
    pub fn content(&self) -> &Content {
        &self.content
    }

    /// The pointers of the sensitive values (`""` for a unit's text).
    pub fn sensitive(&self) -> impl Iterator<Item = &str> {
        self.sensitive.keys().map(String::as_str)
    }

    /// The text a view may show for the new side of a change: each sensitive value replaced by
    /// [`SENSITIVE`], or by [`SENSITIVE_CHANGED`] where it differs from the same value in
    /// `before`.
    pub fn shown(&self, before: Option<&Body>) -> String {
        self.masked(&self.sensitive, before.map(|b| &b.content), true)
    }

    /// The text a view may show for the old side of a change whose new side is `after`: what is
    /// sensitive on either side is masked (the old side may hold an older value of a secret).
    pub fn shown_before(&self, after: &Body) -> String {
        let mut marks = self.sensitive.clone();
        for (p, m) in &after.sensitive {
            match (marks.get_mut(p), m) {
                (None, m) => {
                    marks.insert(p.clone(), m.clone());
                }
                (Some(Mask::Lines(mine)), Mask::Lines(theirs)) => mine.extend(theirs.clone()),
                (Some(mine), Mask::Whole) => *mine = Mask::Whole,
                (Some(Mask::Whole), Mask::Lines(_)) => {}
            }
        }
        self.masked(&marks, None, false)
    }

    fn masked(
        &self,
        marks: &BTreeMap<String, Mask>,
        other: Option<&Content>,
        mark_changes: bool,
    ) -> String {
        if marks.is_empty() {
            return self.content.text();
        }
        let values = crate::sensitive::registered();
        match &self.content {
            Content::Unit(text) => match marks.get("") {
                Some(Mask::Lines(prefixes)) => {
                    let old = other.and_then(|o| match o {
                        Content::Unit(t) => Some(t.as_str()),
                        Content::Kube(_) => None,
                    });
                    mask_lines(text, prefixes, &values, old, mark_changes)
                }
                Some(Mask::Whole) => format!("{SENSITIVE}\n"),
                None => text.clone(),
            },
            Content::Kube(v) => {
                let old = other.and_then(Content::as_kube);
                let mut out = v.clone();
                for (p, mask) in marks {
                    let Some(slot) = out.pointer_mut(p) else {
                        continue;
                    };
                    let was = old.and_then(|o| o.pointer(p));
                    let changed = mark_changes && other.is_some() && was != v.pointer(p);
                    match (mask, slot.as_str()) {
                        (Mask::Lines(prefixes), Some(s)) => {
                            let masked = mask_lines(
                                s,
                                prefixes,
                                &values,
                                if mark_changes {
                                    was.and_then(Value::as_str)
                                } else {
                                    None
                                },
                                mark_changes && other.is_some(),
                            );
                            *slot = json!(masked);
                        }
                        _ => {
                            *slot = json!(if changed {
                                SENSITIVE_CHANGED
                            } else {
                                SENSITIVE
                            });
                        }
                    }
                }
                crate::resource::to_yaml(&out)
            }
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("shown", &self.shown(None))
            .field("sensitive", &self.sensitive.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Mark every string leaf of `v` holding one of `values`.
fn mark_leaves(v: &Value, at: &mut String, values: &[String], out: &mut BTreeMap<String, Mask>) {
    match v {
        Value::String(s) if values.iter().any(|x| s.contains(x.as_str())) => {
            if out.contains_key(at.as_str()) {
                return;
            }
            let mask = if s.contains('\n') {
                Mask::Lines(line_prefixes(s, values))
            } else {
                Mask::Whole
            };
            out.insert(at.clone(), mask);
        }
        Value::Object(m) => {
            for (k, x) in m {
                let len = at.len();
                at.push('/');
                at.push_str(&escape(k));
                mark_leaves(x, at, values, out);
                at.truncate(len);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("/{i}"));
                mark_leaves(x, at, values, out);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

/// For each line of `text` holding one of `values`: the line before the first value and after
/// the last one.
fn line_prefixes(text: &str, values: &[String]) -> BTreeSet<(String, String)> {
    text.lines()
        .filter_map(|l| {
            value_span(l, values).map(|(a, b)| (l[..a].to_string(), l[b..].to_string()))
        })
        .collect()
}

/// Where the first of `values` in `line` starts and the last one ends.
fn value_span(line: &str, values: &[String]) -> Option<(usize, usize)> {
    let start = values.iter().filter_map(|v| line.find(v.as_str())).min()?;
    let end = values
        .iter()
        .filter_map(|v| line.rfind(v.as_str()).map(|i| i + v.len()))
        .max()?;
    Some((start, end.max(start)))
}

/// `text` with the secret part of each sensitive line masked: in a line holding one of
/// `values`, from the first value to the end of the last; in a line with one of `prefixes` and
/// its suffix (when the prefix says something: the same setting on the other side), what is
/// between them. With `mark_changes`, a masked line not found as is in `other` says it changed.
fn mask_lines(
    text: &str,
    prefixes: &BTreeSet<(String, String)>,
    values: &[String],
    other: Option<&str>,
    mark_changes: bool,
) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let span = value_span(line, values).or_else(|| {
            prefixes
                .iter()
                .filter(|(p, s)| {
                    !p.trim().is_empty()
                        && line.len() >= p.len() + s.len()
                        && line.starts_with(p.as_str())
                        && line.ends_with(s.as_str())
                })
                .max_by_key(|(p, s)| p.len() + s.len())
                .map(|(p, s)| (p.len(), line.len() - s.len()))
        });
        match span {
            Some((a, b)) => {
                let changed = mark_changes && other.is_some_and(|o| !o.lines().any(|l| l == line));
                out.push_str(&line[..a]);
                out.push_str(if changed {
                    SENSITIVE_CHANGED
                } else {
                    SENSITIVE
                });
                out.push_str(&line[b..]);
            }
            None => out.push_str(line),
        }
    }
    out
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

    #[test]
    fn sensitivity_follows_the_value_into_any_field_and_line() {
        let new_value = "body-test-new-9f3a";
        crate::sensitive::register(new_value);
        let cm = ResourceId::Kube {
            namespace: Some("lab".into()),
            kind: "ConfigMap".into(),
            name: "c".into(),
            api_version: "v1".into(),
        };
        let old = Body::new(
            &cm,
            Content::kube(json!({"data": {
                "url": "postgres://u:body-test-OLD@db/x",
                "conf": "a: 1\npassword: body-test-OLD\nb: 2\n",
                "plain": "x"
            }, "metadata": {"annotations": {"k": "v"}}})),
        );
        let new = Body::new(
            &cm,
            Content::kube(json!({"data": {
                "url": format!("postgres://u:{new_value}@db/x"),
                "conf": format!("a: 1\npassword: {new_value}\nb: 2\n"),
                "plain": "x"
            }, "metadata": {"annotations": {"k": format!("token {new_value}")}}})),
        );
        let after = new.shown(Some(&old));
        let before = old.shown_before(&new);
        for text in [&after, &before] {
            assert!(!text.contains(new_value), "{text}");
            assert!(!text.contains("body-test-OLD"), "{text}");
            assert!(text.contains("plain: x"), "{text}");
            assert!(text.contains("a: 1") && text.contains("b: 2"), "{text}");
        }
        assert!(
            after.contains(&format!("url: {SENSITIVE_CHANGED}")),
            "{after}"
        );
        assert!(
            after.contains(&format!("password: {SENSITIVE_CHANGED}")),
            "{after}"
        );
        assert!(
            after.contains(&format!("k: {SENSITIVE_CHANGED}")),
            "{after}"
        );

        let unit = ResourceId::unit(None, "a.service");
        let old = Body::new(
            &unit,
            Content::unit("[Service]\nEnvironment=TOKEN=body-test-OLD\nExecStart=/bin/true\n"),
        );
        let new = Body::new(
            &unit,
            Content::unit(&format!(
                "[Service]\nEnvironment=TOKEN={new_value}\nExecStart=/bin/true\n"
            )),
        );
        let after = new.shown(Some(&old));
        let before = old.shown_before(&new);
        assert_eq!(
            after,
            format!("[Service]\nEnvironment=TOKEN={SENSITIVE_CHANGED}\nExecStart=/bin/true\n")
        );
        assert_eq!(
            before,
            format!("[Service]\nEnvironment=TOKEN={SENSITIVE}\nExecStart=/bin/true\n")
        );
    }

    #[test]
    fn an_env_file_shows_its_keys_only() {
        let id = ResourceId::EnvFile {
            host: None,
            path: "%E/labctl/x.env".into(),
            unit: "x.service".into(),
        };
        let new = Body::new(
            &id,
            Content::kube(json!({"env": {"A": "zz-one", "B": "zz-two"}, "sha256": "00"})),
        );
        let old = Body::new(
            &id,
            Content::kube(json!({"env": {"A": "sha256:ff", "B": "zz-two"}, "sha256": "11"})),
        );
        let shown = new.shown(Some(&old));
        assert!(!shown.contains("zz-"), "{shown}");
        assert!(
            shown.contains(&format!("A: {SENSITIVE_CHANGED}")),
            "{shown}"
        );
        assert!(shown.contains(&format!("B: {SENSITIVE}")), "{shown}");
        assert!(!old.shown_before(&new).contains("ff"));
    }
}
