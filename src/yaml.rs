//! Rendered manifests read the way kubectl reads them: a YAML stream to JSON values, with YAML
//! 1.1's plain scalars as Go's `yaml.v2` (kubectl's reader, through `sigs.k8s.io/yaml`) resolves
//! them. `yes`/`on`/`y` are booleans, `0755` is octal (493), `1_000` is 1000, `!!binary` is
//! decoded, a quoted scalar is always a string, a value with a tag kubectl cannot resolve
//! (`!foo 5`) is the string `"5"`. Merge keys (`<<`) apply in the order written, each write
//! replacing what came before, as `yaml.v2` applies them.
//!
//! Where kubectl would be silent or lose data, labctl refuses: a duplicate key (kubectl keeps
//! the last one), `.inf`/`.nan` (no JSON number holds them), a key that is a list or a mapping,
//! anchors and aliases that copy past a bound (an "alias bomb"), nesting deeper than a bound
//! (aliases included). Mapping keys are kept as written (`on: x` has the key `"on"`).
//!
//! The events come from `libyaml-safer`, a port of libyaml in safe Rust, which is about three
//! times as fast as the serde-based readers on a large stack's output; resolving scalars and
//! building values is this file's.

use std::collections::HashMap;

use libyaml_safer::{Event, EventData, Mark, Parser, ScalarStyle};
use serde_json::{Map, Number, Value};

/// Deepest nesting of lists and mappings accepted.
const MAX_DEPTH: usize = 256;

/// Most values that anchors and aliases may copy in a stream, in all.
const MAX_COPIED: usize = 1_000_000;

const TAG: &str = "tag:yaml.org,2002:";

/// The documents of a YAML stream as JSON values, in order; empty documents (`---` with nothing
/// after it) are left out. The error is one line, `line L column C: problem`.
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    // libyaml-safer panics on a block scalar that ends the input without a line break
    // (upstream issue 6), which a template without a final newline renders: the text is read
    // with one, and such a scalar loses the break again below. A panic on anything else it
    // cannot read becomes an error, not the end of the process.
    let owned;
    let (text, added_break) = if text.is_empty() || text.ends_with('\n') {
        (text, false)
    } else {
        owned = format!("{text}\n");
        (owned.as_str(), true)
    };
    std::panic::catch_unwind(|| read(text, added_break)).unwrap_or_else(|p| {
        let why = p
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(format!("the YAML reader cannot read this text ({why})"))
    })
}

fn read(text: &str, added_break: bool) -> Result<Vec<Value>, String> {
    let mut input = text.as_bytes();
    let mut parser = Parser::new();
    parser.set_input_string(&mut input);
    let mut b = Builder {
        eoi: added_break.then_some(text.len() as u64),
        ..Builder::default()
    };
    let mut docs = Vec::new();
    loop {
        let event = parser.parse().map_err(|e| parse_error(&e))?;
        match event.data {
            EventData::StreamEnd => return Ok(docs),
            EventData::DocumentStart { .. } => {
                b.anchors.clear();
                b.empty = false;
            }
            EventData::DocumentEnd { .. } => {
                if let Some(doc) = b.done.take()
                    && !b.empty
                {
                    docs.push(doc);
                }
            }
            _ => b.event(event)?,
        }
    }
}

fn parse_error(e: &libyaml_safer::Error) -> String {
    let mut s = match e.problem_mark() {
        Some(m) => format!("{}: {}", at(m), e.problem()),
        None => e.problem().to_string(),
    };
    if let (Some(context), Some(m)) = (e.context(), e.context_mark()) {
        s.push_str(&format!(", {context} at {}", at(m)));
    }
    s
}

fn at(m: Mark) -> String {
    format!("line {} column {}", m.line + 1, m.column + 1)
}

/// A list or mapping being read, with the depth and the count of the values in it so far
/// (kept as it grows: an alias brings a whole tree, and walking trees to measure them can
/// itself run out of stack).
struct Open {
    kind: Collection,
    anchor: Option<String>,
    depth: usize,
    size: usize,
}

enum Collection {
    Seq(Vec<Value>),
    Map {
        map: Map<String, Value>,
        /// The key read, waiting for its value, and where it was.
        key: Option<(Key, Mark)>,
        /// Mappings merged in by `<<`, each with the count of explicit keys before it.
        merged: Vec<(usize, Map<String, Value>)>,
    },
}

