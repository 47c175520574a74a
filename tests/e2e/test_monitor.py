"""kitchen-monitor, the monitoring room's side, against real peers: a real Mosquitto, a real gateway,
two monitor instances on one MQTT shared subscription, and the dashboard in real headless Chromium.

1. A real gateway's alert (a camera going black) reaches the monitor's API with its snapshot, the
   site shows online with a heartbeat and goes offline when the gateway stops; a redelivered copy of
   the gateway's own message is shown once.
2. Two instances in one share group split N events published at QoS 1: union == N, intersection
   empty, both took some; with one shared database, every message delivered twice is still one alert.
3. The dashboard: an alert published while the page is open (by a test client, then by a real
   gateway whose camera goes black) appears without a reload; clicking
   Acknowledge publishes a decision on kitchen/<site>/decisions/<id> that a test client receives (and
   that matches docs/schemas/decision.schema.json); closing with a note publishes a second one. The
   screenshot is kept as monitor-dashboard.png in the test's folder."""

import base64
import datetime
import http.client
import json
import os
import pathlib
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest
import yaml

import kg_e2e

MONITOR_BIN = os.environ.get("KG_MONITOR_BIN", str(kg_e2e.SOURCE_DIR / "build/gateway/kitchen-monitor"))
OPERATOR, PASSWORD = "wang", "correct-horse-battery"


