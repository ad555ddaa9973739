//! The HTTP surface: routing of Kubernetes API paths to the store.

mod paging;
mod patch;
mod scale;
mod table;
mod watch;

use paging::paginate;
use patch::{json_patch, merge_patch};
use scale::scale;
use table::{maybe_table, table_of};
use watch::watch;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::resources::{self, ResourceDef};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{State, WatchEvent, WriteParams, check_body};
use crate::util::parse_query;

/// Shared state handed to the handler.
pub type Shared = Arc<Mutex<State>>;

const AGGREGATED_CT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

fn json_response(code: u16, v: &Value) -> Response {
    json_bytes_response(code, serde_json::to_vec(v).unwrap_or_default().into())
}

fn json_bytes_response(code: u16, body: Bytes) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .header("Cache-Control", "no-cache, private")
        .body(Body::from(body))
        .expect("valid response")
}

fn error_response(e: &ApiError) -> Response {
    let mut r = json_response(e.code, &e.body());
    // The real server sends `Retry-After` with every 429 (and the Status's retryAfterSeconds).
    if let Some(secs) = e
        .details
        .as_ref()
        .and_then(|d| d.get("retryAfterSeconds"))
        .and_then(Value::as_u64)
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Whether the Accept header asks for aggregated discovery v2.
fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.replace(' ', "");
            t.contains("g=apidiscovery.k8s.io")
                && t.contains("v=v2;")
                && t.contains("as=APIGroupDiscoveryList")
                || t.contains("g=apidiscovery.k8s.io")
                    && t.ends_with("v=v2")
                    && t.contains("as=APIGroupDiscoveryList")
        })
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("as=Table"))
}

/// Decodes a request body as JSON, or as YAML when it is not JSON.
fn decode_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the body of the request is not UTF-8"))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

struct Query(Vec<(String, String)>);

impl Query {
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
    fn write_params(&self, subresource: &str) -> WriteParams {
        WriteParams {
            manager: self.get("fieldManager").map(String::from),
            force: self.flag("force"),
            dry_run: self.0.iter().any(|(k, v)| k == "dryRun" && v == "All"),
            subresource: subresource.to_string(),
        }
    }
}

/// The handler for every request.
pub async fn handle(
    shared: Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = control(&shared, &method, uri.path(), uri.query()) {
        return r;
    }
    let (latency, fault) = {
        let mut st = shared.lock().expect("state lock");
        st.requests += 1;
        *st.per_route
            .entry(format!("{} {}", method, uri.path()))
            .or_insert(0) += 1;
        st.log.push(match uri.query() {
            Some(q) => format!("{} {}?{q}", method, uri.path()),
            None => format!("{} {}", method, uri.path()),
        });
        let fault = st.take_fault(method.as_str(), uri.path());
        let transport = st.take_transport_fault(method.as_str(), uri.path());
        (st.latency, (fault, transport))
    };
    let (fault, transport) = fault;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match transport {
        Some(crate::store::TransportFault::Stall(d)) => tokio::time::sleep(d).await,
        Some(crate::store::TransportFault::Close) => {
            // Headers out, then the body fails: hyper drops the connection mid-answer.
            let body = Body::from_stream(futures_util::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected: connection closed",
                ))
            }));
            let mut r = Response::new(body);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return r;
        }
        None => {}
    }
    if let Some(e) = fault {
        return error_response(&e);
    }
    let query = Query(parse_query(uri.query()));
    let segs: Vec<String> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(crate::util::percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !body.is_empty() && (ct.contains("protobuf") || ct.contains("cbor")) {
        // Only JSON and YAML bodies are understood; clients fall back to JSON on 415.
        return error_response(&ApiError::unsupported_media_type(ct));
    }
    if method == Method::GET && query.flag("watch") {
        let allowed = {
            let st = shared.lock().expect("state lock");
            resolve(&st, &segs).and_then(|t| {
                let auth = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                let who = crate::access::authenticate(&st, auth)?;
                crate::access::authorize(&st, &who, &t.def, "watch", t.sub, t.name, t.ns)
            })
        };
        if let Err(e) = allowed {
            return error_response(&e);
        }
        return watch(shared, &segs, &query, wants_table(&headers)).await;
    }
    match route(&shared, &method, &segs, &query, &headers, &body) {
        Ok(Reply::Json(code, v)) => json_response(code, &v),
        Ok(Reply::JsonBytes(code, b)) => json_bytes_response(code, b),
        Ok(Reply::Aggregated(v)) => {
            let mut r = json_response(200, &v);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(AGGREGATED_CT),
            );
            r
        }
        Ok(Reply::Raw(b)) => Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b))
            .expect("valid response"),
        Ok(Reply::Text(t)) => Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from(t))
            .expect("valid response"),
        Err(e) => error_response(&e),
    }
}

