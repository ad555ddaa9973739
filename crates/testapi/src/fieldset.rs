//! Field sets in the `FieldsV1` format, and the structural operations of server-side apply
//! (to-field-set, compare, merge, prune), modelled on sigs.k8s.io/structured-merge-diff.
//!
//! Path elements are kept in their serialized `FieldsV1` spelling: `f:name`, `k:{"name":"x"}`,
//! `v:"value"`, `i:3`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::schema::{ListType, Schema};

/// A set of field paths, as a tree (the `FieldsV1` shape).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// Whether the path leading to this node is itself a member (the `.` entry).
    pub member: bool,
    /// Children keyed by their serialized path element.
    pub children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    /// Parses a `fieldsV1` JSON value.
    pub fn from_json(v: &Value) -> FieldSet {
        let mut s = FieldSet::default();
        if let Value::Object(m) = v {
            for (k, child) in m {
                if k == "." {
                    s.member = true;
                    continue;
                }
                let mut c = FieldSet::from_json(child);
                if c.children.is_empty() {
                    c.member = true;
                }
                s.children.insert(k.clone(), c);
            }
        }
        s
    }

    /// Serializes to a `fieldsV1` JSON value.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, c) in &self.children {
            m.insert(k.clone(), c.to_json());
        }
        Value::Object(m)
    }

    /// True when the set has no members.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// Inserts a path as a member.
    pub fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for pe in path {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.member = true;
    }

    /// Removes a path's member flag (children stay).
    pub fn unset(&mut self, path: &[String]) {
        let mut node = &mut *self;
        for pe in path {
            match node.children.get_mut(pe) {
                Some(n) => node = n,
                None => return,
            }
        }
        node.member = false;
        self.compact();
    }

    /// The node at a path, if any.
    pub fn get(&self, path: &[String]) -> Option<&FieldSet> {
        let mut node = self;
        for pe in path {
            node = node.children.get(pe)?;
        }
        Some(node)
    }

    fn get_mut(&mut self, path: &[String]) -> Option<&mut FieldSet> {
        let mut node = self;
        for pe in path {
            node = node.children.get_mut(pe)?;
        }
        Some(node)
    }

    /// Drops child nodes without members.
    pub fn compact(&mut self) {
        self.children.retain(|_, c| {
            c.compact();
            !c.is_empty()
        });
    }

    /// Set union.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.member |= other.member;
        for (k, c) in &other.children {
            let merged = match out.children.get(k) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(k.clone(), merged);
        }
        out
    }

    /// Members of `self` that are not members of `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            let d = match other.children.get(k) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(k.clone(), d);
            }
        }
        out
    }

    /// Members of both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            if let Some(o) = other.children.get(k) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    out.children.insert(k.clone(), i);
                }
            }
        }
        out
    }

    /// Removes whole subtrees at the member paths of `other` (structured-merge-diff's
    /// `RecursiveDifference` for a set of prefixes).
    pub fn without_subtrees(&self, prefixes: &[Vec<String>]) -> FieldSet {
        let mut out = self.clone();
        for p in prefixes {
            if p.is_empty() {
                return FieldSet::default();
            }
            let (last, parent) = p.split_last().expect("non-empty");
            if let Some(node) = out.get_mut(parent) {
                node.children.remove(last);
            }
        }
        out.compact();
        out
    }

    /// All member paths, in order.
    pub fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (k, c) in &self.children {
            prefix.push(k.clone());
            c.collect(prefix, out);
            prefix.pop();
        }
    }
}

