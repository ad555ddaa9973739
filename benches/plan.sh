#!/usr/bin/env bash
# `labctl plan --offline` on the bundled stack and on a generated stack with 1,000 kube objects:
# wall time (median, min) and peak RSS. Targets: bundled < 30 ms, 1,000 objects < 300 ms, RSS < 50 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/labctl
runs=${RUNS:-20}

gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
# Ten kinds' worth of objects: ConfigMaps, Services and Deployments in equal thirds, plus the namespace.
cat > "$gen/stack.toml" <<'TOML'
[stack]
name = "bench"
[kube.collectors]
enabled = false
[kube.grafana]
enabled = false
[kube.loki]
enabled = false
[kube.minio]
enabled = false
[kube.otel-collector]
enabled = false
[kube.postgres]
enabled = false
[kube.prometheus]
enabled = false
[kube.tempo]
enabled = false
[kube.thanos]
enabled = false
[host.proxy]
enabled = false
[host.collector]
enabled = false
[host.ingest]
enabled = false
[host.gate]
enabled = false
[host.openbao]
enabled = false
[host.reading-sync]
enabled = false
[kube.extra.bulk]
values = { count = 333 }
TOML
mkdir -p "$gen/templates/bulk"
cat > "$gen/templates/bulk/objects.yaml" <<'YAML'
{% for i in range(c.values.count) %}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-{{ i }}
data:
  index: {{ i | string }}
  config.yaml: |
    listen: 0.0.0.0:{{ 8000 + i }}
    name: service-{{ i }}
---
apiVersion: v1
kind: Service
metadata:
  name: svc-{{ i }}
spec:
  selector:
    app: app-{{ i }}
  ports:
    - name: http
      port: 80
      targetPort: {{ 8000 + i }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{{ i }}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: app-{{ i }}
  template:
    metadata:
      labels:
        app: app-{{ i }}
    spec:
      containers:
        - name: app
          image: registry.example/app:{{ i }}
          args: ["--config", "/etc/app/config.yaml"]
          resources:
            requests: { cpu: 10m, memory: 16Mi }
{% endfor %}
YAML
objects=$("$bin" --stack "$gen/stack.toml" plan --offline -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["changes"]))')
bundled=$("$bin" --stack stack.toml plan --offline -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["changes"]))')

echo "| case | runs | median ms | min ms | peak RSS MiB |"
echo "| --- | --- | --- | --- | --- |"
python3 benches/measure.py "bundled stack ($bundled resources)" "$runs" -- "$bin" --stack stack.toml plan --offline
python3 benches/measure.py "generated ($objects kube objects)" "$runs" -- "$bin" --stack "$gen/stack.toml" plan --offline
python3 benches/measure.py "generated, JSON output" "$runs" -- "$bin" --stack "$gen/stack.toml" plan --offline -o json