class Monitor:
    """The kitchen-monitor process on a generated config; its log is <workdir>/<name>.log."""

    def __init__(self, workdir, broker, name="monitor", share_group=None, db=None, extra=None):
        self.workdir = pathlib.Path(workdir)
        self.name = name
        cfg = {
            "mqtt": {"url": broker.url, "client_id": f"e2e-{name}-{os.getpid()}",
                     "reconnect": {"min": "200ms", "max": "1s"}},
            "db": {"path": str(db or self.workdir / f"{name}.db")},
            "http": {"listen": "127.0.0.1:0", "operators": [{"name": OPERATOR, "password": PASSWORD}]},
            "heartbeat_timeout": "10s",
            "log": {"level": "debug"},
        }
        if share_group:
            cfg["mqtt"]["share_group"] = share_group
        cfg.update(extra or {})
        self.config_path = self.workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.log_path = self.workdir / f"{name}.log"
        # A monitor started again under the same name appends to the same log: only this run's lines
        # tell its port and its connection.
        begin = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([MONITOR_BIN, "--config", str(self.config_path)], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        found = kg_e2e.wait_until(lambda: self._check_alive() and re.search(r"dashboard on \S+ \(port (\d+)\)",
                                                                            self._output_since(begin)), 10,
                                  what=f"{name}'s dashboard port")
        self.port = int(found.group(1))
        kg_e2e.wait_until(lambda: self._check_alive() and "[mqtt] connected" in self._output_since(begin), 10,
                          what=f"{name} connected to the broker")

    def _check_alive(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
        return True

    def output(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _output_since(self, offset):
        return self.log_path.read_bytes()[offset:].decode(errors="replace") if self.log_path.exists() else ""

    def request(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        auth = base64.b64encode(f"{OPERATOR}:{PASSWORD}".encode()).decode()
        headers = {"Authorization": f"Basic {auth}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        ctype = r.getheader("Content-Type") or ""
        return r.status, (json.loads(data) if ctype.startswith("application/json") else data)

    def get(self, path):
        status, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        return body

    def alert_ids(self):
        return [a["id"] for a in self.get("/api/alerts?status=all&limit=5000")]

    def metric(self, name):
        text = self.get("/metrics").decode()
        m = re.search(rf"^{re.escape(name)} (\d+)$", text, re.M)
        return int(m.group(1)) if m else None

    def terminate(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)
        self.log.close()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()

    def failure_report(self):
        return [(f"{self.name} log {self.log_path}", kg_e2e.tail(self.log_path))]


class Monitors:
    """Factory fixture value: monitors(broker, name=..., share_group=..., db=...)."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.items = []

    def __call__(self, broker, **kwargs):
        m = Monitor(self.workdir, broker, **kwargs)
        self.items.append(m)
        return m

    def failure_report(self):
        return [s for m in self.items for s in m.failure_report()]


@pytest.fixture
def monitors(tmp_path):
    started = Monitors(tmp_path)
    yield started
    for m in started.items:
        m.kill()


def now_iso(offset_s=0.0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_s)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def event(event_id, site, state="start", camera="cooking", check="bin_lid", label="open", severity=2):
    """An event message in the gateway's exact format (docs/schemas/event.schema.json)."""
    msg = {"message_id": f"{event_id}:{state}", "id": event_id, "site": site, "camera": camera, "check": check,
           "label": label, "severity": severity, "state": state, "start_time": now_iso(-5), "end_time": None,
           "time": now_iso(), "score": 0.9, "top_score": 0.9, "boxes": [], "zone": None,
           "evidence": {"snapshot": None, "snapshot_end": None, "clip": None, "errors": []}}
    if state == "end":
        msg["end_time"] = now_iso()
        msg["duration_s"] = 5.0
    return msg


def publisher(broker):
    client = mqtt.Client(client_id=f"e2e-pub-{os.getpid()}-{time.time_ns()}", clean_session=True)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def publish_all(client, messages, retain=False):
    """Publishes (topic, payload) at QoS 1 and waits for every PUBACK."""
    infos = [client.publish(topic, payload, qos=1, retain=retain) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(10)
        assert info.is_published()


def black_clip(clips):
    """A camera that goes black after a second (its alert comes about 3 s after the start) and stays
    so until 24 s, when the file ends and the camera goes offline: longer than these tests need it."""
    return clips("black-monitor", [("normal", 1), ("black", 23)])


def test_real_gateway_alert_reaches_the_monitor(broker, collector, clips, gateways, monitors, schemas, tmp_path):
    mon = monitors(broker)
    cam = kg_e2e.camera("cam", black_clip(clips), input={"loop": False})
    # A push with the public side off: pushes nothing, a warning the room is told of.
    gw = gateways(kg_e2e.base_config(broker, [cam], tmp_path,
                                     public={"rtmp_push": "rtmp://127.0.0.1:1/live/{site}-{camera}"}))

    alert = kg_e2e.wait_until(lambda: [a for a in mon.get("/api/alerts") if a["check"] == "camera_health"], 30,
                              what="the gateway's camera_health alert in the monitor")[0]
    start = [e for e in collector.events() if e["state"] == "start"][0]
    schemas.validate("kitchen/test-site/events", json.dumps(start).encode())
    assert alert["id"] == start["id"] and alert["site"] == "test-site" and alert["camera"] == "cam"
    assert alert["label"] == start["label"] and alert["severity"] == start["severity"] and alert["status"] == "open"
    kg_e2e.wait_until(lambda: mon.get(f"/api/alerts/{start['id']}")["has_snapshot"], 10, what="the snapshot")
    status, jpeg = mon.request("GET", f"/api/alerts/{start['id']}/snapshot.jpg")
    assert status == 200 and jpeg[:2] == b"\xff\xd8"
    assert jpeg == collector.on(f"kitchen/test-site/events/{start['id']}/snapshot")[0][1]

    site = kg_e2e.wait_until(lambda: [s for s in mon.get("/api/sites") if s["site"] == "test-site" and s["cameras"]],
                             10, what="the site and its camera")[0]
    assert site["state"] == "online" and site["name"] == "Test canteen" and site["heartbeat_age_s"] < 5
    assert site["cameras"][0]["camera"] == "cam"
    gateway_message = collector.json_on("kitchen/test-site/gateway")[-1]
    schemas.validate("kitchen/test-site/gateway", json.dumps(gateway_message).encode())
    assert len(site["config_warnings"]) == 1, site
    assert site["config_warnings"] == gateway_message["config_warnings"]
    assert site["config_warnings"][0].startswith("public.rtmp_push is set but public.listen is not")

    # The broker redelivers the gateway's own start message (a lost PUBACK): still one alert, one message.
    before = mon.metric('kgm_messages_total{outcome="duplicate"}')
    raw = [m[1] for m in collector.on("kitchen/test-site/events") if json.loads(m[1])["message_id"] == start["message_id"]][0]
    pub = publisher(broker)
    publish_all(pub, [("kitchen/test-site/events", raw)] * 3)
    kg_e2e.wait_until(lambda: mon.metric('kgm_messages_total{outcome="duplicate"}') >= before + 3, 10,
                      what="three duplicates counted")
    assert mon.alert_ids().count(start["id"]) == 1
    detail = mon.get(f"/api/alerts/{start['id']}")
    assert [h["message_id"] for h in detail["history"]].count(start["message_id"]) == 1

    # Bad input is refused with a log line naming what and where, and the monitor keeps working.
    refused = mon.metric('kgm_messages_total{outcome="refused"}')
    forged = dict(start, site="other-site")  # a site publishing about another site's alert
    publish_all(pub, [("kitchen/test-site/events", b"\x00garbage"), ("kitchen/test-site/events", json.dumps(forged)),
                      (f"kitchen/test-site/events/{start['id']}/snapshot", b"not a jpeg")])
    kg_e2e.wait_until(lambda: mon.metric('kgm_messages_total{outcome="refused"}') == refused + 3, 10,
                      what="three refused messages")
    assert "refused message on kitchen/test-site/events: not JSON: parse error at line 1, column 1" in mon.output()
    assert "site 'other-site' in the payload, 'test-site' in the topic" in mon.output()
    conn = http.client.HTTPConnection("127.0.0.1", mon.port, timeout=10)
    conn.request("GET", "/api/alerts")
    assert conn.getresponse().status == 401  # no operator, no data
    conn.close()
    assert mon.request("POST", f"/api/alerts/{start['id']}/close", {"note": "done"})[0] == 409  # not acknowledged yet
    assert mon.request("POST", f"/api/alerts/{start['id']}/acknowledge", None)[0] == 415  # JSON only
    assert mon.request("GET", "/api/alerts/../../etc/passwd")[0] == 404
    assert mon.request("GET", "/api/alerts?severity=9")[0] == 400
    assert mon.get(f"/api/alerts/{start['id']}")["status"] == "open"
    pub.disconnect()

    assert gw.terminate() == 0
    kg_e2e.wait_until(lambda: [s for s in mon.get("/api/sites") if s["site"] == "test-site"][0]["state"] == "offline",
                      10, what="the site offline after the gateway stopped")
    assert mon.terminate() == 0


def test_alerts_a_replaced_outbox_left_open_are_ended_by_the_room(broker, clips, gateways, monitors, tmp_path):
    """A gateway killed with an alert open whose outbox is then found damaged: the next run moves it aside
    and starts a new stream, and the end the old file would have sent never comes. The room ends it."""
    mon = monitors(broker)
    cam = kg_e2e.camera("cam", black_clip(clips), input={"loop": True})
    cfg = kg_e2e.base_config(broker, [cam], tmp_path)
    first = gateways(cfg, "first")
    old = kg_e2e.wait_until(lambda: [a for a in mon.get("/api/alerts") if a["check"] == "camera_health"], 30,
                            what="the first run's camera_health alert in the monitor")[0]
    first.kill()  # SIGKILL: the alert stays open in the outbox, to be ended at the next start
    for leftover in tmp_path.glob("outbox.db*"):
        leftover.unlink()
    (tmp_path / "outbox.db").write_bytes(bytes(range(256)) * 32)  # the disk mangled it
    gateways(cfg, "second")
    kg_e2e.wait_until(lambda: mon.get(f"/api/alerts/{old['id']}")["condition"] == "end", 30,
                      what="the old alert ended by the room")
    ended = mon.get(f"/api/alerts/{old['id']}")
    assert ended["end_reason"] == "outbox replaced", ended
    assert ended["status"] == "open"  # ended is not handled: the operator still closes it
    assert re.search(r"test-site: 1 alert\(s\) it left open ended as 'outbox replaced'", mon.output())
    # The second run raises the condition again under an id of its own, and that one stays open.
    fresh = kg_e2e.wait_until(
        lambda: [a for a in mon.get("/api/alerts") if a["check"] == "camera_health" and a["id"] != old["id"]
                 and a["condition"] != "end"], 30, what="the second run's alert")[0]
    assert fresh["id"] != old["id"]


def test_a_camera_and_a_sensor_taken_out_of_the_configuration_leave_the_room(broker, clips, gateways, monitors,
                                                                             tmp_path):
    """An installer removes a camera and a sensor and reloads: the room showed them offline for good.
    The gateway message lists what the site has; the room forgets the rest, the reload clears their
    retained states on the broker, and states a broker still holds from before (an older gateway, a
    restart with an edited configuration) do not bring them back when the monitor restarts."""
    mon = monitors(broker)
    clip = black_clip(clips)
    cfg = kg_e2e.base_config(broker, [kg_e2e.camera("cooking", clip, input={"loop": True}),
                                      kg_e2e.camera("store", clip, input={"loop": True})], tmp_path)
    cfg["sensors"] = [{"id": "fridge", "source": {"mqtt": {"topic": "t/fridge"}}},
                      {"id": "freezer", "source": {"mqtt": {"topic": "t/freezer"}}}]
    gw = gateways(cfg)

    def site():
        found = [s for s in mon.get("/api/sites") if s["site"] == "test-site"]
        return found[0] if found else {"cameras": [], "sensors": []}

    def ids(kind):
        return sorted(c["camera" if kind == "cameras" else "sensor"] for c in site()[kind])

    kg_e2e.wait_until(lambda: ids("cameras") == ["cooking", "store"] and ids("sensors") == ["freezer", "fridge"], 30,
                      what="both cameras and both sensors in the room")
    kg_e2e.wait_until(lambda: site().get("started_at"), 10, what="the gateway's run in the room")
    assert "reloaded_at" not in site(), site()
    cfg["cameras"] = cfg["cameras"][:1]
    cfg["sensors"] = cfg["sensors"][:1]
    gw.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    gw.proc.send_signal(signal.SIGHUP)
    kg_e2e.wait_until(lambda: ids("cameras") == ["cooking"] and ids("sensors") == ["fridge"], 30,
                      what="the removed camera and sensor forgotten")
    # And the reloaded run's gateway message in the room's database (CI's run under load restarted
    # the room below before it came: the room then still knew the old list, and took the states the
    # broker kept for the old list's camera and sensor, forgetting them again at the new message).
    # (A reload is not a restart: `started_at` stays, `reloaded_at` says it.)
    kg_e2e.wait_until(lambda: site().get("reloaded_at"), 30, what="the reloaded run's gateway message in the room")
    # The stopping run cleared their retained states: the room forgets them then, before the new
    # gateway message (which would make it forget them anyway).
    assert "test-site: camera store cleared from the broker: forgotten" in mon.output()
    assert "test-site: sensor freezer cleared from the broker: forgotten" in mon.output()
    # Nor does the broker keep them for other subscribers: the reload cleared their retained states.
    retained = kg_e2e.Collector(broker, topic="kitchen/test-site/+/+/state")
    kg_e2e.wait_until(lambda: {t for t, p, r, _ in retained.messages if r and p} >= {
        "kitchen/test-site/cameras/cooking/state", "kitchen/test-site/sensors/fridge/state"}, 10,
        what="the retained states of the camera and sensor kept")
    time.sleep(0.5)
    retained.close()
    left = {t for t, p, r, _ in retained.messages if r and p}
    assert left == {"kitchen/test-site/cameras/cooking/state", "kitchen/test-site/sensors/fridge/state"}, left
    # What a gateway of an older version, or one restarted with an edited configuration, leaves behind.
    pub = publisher(broker)
    publish_all(pub, [("kitchen/test-site/cameras/store/state", json.dumps(
                          {"site": "test-site", "camera": "store", "name": "store", "online": False})),
                      ("kitchen/test-site/sensors/freezer/state", json.dumps(
                          {"site": "test-site", "sensor": "freezer", "name": "freezer", "online": False}))],
                retain=True)
    pub.disconnect()
    # The monitor restarts: the broker hands it every retained state again, those left behind too.
    assert mon.terminate() == 0
    mon = monitors(broker, name="again", db=tmp_path / "monitor.db")
    kg_e2e.wait_until(lambda: "state of camera store, which its gateway no longer lists, ignored" in mon.output()
                      and "state of sensor freezer, which its gateway no longer lists, ignored" in mon.output(), 20,
                      what="the broker's retained states of the removed camera and sensor, ignored")
    assert ids("cameras") == ["cooking"] and ids("sensors") == ["fridge"]


def test_a_camera_removed_while_the_broker_is_down_is_cleared_when_it_is_back(clips, gateways, tmp_path):
    """A reload removes a camera while the broker is down: the stopping run's clear (an empty retained
    message) cannot go, and the next run has no such camera. It clears the removed camera's state on
    each of its connections, or the broker (persistent, as deployed) keeps the last state for good."""
    (tmp_path / "persistent").mkdir()
    broker = kg_e2e.Broker(tmp_path / "persistent", persistent=True)
    try:
        clip = black_clip(clips)
        cfg = kg_e2e.base_config(broker, [kg_e2e.camera("cooking", clip, input={"loop": True}),
                                          kg_e2e.camera("store", clip, input={"loop": True})], tmp_path)
        gw = gateways(cfg)
        store, cooking = "kitchen/test-site/cameras/store/state", "kitchen/test-site/cameras/cooking/state"
        kg_e2e.wait_until(lambda: kg_e2e.retained(broker, store) is not None, 20, what="the store camera's state")
        broker.stop()  # its retained messages are saved, as Mosquitto's persistence does
        cfg["cameras"] = cfg["cameras"][:1]
        gw.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        gw.proc.send_signal(signal.SIGHUP)
        kg_e2e.wait_until(lambda: ": 1 cameras," in gw.output(), 20, what="the reloaded run with one camera")
        broker.start()
        kg_e2e.wait_until(lambda: kg_e2e.retained(broker, cooking) is not None, 20, what="the kept camera's state")
        kg_e2e.wait_until(lambda: kg_e2e.retained(broker, store) is None, 10, what="the removed camera's state cleared")
        assert gw.terminate() == 0
    finally:
        broker.kill()


def test_two_instances_split_a_shared_subscription(broker, monitors, tmp_path):
    n = 200
    a = monitors(broker, name="monitor-a", share_group="room")
    b = monitors(broker, name="monitor-b", share_group="room")
    sites = [f"sch-{i:04d}" for i in range(5)]
    pub = publisher(broker)
    publish_all(pub, [(f"kitchen/{s}/availability", "online") for s in sites])
    ids = [f"19ab3c0f2e1-{i:016x}" for i in range(n)]
    messages = [(f"kitchen/{sites[i % 5]}/events", json.dumps(event(ids[i], sites[i % 5]))) for i in range(n)]
    t0 = time.time()
    publish_all(pub, messages)
    kg_e2e.wait_until(lambda: len(a.alert_ids()) + len(b.alert_ids()) >= n, 20, interval=0.3,
                      what=f"{n} alerts across the two instances")
    time.sleep(0.5)  # anything doubled would arrive now
    got_a, got_b = a.alert_ids(), b.alert_ids()
    print(f"{n} events split {len(got_a)} / {len(got_b)} in {time.time() - t0:.2f} s")
    assert len(got_a) == len(set(got_a)) and len(got_b) == len(set(got_b))
    assert set(got_a) | set(got_b) == set(ids), "missed"
    assert not set(got_a) & set(got_b), "doubled"
    assert got_a and got_b, "one instance took everything: the subscription is not shared"
    # The retained site state is not split: both instances know every site is online.
    for m in (a, b):
        kg_e2e.wait_until(lambda: sorted(s["site"] for s in m.get("/api/sites") if s["availability"] == "online") == sites,
                          5, what=f"{m.name} seeing every site online")
    assert a.terminate() == 0 and b.terminate() == 0

    # One database shared by two instances (one server, two processes): every message delivered
    # twice, whichever instance takes each copy, is still one alert.
    shared_db = tmp_path / "shared.db"
    c = monitors(broker, name="monitor-c", share_group="pair", db=shared_db)
    d = monitors(broker, name="monitor-d", share_group="pair", db=shared_db)
    ids2 = [f"19ab3c0f2e2-{i:016x}" for i in range(100)]
    once = [(f"kitchen/{sites[i % 5]}/events", json.dumps(event(ids2[i], sites[i % 5]))) for i in range(100)]
    publish_all(pub, once + once)
    handled = lambda m: m.metric('kgm_messages_total{outcome="created"}') + m.metric('kgm_messages_total{outcome="duplicate"}')
    kg_e2e.wait_until(lambda: handled(c) + handled(d) >= 200, 20, interval=0.3,
                      what="both copies of every message handled")
    shown = [i for i in c.alert_ids() if i.startswith("19ab3c0f2e2-")]
    assert sorted(shown) == sorted(ids2) and sorted(shown) == sorted(
        i for i in d.alert_ids() if i.startswith("19ab3c0f2e2-"))
    dups = c.metric('kgm_messages_total{outcome="duplicate"}') + d.metric('kgm_messages_total{outcome="duplicate"}')
    assert dups == 100, dups
    print(f"shared database: 200 deliveries -> {len(shown)} alerts, {dups} duplicates dropped")
    pub.disconnect()
    assert c.terminate() == 0 and d.terminate() == 0


def test_states_queued_while_the_room_is_away_leave_room_for_its_alerts(monitors, tmp_path):
    """The broker holds a bounded queue for the room's persistent session (max_queued_messages;
    30 here, 100000 in deploy/mosquitto for about 300 sites). Camera and sensor states come every
    10 s from every site and are retained: read at QoS 1 they were queued too, filled the queue
    within minutes of the room going away, and the broker then dropped its alerts. The room reads
    them at QoS 0: none is queued, the alert is there when the room is back."""
    (tmp_path / "small").mkdir()
    broker = kg_e2e.Broker(tmp_path / "small", extra_conf="max_queued_messages 30\n")
    try:
        room = monitors(broker, name="room")
        assert room.terminate() == 0  # away: its session (clean_session false) stays at the broker
        pub = publisher(broker)
        state = {"site": "sch-0001", "name": "Cooking", "online": True, "fps_in": 25.0, "fps_analysed": 2.0,
                 "frames_dropped": 0, "reconnects_1h": 0, "stalls_1h": 0, "decode_errors": 0, "conditions": []}
        publish_all(pub, [(f"kitchen/sch-0001/cameras/cam{i % 4}/state",
                           json.dumps({**state, "camera": f"cam{i % 4}", "last_frame_time": now_iso(),
                                       "time": now_iso()}), ) for i in range(100)], retain=True)
        alert = "19ab3c0f2e3-0000000000000001"
        publish_all(pub, [("kitchen/sch-0001/events", json.dumps(event(alert, "sch-0001")))])
        pub.disconnect()
        back = monitors(broker, name="room")
        kg_e2e.wait_until(lambda: alert in back.alert_ids(), 10, interval=0.3,
                          what="the alert published while the room was away")
        # The states are current all the same: the retained ones, sent again at the subscription.
        kg_e2e.wait_until(lambda: len([c for s in back.get("/api/sites") for c in s.get("cameras", [])]) == 4, 10,
                          what="the four cameras' retained states")
        assert back.terminate() == 0
    finally:
        broker.stop()


def test_retention_deletes_closed_alerts_and_old_curves(broker, monitors, tmp_path):
    """Months of a room's records do not fill its disk: a closed alert past `retention.alerts` goes with
    its history and picture, an open one of the same age stays, old roll-ups go, and a late copy of the
    deleted alert's start does not bring it back."""
    site = "sch-0301"
    db = tmp_path / "retention.db"
    extra = {"retention": {"alerts": "2d", "snapshots": "1d", "rollups": "1d"}}
    mon = monitors(broker, name="retention-1", db=db, extra=extra)
    pub = publisher(broker)
    closed, still_open = event("19ab3c0f2f0-00000000000000c1", site), event("19ab3c0f2f0-00000000000000c2", site)
    minute = lambda days: (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days)).strftime(
        "%Y-%m-%dT%H:%M:00.000Z")
    publish_all(pub, [(f"kitchen/{site}/availability", "online"),
                      (f"kitchen/{site}/events", json.dumps(closed)),
                      (f"kitchen/{site}/events", json.dumps(still_open)),
                      (f"kitchen/{site}/events/{closed['id']}/snapshot", jpeg_bytes()),
                      (f"kitchen/{site}/events/{still_open['id']}/snapshot", jpeg_bytes())] +
                [(f"kitchen/{site}/sensors/fridge1/rollup", json.dumps(
                    {"site": site, "sensor": "fridge1", "unit": "degC", "minute": minute(d), "min": 2.0,
                     "mean": 3.0, "max": 4.0, "count": 6})) for d in (0, 3)])
    kg_e2e.wait_until(lambda: {closed["id"], still_open["id"]} <= set(mon.alert_ids()), 10, what="both alerts")
    for action, body in (("acknowledge", {}), ("close", {"note": "cleaned"})):
        assert mon.request("POST", f"/api/alerts/{closed['id']}/{action}", body)[0] == 200
    # A closed alert whose decision the site has not heard yet is kept: wait until it is published.
    kg_e2e.wait_until(lambda: "(close by wang)" in mon.output(), 10, what="the close decision published")
    assert (mon.metric('kgm_alerts{status="open"}'), mon.metric('kgm_alerts{status="closed"}')) == (1, 1)
    assert mon.terminate() == 0
    # Three days pass: the records are dated back, as they would be after three days of running.
    back = lambda column: f"{column} = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-3 days')"
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE alerts SET {back('closed_at')}, {back('received_at')} WHERE closed_at IS NOT NULL")
        conn.execute(f"UPDATE alerts SET {back('received_at')}")
        conn.execute(f"UPDATE snapshots SET {back('received_at')}")
    mon = monitors(broker, name="retention-2", db=db, extra=extra)
    kg_e2e.wait_until(lambda: "closed alerts 1 (with their history and pictures), other snapshots 0, sensor roll-ups 1" in mon.output(),
                      10, what="the retention pass at start")
    assert mon.alert_ids() == [still_open["id"]]
    assert mon.request("GET", f"/api/alerts/{closed['id']}")[0] == 404
    assert mon.request("GET", f"/api/alerts/{still_open['id']}/snapshot.jpg")[0] == 200  # open: its picture stays
    sensors = mon.get(f"/api/sites/{site}/rollups?from={minute(5)}&to={minute(-1)}")["sensors"]
    assert [p["minute"] for p in sensors[0]["points"]] == [minute(0)], sensors
    # A late copy of the deleted alert's start (it started three days ago) is not an alert again.
    late = dict(closed, start_time=now_iso(-3 * 86400), message_id=closed["message_id"])
    publish_all(pub, [(f"kitchen/{site}/events", json.dumps(late))])
    kg_e2e.wait_until(lambda: mon.metric('kgm_messages_total{outcome="expired"}') == 1, 10, what="the late copy expired")
    assert mon.alert_ids() == [still_open["id"]]
    pub.disconnect()
    assert mon.terminate() == 0


class LiveStream(threading.Thread):
    """The monitor's /api/stream as a dashboard holds it: the (event, data) pairs, as they come."""

    def __init__(self, mon):
        super().__init__(daemon=True)
        auth = base64.b64encode(f"{OPERATOR}:{PASSWORD}".encode()).decode()
        self.conn = http.client.HTTPConnection("127.0.0.1", mon.port, timeout=30)
        self.conn.request("GET", "/api/stream", headers={"Authorization": f"Basic {auth}"})
        self.sock = self.conn.sock  # the response takes it over
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        self.events = []
        self.lock = threading.Lock()
        self.start()

    def run(self):
        event, data = None, []
        try:
            for line in self.response:
                line = line.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line:
                    if event:
                        with self.lock:
                            self.events.append((event, json.loads("\n".join(data))))
                    event, data = None, []
        except (OSError, ValueError):
            pass  # closed by close()

    def of(self, kind):
        with self.lock:
            return [d for e, d in self.events if e == kind]

    def rows(self, site):
        """The rows of `site` the "sites" events carried, in order."""
        return [r for d in self.of("sites") for r in d["rows"] if r.get("site") == site]

    def close(self):
        try:
            self.sock.shutdown(2)
        except OSError:
            pass


def test_a_burst_of_states_reaches_the_dashboards_as_one_row_a_site_a_second(broker, monitors):
    """A city's room takes hundreds of state messages a second. The open dashboards get, for each site,
    at most one update a second carrying the site's row as /api/sites lists it (its last values, its
    open alerts), not one event a message upon which each dashboard fetched every site again
    (bench/monitor_dashboards.py measures what that cost)."""
    mon = monitors(broker)
    live = LiveStream(mon)
    site, other = "sch-0301", "sch-0302"
    pub = publisher(broker)
    t0 = time.monotonic()
    messages = []
    for i in range(150):
        for s in (site, other):
            state = {"site": s, "sensor": "fridge", "name": "Fridge", "kind": "temperature", "location": "fridge",
                     "unit": "°C", "online": True, "value": round(i * 0.1, 1), "reading_time": now_iso(),
                     "conditions": [], "time": now_iso()}
            messages.append((f"kitchen/{s}/sensors/fridge/state", json.dumps(state)))
    alert_id = "19ab3c0f2e9-0000000000000301"
    messages.append((f"kitchen/{site}/events", json.dumps(event(alert_id, site))))
    publish_all(pub, messages)

    def last_row(s):
        rows = live.rows(s)
        return rows[-1] if rows else None

    kg_e2e.wait_until(lambda: (last_row(site) or {}).get("open_alerts") == 1, 10,
                      what=f"{site}'s row with its alert on the live stream")
    kg_e2e.wait_until(lambda: live.of("alert"), 5, what="the alert itself on the live stream")
    time.sleep(1.5)  # a further update would come now
    elapsed = time.monotonic() - t0
    live.close()
    pub.disconnect()
    frames = live.of("sites")
    assert not live.of("site"), "an event a message, as before"
    assert len(frames) <= elapsed + 2, f"{len(frames)} frames in {elapsed:.1f} s"
    for s in (site, other):
        updates = live.rows(s)
        print(f"{s}: 150 state messages -> {len(updates)} live updates in {elapsed:.1f} s")
        assert len(updates) <= elapsed + 2, f"{len(updates)} updates of {s} in {elapsed:.1f} s"
        row = updates[-1]
        assert [x["value"] for x in row["sensors"]] == [14.9]
        assert row["state"] in ("online", "silent", "unknown") and "heartbeat_age_s" in row
        assert row == next(x for x in mon.get("/api/sites") if x["site"] == s) | {
            "heartbeat_age_s": row["heartbeat_age_s"]}
    assert last_row(other)["open_alerts"] == 0
    assert mon.terminate() == 0


selenium = pytest.importorskip("selenium", reason="python3-selenium is not installed")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path):
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("chromium and chromium-driver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_path=str(tmp_path / "chromedriver.log")),
                              options=options)
    yield driver
    driver.quit()


def click(browser, css, timeout=10):
    """Clicks the element `css` matches, again if the page re-rendered it under the pointer."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt():
        try:
            browser.find_element(By.CSS_SELECTOR, css).click()
            return True
        except StaleElementReferenceException:
            return False
    kg_e2e.wait_until(attempt, timeout, what=f"a click on {css}")


def text_of(browser, selector):
    """The text of the element `selector` finds, or "" while there is none: the page redraws its rows
    as updates come, and an element found a moment before may be gone when its text is read."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    try:
        return browser.find_element(By.CSS_SELECTOR, selector).text
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def jpeg_bytes():
    import cv2
    import numpy as np
    img = np.full((180, 320, 3), (60, 90, 120), np.uint8)
    cv2.rectangle(img, (200, 100), (260, 160), (0, 0, 255), 3)
    cv2.putText(img, "bin lid open", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    return cv2.imencode(".jpg", img)[1].tobytes()


def test_behind_a_trusted_proxy_a_password_guesser_holds_up_only_its_own_address(broker, monitors):
    """Behind the TLS proxy docs/monitor.md asks for, every request comes from the proxy's address. The
    proxy named in http.trusted_proxies is believed about the client (X-Forwarded-For): a guesser
    holds up the sign-in of its own address only, not of every operator behind the proxy."""
    mon = monitors(broker, extra={"http": {"listen": "127.0.0.1:0", "trusted_proxies": ["127.0.0.1"],
                                           "operators": [{"name": OPERATOR, "password": PASSWORD}]}})

    def login(password, client):
        conn = http.client.HTTPConnection("127.0.0.1", mon.port, timeout=10)
        conn.request("POST", "/api/login", body=json.dumps({"operator": OPERATOR, "password": password}),
                     headers={"Content-Type": "application/json", "X-Forwarded-For": f"198.51.100.1, {client}"})
        r = conn.getresponse()
        r.read()
        conn.close()
        return r.status

    guesser, colleague = "203.0.113.66", "203.0.113.10"
    assert [login("wrong", guesser) for _ in range(5)] == [401] * 5
    assert login(PASSWORD, guesser) == 429, "the guesser's address is not held up"
    assert login(PASSWORD, colleague) == 200, "an operator behind the same proxy was held up too"
    kg_e2e.wait_until(lambda: f"from {guesser}" in mon.output(), 5, what="the guesser's own address in the log")
    assert "198.51.100.1" not in mon.output(), "an address the client wrote, left of the proxy's, was believed"


def test_dashboard_in_chromium(broker, monitors, browser, schemas, clips, gateways, tmp_path):
    mon = monitors(broker)
    decisions = kg_e2e.Collector(broker, topic="kitchen/+/decisions/#")
    pub = publisher(broker)
    site = "sch-0101"
    # What a site's gateway leaves on the broker, and some of today's fridge curve.
    now = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
    midnight = datetime.datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    rollups = []
    for k in range(60, 0, -1):
        minute = now - datetime.timedelta(minutes=k)
        if minute < midnight:
            continue
        v = 3.0 + 1.5 * ((k % 20) / 20)
        rollups.append((f"kitchen/{site}/sensors/fridge1/rollup", json.dumps(
            {"site": site, "sensor": "fridge1", "unit": "degC", "minute": minute.strftime("%Y-%m-%dT%H:%M:00.000Z"),
             "min": v - 0.2, "mean": v, "max": v + 0.2, "count": 6})))
    publish_all(pub, [(f"kitchen/{site}/availability", "online"),
                      (f"kitchen/{site}/gateway", json.dumps({"site": site, "name": "No. 1 Primary School canteen",
                                                              "version": "0.1.0", "started_at": now_iso(-3600),
                                                              "cameras": [], "time": now_iso(),
                                                              "config_warnings": [
                                                                  "sensor 'fridge1': threshold 'warm' <b>x</b>"]})),
                      (f"kitchen/{site}/sensors/fridge1/state", json.dumps(
                          {"site": site, "sensor": "fridge1", "name": "Fridge 1", "kind": "temperature",
                           "location": "fridge", "unit": "degC", "online": True, "value": 3.4,
                           "reading_time": now_iso(), "conditions": [], "time": now_iso()}))] + rollups)

    browser.get(f"http://127.0.0.1:{mon.port}/")
    kg_e2e.wait_until(lambda: browser.find_element(By.ID, "login-operator").is_displayed(), 10, what="the sign-in form")
    browser.find_element(By.ID, "login-operator").send_keys(OPERATOR)
    browser.find_element(By.ID, "login-password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login-submit").click()
    kg_e2e.wait_until(lambda: browser.find_element(By.ID, "live").text == "live", 10, what="the live stream")
    kg_e2e.wait_until(lambda: site in browser.find_element(By.ID, "sites").text, 10, what="the site listed")
    browser.execute_script("window.__noReload = 42")

    # An alert published now appears without a reload.
    event_id = "19ab3c0f2e1-0123456789abcdef"
    publish_all(pub, [(f"kitchen/{site}/events", json.dumps(event(event_id, site, severity=1))),
                      (f"kitchen/{site}/events/{event_id}/snapshot", jpeg_bytes())])
    row = f'tr.alert[data-id="{event_id}"]'
    kg_e2e.wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, row), 10, what="the alert row on the page")
    assert browser.execute_script("return window.__noReload") == 42, "the page reloaded"
    kg_e2e.wait_until(lambda: "bin_lid / open" in text_of(browser, row), 10, what="the alert's check and label")
    # Its site's row counts it, and shows a new fridge reading, from the row on the live stream: the
    # page fetches the whole list only every 20 s.
    site_row = f'#sites tr[data-site="{site}"]'
    # Read in one script: the live updates replace the table's rows under a found element.
    row_text = lambda: browser.execute_script(
        "const r = document.querySelector(arguments[0]); return r ? r.textContent : ''", site_row)
    kg_e2e.wait_until(lambda: "1 (1 tier 1)" in row_text(), 5, what="the site's open alert counted")
    # What its gateway warned of its configuration, under its name, as text (not markup).
    assert "configuration: sensor 'fridge1': threshold 'warm' <b>x</b>" in row_text()
    publish_all(pub, [(f"kitchen/{site}/sensors/fridge1/state", json.dumps(
        {"site": site, "sensor": "fridge1", "name": "Fridge 1", "kind": "temperature", "location": "fridge",
         "unit": "degC", "online": True, "value": 7.7, "reading_time": now_iso(), "conditions": [],
         "time": now_iso()}))])
    kg_e2e.wait_until(lambda: "fridge1: 7.7 degC" in row_text(), 5, what="the new reading in the site's row")

    # Acknowledge in the page -> a decision on the site's topic.
    click(browser, f'button.ack[data-id="{event_id}"]')
    topic = f"kitchen/{site}/decisions/{event_id}"
    decision = kg_e2e.wait_until(lambda: decisions.json_on(topic), 10, what="the decision on MQTT")[0]
    errors = list(schemas.validators["decision"].iter_errors(decision))
    assert not errors, errors
    assert decision["action"] == "acknowledge" and decision["status"] == "acknowledged"
    assert decision["operator"] == OPERATOR and decision["event_id"] == event_id and decision["site"] == site
    assert decision["alert"]["severity"] == 1 and decision["alert"]["camera"] == "cooking"

    # The alert's detail: its snapshot, then closed with what was done.
    click(browser, row)
    kg_e2e.wait_until(lambda: browser.execute_script(
        "const i = document.getElementById('d-snapshot'); return i.complete && i.naturalWidth === 320"), 10,
        what="the snapshot shown")
    kg_e2e.wait_until(lambda: browser.find_element(By.ID, "d-close").is_enabled(), 5, what="Close enabled")
    # Acknowledged: only the close deadline is still to meet (tier 1 has both by default).
    facts = browser.find_element(By.ID, "d-facts").text
    assert "close by" in facts and "acknowledge by" not in facts, facts
    browser.find_element(By.ID, "d-note").send_keys("Lid closed, staff reminded.")
    browser.find_element(By.ID, "d-close").click()
    closed = kg_e2e.wait_until(lambda: [d for d in decisions.json_on(topic) if d["action"] == "close"], 10,
                               what="the close decision")[0]
    assert closed["note"] == "Lid closed, staff reminded." and closed["status"] == "closed"
    assert not list(schemas.validators["decision"].iter_errors(closed))
    kg_e2e.wait_until(lambda: "sent to site" in browser.find_element(By.ID, "d-actions").text, 10,
                      what="the handling history")
    kg_e2e.wait_until(lambda: "Status closed" in browser.find_element(By.ID, "d-facts").text, 10,
                      what="the detail showing it closed")
    facts = browser.find_element(By.ID, "d-facts").text
    assert "close by" not in facts and "acknowledge by" not in facts, facts
    assert mon.get(f"/api/alerts/{event_id}")["closed_by"] == OPERATOR

    # A real gateway's alert (its camera goes black) appears on the open page, and acknowledging it
    # in the page reaches that site's topic.
    cam = kg_e2e.camera("cam", black_clip(clips), input={"loop": False})
    gw = gateways(kg_e2e.base_config(broker, [cam], tmp_path))
    real = kg_e2e.wait_until(lambda: [a for a in mon.get("/api/alerts") if a["site"] == "test-site"], 30,
                             what="the real gateway's alert")[0]
    gw_row = f'tr.alert[data-id="{real["id"]}"]'
    kg_e2e.wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, gw_row), 10, what="its row on the page")
    kg_e2e.wait_until(lambda: "camera_health" in text_of(browser, gw_row), 10, what="the real alert's check")
    click(browser, f'button.ack[data-id="{real["id"]}"]')
    acked = kg_e2e.wait_until(lambda: decisions.json_on(f"kitchen/test-site/decisions/{real['id']}"), 10,
                              what="the decision on the real site's topic")[0]
    assert acked["action"] == "acknowledge" and acked["site"] == "test-site"
    assert gw.terminate() == 0
    assert browser.execute_script("return window.__noReload") == 42
    # The gateway ended its open event as it stopped ("gateway stopped"): the camera may still be
    # black, so the row must not read like a cleared condition.
    kg_e2e.wait_until(lambda: "gateway stopped: not seen to clear" in text_of(browser, gw_row),
                      10, what="the stopped gateway's end shown as not cleared")
    # A gateway killed with its event open ends it at its next start ("gateway restarted",
    # docs/mqtt.md): shown as such in the row and the detail, never as "ended" like a cleared one.
    killed_id = "19ab3c0f2e1-00000000000000d1"
    ended = dict(event(killed_id, site, state="end", camera="store", check="sensor", label="too_warm"),
                 end_reason="gateway restarted")
    publish_all(pub, [(f"kitchen/{site}/events", json.dumps(event(killed_id, site, camera="store", check="sensor",
                                                                  label="too_warm"))),
                      (f"kitchen/{site}/events", json.dumps(ended))])
    killed_row = f'tr.alert[data-id="{killed_id}"]'
    kg_e2e.wait_until(lambda: "gateway restarted: not seen to clear" in "".join(
        r.text for r in browser.find_elements(By.CSS_SELECTOR, killed_row)), 10, what="the restarted end in its row")
    click(browser, killed_row)
    kg_e2e.wait_until(lambda: "restarted after a crash or kill" in browser.find_element(By.ID, "d-facts").text, 10,
                      what="the detail saying the condition is not known")
    assert ", ended " not in browser.find_element(By.ID, "d-facts").text
    assert mon.get(f"/api/alerts/{killed_id}")["end_reason"] == "gateway restarted"
    # The address names the alert shown, as the room's notifications link to it.
    assert browser.execute_script("return location.hash") == f"#alert={killed_id}"

    # A camera down says why: its offline alert's cause in words in the row, with the gateway's text
    # in the detail; its site's row names the camera and its state's last_error_cause.
    down_id = "19ab3c0f2e1-00000000000000d2"
    down = dict(event(down_id, site, camera="cooking", check="camera_health", label="offline"),
                cause={"kind": "unauthorized", "text": "cannot open: Server returned 401 Unauthorized"})
    publish_all(pub, [(f"kitchen/{site}/gateway", json.dumps(
        {"site": site, "name": "No. 1 Primary School canteen", "version": "0.1.0", "started_at": now_iso(-3600),
         "cameras": [{"id": "cooking", "name": "Cooking", "public": False, "checks": ["camera_health"]},
                     {"id": "store", "name": "Store", "public": False, "checks": ["camera_health"]}],
         "time": now_iso()})),
        (f"kitchen/{site}/cameras/cooking/state", json.dumps(
            {"site": site, "camera": "cooking", "name": "Cooking", "online": False, "fps_in": 0.0,
             "fps_analysed": 0.0, "frames_dropped": 0, "reconnects_1h": 3, "stalls_1h": 0, "decode_errors": 0,
             "frames_damaged": 0, "packets_lost": 0, "check_errors": 0, "timestamp_jumps": 0,
             "failing_checks": [], "last_frame_time": None, "conditions": ["offline"],
             "last_error": "cannot open: Server returned 401 Unauthorized", "last_error_cause": "unauthorized",
             "last_error_time": now_iso(-2), "time": now_iso()})),
        # Down with no failure since its last frame (its gateway stopped while it streamed): no cause.
        (f"kitchen/{site}/cameras/store/state", json.dumps(
            {"site": site, "camera": "store", "name": "Store", "online": False, "fps_in": 0.0,
             "fps_analysed": 0.0, "frames_dropped": 0, "reconnects_1h": 0, "stalls_1h": 0, "decode_errors": 0,
             "frames_damaged": 0, "packets_lost": 0, "check_errors": 0, "timestamp_jumps": 0,
             "failing_checks": [], "last_frame_time": now_iso(-5), "conditions": [],
             "last_error": "cannot open: Connection refused", "last_error_cause": "unreachable",
             "last_error_time": now_iso(-60), "time": now_iso()})),
        (f"kitchen/{site}/events", json.dumps(down))])
    down_row = f'tr.alert[data-id="{down_id}"]'
    kg_e2e.wait_until(lambda: "offline (refused the user or password)" in text_of(browser, down_row), 10,
                      what="the offline alert's cause in its row")
    kg_e2e.wait_until(lambda: "cooking: refused the user or password" in row_text(), 10,
                      what="the camera down and why in its site's row")
    kg_e2e.wait_until(lambda: "store" in row_text(), 10, what="the other camera down in its site's row")
    assert "cannot be reached" not in row_text(), row_text()
    click(browser, down_row)
    kg_e2e.wait_until(lambda: "Cause refused the user or password: cannot open: Server returned 401 Unauthorized"
                      in browser.find_element(By.ID, "d-facts").text, 10, what="the cause in the detail")
    assert "[refused the user or password]" in browser.find_element(By.ID, "d-history").text
    assert mon.get(f"/api/alerts/{down_id}")["cause"]["kind"] == "unauthorized"

    # A cabinet that missed a second window while its alert was open: the count in the row and the
    # detail, each message's in the history.
    missed_id = "19ab3c0f2e1-00000000000000d3"
    missed = event(missed_id, site, check="disinfection", label="missed_cycle")
    del missed["camera"]
    missed.update(sensor="cabinet1", value=41.0, unit="degC", windows_missed=1)
    again = dict(missed, message_id=f"{missed_id}:update-1", state="update", time=now_iso(), windows_missed=2)
    publish_all(pub, [(f"kitchen/{site}/events", json.dumps(missed)), (f"kitchen/{site}/events", json.dumps(again))])
    missed_row = f'tr.alert[data-id="{missed_id}"]'
    kg_e2e.wait_until(lambda: "missed_cycle 41 degC (2 windows missed)" in text_of(browser, missed_row), 10,
                      what="the windows missed in the row")
    click(browser, missed_row)
    kg_e2e.wait_until(lambda: "Windows missed 2" in browser.find_element(By.ID, "d-facts").text, 10,
                      what="the windows missed in the detail")
    history = browser.find_element(By.ID, "d-history").text
    assert "[1 window missed]" in history and "[2 windows missed]" in history, history
    assert mon.get(f"/api/alerts/{missed_id}")["windows_missed"] == 2
    for message in (missed, again):
        schemas.validate(f"kitchen/{site}/events", json.dumps(message).encode())

    # A second alert stays open for the screenshot; the fridge curve is drawn.
    publish_all(pub, [(f"kitchen/{site}/events", json.dumps(event("19ab3c0f2e1-fedcba9876543210", site,
                                                                  camera="prep", check="mask", label="no_mask",
                                                                  severity=3)))])
    kg_e2e.wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, 'tr.alert[data-id="19ab3c0f2e1-fedcba9876543210"]'),
                      10, what="the second alert")
    if rollups:
        kg_e2e.wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, '[data-sensor="fridge1"] svg polyline'), 10,
                          what="the fridge curve")
    assert browser.execute_script("return window.__noReload") == 42
    shot = tmp_path / "monitor-dashboard.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10000
    print(f"screenshot: {shot}")
    # A notification's link (docs/monitor.md, "Notifications") opens its alert in a new page.
    browser.get(f"http://127.0.0.1:{mon.port}/?from=notification#alert={event_id}")
    kg_e2e.wait_until(lambda: "Status closed" in browser.find_element(By.ID, "d-facts").text, 10,
                      what="the linked alert's detail")
    assert site in browser.find_element(By.ID, "d-title").text
    decisions.close()
    pub.disconnect()
    assert mon.terminate() == 0


