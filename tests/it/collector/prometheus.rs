//! The Prometheus text format: metric names after the OpenTelemetry rules, and escaping.

use super::*;

#[test]
fn prometheus_names_follow_the_opentelemetry_rules() {
    let p = |name, unit, kind| Point::new(name, unit, "", kind, 0.0);
    for (point, want) in [
        (
            p("system.cpu.time", "s", Kind::Counter),
            "system_cpu_time_seconds_total",
        ),
        (
            p("system.memory.usage", "By", Kind::UpDownCounter),
            "system_memory_usage_bytes",
        ),
        (
            p("system.cpu.utilization", "1", Kind::Gauge),
            "system_cpu_utilization_ratio",
        ),
        (
            p("system.disk.operations", "{operations}", Kind::Counter),
            "system_disk_operations_total",
        ),
        (
            p("system.cpu.load_average.1m", "{thread}", Kind::Gauge),
            "system_cpu_load_average_1m",
        ),
        (p("tailscale.up", "", Kind::Gauge), "tailscale_up"),
    ] {
        assert_eq!(metric_name(&point), want);
    }
}

#[test]
fn prometheus_label_values_and_help_are_escaped() {
    let snap = Snapshot {
        resource: vec![
            ("host.name".into(), "n1".into()),
            ("service.name".into(), "s".into()),
        ],
        points: vec![
            Point::new("x", "1", "a\nb", Kind::Counter, 2.5).with("mountpoint", "/a \"b\"\\"),
        ],
    };
    assert_eq!(
        render(&snap),
        "# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info{host_name=\"n1\",job=\"s\"} 1\n\
         # HELP x_total a\\nb\n# TYPE x_total counter\nx_total{host_name=\"n1\",job=\"s\",mountpoint=\"/a \\\"b\\\"\\\\\",service_name=\"s\"} 2.5\n"
    );
}
