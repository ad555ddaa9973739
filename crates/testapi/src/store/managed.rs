//! `metadata.managedFields`: each manager's entry and field set, what the server keeps out of them,
//! and the conflict a server-side apply meets.

use super::*;

/// One managedFields entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// API version the set was recorded at.
    pub api_version: String,
    /// Time of the last change.
    pub time: String,
    /// Subresource, or empty.
    pub subresource: String,
    /// Owned fields.
    pub set: FieldSet,
}

impl Entry {
    pub(super) fn same_identity(
        &self,
        manager: &str,
        operation: &str,
        subresource: &str,
        api: &str,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == "Apply" || self.api_version == api)
    }

    /// The manager as conflict messages print it.
    pub fn printed(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    pub(super) fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        m.insert("time".into(), json!(self.time));
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.set.to_json());
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m)
    }
}

/// Parses `metadata.managedFields`.
pub fn entries_of(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or_default().into(),
                    operation: e["operation"].as_str().unwrap_or("Update").into(),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
                    time: e["time"].as_str().unwrap_or_default().into(),
                    subresource: e["subresource"].as_str().unwrap_or_default().into(),
                    set: FieldSet::from_json(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(super) const SERVER_META: [&str; 10] = [
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "clusterName",
    "name",
];

pub(super) fn p(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| format!("f:{s}")).collect()
}

/// Removes the paths structured-merge-diff strips from every managed set.
pub(super) fn strip_set(set: &mut FieldSet) {
    for path in [
        p(&["apiVersion"]),
        p(&["kind"]),
        p(&["metadata"]),
        p(&["metadata", "name"]),
        p(&["metadata", "namespace"]),
        p(&["metadata", "creationTimestamp"]),
        p(&["metadata", "selfLink"]),
        p(&["metadata", "uid"]),
        p(&["metadata", "clusterName"]),
        p(&["metadata", "generation"]),
        p(&["metadata", "managedFields"]),
        p(&["metadata", "resourceVersion"]),
    ] {
        set.unset(&path);
    }
}

/// Clears the `.` marker of struct fields that an empty typed object already has, so Update
/// entries look like the real server's (`f:spec` without `.`).
pub(super) fn unset_struct_members(set: &mut FieldSet) {
    for path in [
        p(&["spec"]),
        p(&["status"]),
        p(&["spec", "template"]),
        p(&["spec", "template", "spec"]),
        p(&["spec", "template", "metadata"]),
        p(&["spec", "strategy"]),
        p(&["spec", "updateStrategy"]),
        p(&["spec", "resources"]),
    ] {
        set.unset(&path);
    }
}

pub(super) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj["metadata"][field].as_str()
}

pub(super) fn without_managed(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    o
}

pub(super) fn without_times(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(entries) = o
        .get_mut("metadata")
        .and_then(|m| m.get_mut("managedFields"))
        .and_then(Value::as_array_mut)
    {
        for e in entries {
            if let Some(m) = e.as_object_mut() {
                m.remove("time");
            }
        }
    }
    o
}

pub(super) fn conflict_error(
    entries: &[Entry],
    conflicts: &[(usize, Vec<Vec<String>>)],
) -> ApiError {
    let mut causes = Vec::new();
    for (i, paths) in conflicts {
        for path in paths {
            causes.push(Cause {
                reason: "FieldManagerConflict".into(),
                message: format!("conflict with {}", entries[*i].printed()),
                field: path_string(path),
            });
        }
    }
    let message = if causes.len() == 1 {
        format!(
            "Apply failed with 1 conflict: {}: {}",
            causes[0].message, causes[0].field
        )
    } else {
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, paths) in conflicts {
            by.entry(entries[*i].printed())
                .or_default()
                .extend(paths.iter().map(|p| path_string(p)));
        }
        let mut lines = Vec::new();
        for (m, ps) in by {
            lines.push(format!("conflicts with {m}:"));
            lines.extend(ps.into_iter().map(|p| format!("- {p}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            causes.len(),
            lines.join("\n")
        )
    };
    ApiError::apply_conflict(message, causes)
}