def sign_in(browser, mon):
    browser.get(f"http://127.0.0.1:{mon.port}/")
    kg_e2e.wait_until(lambda: browser.find_element(By.ID, "login-operator").is_displayed(), 10, what="the sign-in form")
    browser.find_element(By.ID, "login-operator").send_keys(OPERATOR)
    browser.find_element(By.ID, "login-password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login-submit").click()
    kg_e2e.wait_until(lambda: browser.find_element(By.ID, "live").text == "live", 10, what="the live stream")


def test_dashboard_lists_every_active_alert(broker, monitors, browser):
    """A district with a few hundred open alerts: the page lists them all (it used to stop at the API's
    default of 200 and call that the count, so the oldest tier-2 alert was not on screen), and the API
    says how many match beyond its `limit`."""
    mon = monitors(broker)
    pub = publisher(broker)
    sites = [f"sch-{i:04d}" for i in range(20)]
    oldest = "19ab3c0f2e3-0000000000000000"
    messages = [(f"kitchen/{sites[0]}/events", json.dumps(event(oldest, sites[0], severity=2)))]
    messages += [(f"kitchen/{sites[i % 20]}/events",
                  json.dumps(event(f"19ab3c0f2e3-{i:016x}", sites[i % 20], severity=1 if i % 50 == 0 else 3)))
                 for i in range(1, 261)]
    publish_all(pub, messages)
    kg_e2e.wait_until(lambda: mon.metric('kgm_messages_total{outcome="created"}') == 261, 20, what="261 alerts stored")

    conn = http.client.HTTPConnection("127.0.0.1", mon.port, timeout=10)
    conn.request("GET", "/api/alerts?limit=10",
                 headers={"Authorization": "Basic " + base64.b64encode(f"{OPERATOR}:{PASSWORD}".encode()).decode()})
    r = conn.getresponse()
    assert len(json.loads(r.read())) == 10 and r.getheader("X-Total-Count") == "261"
    conn.close()

    sign_in(browser, mon)
    kg_e2e.wait_until(lambda: browser.find_element(By.ID, "alert-count").text == "(261)", 10, what="the count of 261")
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.alert")) == 261
    assert browser.find_elements(By.CSS_SELECTOR, f'tr.alert[data-id="{oldest}"]'), "the tier-2 alert is not listed"
    assert not browser.find_elements(By.ID, "alerts-more")
    t0 = time.time()
    browser.execute_script("return refreshAlerts()")
    print(f"261 alerts listed; one refresh of the list took {time.time() - t0:.3f} s")
    # A filter narrows the list and its count.
    browser.find_element(By.CSS_SELECTOR, '#f-severity option[value="1"]').click()
    kg_e2e.wait_until(lambda: browser.find_element(By.ID, "alert-count").text == "(5)", 10, what="5 tier-1 alerts")
    pub.disconnect()
    assert mon.terminate() == 0