/// Control endpoints for out-of-process users (the benchmark script): not Kubernetes paths,
/// not counted, no latency.
///
/// - `GET /testapi/requests` → `{"total": N, "routes": {"GET /api": 1, ...}}`
/// - `POST /testapi/reset` → resets the counters and the request log
/// - `POST /testapi/latency?ms=N` → sets the injected latency
fn control(shared: &Shared, method: &Method, path: &str, query: Option<&str>) -> Option<Response> {
    let rest = path.strip_prefix("/testapi/")?;
    let mut st = shared.lock().expect("state lock");
    let out = match (method.as_str(), rest) {
        ("GET", "requests") => json!({"total": st.requests, "routes": st.per_route}),
        ("POST", "reset") => {
            st.requests = 0;
            st.per_route.clear();
            st.log.clear();
            json!({"total": 0})
        }
        ("POST" | "PUT", "latency") => {
            let q = Query(parse_query(query));
            let Some(ms) = q.get("ms").and_then(|m| m.parse::<u64>().ok()) else {
                return Some(error_response(&ApiError::bad_request(
                    "latency needs ?ms=N",
                )));
            };
            st.latency = Duration::from_millis(ms);
            json!({"latencyMs": ms})
        }
        _ => return Some(error_response(&ApiError::no_route())),
    };
    Some(json_response(200, &out))
}

enum Reply {
    Json(u16, Value),
    /// A JSON answer serialized already, with [`Reply::Json`]'s headers.
    JsonBytes(u16, Bytes),
    /// A JSON body serialized already.
    Raw(Bytes),
    Aggregated(Value),
    Text(String),
}

/// A resolved resource path.
struct Target<'a> {
    def: ResourceDef,
    ns: Option<&'a str>,
    name: Option<&'a str>,
    sub: Option<&'a str>,
}

fn resolve<'a>(st: &State, segs: &[&'a str]) -> Result<Target<'a>, ApiError> {
    let (group, version, rest) = match segs {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::no_route()),
    };
    let find = |plural: &str| st.def_by_plural(group, version, plural);
    let (plural, ns, name, sub) = match rest {
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_some_and(|d| d.namespaced) => {
            match tail {
                [] => (*plural, Some(*ns), None, None),
                [name] => (*plural, Some(*ns), Some(*name), None),
                [name, sub] => (*plural, Some(*ns), Some(*name), Some(*sub)),
                _ => return Err(ApiError::no_route()),
            }
        }
        [plural] => (*plural, None, None, None),
        [plural, name] => (*plural, None, Some(*name), None),
        [plural, name, sub] => (*plural, None, Some(*name), Some(*sub)),
        _ => return Err(ApiError::no_route()),
    };
    let def = find(plural).ok_or_else(ApiError::no_route)?;
    if def.namespaced && name.is_some() && ns.is_none() {
        return Err(ApiError::no_route());
    }
    let token = def.group.is_empty() && def.kind == "ServiceAccount";
    if let Some(s) = sub
        && !(s == "status" && def.status || s == "scale" && def.scale || s == "token" && token)
    {
        return Err(ApiError::no_route());
    }
    Ok(Target { def, ns, name, sub })
}

