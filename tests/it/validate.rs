//! One test per validation rule: the message, and the line:col it points at.

use crate::support::{Labctl, Stack};

/// Run `validate` on `text`; it must fail, and stderr is returned.
fn invalid(text: &str) -> String {
    let s = Stack::new(text);
    let (code, stdout, stderr) = s.labctl(&["validate"]).run().parts();
    assert_eq!(code, 1, "expected failure; stderr:\n{stderr}");
    assert_eq!(stdout, "");
    stderr
}

/// `stderr` reports `message` at `line:col` of stack.toml.
#[track_caller]
fn reports(stderr: &str, line_col: &str, message: &str) {
    let want = format!("stack.toml:{line_col}: {message}");
    assert!(stderr.contains(&want), "expected `{want}` in:\n{stderr}");
}

const HEAD: &str = "[stack]\nname = \"lab\"\n";

#[test]
fn syntax_error_points_at_the_line_with_a_caret() {
    let e = invalid("[stack]\nname = \"lab\n");
    assert!(e.contains("stack.toml:2:"), "{e}");
    assert!(e.contains("2 │ name = \"lab"), "source line shown:\n{e}");
    assert!(e.contains("has 1 problem"), "{e}");
}

#[test]
fn unknown_key_lists_the_valid_keys() {
    let e = invalid(&format!("{HEAD}\n[kube.grafana]\nnodeport = 30001\n"));
    reports(&e, "5:1", "unknown field `nodeport`");
    assert!(
        e.contains("valid keys here:") && e.contains("`node_port`"),
        "{e}"
    );
}

#[test]
fn unknown_table_is_rejected() {
    let e = invalid(&format!("{HEAD}\n[kube.grafna]\nport = 1\n"));
    reports(&e, "4:7", "unknown field `grafna`");
    assert!(e.contains("`grafana`"), "{e}");
}

#[test]
fn wrong_type_is_located() {
    let e = invalid(&format!("{HEAD}\n[host.proxy]\nport = \"eighty\"\n"));
    assert!(e.contains("stack.toml:5:8:"), "{e}");
    assert!(e.contains("expected a port number (1-65535)"), "{e}");
}

#[test]
fn stack_name_must_be_a_dns_label() {
    let e = invalid("[stack]\nname = \"Home_Lab\"\n");
    reports(
        &e,
        "2:8",
        "`stack.name` is not a valid stack name: only lowercase letters, digits and `-` are allowed",
    );
}

#[test]
fn namespace_must_be_a_dns_label() {
    let e = invalid(&format!("{HEAD}namespace = \"-lab\"\n"));
    reports(
        &e,
        "3:13",
        "`stack.namespace` is not a valid namespace: must start and end with a letter or digit",
    );
}

#[test]
fn node_port_out_of_range() {
    let e = invalid(&format!("{HEAD}\n[kube.grafana]\nnode_port = 3000\n"));
    reports(
        &e,
        "5:13",
        "NodePort 3000 of `kube.grafana.node_port` is outside 30000-32767",
    );
}

#[test]
fn node_ports_are_unique() {
    let e = invalid(&format!("{HEAD}\n[kube.postgres]\nnode_port = 30000\n"));
    reports(
        &e,
        "5:13",
        "port 30000 of `kube.postgres.node_port` is already used by `kube.grafana.node_port`",
    );
}

#[test]
fn host_ports_are_unique_and_share_space_with_node_ports() {
    let e = invalid(&format!(
        "{HEAD}\n[host.proxy]\nport = 30432\n\n[host.gate]\nfunnel = [{{ public_port = 443, target_port = 30432 }}]\n"
    ));
    reports(
        &e,
        "5:8",
        "port 30432 of `host.proxy.port` is already used by `kube.postgres.node_port`",
    );
}

#[test]
fn image_reference_must_be_well_formed() {
    let e = invalid(&format!(
        "{HEAD}\n[kube.loki]\nimage = \"Grafana/Loki:3\"\n"
    ));
    reports(
        &e,
        "5:9",
        "`kube.loki.image` is not a valid image reference: path component `Grafana` must be lowercase",
    );
}

#[test]
fn storage_must_be_a_quantity() {
    let e = invalid(&format!("{HEAD}\n[kube.minio]\nstorage = \"50GB\"\n"));
    reports(
        &e,
        "5:11",
        "`kube.minio.storage` is not a valid Kubernetes quantity: unknown suffix `GB`",
    );
}

#[test]
fn resources_must_be_quantities() {
    let e = invalid(&format!(
        "{HEAD}\n[kube.tempo]\nresources = {{ cpu = \"fast\", memory = \"1Gi\" }}\n"
    ));
    reports(
        &e,
        "5:21",
        "`kube.tempo.resources.cpu` is not a valid Kubernetes quantity",
    );
}

#[test]
fn unit_names_are_valid() {
    let e = invalid(&format!(
        "{HEAD}\n[host.ingest]\nunit = \"ingest service\"\n"
    ));
    reports(
        &e,
        "5:8",
        "`host.ingest.unit` is not a valid unit name: ` ` is not allowed in unit names",
    );
}

