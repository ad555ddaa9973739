//! Reading: discovery, NotFound, lists with selectors and pages, and watches.

use super::*;

#[test]
fn discovery_legacy_and_aggregated() {
    let srv = start();
    let v = get(&srv, "/version").json();
    assert_eq!(v["major"], "1");
    let api = get(&srv, "/api").json();
    assert_eq!(api["kind"], "APIVersions");
    assert_eq!(api["versions"], json!(["v1"]));
    let core = get(&srv, "/api/v1").json();
    assert_eq!(core["kind"], "APIResourceList");
    let res = core["resources"].as_array().unwrap();
    let find = |list: &[Value], n: &str| list.iter().find(|r| r["name"] == n).cloned().unwrap();
    let ns = find(res, "namespaces");
    assert_eq!(ns["namespaced"], false);
    assert_eq!(ns["kind"], "Namespace");
    assert_eq!(ns["shortNames"], json!(["ns"]));
    let cm = find(res, "configmaps");
    assert_eq!(cm["namespaced"], true);
    assert_eq!(cm["singularName"], "configmap");
    assert!(cm["verbs"].as_array().unwrap().contains(&json!("patch")));
    for n in [
        "secrets",
        "services",
        "serviceaccounts",
        "persistentvolumeclaims",
        "pods",
        "services/status",
    ] {
        find(res, n);
    }
    let groups = get(&srv, "/apis").json();
    assert_eq!(groups["kind"], "APIGroupList");
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for g in [
        "apps",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "networking.k8s.io",
    ] {
        assert!(names.contains(&g), "{g} missing from {names:?}");
    }
    let apps = get(&srv, "/apis/apps/v1").json();
    let deploy = find(apps["resources"].as_array().unwrap(), "deployments");
    assert_eq!(deploy["shortNames"], json!(["deploy"]));
    let rbac = get(&srv, "/apis/rbac.authorization.k8s.io/v1").json();
    assert_eq!(
        find(rbac["resources"].as_array().unwrap(), "clusterroles")["namespaced"],
        false
    );
    assert_eq!(get(&srv, "/apis/nope/v1").status, 404);

    // Aggregated discovery, as kube-rs and kubectl 1.32 ask for it.
    let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    let r = request(&srv, "GET", "/apis", &[("Accept", accept)], None);
    assert_eq!(
        r.header("content-type"),
        Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    );
    let agg = r.json();
    assert_eq!(agg["kind"], "APIGroupDiscoveryList");
    let apps = agg["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == "apps")
        .unwrap();
    let d = &apps["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "deployments")
        .unwrap();
    assert_eq!(d["scope"], "Namespaced");
    assert_eq!(d["responseKind"]["kind"], "Deployment");
    let core = request(&srv, "GET", "/api", &[("Accept", accept)], None).json();
    assert_eq!(core["items"][0]["versions"][0]["version"], "v1");
}

#[test]
fn not_found_is_a_real_status() {
    let srv = start();
    let r = get(&srv, &format!("{CM}/x"));
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "configmaps \"x\" not found", "reason": "NotFound",
               "details": {"name": "x", "kind": "configmaps"}, "code": 404})
    );
    let r = get(&srv, &format!("{DEPLOY}/web")).json();
    assert_eq!(r["message"], "deployments.apps \"web\" not found");
    assert_eq!(r["details"]["group"], "apps");
    // Apply into a namespace that does not exist.
    let r = apply(
        &srv,
        "/api/v1/namespaces/nope/configmaps/c",
        "t",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "namespaces \"nope\" not found");
}

