"""Notifications from the monitoring room (docs/monitor.md, "Notifications"), against real peers: a
real kitchen-monitor and Mosquitto, and a real HTTPS server (Python's, with a certificate made here)
playing a WeCom robot, a DingTalk robot that checks its signature as DingTalk does, and a plain JSON
endpoint.

1. An alert reaches each target once, in that target's format, with a link to it in the dashboard;
   a copy of the message delivered again notifies nobody twice; an alert of a severity a target
   does not take, or of a check it does not take, does not reach it; the end reaches the target that
   asked for ends.
2. A target that is down: the notification waits in the room's database, across a monitor killed
   and started again, and arrives once when the target is back."""

import base64
import hashlib
import hmac
import http.server
import json
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse

import pytest

import kg_e2e
import test_monitor  # its Monitors (real kitchen-monitors), event() and publisher()

SITE = "sch-0301"
DING_SECRET = "SEC0123456789abcdef"


class Webhooks:
    """A real HTTPS server on 127.0.0.1: records every POST and answers as the robot its path names."""

    def __init__(self, workdir, port=0):
        self.cert = workdir / "hook-cert.pem"
        key = workdir / "hook-key.pem"
        if not self.cert.exists():
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                            "-out", str(self.cert), "-days", "2", "-subj", "/CN=localhost",
                            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                           check=True, capture_output=True)
        self.posts = []
        self.lock = threading.Lock()
        hooks = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with hooks.lock:
                    hooks.posts.append({"path": self.path, "type": self.headers.get("Content-Type"),
                                        "body": json.loads(body)})
                status, answer = hooks.answer(self.path)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def answer(path):
        url = urllib.parse.urlsplit(path)
        q = urllib.parse.parse_qs(url.query)
        if url.path == "/cgi-bin/webhook/send":  # WeCom
            return 200, ({"errcode": 0, "errmsg": "ok"} if q.get("key") == ["room-key"]
                         else {"errcode": 93000, "errmsg": "invalid webhook url"})
        if url.path == "/robot/send":  # DingTalk, signed
            ts, sign = q.get("timestamp", [""])[0], q.get("sign", [""])[0]
            mac = hmac.new(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(), hashlib.sha256).digest()
            fresh = ts.isdigit() and abs(time.time() * 1000 - int(ts)) < 3600_000
            if fresh and sign == base64.b64encode(mac).decode():
                return 200, {"errcode": 0, "errmsg": "ok"}
            return 200, {"errcode": 310000, "errmsg": "sign not match"}
        return 204, {}

    def url(self, path):
        return f"https://localhost:{self.port}{path}"

    def received(self, path_prefix):
        with self.lock:
            return [p for p in self.posts if p["path"].startswith(path_prefix)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def monitors(tmp_path):
    started = test_monitor.Monitors(tmp_path)
    yield started
    for m in started.items:
        m.kill()


def targets(hooks):
    return {"dashboard_url": "https://room.example.cn/",
            "targets": [
                {"name": "duty-wecom", "format": "wecom", "url": hooks.url("/cgi-bin/webhook/send?key=room-key"),
                 "ca_file": str(hooks.cert), "severities": [1]},
                {"name": "gas-dingtalk", "format": "dingtalk", "url": hooks.url("/robot/send?access_token=t"),
                 "secret": DING_SECRET, "ca_file": str(hooks.cert), "checks": ["sensor"], "labels": ["leak"], "on": ["open", "end"]},
                {"name": "archive", "url": hooks.url("/archive"), "ca_file": str(hooks.cert)},
                # The same server without its CA: the system's CAs do not vouch for it.
                {"name": "untrusted", "url": hooks.url("/untrusted")},
            ]}


def gas_leak(event_id, state="start"):
    """A gas detector's alert as the gateway sends it (mqtt.md, Sensor events): the check is sensor,
    the label the threshold's."""
    msg = test_monitor.event(event_id, SITE, state=state, check="sensor", label="leak", severity=2)
    del msg["camera"]
    msg.update({"sensor": "kitchen-gas", "value": 1, "unit": ""})
    return msg


def publish(broker, *messages):
    client = test_monitor.publisher(broker)
    try:
        test_monitor.publish_all(client, [(f"kitchen/{SITE}/events", json.dumps(m)) for m in messages])
    finally:
        client.loop_stop()
        client.disconnect()


def test_each_target_gets_what_it_asked_for_once(broker, monitors, tmp_path):
    hooks = Webhooks(tmp_path)
    try:
        mon = monitors(broker, extra={"notify": targets(hooks)})
        mask = test_monitor.event("19ab3c0f2e1-0000000000000001", SITE, check="mask", label="no_mask", severity=1)
        gas = gas_leak("19ab3c0f2e1-0000000000000002")
        # The mask alert twice (a redelivered copy), the gas alert, then the gas alert's end.
        publish(broker, mask, mask, gas)
        kg_e2e.wait_until(lambda: len(hooks.received("/archive")) >= 2 and hooks.received("/cgi-bin")
                          and hooks.received("/robot"), 20, what="the notifications of both alerts")
        gas_end = gas_leak(gas["id"], state="end")
        gas_end["end_reason"] = "cleared"
        publish(broker, gas_end)
        kg_e2e.wait_until(lambda: len(hooks.received("/robot")) >= 2, 20, what="the gas alert's end")
        time.sleep(2)  # anything sent twice would have come by now: the queue is polled every second

        wecom = hooks.received("/cgi-bin")
        assert len(wecom) == 1, wecom  # the mask alert once, the gas alert (severity 2) not at all
        assert wecom[0]["body"]["msgtype"] == "markdown"
        content = wecom[0]["body"]["markdown"]["content"]
        assert "**Alert, severity 1 (urgent): mask / no_mask**" in content, content
        assert f"> Site: {SITE}" in content and "> Where: camera cooking" in content, content
        assert f"(https://room.example.cn/#alert={mask['id']})" in content, content

        ding = hooks.received("/robot")
        assert [d["body"]["markdown"]["title"] for d in ding] == [
            f"Alert: sensor / leak at {SITE}", f"Ended: sensor / leak at {SITE}"], ding
        assert "**Ended: sensor / leak** (cleared)" in ding[1]["body"]["markdown"]["text"]
        assert "> Where: sensor kitchen-gas" in ding[1]["body"]["markdown"]["text"]

        archive = hooks.received("/archive")
        assert sorted(a["body"]["alert"]["id"] for a in archive) == sorted([mask["id"], gas["id"]]), archive
        assert all(a["body"]["kind"] == "open" and a["type"] == "application/json" for a in archive)
        first = next(a["body"] for a in archive if a["body"]["alert"]["id"] == mask["id"])
        assert first["alert"]["site"] == SITE and first["alert"]["check"] == "mask" and first["alert"]["severity"] == 1
        assert first["link"] == f"https://room.example.cn/#alert={mask['id']}"
        assert first["key"] == f"{mask['id']}:open"

        assert not hooks.received("/untrusted")  # never past the TLS handshake
        assert "notifications to untrusted failing: TLS handshake: certificate verify failed" in mon.output()

        metrics = mon.get("/metrics").decode()
        for line in ['kgm_notifications_total{target="duty-wecom",result="sent"} 1',
                     'kgm_notifications_total{target="gas-dingtalk",result="sent"} 2',
                     'kgm_notifications_total{target="archive",result="sent"} 2',
                     'kgm_notification_failures_total{target="gas-dingtalk"} 0',
                     'kgm_notifications_queued{target="archive"} 0']:
            assert line in metrics, (line, metrics)
        # Refused at every try, and tried with back-off (5 s, then 10 s), not at every new alert.
        failures = int(re.search(r'^kgm_notification_failures_total\{target="untrusted"\} (\d+)$', metrics, re.M)[1])
        assert 1 <= failures <= 2, metrics
        assert 'kgm_notifications_queued{target="untrusted"} 2' in metrics
    finally:
        hooks.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_notification_waits_for_a_target_that_is_down_across_a_restart(broker, monitors, tmp_path):
    port = free_port()
    hook = {"dashboard_url": "https://room.example.cn/",
            "targets": [{"name": "archive", "url": f"https://localhost:{port}/archive",
                         "ca_file": str(tmp_path / "hook-cert.pem")}]}
    Webhooks(tmp_path).close()  # makes the certificate the config names; nothing listens on `port`
    db = tmp_path / "room.db"
    mon = monitors(broker, db=db, extra={"notify": hook})
    alert = test_monitor.event("19ab3c0f2e1-0000000000000003", SITE, check="mask", label="no_mask", severity=1)
    publish(broker, alert)
    kg_e2e.wait_until(lambda: "notifications to archive failing: connect: Connection refused" in mon.output(), 15,
                      what="the failed attempt in the monitor's log")
    assert 'kgm_notifications_queued{target="archive"} 1' in mon.get("/metrics").decode()
    mon.kill()  # SIGKILL: nothing is handed over but the database

    again = monitors(broker, name="monitor-2", db=db, extra={"notify": hook})
    assert "1 notification(s) to archive waiting from before" in again.output()
    hooks = Webhooks(tmp_path, port=port)
    try:
        kg_e2e.wait_until(lambda: hooks.received("/archive"), 30, what="the notification once the target is back")
        time.sleep(2)
        got = hooks.received("/archive")
        assert len(got) == 1 and got[0]["body"]["alert"]["id"] == alert["id"], got
        assert "notifications to archive delivered again" in again.output() or \
            'kgm_notifications_total{target="archive",result="sent"} 1' in again.get("/metrics").decode()
        assert 'kgm_notifications_queued{target="archive"} 0' in again.get("/metrics").decode()
    finally:
        hooks.close()
