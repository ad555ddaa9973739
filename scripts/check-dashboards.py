#!/usr/bin/env python3
"""Check dashboard JSON files against Grafana's dashboard model, as grafana-foundation-sdk types it.

    scripts/check-dashboards.py FILE.json...

Each file is read into the SDK's `Dashboard` (`Dashboard.from_json`: the panels through the panel
plugins' own option and field-config types, the queries through their datasource's query type) and
written back out. A key the model does not know is dropped on the way, and a value of the wrong
shape fails or comes back changed: every key and value of the file must come back as it was (what
the SDK adds, its defaults, is fine). Each difference is printed with the file and the JSON path;
the exit code is 1 when there is one.

The SDK build must match the Grafana the stack ships (`kube.grafana.image`, 11.4):
`pip install 'grafana-foundation-sdk==1769699520!11.4.0'`. tests/it/dashboards/ runs this on the
rendered dashboards; .ci/run installs the package.
"""

import json
import sys

try:
    from grafana_foundation_sdk.cog import encoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard
except ImportError as e:
    sys.exit(
        f"grafana-foundation-sdk is not installed ({e}): "
        "pip install 'grafana-foundation-sdk==1769699520!11.4.0'"
    )


def differences(given, back, path):
    """Where `back` (the round trip) lost or changed something of `given`."""
    if isinstance(given, dict):
        if not isinstance(back, dict):
            yield f"{path}: an object came back as {json.dumps(back)}"
            return
        for key, value in given.items():
            if key not in back:
                yield f"{path}.{key}: not in Grafana's model (dropped)"
            else:
                yield from differences(value, back[key], f"{path}.{key}")
    elif isinstance(given, list):
        if not isinstance(back, list) or len(back) != len(given):
            yield f"{path}: a list of {len(given)} came back as {json.dumps(back)[:80]}"
            return
        for i, (g, b) in enumerate(zip(given, back)):
            yield from differences(g, b, f"{path}[{i}]")
    elif given != back:
        yield f"{path}: {json.dumps(given)} came back as {json.dumps(back)}"


def main(files):
    register_default_plugins()
    bad = 0
    for name in files:
        with open(name, encoding="utf-8") as f:
            given = json.load(f)
        try:
            model = Dashboard.from_json(given)
            back = json.loads(json.dumps(model, cls=encoder.JSONEncoder))
        except Exception as e:  # the SDK raises whatever a wrong shape makes it raise
            print(f"{name}: not a dashboard of Grafana's model: {type(e).__name__}: {e}")
            bad += 1
            continue
        for d in differences(given, back, "$"):
            print(f"{name}: {d}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