enum Key {
    Text(String),
    Merge,
}

/// An anchored value, its depth and its count of values.
type Anchored = (Value, usize, usize);

#[derive(Default)]
struct Builder {
    open: Vec<Open>,
    anchors: HashMap<String, Anchored>,
    /// Values copied so far, for anchors and by aliases.
    copied: usize,
    /// The finished root of the current document.
    done: Option<Value>,
    /// The current document has nothing in it (an empty plain scalar for its root).
    empty: bool,
    /// Where the text ends when a final line break was added to it.
    eoi: Option<u64>,
}

impl Builder {
    fn event(&mut self, event: Event) -> Result<(), String> {
        let mark = event.start_mark;
        match event.data {
            EventData::Scalar {
                anchor,
                tag,
                mut value,
                style,
                ..
            } => {
                if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded)
                    && self.eoi.is_some_and(|end| event.end_mark.index >= end)
                    && value.ends_with('\n')
                {
                    value.pop();
                }
                if self.expects_key() {
                    if let Some(a) = anchor {
                        self.anchors.insert(a, (Value::String(value.clone()), 0, 1));
                    }
                    return self.key(Key::text_or_merge(value, style, tag.as_deref()), mark);
                }
                if self.open.is_empty()
                    && value.is_empty()
                    && style == ScalarStyle::Plain
                    && tag.is_none()
                    && anchor.is_none()
                {
                    self.empty = true;
                }
                let v = scalar(value, style, tag.as_deref())
                    .map_err(|e| format!("{}: {e}", at(mark)))?;
                self.finish(v, anchor, mark, 0, 1)
            }
            EventData::Alias { anchor } => {
                let Some(&(_, depth, size)) = self.anchors.get(&anchor) else {
                    return Err(format!(
                        "{}: alias `*{anchor}` names no anchor before it",
                        at(mark)
                    ));
                };
                self.copy(size, mark)?;
                let v = self.anchors[&anchor].0.clone();
                if self.expects_key() {
                    let text = match v {
                        Value::String(s) => s,
                        Value::Null => "null".to_string(),
                        Value::Number(_) | Value::Bool(_) => v.to_string(),
                        _ => return Err(format!("{}: a mapping key must be a scalar", at(mark))),
                    };
                    return self.key(Key::Text(text), mark);
                }
                self.finish(v, None, mark, depth, size)
            }
            EventData::SequenceStart { anchor, .. } => {
                self.open_collection(Collection::Seq(Vec::new()), anchor, mark)
            }
            EventData::MappingStart { anchor, .. } => self.open_collection(
                Collection::Map {
                    map: Map::new(),
                    key: None,
                    merged: Vec::new(),
                },
                anchor,
                mark,
            ),
            EventData::SequenceEnd | EventData::MappingEnd => {
                let Some(open) = self.open.pop() else {
                    return Ok(());
                };
                let v = match open.kind {
                    Collection::Seq(items) => Value::Array(items),
                    Collection::Map { map, merged, .. } => Value::Object(merge(map, merged)),
                };
                self.finish(v, open.anchor, mark, open.depth + 1, open.size + 1)
            }
            _ => Ok(()),
        }
    }

    fn expects_key(&self) -> bool {
        matches!(
            self.open.last(),
            Some(Open {
                kind: Collection::Map { key: None, .. },
                ..
            })
        )
    }

    /// Count `size` more values copied, within the bound.
    fn copy(&mut self, size: usize, mark: Mark) -> Result<(), String> {
        self.copied += size;
        if self.copied > MAX_COPIED {
            return Err(format!(
                "{}: anchors and aliases copy more than {MAX_COPIED} values",
                at(mark)
            ));
        }
        Ok(())
    }

    fn open_collection(
        &mut self,
        kind: Collection,
        anchor: Option<String>,
        mark: Mark,
    ) -> Result<(), String> {
        if self.expects_key() {
            return Err(format!(
                "{}: a mapping key must be a scalar, not a list or a mapping",
                at(mark)
            ));
        }
        if self.open.len() >= MAX_DEPTH {
            return Err(too_deep(mark));
        }
        self.open.push(Open {
            kind,
            anchor,
            depth: 0,
            size: 0,
        });
        Ok(())
    }

    fn key(&mut self, k: Key, mark: Mark) -> Result<(), String> {
        let Some(Open {
            kind: Collection::Map { map, key, .. },
            ..
        }) = self.open.last_mut()
        else {
            unreachable!("a key is read only inside a mapping");
        };
        if let Key::Text(s) = &k
            && map.contains_key(s)
        {
            return Err(format!("{}: duplicate mapping key `{s}`", at(mark)));
        }
        *key = Some((k, mark));
        Ok(())
    }

    /// A complete value of `depth` levels and `size` values: recorded under its anchor, then
    /// placed in what holds it.
    fn finish(
        &mut self,
        v: Value,
        anchor: Option<String>,
        mark: Mark,
        depth: usize,
        size: usize,
    ) -> Result<(), String> {
        if self.open.len() + depth > MAX_DEPTH {
            return Err(too_deep(mark));
        }
        if let Some(a) = anchor {
            self.copy(size, mark)?;
            self.anchors.insert(a, (v.clone(), depth, size));
        }
        let Some(open) = self.open.last_mut() else {
            self.done = Some(v);
            return Ok(());
        };
        open.depth = open.depth.max(depth);
        open.size += size;
        match &mut open.kind {
            Collection::Seq(items) => items.push(v),
            Collection::Map { map, key, merged } => {
                match key.take() {
                    Some((Key::Text(k), _)) => {
                        map.insert(k, v);
                    }
                    Some((Key::Merge, key_mark)) => {
                        let bad = || {
                            format!(
                                "{}: a merge key (`<<`) takes a mapping or a list of mappings",
                                at(key_mark)
                            )
                        };
                        match v {
                            Value::Object(m) => merged.push((map.len(), m)),
                            // Earlier mappings of the list win over later ones: applied last.
                            Value::Array(list) => {
                                let mut maps = Vec::new();
                                for m in list {
                                    let Value::Object(m) = m else {
                                        return Err(bad());
                                    };
                                    maps.push((map.len(), m));
                                }
                                merged.extend(maps.into_iter().rev());
                            }
                            _ => return Err(bad()),
                        }
                    }
                    None => unreachable!("a value in a mapping follows its key"),
                }
            }
        }
        Ok(())
    }
}