# Installed before the page's own script (Page.addScriptToEvaluateOnNewDocument), so that the test
# alone decides when the page fetches the site list and when each answer arrives:
# - the page's refresh timer (every 20 s, setInterval) is held back, not run: on a slow machine it
#   would otherwise start a fetch the test did not make; the test runs it once, by hand, at the end;
# - the answers of /api/sites are held until the test releases them (or fails them, as a network
#   error would), so that fetches overlap as they do when the stream's connect and the refresh meet.
#   The requests themselves go to the monitor at once: each answer is the list as it was then;
# - each call of refreshSites marks its fetch `handled` once the page is done with the answer (shown
#   or not), so the test waits for that rather than for a guessed time.
HOLD_SITE_FETCHES = """
(() => {  // its names kept out of the page's
  window.__heldTimers = [];
  const realSetInterval = window.setInterval;
  window.setInterval = function (fn, ms, ...args) {
    if (typeof fn === "function" && String(fn).includes('"sites"')) { window.__heldTimers.push(fn); return 0; }
    return realSetInterval.call(window, fn, ms, ...args);
  };
  window.__siteFetches = [];
  const realFetch = window.fetch;
  window.fetch = (path, options) => {
    if (path !== "/api/sites") return realFetch.call(window, path, options);
    const held = { answered: false, handled: false };
    window.__siteFetches.push(held);
    return new Promise((resolve, reject) => realFetch.call(window, path, options).then((r) => {
      held.release = () => resolve(r);
      held.fail = () => reject(new TypeError("Failed to fetch"));
      held.answered = true;
    }, reject));
  };
  window.addEventListener("DOMContentLoaded", () => {
    const realRefreshSites = window.refreshSites;
    window.refreshSites = function () {
      const before = window.__siteFetches.length;
      const done = realRefreshSites.apply(this, arguments);
      const held = window.__siteFetches[before];  // the fetch this call made (at once, through api())
      if (held) done.finally(() => { held.handled = true; });
      return done;
    };
  });
})();
"""


