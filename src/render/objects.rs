//! A template's output as objects: YAML documents read and checked against the Kubernetes API
//! types (named by template and document when they are not valid), or one unit file checked
//! for what labctl needs of it.

use serde_json::{Value, json};

use crate::error::Error;
use crate::resource::{
    At, COMPONENT, Content, DesiredObject, KindScope, MANAGED_BY, MANAGER, PART_OF, ResourceId,
    kind_spec,
};
use crate::stack::{Component, Stack};

pub(super) fn kube_objects(
    stack: &Stack,
    c: &Component,
    template: &str,
    text: &str,
) -> Result<Vec<DesiredObject>, Error> {
    // A template that renders many objects (a loop) is parsed and checked on every core: its
    // documents are independent, and this is most of a large plan's own time.
    let chunks = document_chunks(text, PARALLEL_PARSE_AT);
    let parsed = crate::par::map(chunks, 2, crate::yaml::documents);
    let mut docs = Vec::new();
    for p in parsed {
        match p {
            Ok(d) => docs.extend(d),
            // Parsed again whole, so that the parser's line numbers are the template output's.
            Err(e) => {
                let e = crate::yaml::documents(text).map_or_else(|e| e, |_| e);
                return Err(Error::Manifest {
                    template: template.to_string(),
                    document: 1,
                    message: format!("not valid YAML: {e}"),
                });
            }
        }
    }
    let numbered: Vec<(usize, Value)> = docs
        .into_iter()
        .enumerate()
        .map(|(i, d)| (i + 1, d))
        .filter(|(_, d)| !d.is_null())
        .collect();
    // In document order: the first failing document is the one reported.
    crate::par::map(numbered, PARALLEL_CHECK_AT, |(n, doc)| {
        kube_object(stack, c, template, n, doc)
    })
    .into_iter()
    .collect()
}

/// Rendered manifests at least this large are parsed on every core.
const PARALLEL_PARSE_AT: usize = 64 * 1024;

/// Templates rendering at least this many objects have them checked on every core.
const PARALLEL_CHECK_AT: usize = 256;

/// `text` cut into one piece per core, each starting at a `---` line (an explicit document
/// start, which no block scalar can contain: it ends one), so that parsing the pieces one by one
/// gives the documents of the whole, in order. One piece when `text` is shorter than `min`, on
/// one core, or has directives (`%YAML`), which belong to the document after them.
fn document_chunks(text: &str, min: usize) -> Vec<&str> {
    let cores = crate::par::cores();
    if text.len() < min || cores < 2 || text.lines().any(|l| l.starts_with('%')) {
        return vec![text];
    }
    let mut starts: Vec<usize> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let marker = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\n', '\r']));
        if marker && offset > 0 {
            starts.push(offset);
        }
        offset += line.len();
    }
    let target = text.len() / cores;
    let mut cuts = vec![0];
    for s in starts {
        if s - cuts[cuts.len() - 1] >= target && cuts.len() < cores {
            cuts.push(s);
        }
    }
    cuts.push(text.len());
    cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

/// Document `n` of a kube template's output, checked, as the object labctl applies.
fn kube_object(
    stack: &Stack,
    c: &Component,
    template: &str,
    n: usize,
    mut doc: Value,
) -> Result<DesiredObject, Error> {
    let bad = |document: usize, message: String| Error::Manifest {
        template: template.to_string(),
        document,
        message,
    };
    let Value::Object(_) = doc else {
        return Err(bad(
            n,
            "expected a mapping (an object), found a scalar or list".into(),
        ));
    };
    let field = |doc: &Value, key: &str| doc.at(key).and_then(Value::as_str).map(str::to_string);
    let api_version =
        field(&doc, "/apiVersion").ok_or_else(|| bad(n, "missing `apiVersion`".into()))?;
    let kind = field(&doc, "/kind").ok_or_else(|| bad(n, "missing `kind`".into()))?;
    let name =
        field(&doc, "/metadata/name").ok_or_else(|| bad(n, "missing `metadata.name`".into()))?;
    let namespaced = kind_spec(&kind).scope == KindScope::Namespaced;
    let meta = doc["metadata"]
        .as_object_mut()
        .ok_or_else(|| bad(n, "`metadata` is not a mapping".into()))?;
    let namespace = if namespaced {
        let ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or(stack.stack.namespace())
            .to_string();
        meta.insert("namespace".into(), json!(ns));
        Some(ns)
    } else {
        if meta.contains_key("namespace") {
            return Err(bad(
                n,
                format!("`{kind}` is cluster-scoped but has `metadata.namespace`"),
            ));
        }
        None
    };
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    let labels = labels
        .as_object_mut()
        .ok_or_else(|| bad(n, "`metadata.labels` is not a mapping".into()))?;
    labels.insert(MANAGED_BY.into(), json!(MANAGER));
    labels.insert(PART_OF.into(), json!(stack.stack.name));
    labels.entry(COMPONENT).or_insert_with(|| json!(c.name));
    crate::schema_check::check(&api_version, &kind, &doc)
        .map_err(|m| bad(n, format!("{kind} `{name}`: {m}")))?;
    Ok(DesiredObject {
        id: ResourceId::Kube {
            namespace,
            kind,
            name,
            api_version,
        },
        component: c.name.clone(),
        template: template.to_string(),
        content: Content::kube(doc),
        reload_on_change: false,
    })
}

