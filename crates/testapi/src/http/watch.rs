//! `?watch=true`: a stream of events, one JSON line each, from a resourceVersion on.

use super::*;

pub(super) struct WatchFilter {
    pub(super) group: String,
    pub(super) plural: String,
    pub(super) ns: Option<String>,
    pub(super) labels: LabelSelector,
    pub(super) fields: FieldSelector,
}

impl WatchFilter {
    pub(super) fn matches(&self, ev: &WatchEvent) -> bool {
        ev.group == self.group
            && ev.plural == self.plural
            && self
                .ns
                .as_ref()
                .is_none_or(|ns| ev.object["metadata"]["namespace"].as_str() == Some(ns))
            && self.labels.matches_object(&ev.object)
            && self.fields.matches(&ev.object)
    }
}

pub(super) fn event_line(kind: &str, object: &Value, table: Option<&ResourceDef>) -> Bytes {
    let object = match table {
        Some(def) => table_of(def, std::slice::from_ref(object), Value::Null),
        None => object.clone(),
    };
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// `?watch=true` on a collection: a stream of newline-delimited watch events.
pub(super) async fn watch(shared: Shared, segs: &[&str], query: &Query, table: bool) -> Response {
    let setup = (|| -> Result<_, ApiError> {
        let st = shared.lock().expect("state lock");
        let t = resolve(&st, segs)?;
        if t.name.is_some() {
            return Err(ApiError::method_not_allowed());
        }
        let filter = WatchFilter {
            group: t.def.group.clone(),
            plural: t.def.plural.clone(),
            ns: t.ns.map(String::from),
            labels: LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
                .map_err(ApiError::bad_request)?,
            fields: FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())
                .map_err(ApiError::bad_request)?,
        };
        let rx = st.events.subscribe();
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let mut initial = Vec::new();
        if from == 0 {
            let list = st.list(&t.def, t.ns, &filter.labels, &filter.fields);
            for item in list["items"].as_array().into_iter().flatten() {
                initial.push(event_line("ADDED", item, table.then_some(&t.def)));
            }
        } else {
            for ev in st
                .history
                .iter()
                .filter(|e| e.rv > from && filter.matches(e))
            {
                initial.push(event_line(ev.kind, &ev.object, table.then_some(&t.def)));
            }
        }
        Ok((filter, rx, initial, table.then(|| t.def.clone())))
    })();
    let (filter, rx, initial, table_def) = match setup {
        Ok(x) => x,
        Err(e) => return error_response(&e),
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let state = (initial.into_iter(), rx, (filter, table_def), deadline);
    let stream = futures_util::stream::unfold(
        state,
        |(mut initial, mut rx, filter, deadline)| async move {
            if let Some(b) = initial.next() {
                return Some((
                    Ok::<Bytes, std::io::Error>(b),
                    (initial, rx, filter, deadline),
                ));
            }
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Err(_) => return None,
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return None,
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                    Ok(Ok(ev)) => {
                        if filter.0.matches(&ev) {
                            let b = event_line(ev.kind, &ev.object, filter.1.as_ref());
                            return Some((Ok(b), (initial, rx, filter, deadline)));
                        }
                    }
                }
            }
        },
    );
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("valid response")
}
