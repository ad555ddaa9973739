//! The ingest's telemetry, received over OTLP.

use super::*;

/// What docs/agents.md promises for the ingest's telemetry reaches an OTLP collector (the
/// project's receiver, over gRPC): the metrics with their units, kinds and attributes, with values
/// matching what was written and what the GitHub stand-in served, and one trace for the sync.
#[test]
fn a_sync_reports_its_metrics_and_its_trace_over_otlp() {
    let pg = server();
    let db = pg.database("ingest_otlp");
    let gh = GitHubStandIn::start(repository(250));
    let rx = otlp::Receiver::start();
    let out = ingest(&gh, &db, "1h")
        .args(["--once", "--otlp-endpoint", &rx.grpc_endpoint()])
        .env_remove("GITHUB_TOKEN")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("LABCTL_LOG", "info")
        .run();
    assert_ok(&out);
    // `--once` exits after the sync; the exporter's last flush on the way out delivered them.
    let metrics = rx.wait_for_metrics(Duration::from_secs(10), |m| {
        m.iter().any(|m| m.name == "labctl.ingest.syncs")
    });
    let get = |name: &str| {
        metrics
            .iter()
            .rev()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no `{name}` in {metrics:#?}"))
    };
    let only = |name: &str| {
        let m = get(name);
        assert_eq!(m.points.len(), 1, "{m:#?}");
        m.points[0].1
    };
    let counter = |name: &str, unit: &str| {
        let m = get(name);
        assert_eq!(
            (m.kind, m.monotonic, m.unit.as_str()),
            ("sum", true, unit),
            "{name}"
        );
    };
    counter("labctl.ingest.entries.upserted", "{entry}");
    counter("labctl.ingest.comments.upserted", "{comment}");
    counter("labctl.ingest.api.calls", "{request}");
    counter("labctl.ingest.syncs", "{sync}");
    // Rows written, as the log's summary says: every row once, and again the few the cursor
    // re-reads at a page's edge (a tie in `updated_at`), at most one per list request after the
    // first.
    let (calls, _, used) = stats(&gh);
    let written = |what: &str| -> usize {
        let log = out.stderr.clone();
        let line = log
            .lines()
            .find(|l| l.contains("sync done"))
            .unwrap_or_else(|| panic!("no summary in {log}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| *w == what).unwrap();
        words[at - 1].parse().unwrap()
    };
    for (metric, table, what) in [
        (
            "labctl.ingest.entries.upserted",
            "journal_entries",
            "entries",
        ),
        (
            "labctl.ingest.comments.upserted",
            "journal_comments",
            "comments",
        ),
    ] {
        let value = only(metric) as usize;
        let rows = count("ingest_otlp", table);
        assert_eq!(value, written(what), "{metric}");
        assert!(
            rows <= value && value < rows + calls as usize,
            "{metric}: {value} for {rows} rows"
        );
    }
    assert_eq!(only("labctl.ingest.api.calls") as u64, calls);
    let remaining = get("labctl.ingest.ratelimit.remaining");
    assert_eq!(
        (remaining.kind, remaining.unit.as_str()),
        ("gauge", "{request}")
    );
    assert_eq!(
        only("labctl.ingest.ratelimit.remaining") as u64,
        github::LIMIT - used
    );
    let syncs: BTreeMap<String, f64> = get("labctl.ingest.syncs")
        .points
        .iter()
        .map(|(a, v)| (a["result"].clone(), *v))
        .collect();
    assert_eq!(
        syncs,
        BTreeMap::from([("error".to_string(), 0.0), ("ok".to_string(), 1.0)])
    );
    let duration = get("labctl.ingest.sync.duration");
    assert_eq!((duration.kind, duration.unit.as_str()), ("gauge", "s"));
    assert_eq!(duration.points.len(), 1);
    let (attrs, secs) = &duration.points[0];
    assert_eq!(attrs.get("result").map(String::as_str), Some("ok"));
    assert!(*secs > 0.0 && *secs < 60.0, "{secs}");
    assert_eq!(duration.resource["service.name"], "labctl-ingest");
    assert_eq!(duration.via, "grpc");

    // One trace per sync: a root `ingest sync` span naming the repository, label and trigger.
    let spans = rx.wait_for_spans(Duration::from_secs(10), |s| {
        s.iter().any(|s| s.name == "ingest sync")
    });
    let syncs: Vec<_> = spans.iter().filter(|s| s.name == "ingest sync").collect();
    assert_eq!(syncs.len(), 1, "{spans:#?}");
    let sync = syncs[0];
    assert_eq!(sync.parent_span_id, "", "a root span");
    assert_eq!(
        (
            sync.attr("repository"),
            sync.attr("label"),
            sync.attr("trigger")
        ),
        (Some(REPO), Some(LABEL), Some("once"))
    );
    assert_eq!(sync.resource["service.name"], "labctl-ingest");
}