def test_overlapping_site_list_fetches_keep_the_live_rows_and_the_list(broker, monitors, browser):
    """The page fetches the site list when its stream connects and every 20 s, and a site's row comes
    over the stream when it changes; two fetches may be on their way at once. The first one's answer,
    older than a row that came meanwhile, must not bring the site's old values back (the later fetch
    once dropped the rows the first had gathered), nor be thrown away for a later fetch that has not
    answered or has failed (it was: the list waited for that one, and for the next refresh when it
    failed), whichever of the two comes first; an answer older than one already shown is not shown."""
    mon = monitors(broker)
    pub = publisher(broker)
    changing, quiet = "sch-0401", "sch-0402"

    def fridge(site, value):
        return (f"kitchen/{site}/sensors/fridge/state", json.dumps(
            {"site": site, "sensor": "fridge", "name": "Fridge", "kind": "temperature", "location": "fridge",
             "unit": "degC", "online": True, "value": value, "reading_time": now_iso(), "conditions": [],
             "time": now_iso()}))

    publish_all(pub, [(f"kitchen/{changing}/availability", "online"), (f"kitchen/{quiet}/availability", "online"),
                      fridge(changing, 1.5), fridge(quiet, 4.0)])
    kg_e2e.wait_until(lambda: {s["site"] for s in mon.get("/api/sites")} == {changing, quiet}, 10,
                      what="both sites stored")
    time.sleep(1.5)  # their rows went out on the live stream (once a second), before the page's opens

    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HOLD_SITE_FETCHES})
    sign_in(browser, mon)
    assert browser.execute_script("return window.__heldTimers.length") == 1, "the page's refresh timer was not held"

    def fetched(i, what):
        return browser.execute_script("const f = window.__siteFetches[arguments[0]]; return !!(f && f[arguments[1]])",
                                      i, what)

    def start_fetch():
        """The refresh the page makes every 20 s, made now; the index of its fetch."""
        i = browser.execute_script("return window.__siteFetches.length")
        browser.execute_script("refreshSites()")
        kg_e2e.wait_until(lambda: fetched(i, "answered"), 10, what=f"site fetch {i} answered")
        return i

    def settle(i, how="release"):
        """Gives the page fetch i's answer (or its failure) and waits until the page is done with it."""
        browser.execute_script(f"window.__siteFetches[arguments[0]].{how}()", i)
        kg_e2e.wait_until(lambda: fetched(i, "handled"), 10, what=f"the page done with site fetch {i}")

    def row(site):
        return browser.execute_script(
            "const r = document.querySelector(`#sites tr[data-site='${arguments[0]}']`); return r ? r.textContent : ''",
            site)

    # The connect's fetch (0) answered with fridge 1.5; then 2.5 comes over the stream, and the
    # refresh (1) starts.
    kg_e2e.wait_until(lambda: fetched(0, "answered"), 10, what="the connect's site fetch answered")
    publish_all(pub, [fridge(changing, 2.5)])
    kg_e2e.wait_until(lambda: "fridge: 2.5 degC" in row(changing), 5, what="the new reading from the live row")
    assert row(quiet) == "", "listed before any list came"
    refresh = start_fetch()
    # The later fetch fails first: nothing to show, and the earlier answer is still to be shown.
    settle(refresh, "fail")
    assert row(quiet) == "", f"a failed fetch showed a list: {row(quiet)!r}"
    # The older answer comes next: it is shown (the quiet site appears), with the row laid over it.
    settle(0)
    assert "fridge: 4 degC" in row(quiet), f"the first list was not shown after a later fetch failed: {row(quiet)!r}"
    assert "fridge: 2.5 degC" in row(changing), f"the live row was lost to an older list: {row(changing)!r}"

    # Two more overlap, the earlier answering first and the later failing after it: the earlier answer
    # is shown, not held back for the later one, and stays. The quiet site's heartbeat age tells the
    # lists apart (over 2 s between them).
    time.sleep(2.2)
    first_list = row(quiet)
    earlier = start_fetch()
    later = start_fetch()
    settle(earlier)
    assert row(quiet) != first_list, f"an answer was held back for a later fetch on its way: {row(quiet)!r}"
    second_list = row(quiet)
    settle(later, "fail")
    assert row(quiet) == second_list and "fridge: 2.5 degC" in row(changing), (row(quiet), row(changing))

    # Two more overlap, the later answering first: the earlier one's answer, older, is not shown.
    earlier = start_fetch()
    time.sleep(2.2)
    publish_all(pub, [fridge(changing, 3.5)])
    kg_e2e.wait_until(lambda: "fridge: 3.5 degC" in row(changing), 5, what="3.5 from the live row")
    later = start_fetch()
    settle(later)
    shown = row(quiet)
    assert shown != second_list, f"the later answer was not shown: {shown!r}"
    settle(earlier)
    assert row(quiet) == shown, f"an older list replaced a newer one: {shown!r} -> {row(quiet)!r}"
    assert "fridge: 3.5 degC" in row(changing)
    assert browser.execute_script("return window.__siteFetches.length") == later + 1, "a site fetch the test did not make"
    # The timer held back is the page's refresh of the list: run once, it fetches the list.
    browser.execute_script("window.__heldTimers[0]()")
    kg_e2e.wait_until(lambda: fetched(later + 1, "answered"), 10, what="the refresh timer's site fetch")
    settle(later + 1)
    pub.disconnect()
    assert mon.terminate() == 0