#[test]
fn unit_names_are_unique() {
    let e = invalid(&format!("{HEAD}\n[host.gate]\nunit = \"labctl-proxy\"\n"));
    reports(
        &e,
        "5:8",
        "unit name `labctl-proxy` is used twice (also by `host.proxy.unit`)",
    );
}

#[test]
fn timer_schedule_is_a_valid_on_calendar() {
    let e = invalid(&format!(
        "{HEAD}\n[host.reading-sync]\nschedule = \"*-*-* 25:00\"\n"
    ));
    reports(
        &e,
        "5:12",
        "`host.reading-sync.schedule` is not a valid OnCalendar= schedule: `25` in `25:00` is out of range 0..23",
    );
    let e = invalid(&format!(
        "{HEAD}\n[host.reading-sync]\nschedule = \"Mon..Fry 09:00\"\n"
    ));
    reports(
        &e,
        "5:12",
        "`host.reading-sync.schedule` is not a valid OnCalendar= schedule: `Fry` is not a weekday",
    );
}

#[test]
fn common_calendar_forms_are_accepted() {
    for sched in [
        "daily",
        "hourly",
        "*-*-* 03:00:00",
        "Mon..Fri 09:00",
        "Sat,Sun *-*-* 10:30",
    ] {
        let s = Stack::new(&format!(
            "{HEAD}\n[host.reading-sync]\nschedule = \"{sched}\"\n"
        ));
        let (_, _, stderr) = s.labctl(&["validate"]).run().parts();
        assert!(!stderr.contains("OnCalendar"), "{sched}: {stderr}");
    }
}

#[test]
fn durations_are_checked() {
    let e = invalid(&format!("{HEAD}\n[kube.loki]\nretention = \"31 days\"\n"));
    reports(&e, "5:13", "`kube.loki.retention` is not a valid duration");
}

#[test]
fn funnel_may_only_expose_the_proxy() {
    let e = invalid(&format!(
        "{HEAD}\n[host.gate]\nfunnel = [{{ public_port = 8443, target_port = 30000 }}]\n"
    ));
    reports(
        &e,
        "5:47",
        "the funnel may only expose the proxy (port 8085), not port 30000",
    );
    assert!(e.contains("internal and unauthenticated"), "says why:\n{e}");
}

#[test]
fn funnel_public_port_must_be_one_funnel_serves() {
    let e = invalid(&format!(
        "{HEAD}\n[host.gate]\nfunnel = [{{ public_port = 22, target_port = 8085 }}]\n"
    ));
    reports(
        &e,
        "5:27",
        "funnel public port 22 is not one Tailscale Funnel can serve",
    );
}

#[test]
fn funnel_without_proxy_is_rejected() {
    let e = invalid(&format!("{HEAD}\n[host.proxy]\nenabled = false\n"));
    assert!(
        e.contains("the funnel forwards to port 8085, but `host.proxy` is disabled"),
        "{e}"
    );
}

#[test]
fn a_moved_bucket_needs_no_minio_setting_and_needs_minio() {
    // MinIO creates every bucket Loki, Tempo and Thanos name: moving one is enough.
    let s = Stack::new(&format!("{HEAD}\n[kube.tempo]\nbucket = \"traces\"\n"));
    let (code, _, stderr) = s.labctl(&["validate"]).run().parts();
    assert_eq!(code, 0, "{stderr}");
    let e = invalid(&format!("{HEAD}\n[kube.minio]\nenabled = false\n"));
    assert!(
        e.contains("`kube.tempo` stores its data in MinIO, but `kube.minio` is disabled"),
        "{e}"
    );
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let e = invalid(
        "[stack]\nname = \"Lab\"\n\n[kube.grafana]\nnode_port = 1\nstorage = \"x\"\n\n[host.reading-sync]\nschedule = \"never\"\n",
    );
    assert!(e.contains("has 4 problems"), "{e}");
    // Shown in file order.
    let pos = |s: &str| e.find(s).unwrap_or_else(|| panic!("{s} missing in {e}"));
    assert!(pos("stack.toml:2:8") < pos("stack.toml:5:13"));
    assert!(pos("stack.toml:5:13") < pos("stack.toml:6:11"));
    assert!(pos("stack.toml:6:11") < pos("stack.toml:9:12"));
}

#[test]
fn disabled_components_are_not_validated() {
    let s = Stack::new(&format!(
        "{HEAD}\n[kube.grafana]\nenabled = false\nnode_port = 1\n"
    ));
    let (_, _, stderr) = s.labctl(&["validate"]).run().parts();
    assert!(!stderr.contains("NodePort"), "{stderr}");
}

#[test]
fn missing_stack_file_names_it() {
    let s = Stack::new(HEAD);
    let (code, _, stderr) = Labctl::new()
        .args([
            "--stack",
            &format!("{}/nope.toml", s.path().display()),
            "validate",
        ])
        .run()
        .parts();
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot read `") && stderr.contains("nope.toml`"),
        "{stderr}"
    );
}
