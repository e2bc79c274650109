"""Watches a pay button in headless Chromium while the shell pays its invoice on Anvil: writes
SIGNAL_DIR/ready once the button shows the amount, then prints one JSON object of what the page
saw ({paid, paid_at, statuses, text}) once onStatus reported `confirmed`, or after TIMEOUT seconds.

    python pay.py PAGE_URL SIGNAL_DIR TIMEOUT
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

page_url, signal_dir, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
profile = tempfile.mkdtemp()
port = 9822 + os.getpid() % 500
chrome = subprocess.Popen(
    ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
     # no requests of the browser's own (updates, time, metrics): nothing but the test's pages
     "--disable-background-networking", "--disable-component-update", "--no-pings",
     "--disable-background-timer-throttling", "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows",
     # every request through the run's proxy (tests/widget/proxy.py), loopback too
     f"--proxy-server=http://127.0.0.1:{os.environ['WIDGET_PROXY_PORT']}", "--proxy-bypass-list=<-loopback>",
     f"--user-data-dir={profile}", f"--remote-debugging-port={port}", "about:blank"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
seen = {}
try:
    target = None
    for _ in range(100):
        try:
            pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=1))
            target = next(p for p in pages if p.get("type") == "page")
            break
        except Exception:
            time.sleep(0.1)
    ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=10, suppress_origin=True)
    n = [0]
    frames = []   # sessions of the checkout frame (out of process: another origin)

    def send(method, params, session=None):
        n[0] += 1
        msg = {"id": n[0], "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        ws.send(json.dumps(msg))
        while True:
            m = json.loads(ws.recv())
            if m.get("method") == "Target.attachedToTarget" and m["params"]["targetInfo"].get("type") == "iframe":
                frames.append(m["params"]["sessionId"])
            if m.get("id") == n[0]:
                return m

    def js(expr, session=None):
        m = send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session)
        return m.get("result", {}).get("result", {}).get("value")

    def checkout_status():
        """The checkout frame's data-status, read in an isolated world of that frame (another
        origin: the page's own scripts cannot read it; the browser can)."""
        tree = send("Page.getFrameTree", {}).get("result", {}).get("frameTree", {})
        for child in tree.get("childFrames", []):
            if "/i/" in child["frame"].get("url", ""):
                world = send("Page.createIsolatedWorld", {"frameId": child["frame"]["id"], "worldName": "probe"})
                ctx = world.get("result", {}).get("executionContextId")
                if ctx:
                    m = send("Runtime.evaluate", {"expression": "(document.querySelector('main') || {getAttribute: () => ''}).getAttribute('data-status')",
                                                  "contextId": ctx, "returnByValue": True})
                    return m.get("result", {}).get("result", {}).get("value")
        return None

    n[0] += 1
    ws.send(json.dumps({"id": n[0], "method": "Page.navigate", "params": {"url": page_url}}))
    deadline = time.time() + timeout
    while time.time() < deadline and not js("/ETH/.test((document.querySelector('button.li-pay') || {}).textContent || '')"):
        time.sleep(0.1)
    # the checkout, open in its modal while the payment comes
    js("document.querySelector('button.li-pay').click()")
    while time.time() < deadline and not checkout_status():
        time.sleep(0.1)
    modal = []
    open(os.path.join(signal_dir, "ready"), "w").close()
    while time.time() < deadline:
        seen = js("({paid: window.paid || null, paid_at: window.paidAt || null, statuses: window.statuses, "
                  "text: document.querySelector('button.li-pay').textContent})")
        state = checkout_status()
        if state and (not modal or modal[-1] != state):
            modal.append(state)
        seen["modal"] = modal
        if seen and "confirmed" in (seen.get("statuses") or []) and modal and modal[-1] == "confirmed":
            break
        time.sleep(0.1)
finally:
    print(json.dumps(seen))
    chrome.kill()
    chrome.wait()
    shutil.rmtree(profile, ignore_errors=True)