def test_eight_tabs_on_one_room_the_one_shown_is_live(broker, monitors, browser):
    """Each notification link opens a tab, and each tab's page held a stream: Chromium opens at most 6
    HTTP/1.1 connections to one host for all its tabs, so from the 6th tab on pages waited for a
    connection forever (the 6th never showed its linked alert) and the first tab stopped updating
    while it still said "live". A hidden tab now closes its stream and connects again when shown: with 8 tabs open,
    the one shown gets a new alert within seconds, and so does the first when it is shown again."""
    mon = monitors(broker)
    pub = publisher(broker)
    site = "sch-0501"
    first, second = "19ab3c0f2f5-0000000000000001", "19ab3c0f2f5-0000000000000002"
    publish_all(pub, [(f"kitchen/{site}/availability", "online"),
                      (f"kitchen/{site}/events", json.dumps(event(first, site)))])
    kg_e2e.wait_until(lambda: first in mon.alert_ids(), 10, what="the first alert stored")
    from selenium.common.exceptions import TimeoutException
    sign_in(browser, mon)
    browser.set_page_load_timeout(15)
    live = lambda: text_of(browser, "#live")
    listed = lambda event_id: browser.execute_script(
        "return !!document.querySelector(`tr.alert[data-id='${arguments[0]}']`)", event_id)
    tabs = [browser.current_window_handle]
    for n in range(2, 9):  # as notification links do: a new tab (shown, the one before hidden)
        browser.switch_to.new_window("tab")
        tabs.append(browser.current_window_handle)
        try:
            browser.get(f"http://127.0.0.1:{mon.port}/?from=notification#alert={first}")
        except TimeoutException:
            pytest.fail(f"tab {n} did not load in 15 s: the browser's connections to the room are all held")
        kg_e2e.wait_until(lambda: live() == "live", 10, what=f"tab {n} live")
        kg_e2e.wait_until(lambda: site in text_of(browser, "#d-title"), 10, what=f"the linked alert's detail in tab {n}")
    assert len(browser.window_handles) == 8
    publish_all(pub, [(f"kitchen/{site}/events", json.dumps(event(second, site, camera="prep", severity=1)))])
    kg_e2e.wait_until(lambda: listed(second), 5, what="the new alert in the 8th tab, shown")
    assert live() == "live"
    # The first tab, shown again: connected again, everything reloaded, live.
    browser.switch_to.window(tabs[0])
    kg_e2e.wait_until(lambda: listed(second) and live() == "live", 5, what="the new alert in the first tab, shown again")
    third = "19ab3c0f2f5-0000000000000003"
    publish_all(pub, [(f"kitchen/{site}/events", json.dumps(event(third, site, camera="store")))])
    kg_e2e.wait_until(lambda: listed(third), 5, what="an alert after that in the first tab")
    pub.disconnect()
    assert mon.terminate() == 0


