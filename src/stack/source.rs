//! Reading the stack file's TOML: every syntax error, unknown key and type error at once, each
//! as a [`Problem`] located in the file and said in the user's words.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use crate::source::Problem;

impl Problem {
    /// Turn the TOML parser's error (syntax, type, unknown key) into a located problem.
    pub fn from_toml(e: &toml::de::Error) -> Self {
        let message = e.message().trim().to_string();
        // serde says "unknown field `x`, expected one of `a`, `b`": split so the valid keys read
        // as help rather than as part of the complaint.
        if let Some((head, tail)) = message.split_once(", expected one of ") {
            return Problem::at(head, e.span()).help(format!("valid keys here: {tail}"));
        }
        if let Some((head, tail)) = message.split_once(", expected ")
            && head.starts_with("unknown field")
        {
            return Problem::at(head, e.span()).help(format!("the only valid key here is {tail}"));
        }
        let message = message.replace('\n', " ");
        Problem::at(message, e.span())
    }
}

/// Deserialise `text` and collect every syntax error, unknown key and type error in one pass,
/// not only the first one serde stops at: each problem's entry is taken out of the parsed
/// document and the rest deserialised again, until what is left deserialises. The value is
/// what deserialised without the bad entries (their defaults in their place), so the semantic
/// checks can still run on it; `None` when a required entry is missing or syntax is broken.
pub fn deserialize<T: serde::de::DeserializeOwned>(text: &str) -> (Option<T>, Vec<Problem>) {
    let (mut root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return (None, errors.iter().map(Problem::from_toml).collect());
    }
    let mut problems = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    // Each round removes one entry: the document bounds the rounds; the cap is a backstop.
    for _ in 0..1000 {
        let de = toml::de::Deserializer::from(root.clone());
        let e = match T::deserialize(de) {
            Ok(v) => return (Some(v), problems),
            Err(e) => e,
        };
        if let Some(field) = e
            .message()
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
            && removed.iter().any(|r| r == field)
        {
            // Only missing because its wrong value was taken out: already reported.
            return (None, problems);
        }
        let found = e.span().and_then(|span| {
            let (mut path, mut keys) = (Vec::new(), Vec::new());
            entry_at(root.get_ref(), &span, &mut path, &mut keys).then_some((path, keys))
        });
        let Some((path, keys)) = found else {
            problems.push(Problem::from_toml(&e));
            return (None, problems);
        };
        problems.push(Problem::in_user_words(&e, &path));
        remove(root.get_mut(), &keys);
        removed.extend(path.iter().rev().find(|s| !s.starts_with('[')).cloned());
    }
    (None, problems)
}

/// Find the entry whose key or value is at `target`: its path (keys, and `[i]` for array
/// items) and the spans of the keys leading to it.
fn entry_at(
    table: &DeTable<'_>,
    target: &Range<usize>,
    path: &mut Vec<String>,
    keys: &mut Vec<Range<usize>>,
) -> bool {
    for (k, v) in table.iter() {
        path.push(k.get_ref().to_string());
        keys.push(k.span());
        if k.span() == *target || v.span() == *target || inside(v, target, path, keys) {
            return true;
        }
        path.pop();
        keys.pop();
    }
    false
}

fn inside(
    v: &toml::Spanned<DeValue<'_>>,
    target: &Range<usize>,
    path: &mut Vec<String>,
    keys: &mut Vec<Range<usize>>,
) -> bool {
    match v.get_ref() {
        DeValue::Table(t) => entry_at(t, target, path, keys),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                path.push(format!("[{i}]"));
                if item.span() == *target || inside(item, target, path, keys) {
                    return true;
                }
                path.pop();
            }
            false
        }
        _ => false,
    }
}

/// Take out the entry the key spans lead to; an entry inside an array takes the whole array
/// with it (array items cannot be taken out one by one).
fn remove(table: &mut DeTable<'_>, keys: &[Range<usize>]) {
    let Some((first, rest)) = keys.split_first() else {
        return;
    };
    if !rest.is_empty() {
        for (k, v) in table.iter_mut() {
            if k.span() == *first
                && let DeValue::Table(t) = v.get_mut()
            {
                return remove(t, rest);
            }
        }
    }
    let key = table.keys().find(|k| k.span() == *first).cloned();
    if let Some(key) = key {
        table.remove(&key);
    }
}

/// `kube.grafana.node_port`, `host.gate.funnel[0].target_port`.
fn dotted(path: &[String]) -> String {
    let mut s = String::new();
    for p in path {
        if !s.is_empty() && !p.starts_with('[') {
            s.push('.');
        }
        s.push_str(p);
    }
    s
}

/// What serde calls a Rust type, said as a stack author would: `key` is the setting's name.
fn expected_in_user_words(expected: &str, key: &str) -> String {
    let port = key.ends_with("port");
    match expected {
        "u16" if port => "a port number (1-65535)".into(),
        "u8" => "a whole number from 0 to 255".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "u64" | "usize" => "a whole number, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "`true` or `false`".into(),
        "a string" => "a string in quotes".into(),
        "a sequence" => "an array (`[...]`)".into(),
        "a map" => "a table".into(),
        e if e.starts_with("struct ") || e.starts_with("a map ") => "a table".into(),
        other => other.to_string(),
    }
}

/// What serde found, said as a stack author would: `string "x"` → `the string "x"`.
fn found_in_user_words(found: &str) -> String {
    let unquote = |s: &str| s.trim_matches('`').to_string();
    if let Some(v) = found.strip_prefix("string ") {
        return format!("the string {v}");
    }
    for (serde, ours) in [
        ("integer ", "the number "),
        ("floating point ", "the number "),
        ("boolean ", ""),
    ] {
        if let Some(v) = found.strip_prefix(serde) {
            return format!("{ours}{}", unquote(v));
        }
    }
    match found {
        "sequence" => "an array".into(),
        "map" => "a table".into(),
        other => other.to_string(),
    }
}

impl Problem {
    /// A type or value error of the entry at `path`, in the user's words:
    /// ``"`kube.grafana.node_port`: expected a port number (1-65535), found the number 70000"``.
    fn in_user_words(e: &toml::de::Error, path: &[String]) -> Self {
        let message = e.message().trim();
        let key = path
            .iter()
            .rev()
            .find(|s| !s.starts_with('['))
            .map_or("", String::as_str);
        let at = dotted(path);
        for kind in ["invalid type: ", "invalid value: "] {
            if let Some(rest) = message.strip_prefix(kind)
                && let Some((found, expected)) = rest.rsplit_once(", expected ")
            {
                return Problem::at(
                    format!(
                        "`{at}`: expected {}, found {}",
                        expected_in_user_words(expected, key),
                        found_in_user_words(found)
                    ),
                    e.span(),
                );
            }
        }
        if let Some(rest) = message.strip_prefix("unknown variant ")
            && let Some((value, valid)) = rest.split_once(", expected ")
        {
            let valid = valid.strip_prefix("one of ").unwrap_or(valid);
            return Problem::at(format!("`{at}`: unknown value {value}"), e.span())
                .help(format!("valid values: {valid}"));
        }
        Problem::from_toml(e)
    }
}
