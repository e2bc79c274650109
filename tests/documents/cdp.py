"""Watches a page in headless Chromium over the DevTools protocol, in real time (the hosted
page polls with real timers): prints one JSON line per change of the page's status or URL, and
exits 0 once the URL contains EXPECT, 1 after TIMEOUT seconds.

    python cdp.py URL EXPECT TIMEOUT
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket

url, expect, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
profile = tempfile.mkdtemp()
port = 9222 + os.getpid() % 500
chrome = subprocess.Popen(
    ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
     # no requests of the browser's own (updates, time, metrics), and anything not on loopback
     # goes to a closed local port: nothing leaves the machine
     "--disable-background-networking", "--disable-component-update", "--no-pings",
     "--proxy-server=http://127.0.0.1:9",
     f"--user-data-dir={profile}", f"--remote-debugging-port={port}", "about:blank"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    deadline = time.time() + timeout
    target = None
    while target is None and time.time() < deadline:
        try:
            pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=1))
            target = next(p for p in pages if p.get("type") == "page")
        except Exception:
            time.sleep(0.1)
    ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=5, suppress_origin=True)
    counter = [0]

    def call(method, **params):
        counter[0] += 1
        ws.send(json.dumps({"id": counter[0], "method": method, "params": params}))
        while True:
            msg = json.loads(ws.recv())
            if msg.get("id") == counter[0]:
                return msg.get("result", {})

    call("Page.navigate", url=url)
    last = None
    while time.time() < deadline:
        r = call("Runtime.evaluate", returnByValue=True, expression=(
            "JSON.stringify({href: location.href, status: (document.querySelector('main') || {getAttribute: () => null})"
            ".getAttribute('data-status'), text: (document.getElementById('status') || {}).textContent || null})"))
        state = json.loads(r.get("result", {}).get("value") or "{}")
        if state != last:
            print(json.dumps(state), flush=True)
            last = state
        if expect in (state.get("href") or ""):
            sys.exit(0)
        time.sleep(0.2)
    sys.exit(1)
finally:
    chrome.kill()
    chrome.wait()
    shutil.rmtree(profile, ignore_errors=True)