# Run in the page (after its own script): counts the requests of each path and holds the answers of
# /api/alerts... requested while window.__hold is true (the test sets it around its own call of a
# refresh only, so a fetch the page starts by itself is never held) until the test releases them. The
# request itself goes to the monitor at once: each answer is the state as it was then.
HOLD_ALERT_FETCHES = """
window.__held = []; window.__hold = false; window.__requests = {};
const realFetch = window.fetch;
window.fetch = (path, options) => {
  window.__requests[path] = (window.__requests[path] || 0) + 1;
  if (!window.__hold || !String(path).startsWith("/api/alerts")) return realFetch.call(window, path, options);
  const held = { path: String(path), answered: false };
  window.__held.push(held);
  return new Promise((resolve, reject) => realFetch.call(window, path, options).then((r) => {
    held.release = () => resolve(r);
    held.answered = true;
  }, reject));
};
"""


class HeldFetches:
    """HOLD_ALERT_FETCHES installed in the page, and the test's side of it."""

    def __init__(self, browser):
        self.browser = browser
        browser.execute_script(HOLD_ALERT_FETCHES)

    def answered(self, i):
        return self.browser.execute_script("const h = window.__held[arguments[0]]; return !!(h && h.answered)", i)

    def start(self, call):
        """Calls `call` (a refresh; its fetch starts at once) with its answer held; the fetch's index."""
        i = self.browser.execute_script("return window.__held.length")
        self.browser.execute_script(f"window.__done{i} = false; window.__hold = true; "
                                    f"{call}.then(() => {{ window.__done{i} = true; }}); window.__hold = false")
        kg_e2e.wait_until(lambda: self.answered(i), 10, what=f"fetch {i} answered")
        return i

    def release(self, i):
        """Gives the page answer i and waits until the page is done with it."""
        self.browser.execute_script("window.__held[arguments[0]].release()", i)
        kg_e2e.wait_until(lambda: self.browser.execute_script(f"return window.__done{i}"), 10,
                          what=f"the page done with fetch {i}")

    def requests(self, path):
        return self.browser.execute_script("return window.__requests[arguments[0]] || 0", path)

    def requests_under(self, prefix):
        """The requests of every path that starts with `prefix`."""
        return self.browser.execute_script(
            "return Object.entries(window.__requests).filter(([p]) => p.startsWith(arguments[0]))"
            ".reduce((n, [, k]) => n + k, 0)", prefix)


def test_the_badge_says_live_only_while_answers_come(broker, monitors, browser):
    """A page whose requests wait for a connection (all the browser's were held by other tabs'
    streams) showed nothing new, and its badge said "live" as long as its stream was open. With an
    answer awaited for over 5 s it says "stalled", and "live" again once the answer came."""
    mon = monitors(broker)
    sign_in(browser, mon)
    held = HeldFetches(browser)
    stuck = held.start("refreshAlerts()")
    kg_e2e.wait_until(lambda: text_of(browser, "#live") not in ("", "live"), 8, what="the badge no longer live")
    assert text_of(browser, "#live") == "stalled"
    held.release(stuck)
    kg_e2e.wait_until(lambda: text_of(browser, "#live") == "live", 3, what="live again")
    assert mon.terminate() == 0


def test_the_dashboard_draws_no_older_answer_over_a_newer_one(broker, monitors, browser):
    """The alert list and an alert's detail are fetched again at every alert event, filter change and
    action, and on a slow link the answers may come in any order: an unfiltered list coming after
    the filtered one drew every site's rows under a filter showing one site, and an older detail
    drew the alert as it was before. The test holds the answers and gives them in reverse order."""
    mon = monitors(broker)
    pub = publisher(broker)
    one, other = "sch-0601", "sch-0602"
    mine, theirs = "19ab3c0f2f6-0000000000000001", "19ab3c0f2f6-0000000000000002"
    publish_all(pub, [(f"kitchen/{one}/availability", "online"), (f"kitchen/{other}/availability", "online"),
                      (f"kitchen/{one}/events", json.dumps(event(mine, one))),
                      (f"kitchen/{other}/events", json.dumps(event(theirs, other)))])
    kg_e2e.wait_until(lambda: {mine, theirs} <= set(mon.alert_ids()), 10, what="both alerts stored")
    sign_in(browser, mon)
    rows = lambda: browser.execute_script("return [...document.querySelectorAll('tr.alert')].map((r) => r.dataset.id)")
    kg_e2e.wait_until(lambda: sorted(rows()) == sorted([mine, theirs]), 10, what="both alerts listed")
    kg_e2e.wait_until(lambda: browser.execute_script(
        "return [...document.querySelector('#f-site').options].some((o) => o.value === arguments[0])", one), 10,
        what="the site in the filter")
    held = HeldFetches(browser)
    # The test alone starts fetches: no live event starts one.
    browser.execute_script("state.stream.close(); state.stream = null;")
    # The list as it is (all sites), then the operator picks one site; the filtered answer comes first.
    unfiltered = held.start("refreshAlerts()")
    browser.execute_script("document.querySelector('#f-site').value = arguments[0]", one)
    filtered = held.start("refreshAlerts()")  # as the filter's change event does
    held.release(filtered)
    assert rows() == [mine]
    held.release(unfiltered)
    assert rows() == [mine], f"an older, unfiltered answer drawn under the filter for {one}: {rows()}"

    # The detail: an answer from before the alert was acknowledged comes after one from after.
    click(browser, f'tr.alert[data-id="{mine}"]')
    facts = lambda: text_of(browser, "#d-facts")
    kg_e2e.wait_until(lambda: "Status open" in facts(), 10, what="the detail, open")
    before = held.start("refreshDetail()")
    status, _ = mon.request("POST", f"/api/alerts/{mine}/acknowledge", {"note": ""})
    assert status == 200
    after = held.start("refreshDetail()")
    held.release(after)
    assert "Status acknowledged" in facts()
    held.release(before)
    assert "Status acknowledged" in facts(), f"an older detail drawn over a newer one: {facts()!r}"
    pub.disconnect()
    assert mon.terminate() == 0