fn too_deep(mark: Mark) -> String {
    format!("{}: nested more than {MAX_DEPTH} levels deep", at(mark))
}

/// A mapping with its merge keys applied as yaml.v2 applies them: in the order written, each
/// write replacing what came before, whether an explicit key or a merged one.
fn merge(
    explicit: Map<String, Value>,
    merged: Vec<(usize, Map<String, Value>)>,
) -> Map<String, Value> {
    if merged.is_empty() {
        return explicit;
    }
    let mut out = Map::new();
    let mut merged = merged.into_iter().peekable();
    for (i, (k, v)) in explicit.into_iter().enumerate() {
        while let Some((_, m)) = merged.next_if(|(before, _)| *before <= i) {
            out.extend(m);
        }
        out.insert(k, v);
    }
    for (_, m) in merged {
        out.extend(m);
    }
    out
}

impl Key {
    fn text_or_merge(value: String, style: ScalarStyle, tag: Option<&str>) -> Key {
        let merge_tag = tag.is_some_and(|t| t.strip_prefix(TAG) == Some("merge"));
        if value == "<<" && ((style == ScalarStyle::Plain && tag.is_none()) || merge_tag) {
            Key::Merge
        } else {
            Key::Text(value)
        }
    }
}

/// What kubectl's reader makes of a scalar: yaml.v2's `resolve`, then the JSON that
/// `sigs.k8s.io/yaml` writes of it.
fn scalar(text: String, style: ScalarStyle, tag: Option<&str>) -> Result<Value, String> {
    let short = tag.map(|t| t.strip_prefix(TAG).map_or(t, |s| s));
    let wanted = match short {
        // A quoted scalar without a tag is a string.
        None if style != ScalarStyle::Plain => return Ok(Value::String(text)),
        None => None,
        Some("str" | "timestamp") => return Ok(Value::String(text)),
        Some("binary") => return binary(&text),
        Some(t @ ("bool" | "int" | "float" | "null")) => Some(t),
        // Tags kubectl cannot resolve (`!foo`, the non-specific `!`) leave the text as it is.
        Some(_) => return Ok(Value::String(text)),
    };
    let resolved = resolve(&text)?;
    let Some(wanted) = wanted else {
        return Ok(resolved.unwrap_or(Value::String(text)));
    };
    match (wanted, resolved) {
        ("bool", Some(v @ Value::Bool(_))) | ("null", Some(v @ Value::Null)) => Ok(v),
        // An integer as written: `1.0` and `1e3` resolve as floats, which yaml.v2 refuses here.
        ("int", Some(Value::Number(n))) if int(&text.replace('_', "")).is_some() => {
            Ok(Value::Number(n))
        }
        ("float", Some(Value::Number(n))) => Ok(Value::Number(n)),
        (wanted, _) => Err(format!("cannot read `{text}` as a !!{wanted}")),
    }
}