/// Renders a path as structured-merge-diff prints it: `.spec.containers[name="app"].image`.
pub fn path_string(path: &[String]) -> String {
    let mut s = String::new();
    for pe in path {
        if let Some(f) = pe.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = pe.strip_prefix("k:") {
            let parts: Vec<String> = match serde_json::from_str::<Map<String, Value>>(k) {
                Ok(m) => m
                    .iter()
                    .map(|(n, v)| format!("{n}={}", value_to_string(v)))
                    .collect(),
                Err(_) => vec![k.to_string()],
            };
            s.push('[');
            s.push_str(&parts.join(","));
            s.push(']');
        } else if let Some(v) = pe.strip_prefix("v:") {
            let v: Value = serde_json::from_str(v).unwrap_or(Value::Null);
            s.push_str(&format!("[={}]", value_to_string(&v)));
        } else if let Some(i) = pe.strip_prefix("i:") {
            s.push_str(&format!("[{i}]"));
        }
    }
    s
}

fn value_to_string(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn key_pe(item: &Value, keys: &[&str], defaults: &[(&str, Value)]) -> Option<String> {
    let obj = item.as_object()?;
    let mut m = BTreeMap::new();
    for k in keys {
        let v = match obj.get(*k) {
            Some(v) if !v.is_null() => v.clone(),
            _ => defaults.iter().find(|(n, _)| n == k)?.1.clone(),
        };
        m.insert((*k).to_string(), v);
    }
    let mut out = Map::new();
    for (k, v) in m {
        out.insert(k, v);
    }
    Some(format!("k:{}", Value::Object(out)))
}

fn set_pe(item: &Value) -> String {
    format!("v:{item}")
}

/// The path element of each item of a list, or `None` when the list is atomic (or an item
/// lacks its keys, in which case the list is treated as atomic).
fn list_pes(schema: &Schema, fields: &[String], items: &[Value]) -> Option<Vec<String>> {
    match schema.list_type(fields) {
        ListType::Atomic => None,
        ListType::Set => Some(items.iter().map(set_pe).collect()),
        ListType::Map(keys) => {
            let defaults = schema.key_defaults(fields);
            items
                .iter()
                .map(|i| key_pe(i, &keys, &defaults))
                .collect::<Option<Vec<_>>>()
        }
    }
}

/// The field set of an applied configuration (structured-merge-diff `ToFieldSet`).
pub fn to_field_set(schema: &Schema, v: &Value) -> FieldSet {
    let mut set = FieldSet::default();
    walk_set(schema, v, &mut Vec::new(), &mut Vec::new(), &mut set);
    set
}

fn walk_set(
    schema: &Schema,
    v: &Value,
    path: &mut Vec<String>,
    fields: &mut Vec<String>,
    set: &mut FieldSet,
) {
    match v {
        Value::Object(m) => {
            if (m.is_empty() || schema.map_atomic(fields)) && !path.is_empty() {
                set.insert(path);
                return;
            }
            for (k, c) in m {
                path.push(format!("f:{k}"));
                fields.push(k.clone());
                walk_set(schema, c, path, fields, set);
                fields.pop();
                path.pop();
            }
        }
        Value::Array(items) => match list_pes(schema, fields, items) {
            None => set.insert(path),
            Some(pes) => {
                for (pe, item) in pes.into_iter().zip(items) {
                    path.push(pe);
                    if item.is_object() {
                        walk_set(schema, item, path, fields, set);
                    }
                    set.insert(path);
                    path.pop();
                }
            }
        },
        _ => set.insert(path),
    }
}

/// Result of comparing two objects.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Paths present only in the new object.
    pub added: FieldSet,
    /// Leaf paths whose value changed.
    pub modified: FieldSet,
    /// Paths present only in the old object.
    pub removed: FieldSet,
}

/// Compares `old` and `new` (structured-merge-diff `Compare`).
pub fn compare(schema: &Schema, old: &Value, new: &Value) -> Comparison {
    let mut c = Comparison::default();
    walk_cmp(
        schema,
        Some(old),
        Some(new),
        &mut Vec::new(),
        &mut Vec::new(),
        &mut c,
    );
    c
}

