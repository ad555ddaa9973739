//! PATCH bodies other than server-side apply: JSON merge patch (RFC 7386) and JSON patch
//! (RFC 6902), as the real server applies them.

use super::*;

/// JSON merge patch (RFC 7386); with `strategic`, associative lists merge by key (an
/// approximation of strategic merge patch; `$`-directives are dropped).
pub(super) fn merge_patch(
    schema: &crate::schema::Schema,
    target: &Value,
    patch: &Value,
    strategic: bool,
    fields: &mut Vec<String>,
) -> Value {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            let mut out = t.clone();
            for (k, v) in p {
                if strategic && k.starts_with('$') {
                    continue;
                }
                if v.is_null() {
                    out.remove(k);
                } else {
                    fields.push(k.clone());
                    let merged = merge_patch(
                        schema,
                        t.get(k).unwrap_or(&Value::Null),
                        v,
                        strategic,
                        fields,
                    );
                    fields.pop();
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        (Value::Array(t), Value::Array(p)) if strategic => {
            let crate::schema::ListType::Map(keys) = schema.list_type(fields) else {
                return patch.clone();
            };
            let key_of = |v: &Value| -> Vec<Value> { keys.iter().map(|k| v[*k].clone()).collect() };
            let mut out = t.clone();
            for item in p {
                match out.iter_mut().find(|o| key_of(o) == key_of(item)) {
                    Some(o) => *o = merge_patch(schema, o, item, strategic, fields),
                    None => out.push(item.clone()),
                }
            }
            Value::Array(out)
        }
        (_, Value::Object(p)) => merge_patch(
            schema,
            &Value::Object(Default::default()),
            &Value::Object(p.clone()),
            strategic,
            fields,
        ),
        _ => patch.clone(),
    }
}

/// JSON patch (RFC 6902): add, remove, replace, test.
pub(super) fn json_patch(target: &Value, patch: &Value) -> Result<Value, ApiError> {
    let mut doc = target.clone();
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be an array"))?;
    for op in ops {
        let path = op["path"].as_str().unwrap_or_default();
        let kind = op["op"].as_str().unwrap_or_default();
        let parts: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|p| p.replace("~1", "/").replace("~0", "~"))
            .collect();
        let Some((last, parent)) = parts.split_last() else {
            return Err(ApiError::bad_request("empty json patch path"));
        };
        let mut cur = &mut doc;
        for p in parent {
            cur = match cur {
                Value::Object(m) => m
                    .get_mut(p)
                    .ok_or_else(|| ApiError::bad_request(format!("path {path} not found")))?,
                Value::Array(a) => {
                    let i: usize = p.parse().map_err(|_| ApiError::bad_request("bad index"))?;
                    a.get_mut(i)
                        .ok_or_else(|| ApiError::bad_request(format!("path {path} not found")))?
                }
                _ => return Err(ApiError::bad_request(format!("path {path} not found"))),
            };
        }
        match (kind, cur) {
            ("add" | "replace", Value::Object(m)) => {
                m.insert(last.clone(), op["value"].clone());
            }
            ("add", Value::Array(a)) => {
                let v = op["value"].clone();
                if last == "-" {
                    a.push(v);
                } else {
                    let i: usize = last
                        .parse()
                        .map_err(|_| ApiError::bad_request("bad index"))?;
                    a.insert(i.min(a.len()), v);
                }
            }
            ("replace", Value::Array(a)) => {
                let i: usize = last
                    .parse()
                    .map_err(|_| ApiError::bad_request("bad index"))?;
                if i < a.len() {
                    a[i] = op["value"].clone();
                }
            }
            ("remove", Value::Object(m)) => {
                m.remove(last);
            }
            ("remove", Value::Array(a)) => {
                let i: usize = last
                    .parse()
                    .map_err(|_| ApiError::bad_request("bad index"))?;
                if i < a.len() {
                    a.remove(i);
                }
            }
            ("test", c) => {
                let got = match c {
                    Value::Object(m) => m.get(last).cloned(),
                    Value::Array(a) => last.parse::<usize>().ok().and_then(|i| a.get(i).cloned()),
                    _ => None,
                };
                if got.as_ref() != Some(&op["value"]) {
                    return Err(ApiError::bad_request(format!("test failed at {path}")));
                }
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unsupported json patch op {kind}"
                )));
            }
        }
    }
    Ok(doc)
}