fn route(
    shared: &Shared,
    method: &Method,
    segs: &[&str],
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let mut st = shared.lock().expect("state lock");
    let get = *method == Method::GET;
    match segs {
        ["version"] if get => {
            return Ok(Reply::Json(
                200,
                json!({
                    "major": "1", "minor": "32", "gitVersion": "v1.32.4+labctl-testapi",
                    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.8", "compiler": "gc",
                    "platform": "linux/amd64"
                }),
            ));
        }
        ["healthz" | "readyz" | "livez"] if get => return Ok(Reply::Text("ok".into())),
        ["api"] if get => {
            return Ok(if wants_aggregated(headers) {
                Reply::Aggregated(resources::aggregated(&st.defs, true))
            } else {
                Reply::Json(200, resources::api_versions())
            });
        }
        ["apis"] if get => {
            return Ok(if wants_aggregated(headers) {
                Reply::Aggregated(resources::aggregated(&st.defs, false))
            } else {
                Reply::Json(200, resources::group_list(&st.defs))
            });
        }
        ["openapi", "v3"] if get => {
            // The real server answers its index as text/plain, whatever the Accept header.
            return Ok(Reply::Text(
                resources::openapi_v3_root(&st.defs).to_string(),
            ));
        }
        ["openapi", "v3", rest @ ..] if get => {
            let gv = rest.join("/");
            if let Some(doc) = st.openapi.get(&gv) {
                return Ok(Reply::Raw(doc.clone()));
            }
            let doc = resources::openapi_v3_gv(&st.defs, &gv).ok_or_else(ApiError::no_route)?;
            let doc = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
            st.openapi.insert(gv, doc.clone());
            return Ok(Reply::Raw(doc));
        }
        ["api", "v1"] if get => {
            return Ok(Reply::Json(
                200,
                resources::resource_list(&st.defs, "", "v1"),
            ));
        }
        ["apis", g] if get => {
            return resources::group(&st.defs, g)
                .map(|v| Reply::Json(200, v))
                .ok_or_else(ApiError::no_route);
        }
        ["apis", g, v] if get => {
            let list = resources::resource_list(&st.defs, g, v);
            if list["resources"].as_array().is_none_or(Vec::is_empty) {
                return Err(ApiError::no_route());
            }
            return Ok(Reply::Json(200, list));
        }
        _ => {}
    }
    let t = resolve(&st, segs)?;
    let def = &t.def;
    let ns = t.ns.unwrap_or_default();
    let who = crate::access::authenticate(
        &st,
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )?;
    let verb = crate::access::verb(method.as_str(), t.name.is_some(), query.flag("watch"));
    crate::access::authorize(&st, &who, def, verb, t.sub, t.name, t.ns)?;
    if t.sub == Some("token") {
        if *method != Method::POST {
            return Err(ApiError::method_not_allowed());
        }
        let v = decode_body(body)?;
        let params = query.write_params("token");
        let manager = update_manager(&params, headers);
        let out = st.token_request(def, ns, t.name.unwrap_or_default(), &v, &manager)?;
        return Ok(Reply::Json(201, out));
    }
    if t.sub == Some("scale") {
        return scale(
            &mut st,
            def,
            ns,
            t.name.unwrap_or_default(),
            method,
            query,
            headers,
            body,
        );
    }
    match (method.clone(), t.name) {
        (Method::GET, None) => {
            let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
            let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())
                .map_err(ApiError::bad_request)?;
            let paged = ["limit", "continue"]
                .iter()
                .any(|p| query.get(p).is_some_and(|v| !v.is_empty()));
            if !paged && !wants_table(headers) {
                return Ok(Reply::JsonBytes(
                    200,
                    st.list_bytes(def, t.ns, &labels, &fields).into(),
                ));
            }
            let mut list = st.list(def, t.ns, &labels, &fields);
            st.strip_item_types(def, &mut list);
            paginate(&mut list, query, labels.0.is_empty() && fields.is_empty())?;
            Ok(Reply::Json(200, maybe_table(headers, def, list, true)))
        }
        (Method::GET, Some(name)) => {
            let obj = st
                .get(def, ns, name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(def, name))?;
            Ok(Reply::Json(200, maybe_table(headers, def, obj, false)))
        }
        (Method::POST, None) => {
            let v = decode_body(body)?;
            check_body(def, ns, "", &v, false)?;
            let name = v["metadata"]["name"]
                .as_str()
                .map(String::from)
                .or_else(|| {
                    v["metadata"]["generateName"]
                        .as_str()
                        .map(|g| format!("{g}{:05x}", st.rv % 0xfffff))
                })
                .unwrap_or_default();
            if query.get("fieldValidation") == Some("Strict") {
                State::strict_check(def, &v)?;
            }
            let params = query.write_params("");
            let manager = update_manager(&params, headers);
            let out = st.update(def, ns, &name, v, &manager, &params, true)?;
            Ok(Reply::Json(201, out))
        }
        (Method::PUT, Some(name)) => {
            let v = decode_body(body)?;
            check_body(def, ns, name, &v, false)?;
            if query.get("fieldValidation") == Some("Strict") {
                State::strict_check(def, &v)?;
            }
            let sub = t.sub.unwrap_or_default();
            let params = query.write_params(sub);
            let manager = update_manager(&params, headers);
            let out = st.update(def, ns, name, v, &manager, &params, false)?;
            Ok(Reply::Json(200, out))
        }
        (Method::PATCH, Some(name)) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            let sub = t.sub.unwrap_or_default();
            let params = query.write_params(sub);
            match ct.as_str() {
                "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                    let v = decode_body(body)?;
                    let existed = st.get(def, ns, name).is_some();
                    let out = st.apply(def, ns, name, v, &params)?;
                    Ok(Reply::Json(if existed { 200 } else { 201 }, out))
                }
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    let patch = decode_body(body)?;
                    let live = st
                        .get(def, ns, name)
                        .cloned()
                        .ok_or_else(|| ApiError::not_found(def, name))?;
                    let schema = crate::schema::Schema::new(&def.group, &def.kind);
                    let strategic = ct.starts_with("application/strategic");
                    let new = merge_patch(&schema, &live, &patch, strategic, &mut Vec::new());
                    check_body(def, ns, name, &new, false)?;
                    if query.get("fieldValidation") == Some("Strict") {
                        State::strict_check(def, &new)?;
                    }
                    let manager = update_manager(&params, headers);
                    let out = st.update(def, ns, name, new, &manager, &params, false)?;
                    Ok(Reply::Json(200, out))
                }
                "application/json-patch+json" => {
                    let patch = decode_body(body)?;
                    let live = st
                        .get(def, ns, name)
                        .cloned()
                        .ok_or_else(|| ApiError::not_found(def, name))?;
                    let new = json_patch(&live, &patch)?;
                    let manager = update_manager(&params, headers);
                    let out = st.update(def, ns, name, new, &manager, &params, false)?;
                    Ok(Reply::Json(200, out))
                }
                other => Err(ApiError::unsupported_media_type(other)),
            }
        }
        (Method::DELETE, Some(name)) => {
            let mut dry = query.0.iter().any(|(k, v)| k == "dryRun" && v == "All");
            if let Ok(opts) = serde_json::from_slice::<Value>(body)
                && opts["dryRun"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == "All"))
            {
                dry = true;
            }
            let out = st.delete(def, ns, name, dry)?;
            Ok(Reply::Json(200, out))
        }
        (Method::DELETE, None) => {
            let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
                .map_err(ApiError::bad_request)?;
            let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())
                .map_err(ApiError::bad_request)?;
            let list = st.list(def, t.ns, &labels, &fields);
            let dry = query.0.iter().any(|(k, v)| k == "dryRun" && v == "All");
            for item in list["items"].as_array().into_iter().flatten() {
                let n = item["metadata"]["name"].as_str().unwrap_or_default();
                let ins = item["metadata"]["namespace"].as_str().unwrap_or_default();
                st.delete(def, ins, n, dry)?;
            }
            Ok(Reply::Json(200, list))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The manager of an Update operation: `fieldManager`, else the user agent's program name.
fn update_manager(params: &WriteParams, headers: &HeaderMap) -> String {
    if let Some(m) = params.manager.as_ref().filter(|m| !m.is_empty()) {
        return m.clone();
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}