#[test]
fn list_with_every_selector_operator() {
    let srv = start();
    for (n, l) in [
        ("a", "{app: web, tier: front}"),
        ("b", "{app: db, tier: back}"),
        ("c", "{app: cache}"),
        ("d", "{}"),
    ] {
        assert_eq!(
            apply(&srv, &format!("{CM}/{n}"), "t", &cm_yaml(n, l)).status,
            201
        );
    }
    let names = |sel: &str| -> Vec<String> {
        let enc = sel
            .replace('%', "%25")
            .replace(' ', "+")
            .replace('=', "%3D")
            .replace('!', "%21")
            .replace('(', "%28")
            .replace(')', "%29")
            .replace(',', "%2C");
        let r = get(&srv, &format!("{CM}?labelSelector={enc}"));
        assert_eq!(r.status, 200, "{sel}: {}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert_eq!(v["kind"], "ConfigMapList");
        assert_eq!(v["apiVersion"], "v1");
        assert!(v["metadata"]["resourceVersion"].is_string());
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("app=web"), ["a"]);
    assert_eq!(names("app==db"), ["b"]);
    assert_eq!(names("app!=web"), ["b", "c", "d"]);
    assert_eq!(names("app in (web,cache)"), ["a", "c"]);
    assert_eq!(names("app notin (web,cache)"), ["b", "d"]);
    assert_eq!(names("tier"), ["a", "b"]);
    assert_eq!(names("!tier"), ["c", "d"]);
    assert_eq!(names("app in (web,db),tier=back"), ["b"]);
    assert_eq!(names(""), ["a", "b", "c", "d"]);
    // All namespaces, and field selectors.
    let all = get(&srv, "/api/v1/configmaps?labelSelector=app%3Dweb").json();
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    // Items of typed lists carry no apiVersion/kind, as on the real server.
    assert!(all["items"][0].get("kind").is_none());
    assert!(all["items"][0].get("apiVersion").is_none());
    let f = get(&srv, &format!("{CM}?fieldSelector=metadata.name%3Dc")).json();
    assert_eq!(f["items"][0]["metadata"]["name"], "c");
    // Cluster-scoped list.
    let ns = get(&srv, "/api/v1/namespaces").json();
    assert_eq!(ns["kind"], "NamespaceList");
    assert_eq!(ns["items"].as_array().unwrap().len(), 4);
    // A malformed selector is a 400.
    assert_eq!(
        get(&srv, &format!("{CM}?labelSelector=app+in+web")).status,
        400
    );
}

#[test]
fn watch_streams_events() {
    let srv = start();
    apply(&srv, &format!("{CM}/a"), "t", &cm_yaml("a", "{x: y}"));
    let rv = srv.resource_version();
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            get(
                &srv,
                &format!("{CM}?watch=true&resourceVersion={rv}&timeoutSeconds=1"),
            )
        });
        std::thread::sleep(Duration::from_millis(200));
        apply(&srv, &format!("{CM}/b"), "t", &cm_yaml("b", "{x: z}"));
        let r = h.join().unwrap();
        let text = String::from_utf8(r.body).unwrap();
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 1, "{text}");
        assert_eq!(events[0]["type"], "ADDED");
        assert_eq!(events[0]["object"]["metadata"]["name"], "b");
    });
}

#[test]
fn lists_page_with_limit_and_continue() {
    let srv = start();
    for i in 0..5 {
        apply(
            &srv,
            &format!("{CM}/c{i}"),
            "t",
            &cm_yaml(&format!("c{i}"), "{}"),
        );
    }
    let mut names = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let r = get(&srv, &format!("{CM}?limit=2&continue={token}")).json();
        pages += 1;
        for i in r["items"].as_array().unwrap() {
            names.push(i["metadata"]["name"].as_str().unwrap().to_string());
        }
        match r["metadata"]["continue"].as_str() {
            Some(t) => {
                if pages == 1 {
                    assert_eq!(r["metadata"]["remainingItemCount"], 3);
                }
                token = t.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);
    assert_eq!(get(&srv, &format!("{CM}?limit=2&continue=zz")).status, 400);
    // An unpaged LIST is written straight from the store; one page holding every object is
    // built as a value: the two give the same body, typed items included.
    let whole = get(&srv, CM).json();
    let one_page = get(&srv, &format!("{CM}?limit=10")).json();
    // Compared as text: the order of every object's fields too.
    assert_eq!(whole.to_string(), one_page.to_string());
    assert_eq!(whole["kind"], "ConfigMapList");
    assert!(whole["items"][0].get("kind").is_none(), "{whole}");
    assert_eq!(whole["items"].as_array().unwrap().len(), 5);
}
