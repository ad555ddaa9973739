#!/usr/bin/env python3
"""Write the fuzz targets' seed corpora (fuzz/corpus/<target>/) from the project's fixtures, the
recorded kube-apiserver transcripts (../shared/kube-transcripts), labctl's own rendering of the
bundled stack and the test API server's OpenAPI documents. Run from the repository root after a
debug build (`cargo build --workspace`); the corpora are kept in the repository, so this only runs
when a fixture changes. Parts of one input are separated by 0x1e (labctl::fuzz::SEP)."""

import glob
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

SEP = b"\x1e"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
LABCTL = os.path.join(TARGET, "debug", "labctl")
TESTAPI = os.path.join(TARGET, "debug", "labctl-testapi")
TRANSCRIPTS = os.path.join(ROOT, "..", "shared", "kube-transcripts")
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def joined(*parts):
    return SEP.join(p.encode() if isinstance(p, str) else p for p in parts)


def main():
    # stack.toml: the bundled stack and every fixture stack.
    stacks = [os.path.join(ROOT, "stack.toml")] + sorted(
        glob.glob(os.path.join(ROOT, "tests", "fixtures", "**", "*.toml"), recursive=True))
    for p in stacks:
        put("stack_toml", read(p))

    # Hostile values for the bundled stack's strings (labctl::fuzz::HOSTILE's order).
    for values in [
        ["/usr/bin/rclone sync reading: /srv/reading", "main", "/srv/homelab", "o/r", "journal",
         "a", "b", "/usr/bin/bao"],
        ["cmd %n $HOME \\ \" '", "feat/x y", "/srv/with space", "o/r", "l\"abel", "%%", "$$", "b i n"],
        ["a\nExecStartPre=/bin/false", "main\n[Install]", "/srv\r\nX=1", "o/r", "x", "a\\\nb", "\t", ";"],
        ["", "", "", "", "", "", "", ""],
    ]:
        put("template_values", joined(*values))

    # Unit files: the shipped templates and the bundled stack's rendered units (both scopes).
    for p in sorted(glob.glob(os.path.join(ROOT, "systemd-templates", "*.*"))):
        put("unit_file", read(p))
    with tempfile.TemporaryDirectory() as tmp:
        for scope in ["system", "user"]:
            stack = os.path.join(tmp, scope, "stack.toml")
            os.makedirs(os.path.dirname(stack))
            text = read(os.path.join(ROOT, "stack.toml")).decode()
            text = text.replace('scope = "system"', f'scope = "{scope}"')
            with open(stack, "w") as f:
                f.write(text)
            out = os.path.join(tmp, scope, "out")
            subprocess.run([LABCTL, "--stack", stack, "render", "--redact", "-d", out],
                           check=True, capture_output=True)
            for p in sorted(glob.glob(os.path.join(out, "systemd", "*.*"))):
                put("unit_file", read(p))
            # Rendered manifests for the YAML reader.
            for p in sorted(glob.glob(os.path.join(out, "kube", "**", "*.yaml"), recursive=True)):
                put("yaml", read(p))
    for p in sorted(glob.glob(os.path.join(ROOT, "templates", "**", "*.yaml"), recursive=True))[:40]:
        put("yaml", read(p))
    for y in ["a: &x {b: 1}\nc: *x\n<<: *x\n", "- !!binary aGVsbG8=\n- 0x1F\n- .inf\n- ~\n",
              "---\n...\n---\nk: |\n  text\n", "[[[[[[[[[[]]]]]]]]]]"]:
        put("yaml", y)

    # Webhook deliveries: event, id, content type, signature (empty: signed), body.
    push = read(os.path.join(ROOT, "tests", "fixtures", "github-push.json"))
    form = b"payload=" + urllib.request.quote(push.decode()).encode()
    did = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    put("webhook", joined("push", did, "application/json", "", push))
    put("webhook", joined("push", did, "application/x-www-form-urlencoded", "", form))
    put("webhook", joined("ping", did, "application/json; charset=utf-8", "", '{"zen":"x","hook_id":1}'))
    put("webhook", joined("issues", did, "application/json", "", '{"action":"opened"}'))
    put("webhook", joined("push", did, "text/plain", "sha256=00", push))
    put("webhook", joined("push", "not-an-id", "application/json", "", "{}"))

    # GitHub pages: Link header, body.
    issue = {
        "number": 7, "title": "t", "body": "b", "state": "open", "comments": 1,
        "labels": [{"name": "journal"}], "user": {"login": "me"},
        "html_url": "https://github.com/o/r/issues/7", "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-02T00:00:00Z", "closed_at": None,
    }
    pr = dict(issue, number=8, pull_request={"url": "x"})
    comment = {
        "id": 3, "body": "c", "user": {"login": "me"}, "html_url": "https://github.com/o/r/issues/7#c",
        "issue_url": "https://api.github.com/repos/o/r/issues/7",
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
    }
    link = ('<https://api.github.com/repos/o/r/issues?page=2>; rel="next", '
            '<https://api.github.com/repos/o/r/issues?page=5>; rel="last"')
    put("github_page", joined(link, json.dumps([issue, pr])))
    put("github_page", joined("", json.dumps([comment])))
    put("github_page", joined('<a>; rel="prev next"', "[]"))
    put("github_page", joined("", '{"message":"Bad credentials"}'))

    # Live objects with managedFields, desired objects, from the recorded transcripts.
    objects = []
    for p in sorted(glob.glob(os.path.join(TRANSCRIPTS, "*.json"))):
        d = json.load(open(p))
        for e in d.get("exchanges", []):
            req, resp = e.get("request", {}), e.get("response", {})
            body = resp.get("body")
            if isinstance(body, dict) and "managedFields" in body.get("metadata", {}):
                objects.append((body, req.get("body") if isinstance(req.get("body"), dict) else None))
            put("openapi", json.dumps(body)) if isinstance(body, dict) and "components" in body else None
    # The test API server's OpenAPI documents (schemas with x-kubernetes-list-type).
    docs = []
    if os.path.exists(TESTAPI):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        srv = subprocess.Popen([TESTAPI, "--port", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    root = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi/v3"))
                    break
                except OSError:
                    time.sleep(0.1)
            for path in ["api/v1", "apis/apps/v1"]:
                doc = urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi/v3/{path}").read()
                docs.append(doc)
                put("openapi", doc)
        finally:
            srv.terminate()
            srv.wait()
    # The OpenAPI part is large (and parsed at each execution): only a few seeds carry it.
    for i, (live, want) in enumerate(objects[:30]):
        put("projection", joined(json.dumps(live), json.dumps(want) if want else "",
                                 docs[1] if i < 3 and len(docs) > 1 else ""))

    # tailscaled's answers.
    ts = os.path.join(ROOT, "tests", "fixtures", "proc-sys-tailscale")
    for status in ["status-running.json", "status-needs-login.json"]:
        for serve in ["serve-config-funnel.json", "serve-config-empty.json"]:
            put("tailscale", joined(read(os.path.join(ts, status)), read(os.path.join(ts, serve))))

    # /proc: the fixture's files and this machine's, in labctl::fuzz::PROC_FILES's order.
    files = ["stat", "loadavg", "meminfo", "swaps", "1/mountinfo", "diskstats", "net/dev", "uptime"]
    for proc in [os.path.join(ROOT, "tests", "fixtures", "proc-sys", "proc"), "/proc"]:
        parts = []
        for f in files:
            try:
                parts.append(read(os.path.join(proc, f)))
            except OSError:
                parts.append(b"")
        put("procfs", SEP.join(parts))


if __name__ == "__main__":
    sys.exit(main())
