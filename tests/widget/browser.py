"""The pay button in headless Chromium, driven over the DevTools protocol: the embed page is
served from another origin (PAGE_URL); prints one JSON object of facts for widget.sh to check.

    python browser.py PAGE_URL SHOTS_DIR PUBLIC_URL COMMAND_FILE

Between steps it waits for COMMAND_FILE to say what the shell did (payments are recorded by
the shell, as the worker would record them) by polling for the file 'paid' / 'partial' there.
"""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket

page_url, shots, public_url, signal_dir = sys.argv[1:5]
profile = tempfile.mkdtemp()
port = 9322 + os.getpid() % 500
chrome = subprocess.Popen(
    ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
     # no requests of the browser's own (updates, time, metrics): nothing but the test's pages
     "--disable-background-networking", "--disable-component-update", "--no-pings",
     "--disable-background-timer-throttling", "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows",
     # every request through the run's proxy (tests/widget/proxy.py), loopback too
     f"--proxy-server=http://127.0.0.1:{os.environ['WIDGET_PROXY_PORT']}", "--proxy-bypass-list=<-loopback>",
     "--window-size=1200,900", f"--user-data-dir={profile}", f"--remote-debugging-port={port}", "about:blank"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
facts = {}
requests = []
events = []
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
    counter = [0]

    def call(method, **params):
        counter[0] += 1
        ws.send(json.dumps({"id": counter[0], "method": method, "params": params}))
        while True:
            msg = json.loads(ws.recv())
            if msg.get("method") == "Network.requestWillBeSent":
                requests.append(msg["params"]["request"]["url"])
            if msg.get("id") == counter[0]:
                return msg.get("result", {})

    def js(expr):
        r = call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        return r.get("result", {}).get("value")

    def wait(expr, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if js(expr):
                return True
            time.sleep(0.1)
        return False

    def key(name, code, text=None):
        for kind in ("keyDown", "keyUp"):
            params = {"type": kind, "key": name, "code": code, "windowsVirtualKeyCode": {"Tab": 9, "Enter": 13, "Escape": 27}[name]}
            if text and kind == "keyDown":
                params["text"] = text
            call("Input.dispatchKeyEvent", **params)

    call("Network.enable")
    call("Page.enable")
    call("Page.navigate", url=page_url)
    facts["rendered"] = wait("document.querySelectorAll('button.li-pay').length === 7 && "
                             "[...document.querySelectorAll('button.li-pay')].every(b => /\\d/.test(b.textContent))", 40)
    facts["labels"] = js("[...document.querySelectorAll('button.li-pay')].map(b => b.getAttribute('data-li-theme') + ': ' + b.textContent)")
    # the four themes, screenshot by screenshot
    digests = {}
    for theme in ("light", "dark", "minimal", "kaspa"):
        box = js(f"(() => {{ const r = document.querySelector('#themes button[data-li-theme={theme}]').getBoundingClientRect(); "
                 "return {x: r.x, y: r.y, width: r.width, height: r.height}; })()")
        shot = call("Page.captureScreenshot", format="png", clip=dict(box, scale=1))
        data = base64.b64decode(shot["data"])
        with open(os.path.join(shots, f"widget-{theme}.png"), "wb") as f:
            f.write(data)
        digests[theme] = hashlib.sha256(data).hexdigest()
    facts["themes_differ"] = len(set(digests.values())) == 4
    facts["api_button"] = js("!!document.querySelector('#api button.li-pay')")
    # contrast: the text against every colour of each theme's background (WCAG relative luminance)
    facts["contrast"] = js("""(() => {
      const lum = (c) => { const v = c.map((x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
                           return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
      const rgb = (s) => (s.match(/rgba?\\([^)]*\\)/g) || []).map((m) => m.match(/[\\d.]+/g).slice(0, 3).map(Number));
      const out = {};
      for (const b of document.querySelectorAll('#themes button.li-pay')) {
        const cs = getComputedStyle(b), fg = rgb(cs.color)[0];
        const bgs = rgb(cs.backgroundImage).concat(cs.backgroundImage === 'none' ? rgb(cs.backgroundColor) : []);
        out[b.getAttribute('data-li-theme')] = Math.min(...bgs.map((bg) => {
          const a = lum(fg), c = lum(bg); return (Math.max(a, c) + 0.05) / (Math.min(a, c) + 0.05); }));
      }
      return out; })()""")
    # keyboard only: Tab to the script-tag button (the first in the page), Enter, Escape
    js("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    key("Tab", "Tab")
    facts["tab_reaches_button"] = js("document.activeElement === document.querySelector('#embed button.li-pay')")
    key("Enter", "Enter", "\r")
    facts["enter_opens_modal"] = wait("!!document.querySelector('.li-overlay [role=dialog] iframe')", 5)
    facts["focus_in_modal"] = js("document.activeElement === document.querySelector('.li-close')")
    facts["checkout_loads"] = wait("(() => { try { return document.querySelector('.li-frame').contentWindow.length >= 0 } catch (e) { return true } })()", 5)
    time.sleep(1)
    shot = call("Page.captureScreenshot", format="png")
    with open(os.path.join(shots, "widget-checkout-modal.png"), "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    key("Escape", "Escape")
    facts["escape_closes"] = wait("!document.querySelector('.li-overlay')", 3)
    facts["focus_returns"] = js("document.activeElement === document.querySelector('#embed button.li-pay')")
    # a narrow screen: the checkout opens in a new tab, not a modal
    call("Emulation.setDeviceMetricsOverride", width=400, height=800, deviceScaleFactor=1, mobile=False)
    js("window.opened = []; window.open = function (u) { window.opened.push(u); return null; }")
    js("document.querySelector('#embed button.li-pay').click()")
    facts["narrow_opens_tab"] = js("window.opened.length === 1 && /\\/i\\//.test(window.opened[0]) && !document.querySelector('.li-overlay')")
    call("Emulation.clearDeviceMetricsOverride")
    # payments, recorded by the shell: partial, then the rest
    open(os.path.join(signal_dir, "ready"), "w").close()
    facts["partial_shown"] = wait("/Send the remaining 0\\.0025 ETH/.test(document.querySelector('#embed button.li-pay').textContent)", 20)
    facts["partial_text"] = js("document.querySelector('#embed button.li-pay').textContent")
    open(os.path.join(signal_dir, "partial_seen"), "w").close()
    facts["on_payment"] = wait("window.paid && window.paid.tx_id", 20)
    facts["on_payment_at"] = js("window.paidAt")
    facts["payment"] = js("window.paid")
    facts["statuses"] = js("window.statuses")
    facts["paid_text"] = js("document.querySelector('#api button.li-pay').textContent")
    facts["expired_shown"] = wait("/Expired/.test(document.querySelector('#expired button.li-pay').textContent)", 10)
    facts["expired_text"] = js("document.querySelector('#expired button.li-pay').textContent")
    js("window.api.destroy()")
    facts["destroyed"] = js("!document.querySelector('#api button.li-pay')")
    # the checkout in its main states, for the README
    for state, slug in (p.split("=") for p in os.environ.get("CHECKOUTS", "").split(",") if p):
        call("Emulation.setDeviceMetricsOverride", width=520, height=900, deviceScaleFactor=1, mobile=False)
        call("Page.navigate", url=f"{public_url}/i/{slug}")
        wait("document.readyState === 'complete' && !!document.querySelector('main')", 10)
        time.sleep(1.5)   # its first poll
        shot = call("Page.captureScreenshot", format="png")
        with open(os.path.join(shots, f"checkout-{state}.png"), "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        facts[f"checkout_{state}"] = js("document.querySelector('main').getAttribute('data-status') + ': ' + document.getElementById('status').textContent")
    facts["other_hosts"] = sorted({u for u in requests if not (u.startswith(public_url) or u.startswith(page_url.rsplit('/', 1)[0]))
                                   and not u.startswith("data:") and not u.startswith("about:")})
finally:
    print(json.dumps(facts))
    chrome.kill()
    chrome.wait()
    shutil.rmtree(profile, ignore_errors=True)
