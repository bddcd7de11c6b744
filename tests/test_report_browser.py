"""The HTML report in a real browser: Debian's headless Chromium driven over the DevTools protocol.

How: start `chromium --headless --remote-debugging-port=0` with a fresh --user-data-dir, read the port from
the profile's DevToolsActivePort file, open the page target's websocket (`websocket-client`, a dependency of
the kubernetes client), enable the Runtime/Log/Network/Page domains, navigate to the file:// URL and collect:
console errors and uncaught exceptions (Runtime.*, Log.entryAdded), every request (Network.requestWillBeSent),
then ask the page whether every plotly div drew SVG, and save a full-page screenshot to artifacts/.
No browser is downloaded; the test fails (not skips) when CI lacks chromium, since .ci/run installs it.
"""

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from soraplan.cli import app

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-extensions", "--disable-sync", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         "--remote-debugging-port=0", "--remote-allow-origins=*"]


class Browser:
    """A headless Chromium and one page, driven over the DevTools protocol."""

    def __init__(self, profile: Path, timeout_s: float = 60):
        import websocket  # websocket-client

        self.timeout_s = timeout_s
        self.log = open(profile.parent / "chromium.log", "wb")
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (see {self.log.name})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        page = None
        while page is None:
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
            except OSError:  # the port file can appear a moment before the endpoint answers
                targets = []
            page = next((t for t in targets if t.get("type") == "page"), None)
            if page is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("chromium has no page target")
                time.sleep(0.1)
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout_s, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str) -> dict:
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            self.events.append(msg)
            if msg.get("method") == method:
                return msg
        raise TimeoutError(method)

    def evaluate(self, expression: str):
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"])
        return r["result"].get("value")

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the browser we started, and its helper processes
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.log.close()


def open_report(path: Path, tmp: Path, screenshot: Path) -> dict:
    """Load `path` in headless Chromium; return errors, requests, chart checks; save a full-page PNG."""
    b = Browser(tmp / "profile")
    try:
        for domain in ("Runtime", "Log", "Network", "Page"):
            b.send(f"{domain}.enable")
        b.send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
        b.send("Page.navigate", url=path.resolve().as_uri())
        b.wait_event("Page.loadEventFired")
        # plotly draws synchronously in newPlot, but let layout/responsive resize settle
        b.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        charts = b.evaluate("""Array.from(document.querySelectorAll('div.chart')).map(d => ({
            id: d.id, plotly: d.classList.contains('js-plotly-plot'),
            svgs: d.querySelectorAll('svg.main-svg').length,
            marks: d.querySelectorAll('g.trace path, g.trace .point, g.points path, g.bars path').length}))""")
        info = b.evaluate("""({title: document.title, h1: document.querySelector('h1').textContent,
            scripts: document.scripts.length, alerts: window.__alerted || 0,
            height: document.documentElement.scrollHeight})""")
        height = int(info["height"])
        b.send("Emulation.setDeviceMetricsOverride", width=1280, height=min(height, 16000), deviceScaleFactor=1,
               mobile=False)
        shot = b.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        # drain what is queued (late console messages)
        b.evaluate("1")
    finally:
        b.close()
    errors, requests = [], []
    for ev in b.events:
        m, p = ev.get("method"), ev.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            errors.append(json.dumps(p.get("exceptionDetails", {}))[:500])
        elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
            errors.append(p["entry"].get("text", ""))
        elif m == "Network.requestWillBeSent":
            requests.append(p["request"]["url"])
        elif m == "Page.javascriptDialogOpening":
            errors.append(f"dialog opened: {p.get('message')}")
    return {"charts": charts, "info": info, "errors": errors, "requests": requests}


@pytest.fixture(scope="module")
def browsed(tmp_path_factory):
    from typer.testing import CliRunner

    assert Path(CHROMIUM).exists(), "chromium is needed for the browser test (.ci/run installs Debian's chromium)"
    tmp = tmp_path_factory.mktemp("report-browser")
    out = tmp / "capacity.html"
    val = tmp / "validation.json"
    val.write_text(json.dumps({  # `soraplan validate --json` shape, with a hostile quantity name
        "machine": {"date": "2026-11-26 07:30 UTC", "cpus": 2, "platform": "Linux"}, "device": "cpu",
        "rows": [{"config": "6B meta", "quantity": "parameters", "measured": 6131825792, "predicted": 6131825792,
                  "tolerance": 0, "unit": "params", "error": 0.0, "ok": True},
                 {"config": "tiny", "quantity": "saved <b>bytes</b><script>alert(2)</script>", "measured": 1.01e9,
                  "predicted": 1e9, "tolerance": 0.01, "unit": "B", "error": 0.01, "ok": True}],
        "errors": [], "failed": 0, "ok": True}))
    r = CliRunner().invoke(app, ["report", "--frames", "960", "--res", "256", "--gpus", "200,300,400",
                                 "--deadline-days", "30", "--name", "<script>alert(1)</script>",
                                 "--validation", str(val), "-o", str(out)])
    assert r.exit_code == 0, r.output
    shot = ARTIFACTS / "report_screenshot.png"
    res = open_report(out, tmp, shot)
    res["path"], res["shot"] = out, shot
    return res


def test_every_chart_drew_svg(browsed):
    charts = browsed["charts"]
    assert len(charts) >= 4, charts
    for c in charts:
        assert c["plotly"] and c["svgs"] >= 1 and c["marks"] >= 1, c


def test_no_console_errors(browsed):
    assert browsed["errors"] == []


def test_no_network_request_leaves_the_file(browsed):
    uri = browsed["path"].resolve().as_uri()
    others = [u for u in browsed["requests"] if u != uri and not u.startswith("data:")]
    assert others == [], others
    assert uri in browsed["requests"]


def test_hostile_name_is_text_and_screenshot_saved(browsed):
    assert browsed["info"]["h1"] == "<script>alert(1)</script>"
    assert browsed["info"]["title"].startswith("<script>alert(1)</script>")
    png = browsed["shot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000


def test_the_checks_can_fail(browsed, tmp_path):
    """The same page with a planted image from the network, a fetch and a console error: all three are caught."""
    planted = tmp_path / "planted.html"
    planted.write_text(browsed["path"].read_text(encoding="utf-8").replace(
        "</body>", '<img src="http://203.0.113.5/x.png"><script>console.error("planted")</script></body>'),
        encoding="utf-8")
    res = open_report(planted, tmp_path, tmp_path / "planted.png")
    assert "http://203.0.113.5/x.png" in res["requests"]
    assert "planted" in res["errors"]
    assert any("Content Security Policy" in e for e in res["errors"])


def test_nothing_fits_page_renders_cleanly(tmp_path):
    """A plan where no layout fits: no charts, the reason in words, and still no console error or request."""
    from typer.testing import CliRunner

    out = tmp_path / "nofit.html"
    r = CliRunner().invoke(app, ["report", "--frames", "960", "--res", "512", "--gpu", "a100-40g", "--gpus", "1,2",
                                 "-o", str(out)])
    assert r.exit_code == 0, r.output
    res = open_report(out, tmp_path, ARTIFACTS / "report_nothing_fits.png")
    assert res["charts"] == [] and res["errors"] == []
    assert [u for u in res["requests"] if u != out.resolve().as_uri()] == []
    assert "No layout fits at any of the GPU counts asked for. No layout fits on 1 x a100-40g" in out.read_text()