def test_a_selected_alert_updated_30_times_a_second_is_fetched_about_once_a_second(broker, monitors, browser):
    """A site sent 30 updates a second of one alert, and the page fetched and drew its detail (its
    whole history) again at each (coalesced to one every 150 ms): now at most about once a second,
    and once after the last, so its last state is shown."""
    mon = monitors(broker)
    pub = publisher(broker)
    site, event_id = "sch-0701", "19ab3c0f2f7-0000000000000001"
    start = event(event_id, site)
    publish_all(pub, [(f"kitchen/{site}/events", json.dumps(start))])
    kg_e2e.wait_until(lambda: event_id in mon.alert_ids(), 10, what="the alert stored")
    sign_in(browser, mon)
    click(browser, f'tr.alert[data-id="{event_id}"]')
    history = lambda: browser.execute_script("return document.querySelectorAll('#d-history li').length")
    kg_e2e.wait_until(lambda: history() == 1, 10, what="the detail with its first message")
    held = HeldFetches(browser)  # counts the fetches only: nothing is held
    t0 = time.time()
    infos = []
    for k in range(90):  # 30 a second for 3 s
        msg = dict(start, message_id=f"{event_id}:update-{k + 1}", state="update", time=now_iso(), score=0.5 + k / 1000)
        infos.append(pub.publish(f"kitchen/{site}/events", json.dumps(msg), qos=1))
        time.sleep(max(0.0, t0 + (k + 1) / 30 - time.time()))
    for info in infos:
        info.wait_for_publish(10)
    kg_e2e.wait_until(lambda: mon.metric('kgm_messages_total{outcome="updated"}') == 90, 10,
                      what="the 90 updates stored")
    stored = len(mon.get(f"/api/alerts/{event_id}")["history"])
    kg_e2e.wait_until(lambda: history() == stored, 5, what="the detail's last state (the trailing fetch)")
    elapsed = time.time() - t0
    fetches = held.requests(f"/api/alerts/{event_id}")
    print(f"{fetches} detail fetches in {elapsed:.1f} s of updates at 30 a second")
    assert fetches <= elapsed + 2, f"{fetches} detail fetches in {elapsed:.1f} s"
    # The list too: it was fetched every 150 ms.
    lists = held.requests_under("/api/alerts?")
    print(f"{lists} list fetches in {elapsed:.1f} s of updates at 30 a second")
    assert lists <= elapsed + 2, f"{lists} list fetches in {elapsed:.1f} s"
    pub.disconnect()
    assert mon.terminate() == 0


def numbered(n, site, stream):
    """Event number `n` of a gateway's numbered stream (docs/mqtt.md, "Sequence numbers and replay")."""
    return dict(event(f"19ab3c0f2f4-{n:016x}", site), stream=stream, seq=n)


def test_replay_closes_a_gap_and_counts_what_is_lost(broker, monitors, browser, tmp_path):
    """The test plays a gateway with stream/seq: a gap is asked for on kitchen/<site>/replay after
    replay.after and again every replay.every; a replayed message fills it and its alert is shown once;
    a `lost` answer is counted and never asked for again; the counts survive a restart and show on the
    dashboard's site list."""
    site, stream = "sch-0401", "00c0ffee00c0ffee"
    db = tmp_path / "replay.db"
    extra = {"replay": {"after": "1s", "every": "2s"}}
    mon = monitors(broker, name="replay", db=db, extra=extra)
    requests = kg_e2e.Collector(broker, topic=f"kitchen/{site}/replay")
    pub = publisher(broker)
    site_row = lambda m: next((s for s in m.get("/api/sites") if s["site"] == site), {})
    send = lambda numbers: publish_all(pub, [(f"kitchen/{site}/events", json.dumps(numbered(n, site, stream)))
                                             for n in numbers])

    # The gateway's state says the broker had nothing yet, then that it has 1-10; of those only 1-3,
    # 6, 7 and 9 arrive: 4-5, 8 and 10 are missing, all since the same moment (so due together).
    publish_all(pub, [(f"kitchen/{site}/gateway", json.dumps({"site": site, "name": "No. 4", "version": "0.2.0",
                                                              "stream": stream, "seq": 0, "time": now_iso()}))])
    gap_seen = time.time()
    publish_all(pub, [(f"kitchen/{site}/gateway", json.dumps({"site": site, "version": "0.2.0", "stream": stream,
                                                              "seq": 10, "time": now_iso()}))])
    send([1, 2, 3, 6, 7, 9])
    kg_e2e.wait_until(lambda: site_row(mon).get("missing_messages") == 4, 10, what="4 numbers missing")
    assert site_row(mon)["lost_messages"] == 0 and site_row(mon)["stream"] == stream

    first = kg_e2e.wait_until(lambda: requests.on(f"kitchen/{site}/replay"), 10, what="a replay request")[0]
    asked = json.loads(first[1])
    waited = first[3] - gap_seen
    print(f"first replay request {waited:.2f} s after the gap (replay.after 1s): {asked}")
    assert 0.9 <= waited < 5, waited
    assert not first[2], "a request must not be retained"
    assert (asked["site"], asked["stream"], asked["from"], asked["to"]) == (site, stream, 4, 10)
    assert asked["monitor"] == f"e2e-replay-{os.getpid()}" and asked["request_id"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", asked["time"])
    # Nobody answered: asked again after replay.every, under a new request_id.
    again = kg_e2e.wait_until(lambda: requests.json_on(f"kitchen/{site}/replay")[1:], 10, what="a second request")[0]
    assert (again["from"], again["to"]) == (4, 10) and again["request_id"] != asked["request_id"]
    assert 1.5 <= requests.on(f"kitchen/{site}/replay")[1][3] - first[3] < 5

    # The gateway answers: what it keeps of 4-10 again (6, 7 and 9 too, which the room has), 8 and 10
    # as lost.
    duplicates = mon.metric('kgm_messages_total{outcome="duplicate"}')
    send([4, 5, 6, 7, 9])
    lost = lambda lo, hi, reason: (f"kitchen/{site}/lost", json.dumps(
        {"site": site, "stream": stream, "from": lo, "to": hi, "reason": reason,
         "request_id": again["request_id"], "time": now_iso()}))
    publish_all(pub, [lost(8, 8, "not kept"), lost(10, 10, "moved aside")])
    answered = time.time()
    kg_e2e.wait_until(lambda: (site_row(mon)["missing_messages"], site_row(mon)["lost_messages"]) == (0, 2), 10,
                      what="nothing missing, 2 lost")
    assert mon.metric('kgm_messages_total{outcome="duplicate"}') == duplicates + 3
    ids = [i for i in mon.alert_ids() if i.startswith("19ab3c0f2f4-")]
    assert sorted(ids) == sorted(f"19ab3c0f2f4-{n:016x}" for n in [1, 2, 3, 4, 5, 6, 7, 9]), ids  # each once
    assert f"{site} stream {stream}: 8-8 lost (not kept, request {again['request_id']})" in mon.output()
    assert f"{site} stream {stream}: 10-10 lost (moved aside" in mon.output()
    assert mon.metric("kgm_lost_messages_total") == 2
    # No more requests: nothing is missing (wait past two replay.every).
    time.sleep(4.5)
    late = [m for m in requests.on(f"kitchen/{site}/replay") if m[3] > answered + 0.5]
    assert not late, late

    # The dashboard's site list says it.
    sign_in(browser, mon)
    # Read in one script: the live list re-renders its rows under a WebDriver element.
    messages_cell = lambda: browser.execute_script(
        f"const c = document.querySelector('tr[data-site=\"{site}\"] td.messages'); return c && c.innerText")
    kg_e2e.wait_until(lambda: messages_cell() == "2 lost", 10, what="'2 lost' on the page")
    # A new gap shows as missing, live.
    send([12])
    kg_e2e.wait_until(lambda: messages_cell() == "1 missing\n2 lost", 10, what="'1 missing' on the page")

    # A restart keeps the stream, the counts and the gap, and asks for it again.
    assert mon.terminate() == 0
    before = len(requests.on(f"kitchen/{site}/replay"))
    mon = monitors(broker, name="replay-2", db=db, extra=extra)  # its own log: the port is read from it
    row = site_row(mon)
    assert (row["missing_messages"], row["lost_messages"]) == (1, 2), row
    req = kg_e2e.wait_until(lambda: requests.json_on(f"kitchen/{site}/replay")[before:], 10,
                            what="the request after the restart")[0]
    assert (req["from"], req["to"]) == (11, 11)
    send([11])
    kg_e2e.wait_until(lambda: site_row(mon)["missing_messages"] == 0, 10, what="11 arrived")
    requests.close()
    pub.disconnect()
    assert mon.terminate() == 0
