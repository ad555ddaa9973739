//! LIST paging: the `continue` token and `remainingItemCount`.

use super::*;

pub(super) fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn unhex(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Applies `limit` and `continue` to a list, as the real server pages (items in key order,
/// an opaque continue token, `remainingItemCount` when no selector is used).
pub(super) fn paginate(
    list: &mut Value,
    query: &Query,
    count_remaining: bool,
) -> Result<(), ApiError> {
    let key = |v: &Value| {
        format!(
            "{}/{}",
            v["metadata"]["namespace"].as_str().unwrap_or_default(),
            v["metadata"]["name"].as_str().unwrap_or_default()
        )
    };
    let Some(items) = list.get_mut("items").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    if let Some(token) = query.get("continue").filter(|t| !t.is_empty()) {
        let start = unhex(token)
            .and_then(|j| serde_json::from_str::<Value>(&j).ok())
            .and_then(|v| v["start"].as_str().map(String::from))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "continue key is not valid: illegal base64 data at input byte 0",
                )
            })?;
        items.retain(|i| key(i) > start);
    }
    let limit: usize = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
    if limit > 0 && items.len() > limit {
        let remaining = items.len() - limit;
        items.truncate(limit);
        let last = key(&items[limit - 1]);
        let rv = list["metadata"]["resourceVersion"].clone();
        let token = hex(&json!({"v": "meta.k8s.io/v1", "rv": rv, "start": last}).to_string());
        list["metadata"]["continue"] = json!(token);
        if count_remaining {
            list["metadata"]["remainingItemCount"] = json!(remaining);
        }
    }
    Ok(())
}