fn walk_cmp(
    schema: &Schema,
    old: Option<&Value>,
    new: Option<&Value>,
    path: &mut Vec<String>,
    fields: &mut Vec<String>,
    c: &mut Comparison,
) {
    let leaf = |c: &mut Comparison, path: &[String]| match (old, new) {
        (None, Some(_)) => c.added.insert(path),
        (Some(_), None) => c.removed.insert(path),
        (Some(a), Some(b)) if a != b => c.modified.insert(path),
        _ => {}
    };
    let atomic_map = schema.map_atomic(fields);
    match (old, new) {
        (o, n)
            if !atomic_map
                && o.is_none_or(|v| v.is_object())
                && n.is_none_or(|v| v.is_object())
                && (o.is_some_and(|v| v.as_object().is_some_and(|m| !m.is_empty()))
                    || n.is_some_and(|v| v.as_object().is_some_and(|m| !m.is_empty()))) =>
        {
            let empty = Map::new();
            let om = o.and_then(Value::as_object).unwrap_or(&empty);
            let nm = n.and_then(Value::as_object).unwrap_or(&empty);
            if !path.is_empty() {
                if o.is_none() {
                    c.added.insert(path);
                } else if n.is_none() {
                    c.removed.insert(path);
                }
            }
            let mut keys: Vec<&String> = om.keys().collect();
            for k in nm.keys() {
                if !om.contains_key(k) {
                    keys.push(k);
                }
            }
            for k in keys {
                let ov = o.and_then(|v| v.get(k.as_str()));
                let nv = n.and_then(|v| v.get(k.as_str()));
                path.push(format!("f:{k}"));
                fields.push(k.clone());
                walk_cmp(schema, ov, nv, path, fields, c);
                fields.pop();
                path.pop();
            }
        }
        (o, n) if o.is_none_or(|v| v.is_array()) && n.is_none_or(|v| v.is_array()) => {
            let empty = Vec::new();
            let oi = o.and_then(Value::as_array).unwrap_or(&empty);
            let ni = n.and_then(Value::as_array).unwrap_or(&empty);
            let (Some(ope), Some(npe)) =
                (list_pes(schema, fields, oi), list_pes(schema, fields, ni))
            else {
                leaf(c, path);
                return;
            };
            if o.is_none() {
                c.added.insert(path);
            } else if n.is_none() {
                c.removed.insert(path);
            }
            let mut order: Vec<(&String, Option<&Value>, Option<&Value>)> = Vec::new();
            for (pe, item) in ope.iter().zip(oi) {
                let nv = npe.iter().position(|p| p == pe).map(|i| &ni[i]);
                order.push((pe, Some(item), nv));
            }
            for (pe, item) in npe.iter().zip(ni) {
                if !ope.contains(pe) {
                    order.push((pe, None, Some(item)));
                }
            }
            for (pe, ov, nv) in order {
                path.push(pe.clone());
                match (ov, nv) {
                    (None, Some(_)) => c.added.insert(path),
                    (Some(_), None) => c.removed.insert(path),
                    _ => {}
                }
                if ov.is_none_or(Value::is_object) && nv.is_none_or(Value::is_object) {
                    if !pe.starts_with("v:") {
                        walk_cmp(schema, ov, nv, path, fields, c);
                    }
                } else {
                    walk_cmp_leaf(ov, nv, path, c);
                }
                path.pop();
            }
        }
        _ => leaf(c, path),
    }
}

fn walk_cmp_leaf(old: Option<&Value>, new: Option<&Value>, path: &[String], c: &mut Comparison) {
    if let (Some(a), Some(b)) = (old, new)
        && a != b
    {
        c.modified.insert(path);
    }
}

/// Merges an applied configuration into a live object (structured-merge-diff `Merge`):
/// maps merge by key, associative lists by item key, set lists by value, everything else
/// (scalars, atomic lists and maps) is replaced.
pub fn merge(schema: &Schema, live: &Value, applied: &Value) -> Value {
    merge_at(schema, Some(live), applied, &mut Vec::new())
}

