//! LIST answers: label and field selectors, paging by continue token, and the answer written
//! without copying the stored objects.

use super::*;

impl State {
    /// A list object (`kind: XList`).
    pub fn list(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Value {
        let items: Vec<Value> = self
            .in_range(def, ns)
            .filter(|v| labels.matches_object(v) && fields.matches(v))
            .cloned()
            .collect();
        let mut list = json!({
            "kind": format!("{}List", def.kind),
            "apiVersion": def.api_version(),
            "metadata": {"resourceVersion": self.rv.to_string()},
        });
        // Put in place, not through `json!`, which would copy every item once more.
        list["items"] = Value::Array(items);
        list
    }

    /// The list object of [`State::list`] with its items typed as [`State::strip_item_types`]
    /// leaves them, serialized straight from the store: the common LIST (no table, no paging)
    /// of a large kind copies no object, as the real server encodes its watch cache.
    pub fn list_bytes(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<u8> {
        let strip = self.is_builtin(def);
        let items: Vec<ListItem<'_>> = self
            .in_range(def, ns)
            .filter(|v| labels.matches_object(v) && fields.matches(v))
            .map(|v| ListItem(v, strip))
            .collect();
        let list = ListOut {
            kind: format!("{}List", def.kind),
            api_version: def.api_version(),
            resource_version: self.rv.to_string(),
            items,
        };
        serde_json::to_vec(&list).expect("JSON values serialize")
    }

    /// The stored objects of a kind, in one namespace or all of them, in key order.
    pub(super) fn in_range<'s>(
        &'s self,
        def: &'s ResourceDef,
        ns: Option<&'s str>,
    ) -> impl Iterator<Item = &'s Value> + 's {
        // Objects are keyed by (group, plural, namespace, name): the kind's (or the
        // namespace's) objects are one range of keys, as in the real server's storage.
        let from = (
            def.group.clone(),
            def.plural.clone(),
            ns.unwrap_or_default().to_string(),
            String::new(),
        );
        self.objects
            .range(from..)
            .take_while(move |((g, pl, n, _), _)| {
                *g == def.group && *pl == def.plural && ns.is_none_or(|ns| ns == n)
            })
            .map(|(_, v)| v)
    }

    /// Removes `apiVersion` and `kind` from the items of a list of a built-in kind, as the
    /// real server serializes typed lists (custom resources keep them).
    pub fn strip_item_types(&self, def: &ResourceDef, list: &mut Value) {
        if !self.is_builtin(def) {
            return;
        }
        for item in list
            .get_mut("items")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(m) = item.as_object_mut() {
                // In place, keeping the order of the other fields (as `list_bytes` does).
                m.shift_remove("apiVersion");
                m.shift_remove("kind");
            }
        }
    }
}

/// A list object as the real server writes it (`kind`, `apiVersion`, `metadata`, `items`).
pub(super) struct ListOut<'a> {
    pub(super) kind: String,
    pub(super) api_version: String,
    pub(super) resource_version: String,
    pub(super) items: Vec<ListItem<'a>>,
}

impl serde::Serialize for ListOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("kind", &self.kind)?;
        m.serialize_entry("apiVersion", &self.api_version)?;
        m.serialize_entry(
            "metadata",
            &json!({"resourceVersion": self.resource_version}),
        )?;
        m.serialize_entry("items", &self.items)?;
        m.end()
    }
}

/// A stored object in a list: without `apiVersion` and `kind` when the flag says so (typed
/// lists of built-in kinds).
pub(super) struct ListItem<'a>(&'a Value, bool);

impl serde::Serialize for ListItem<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            ListItem(Value::Object(o), true) => {
                let kept = o.iter().filter(|(k, _)| *k != "apiVersion" && *k != "kind");
                let mut m = s.serialize_map(None)?;
                for (k, v) in kept {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
            ListItem(v, _) => v.serialize(s),
        }
    }
}