/// The unit `template` rendered to `text` for component `c` on `host` (`None`: this machine).
pub(super) fn unit_object(
    stack: &Stack,
    c: &Component,
    host: Option<&str>,
    template: &str,
    text: &str,
) -> Result<DesiredObject, Error> {
    let suffix = template.rsplit('.').next().unwrap_or("service");
    let unit = format!("{}.{suffix}", c.unit.as_deref().unwrap_or(&c.name));
    let bad = |line: usize, message: String| Error::Template {
        template: template.to_string(),
        line: Some(line),
        message,
    };
    let mut sections = 0;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if l.starts_with('[') {
            if !l.ends_with(']') {
                return Err(bad(i + 1, format!("section header `{l}` is not closed")));
            }
            sections += 1;
        } else if sections == 0 {
            return Err(bad(i + 1, format!("`{l}` comes before any [Section]")));
        } else if !l.contains('=')
            && !text
                .lines()
                .nth(i.wrapping_sub(1))
                .is_some_and(|p| p.trim_end().ends_with('\\'))
        {
            return Err(bad(i + 1, format!("`{l}` is not `Key=Value`")));
        }
    }
    if sections == 0 {
        return Err(bad(1, "renders no [Unit] or [Service] section".into()));
    }
    let text = format!(
        "{}\n{text}",
        crate::resource::unit_marker(&stack.stack.name)
    );
    Ok(DesiredObject {
        id: ResourceId::unit(host, unit),
        component: c.name.clone(),
        template: template.to_string(),
        content: Content::unit(&text),
        reload_on_change: c.reload_on_change,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn a_large_manifest_parses_in_pieces_to_the_documents_of_the_whole() {
        let mut text = String::from("# leading comment\n");
        for i in 0..300 {
            // A block scalar holding `---` indented (content) and a document ended by `...`.
            text.push_str(&format!(
                "---\nkind: ConfigMap\nname: cm-{i}\ndata:\n  x: |\n    ---\n    line {i}\n"
            ));
            if i % 7 == 0 {
                text.push_str("...\n");
            }
            if i % 11 == 0 {
                text.push_str("---\n# an empty document\n");
            }
        }
        let pieces = document_chunks(&text, 0);
        let cores = crate::par::cores();
        assert!(
            pieces.len() <= cores && (cores < 2 || pieces.len() > 1),
            "{}",
            pieces.len()
        );
        assert_eq!(pieces.concat(), text);
        for p in &pieces[1..] {
            assert!(p.starts_with("---\n"), "{}", &p[..20]);
        }
        let whole: Vec<Value> = crate::yaml::documents(&text).unwrap();
        let joined: Vec<Value> = pieces
            .iter()
            .flat_map(|p| crate::yaml::documents(p).unwrap())
            .collect();
        assert_eq!(whole, joined);
        assert!(whole.len() >= 300, "{}", whole.len());
        // Small text, or directives, stay whole.
        assert_eq!(document_chunks(&text, text.len() + 1).len(), 1);
        assert_eq!(document_chunks(&format!("%YAML 1.2\n{text}"), 0).len(), 1);
    }
}