/// yaml.v2's resolution of a plain scalar: `None` for a string.
fn resolve(s: &str) -> Result<Option<Value>, String> {
    let v =
        match s {
            "" | "~" | "null" | "Null" | "NULL" => Value::Null,
            "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
                Value::Bool(true)
            }
            "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off"
            | "OFF" => Value::Bool(false),
            ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF"
            | "-.inf" | "-.Inf" | "-.INF" => {
                return Err(format!(
                    "`{s}` is not a finite number, and JSON has no other kind"
                ));
            }
            _ => match s.as_bytes()[0] {
                b'.' => return Ok(float(s)),
                b'0'..=b'9' | b'+' | b'-' => {
                    let plain = s.replace('_', "");
                    return Ok(int(&plain)
                        .or_else(|| float_shaped(&plain).then(|| float(&plain)).flatten()));
                }
                _ => return Ok(None),
            },
        };
    Ok(Some(v))
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint(s, 0, 64)`: a sign, then `0x`, `0o`,
/// `0b` or a leading `0` (octal) for the base.
fn int(s: &str) -> Option<Value> {
    let (sign, body) = match s.as_bytes().first() {
        Some(b'-') => (Some(true), &s[1..]),
        Some(b'+') => (Some(false), &s[1..]),
        _ => (None, s),
    };
    let prefixed = |p: &str| {
        body.get(..2)
            .filter(|b| b.eq_ignore_ascii_case(p))
            .map(|_| &body[2..])
    };
    let (radix, digits) = if let Some(d) = prefixed("0x") {
        (16, d)
    } else if let Some(d) = prefixed("0o") {
        (8, d)
    } else if let Some(d) = prefixed("0b") {
        (2, d)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    match sign {
        Some(true) => {
            let n = i64::try_from(-i128::from(magnitude)).ok()?;
            Some(Value::from(n))
        }
        // ParseUint takes no sign: a signed value past i64 is not an integer.
        Some(false) => i64::try_from(magnitude).ok().map(Value::from),
        None => Some(Value::from(magnitude)),
    }
}

/// yaml.v2's float pattern, `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn float_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// A float as the JSON kubectl sends: Go writes a whole float64 below 1e21 without a fraction
/// (`1e3` is `1000`), so a whole one is an integer here too (within JSON's u64 and i64), and
/// compares equal to what the server returns. Out of range (`1e400`) is a string, as
/// ParseFloat's error makes it.
fn float(s: &str) -> Option<Value> {
    let f: f64 = s.parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    // 2^63 and 2^64, exactly representable: a whole float below them converts exactly.
    const I64_END: f64 = 9_223_372_036_854_775_808.0;
    const U64_END: f64 = 18_446_744_073_709_551_616.0;
    if f.fract() == 0.0 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        if (-I64_END..I64_END).contains(&f) {
            return Some(Value::from(f as i64));
        } else if (0.0..U64_END).contains(&f) {
            return Some(Value::from(f as u64));
        }
    }
    Number::from_f64(f).map(Value::Number)
}