fn merge_at(
    schema: &Schema,
    live: Option<&Value>,
    applied: &Value,
    fields: &mut Vec<String>,
) -> Value {
    match (live, applied) {
        (Some(Value::Object(lm)), Value::Object(am)) if !schema.map_atomic(fields) => {
            let mut out = lm.clone();
            for (k, av) in am {
                if av.is_null() {
                    out.remove(k);
                    continue;
                }
                fields.push(k.clone());
                let merged = merge_at(schema, lm.get(k), av, fields);
                fields.pop();
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Some(Value::Array(li)), Value::Array(ai)) => {
            let (Some(lpe), Some(ape)) =
                (list_pes(schema, fields, li), list_pes(schema, fields, ai))
            else {
                return applied.clone();
            };
            let merged_item = |i: usize, fields: &mut Vec<String>| -> Value {
                let pe = &ape[i];
                match lpe.iter().position(|p| p == pe) {
                    Some(j) => merge_at(schema, Some(&li[j]), &ai[i], fields),
                    None => ai[i].clone(),
                }
            };
            // Keep the live order for live-only items; shared and new items follow the
            // applied order, each emitted no later than the next shared item.
            let mut out = Vec::new();
            let mut emitted = vec![false; ai.len()];
            for (j, pe) in lpe.iter().enumerate() {
                match ape.iter().position(|p| p == pe) {
                    None => out.push(li[j].clone()),
                    Some(pos) => {
                        for (i, done) in emitted.iter_mut().enumerate().take(pos + 1) {
                            if !*done {
                                *done = true;
                                out.push(merged_item(i, fields));
                            }
                        }
                    }
                }
            }
            for (i, done) in emitted.iter().enumerate() {
                if !done {
                    out.push(merged_item(i, fields));
                }
            }
            Value::Array(out)
        }
        _ => applied.clone(),
    }
}

/// Removes from `obj` the members of `remove`, except paths that `keep` owns (or owns
/// anything below). Maps and lists left empty by a removal are removed too.
pub fn prune(schema: &Schema, obj: &mut Value, remove: &FieldSet, keep: &FieldSet) {
    prune_at(schema, obj, remove, Some(keep), &mut Vec::new());
}

fn prune_at(
    schema: &Schema,
    obj: &mut Value,
    remove: &FieldSet,
    keep: Option<&FieldSet>,
    fields: &mut Vec<String>,
) {
    let kept = |pe: &str| keep.and_then(|k| k.children.get(pe));
    match obj {
        Value::Object(m) => {
            for (pe, r) in &remove.children {
                let Some(name) = pe.strip_prefix("f:") else {
                    continue;
                };
                let Some(child) = m.get_mut(name) else {
                    continue;
                };
                let k = kept(pe);
                if r.member && k.is_none_or(FieldSet::is_empty) {
                    m.remove(name);
                    continue;
                }
                let was_empty = is_empty_container(child);
                fields.push(name.to_string());
                prune_at(schema, child, r, k, fields);
                fields.pop();
                if !was_empty && is_empty_container(child) {
                    m.remove(name);
                }
            }
        }
        Value::Array(items) => {
            let Some(pes) = list_pes(schema, fields, items) else {
                return;
            };
            let mut drop = vec![false; items.len()];
            for (idx, pe) in pes.iter().enumerate() {
                let Some(r) = remove.children.get(pe) else {
                    continue;
                };
                let k = kept(pe);
                if r.member && k.is_none_or(FieldSet::is_empty) {
                    drop[idx] = true;
                } else if items[idx].is_object() {
                    prune_at(schema, &mut items[idx], r, k, fields);
                }
            }
            let mut i = 0;
            items.retain(|_| {
                let d = drop[i];
                i += 1;
                !d
            });
        }
        _ => {}
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Associative lists with duplicate keys in an applied configuration, as structured-merge-diff
/// reports them (`.spec.x[name="a"].env: duplicate entries for key [name="FOO"]`).
pub fn duplicate_keys(schema: &Schema, v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_dups(schema, v, &mut Vec::new(), &mut Vec::new(), &mut out);
    out
}

fn walk_dups(
    schema: &Schema,
    v: &Value,
    path: &mut Vec<String>,
    fields: &mut Vec<String>,
    out: &mut Vec<String>,
) {
    match v {
        Value::Object(m) => {
            if schema.map_atomic(fields) {
                return;
            }
            for (k, c) in m {
                path.push(format!("f:{k}"));
                fields.push(k.clone());
                walk_dups(schema, c, path, fields, out);
                fields.pop();
                path.pop();
            }
        }
        Value::Array(items) => {
            let Some(pes) = list_pes(schema, fields, items) else {
                return;
            };
            let mut seen: Vec<&String> = Vec::new();
            for pe in &pes {
                if seen.contains(&pe) {
                    let msg = format!(
                        "{}: duplicate entries for key {}",
                        path_string(path),
                        path_string(std::slice::from_ref(pe))
                    );
                    if !out.contains(&msg) {
                        out.push(msg);
                    }
                } else {
                    seen.push(pe);
                }
            }
            for (pe, item) in pes.into_iter().zip(items) {
                path.push(pe);
                walk_dups(schema, item, path, fields, out);
                path.pop();
            }
        }
        _ => {}
    }
}

type TypeTable =
    std::collections::HashMap<&'static str, std::collections::HashMap<&'static str, &'static str>>;

fn type_table() -> &'static TypeTable {
    static TABLE: std::sync::OnceLock<TypeTable> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        crate::schema_fields::TYPES
            .iter()
            .map(|(t, fields)| (*t, fields.iter().copied().collect()))
            .collect()
    })
}

