"""Called by scopes.sh: every exposed function and view, every spelling of its name, both ports."""
import http.client
import json
import os
import sys
import urllib.parse

objects = json.load(open(sys.argv[1]))
bases = sys.argv[2:]
keys = {n[4:]: v for n, v in os.environ.items() if n.startswith("KEY_")}
# for each scope, a key that lacks it and one that has it
lacking = {"read": "write", "write": "read", "webhooks": "readwrite", "admin": "nonadmin", "public_read": "write"}
having = {"read": "read", "write": "write", "webhooks": "webhooks", "admin": "admin", "public_read": "read"}


def spellings(name):
    yield "plain", name
    if "_" in name:
        yield "%5F", name.replace("_", "%5F")
        yield "%5f", name.replace("_", "%5f")
    yield "encoded letter", "%{:02X}".format(ord(name[0])) + name[1:]
    yield "%00 inside", name[:2] + "%00" + name[2:]


clients = 0


def call(base, obj, spelled, key):
    global clients
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    # anonymous calls are rate-limited per client address: each call names another one (a
    # documentation address, only ever a header value; the web front believes it from loopback)
    clients += 1
    headers = {"Content-Type": "application/json", "X-Real-IP": f"198.51.{100 + clients // 250}.{clients % 250 + 1}"}
    if key:
        headers["X-API-Key"] = keys[key]
    if obj["kind"] == "function":
        conn.request("POST", "/rpc/" + spelled, body=json.dumps(obj["args"]), headers=headers)
    else:
        conn.request("GET", "/" + spelled + "?limit=1", headers=headers)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body[:200]


passed = failed = 0


def check(label, ok, got):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"  FAIL {label}: got {got}")


checked = 0
for obj in objects:
    scope = obj["scope"]
    if scope in ("anonymous", "sql"):
        continue
    checked += 1
    for base in bases:
        for how, spelled in spellings(obj["name"]):
            label = f"{base} {obj['kind']} {obj['name']} ({how}, needs {scope})"
            # a NUL inside the name makes another name: the web front (nginx) refuses it (400),
            # PostgREST finds no such function (404) before any SQL runs
            refused = (403, 400, 404) if how == "%00 inside" else (403,)
            status, body = call(base, obj, spelled, lacking[scope])
            check(label + " with a key that lacks it: 403", status in refused, (status, body))
            if scope != "public_read":
                status, body = call(base, obj, spelled, None)
                check(label + " without a key: 401", status == 401 or status in refused[1:], (status, body))
            if how == "plain":
                status, body = call(base, obj, spelled, having[scope])
                check(label + " with a key that has it: neither 401 nor 403", status not in (401, 403), (status, body))
print(f"  {checked} functions and views, {len(bases)} ports: {passed} checks passed, {failed} failed")
sys.exit(1 if failed else 0)