/// `!!binary`: base64 (line breaks ignored, as Go's decoder does), read as text.
fn binary(text: &str) -> Result<Value, String> {
    use base64::Engine as _;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("!!binary value is not base64: {e}"))?;
    Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Value {
        let mut d = documents(text).unwrap();
        assert_eq!(d.len(), 1, "{d:?}");
        d.remove(0)
    }

    fn err(text: &str) -> String {
        documents(text).unwrap_err()
    }

    #[test]
    fn plain_scalars_resolve_as_kubectl_resolves_them() {
        let cases = [
            ("yes", json!(true)),
            ("Y", json!(true)),
            ("on", json!(true)),
            ("OFF", json!(false)),
            ("n", json!(false)),
            ("True", json!(true)),
            ("tRue", json!("tRue")),
            ("~", json!(null)),
            ("Null", json!(null)),
            ("nUll", json!("nUll")),
            ("0755", json!(493)),
            ("0o755", json!(493)),
            ("0x1F", json!(31)),
            ("0X1F", json!(31)),
            ("-0x1F", json!(-31)),
            ("0b101", json!(5)),
            ("-0b11", json!(-3)),
            ("1_000", json!(1000)),
            ("+5", json!(5)),
            ("-0", json!(0)),
            ("0", json!(0)),
            ("08", json!(8)),
            ("09.5", json!(9.5)),
            ("1e3", json!(1000)),
            ("1.0", json!(1)),
            ("1.5", json!(1.5)),
            (".5", json!(0.5)),
            ("-.5", json!(-0.5)),
            ("1.", json!(1)),
            ("1.5e-3", json!(0.0015)),
            ("0.1_5", json!(0.15)),
            (
                "12345678901234567890",
                json!(12_345_678_901_234_567_890_u64),
            ),
            ("-9223372036854775808", json!(i64::MIN)),
            ("1e16", json!(10_000_000_000_000_000_i64)),
            ("+9223372036854775808", json!(9_223_372_036_854_775_808_u64)),
            ("1e400", json!("1e400")),
            ("1:20", json!("1:20")),
            ("2001-12-14", json!("2001-12-14")),
            ("0x", json!("0x")),
            ("_1", json!("_1")),
            ("1.2.3", json!("1.2.3")),
            ("Infinity", json!("Infinity")),
            ("e3", json!("e3")),
            ("+", json!("+")),
        ];
        for (text, want) in cases {
            assert_eq!(one(&format!("v: {text}\n"))["v"], want, "{text}");
        }
        let big = one("v: 123456789012345678901234\n");
        assert!(big["v"].is_f64(), "{big}");
    }

    #[test]
    fn quoted_and_tagged_scalars() {
        let v = one(
            "a: 'yes'\nb: \"5\"\nc: !!str 5\nd: !!int \"7\"\ne: !!float 1\nf: !!bool yes\n\
             g: !!null ''\nh: ! 5\ni: !!binary aGVsbG8=\nj: !foo 5\nk: !!int 0x10\nl: !!str\n\
             m: |\n  x\nn: >-\n  y\n  z\n",
        );
        assert_eq!(
            v,
            json!({"a": "yes", "b": "5", "c": "5", "d": 7, "e": 1, "f": true, "g": null,
                   "h": "5", "i": "hello", "j": "5", "k": 16, "l": "", "m": "x\n", "n": "y z"})
        );
        assert!(err("a: !!int abc\n").contains("line 1 column 4: cannot read `abc` as a !!int"));
        assert!(err("a: !!bool maybe\n").contains("!!bool"));
        assert!(err("a: !!int 1.0\n").contains("cannot read `1.0` as a !!int"));
        assert!(err("a: !!binary '%%'\n").contains("not base64"));
    }

    #[test]
    fn keys_stay_as_written() {
        assert_eq!(
            one("on: 1\n'yes': 2\n1: 3\n~: 4\n"),
            json!({"on": 1, "yes": 2, "1": 3, "~": 4})
        );
        assert!(err("? [a]\n: 1\n").contains("line 1 column 3: a mapping key must be a scalar"));
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        assert_eq!(one("a: &x 5\nb: *x\n"), json!({"a": 5, "b": 5}));
        assert_eq!(
            one("a: &x {p: 1}\nb:\n  <<: [*x, {q: 2, p: 3}]\n  p: 9\nc:\n  <<: *x\n"),
            json!({"a": {"p": 1}, "b": {"p": 9, "q": 2}, "c": {"p": 1}})
        );
        // As yaml.v2 merges: in the order written, each write replacing what came before; in
        // a list the first mapping wins over later ones.
        assert_eq!(
            one("<<: [{a: 1, b: 1}, {a: 2, c: 2}]\nb: 3\n"),
            json!({"a": 1, "b": 3, "c": 2})
        );
        assert_eq!(one("a: 2\n<<: {a: 1}\n"), json!({"a": 1}));
        assert_eq!(one("<<: {a: 1}\n<<: {a: 2}\n"), json!({"a": 2}));
        assert_eq!(
            err("a:\n  <<:\n  - 1\n  - 2\n\nb: 1\n"),
            "line 2 column 3: a merge key (`<<`) takes a mapping or a list of mappings"
        );
        assert_eq!(one("a: {'<<': 5}\n"), json!({"a": {"<<": 5}}));
        assert!(err("a: {<<: 5}\n").contains("merge key"));
        assert!(err("a: *nope\n").contains("line 1 column 4: alias `*nope` names no anchor"));
        // Anchors belong to their document.
        assert!(err("a: &x 1\n---\nb: *x\n").contains("names no anchor"));
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            bomb.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        assert!(
            err(&bomb).contains("copy more than 1000000 values"),
            "{bomb}"
        );
        // Anchors nested in anchors copy too, without any alias.
        let mut nested = String::from("a: ");
        for i in 0..200 {
            nested.push_str(&format!("&a{i} ["));
        }
        nested.push_str(&"1, ".repeat(20_000));
        nested.push_str(&"]".repeat(200));
        assert!(err(&nested).contains("copy more than"));
        // Aliases cannot nest deeper than the bound either.
        let mut deep = String::new();
        for i in 0..40 {
            let inner = if i == 0 {
                "1".to_string()
            } else {
                format!("*a{}", i - 1)
            };
            deep.push_str(&format!(
                "a{i}: &a{i} {}{inner}{}\n",
                "[".repeat(100),
                "]".repeat(100)
            ));
        }
        assert!(
            err(&deep).contains("nested more than 256 levels"),
            "{}",
            err(&deep)
        );
        assert_eq!(one("a: &n ~\n*n : 1\n")["null"], json!(1));
    }

    #[test]
    fn text_the_reader_cannot_take_is_an_error_or_read_right() {
        // A block scalar at the very end without a line break (a template with no final
        // newline) reads as kubectl reads it.
        assert_eq!(one("a: |\n  x"), json!({"a": "x"}));
        assert_eq!(one("a: >\n  x\n  y"), json!({"a": "x y"}));
        assert_eq!(one("a: |\n  x\nb: |\n  y"), json!({"a": "x\n", "b": "y"}));
        assert_eq!(one("a: b"), json!({"a": "b"}));
        // What libyaml-safer panics on is an error here.
        assert!(documents("a: \"x\\").is_err());
        assert!(documents("a: [!, b]\n").is_err());
    }

    #[test]
    fn refusals_name_the_place() {
        assert_eq!(
            err("a: 1\nb:\n  c: 2\n  c: 3\n"),
            "line 4 column 3: duplicate mapping key `c`"
        );
        assert!(err("f: .inf\n").starts_with("line 1 column 4: `.inf` is not a finite number"));
        assert!(
            err("a: [1, 2\nb: 3\n").starts_with("line 2 column 2: "),
            "{}",
            err("a: [1, 2\nb: 3\n")
        );
        assert!(err("key: \"unterminated\n").contains("quoted scalar"));
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        assert!(err(&deep).contains("nested more than 256 levels"));
    }

    #[test]
    fn documents_of_a_stream() {
        assert_eq!(
            documents("---\na: 1\n---\n---\n# none\n---\nb: 2\n...\n--- 5\n").unwrap(),
            vec![json!({"a": 1}), json!({"b": 2}), json!(5)]
        );
        assert!(documents("").unwrap().is_empty());
        assert!(documents("# only a comment\n").unwrap().is_empty());
        assert_eq!(documents("--- ~\n").unwrap(), vec![json!(null)]);
        assert_eq!(
            documents("%YAML 1.1\n---\na: yes\n").unwrap(),
            vec![json!({"a": true})]
        );
    }
}