/// Fields of a built-in object that its type does not declare, as structured-merge-diff
/// paths (`.spec.replica`) and as strict-decoding paths (`spec.replica`,
/// `spec.template.spec.containers[0].imagePullPolicyy`). Custom resources are not checked.
pub fn undeclared_fields(schema: &Schema, v: &Value) -> Vec<(String, String)> {
    let Some(root) = crate::schema_fields::ROOTS
        .iter()
        .find(|(g, k, _)| *g == schema.group && *k == schema.kind)
        .map(|(_, _, t)| *t)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk_declared(
        schema,
        root,
        v,
        &mut Vec::new(),
        &mut Vec::new(),
        &mut String::new(),
        &mut out,
    );
    out
}

fn walk_declared(
    schema: &Schema,
    ty: &str,
    v: &Value,
    path: &mut Vec<String>,
    fields: &mut Vec<String>,
    json_path: &mut String,
    out: &mut Vec<(String, String)>,
) {
    let Some(decl) = type_table().get(ty) else {
        return;
    };
    let Value::Object(m) = v else {
        return;
    };
    for (k, c) in m {
        let jp_len = json_path.len();
        if !json_path.is_empty() {
            json_path.push('.');
        }
        json_path.push_str(k);
        path.push(format!("f:{k}"));
        fields.push(k.clone());
        match decl.get(k.as_str()) {
            None => out.push((path_string(path), json_path.clone())),
            Some(&"") => {}
            Some(child) => {
                if let Some(inner) = child.strip_prefix("map:") {
                    if let Value::Object(entries) = c {
                        for (ek, ev) in entries {
                            let l = json_path.len();
                            json_path.push_str(&format!("[{ek}]"));
                            path.push(format!("f:{ek}"));
                            walk_declared(schema, inner, ev, path, fields, json_path, out);
                            path.pop();
                            json_path.truncate(l);
                        }
                    }
                } else if let Value::Array(items) = c {
                    let pes = list_pes(schema, fields, items);
                    for (i, item) in items.iter().enumerate() {
                        let l = json_path.len();
                        json_path.push_str(&format!("[{i}]"));
                        path.push(match &pes {
                            Some(p) => p[i].clone(),
                            None => format!("i:{i}"),
                        });
                        walk_declared(schema, child, item, path, fields, json_path, out);
                        path.pop();
                        json_path.truncate(l);
                    }
                } else {
                    walk_declared(schema, child, c, path, fields, json_path, out);
                }
            }
        }
        fields.pop();
        path.pop();
        json_path.truncate(jp_len);
    }
}
