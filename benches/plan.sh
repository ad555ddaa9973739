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
# 999 objects of three kinds (ConfigMap, Service, Deployment) plus the namespace.
{ sed 's/^name = "lab"/name = "bench"/' tests/fixtures/bare.toml
  printf '\n[kube.extra.bulk]\nvalues = { count = 333 }\n'; } > "$gen/stack.toml"
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
