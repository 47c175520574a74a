"""Availability: retained `online` while the gateway runs; SIGTERM exits 0 leaving a retained
`offline`; a restart says `online` again; a SIGKILL makes the broker publish the last will `offline`
at once (the socket closes with the process, no keep-alive wait). Retained values are read by fresh
subscribers, as a monitoring room that connects later would see them."""

import json
import re
import signal
import threading
import time

import paho.mqtt.publish as publish
import yaml

import kg_e2e

TOPIC = "kitchen/test-site/availability"
GATEWAY_TOPIC = "kitchen/test-site/gateway"


def values(collector):
    return [m[1] for m in collector.on(TOPIC)]


def test_online_offline_and_the_last_will(broker, collector, schemas, make_clip, gateway, tmp_path):
    cfg = kg_e2e.base_config(broker, [kg_e2e.camera("cam", make_clip([("normal", 4)]), input={"loop": True})],
                             tmp_path)
    cfg["mqtt"]["keepalive"] = "30s"  # the will must come from the closed socket, not a 45 s keep-alive expiry

    gw = gateway(cfg)
    collector.wait_for(lambda: kg_e2e.retained(broker, TOPIC) == "online", 10, what="retained online")
    assert values(collector)[0] == b"online"
    info = collector.wait_for(lambda: kg_e2e.retained(broker, GATEWAY_TOPIC), 5, what="retained gateway info")
    info = json.loads(info)
    assert info["site"] == "test-site" and [c["id"] for c in info["cameras"]] == ["cam"]
    collector.wait_for(lambda: kg_e2e.retained(broker, "kitchen/test-site/cameras/cam/state"), 5,
                       what="retained camera state")

    # A clean stop: exit 0, and what a newcomer reads is `offline`.
    count = len(values(collector))
    assert gw.terminate() == 0
    collector.wait_for(lambda: values(collector)[count:] == [b"offline"], 5, what="offline on a clean stop")
    collector.wait_for(lambda: kg_e2e.retained(broker, TOPIC) == "offline", 10, what="retained offline")

    # A restart: `online` again.
    gw = gateway(cfg, name="second")
    collector.wait_for(lambda: kg_e2e.retained(broker, TOPIC) == "online", 10, what="online after the restart")

    # SIGKILL: no goodbye from the gateway; the broker publishes the will when the socket closes.
    count = len(values(collector))
    killed_at = time.time()
    gw.kill()
    collector.wait_for(lambda: values(collector)[count:] == [b"offline"], 10, what="the last will")
    arrived = [m[3] for m in collector.on(TOPIC)][-1]
    assert arrived - killed_at < 5, f"the will took {arrived - killed_at:.1f}s: keep-alive expiry, not socket close"
    collector.wait_for(lambda: kg_e2e.retained(broker, TOPIC) == "offline", 10,
                       what="the will retained")  # the will is retained
    schemas.validate_all(collector)


def test_systemd_readiness_and_watchdog(broker, clips, tmp_path):
    """Under systemd (Type=notify, WatchdogSec) the gateway says READY=1 once started, feeds the
    watchdog from its supervision loop and says STOPPING=1 on SIGTERM."""
    import socket
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    cfg = kg_e2e.base_config(broker, [kg_e2e.camera("cam", clips("short", [("normal", 4)]), input={"loop": True})],
                             tmp_path)
    gw = kg_e2e.Gateway(tmp_path, cfg, env={"NOTIFY_SOCKET": path})
    try:
        seen = []
        while len([m for m in seen if m == b"WATCHDOG=1"]) < 3:
            seen.append(sock.recv(1024))
        assert seen[0] == b"READY=1"
        assert gw.terminate() == 0
        rest = []
        sock.settimeout(2)
        try:
            while True:
                rest.append(sock.recv(1024))
        except socket.timeout:
            pass
        assert b"STOPPING=1" in rest
    finally:
        if gw.running():
            gw.kill()
        sock.close()


def test_two_gateways_with_one_client_id_back_off_and_say_why(broker, make_clip, gateway, tmp_path):
    """Two boxes from one SD card image connect with the same client id: the broker closes each
    connection when the other connects. Both reconnected at the minimum wait for ever, a storm
    that flapped the site's availability; now the wait grows while connections last only moments,
    and the log names the likely cause."""
    clip = make_clip([("normal", 4)])

    def config(name):
        # With an MQTT sensor on the same broker: its client takes the same id with "-sensors".
        sensors = [{"id": "fridge", "kind": "temperature", "interval": "10s",
                    "source": {"mqtt": {"topic": "tele/fridge/SENSOR", "value": "DS18B20.Temperature"}}}]
        cfg = kg_e2e.base_config(broker, [kg_e2e.camera("cam", clip, input={"loop": True})], tmp_path / name,
                                 sensors=sensors, sensors_mqtt=broker.url)
        cfg["mqtt"].update({"client_id": "kitchen-gateway-cloned", "reconnect": {"min": "200ms", "max": "8s"}})
        return cfg

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = gateway(config("a"), "a"), gateway(config("b"), "b")
    time.sleep(15)
    log = first.output() + second.output()
    # At the minimum wait (what it was) each box tried again 200 ms after every loss; now the waits
    # after losses grow: 200, 400, 800, 1600, 3200 ms and on, in 15 s.
    waits = [int(w) for w in re.findall(r"connecting to \S+ again in (\d+) ms", log)]
    assert len(waits) >= 4 and max(waits) >= 1600, waits
    assert "is another client using the client id 'kitchen-gateway-cloned'?" in log
    assert "is another client using the client id 'kitchen-gateway-cloned-sensors'?" in log  # named too
    assert first.terminate() == 0 and second.terminate() == 0


def test_the_watchdog_is_fed_through_a_reload(broker, tmp_path):
    """A reload checks the file, loads the models, stops everything and starts it again on the thread
    whose supervision tick feeds systemd's watchdog. Nothing fed it meanwhile: a reload longer than
    WatchdogSec had the gateway killed for doing what it was asked. Here the watchdog is 2 s (fed
    every second), and the reload waits for a Modbus read that a silent unit lets run to its 4 s
    timeout (the stop joins the poller); no two feeds may be 1.6 s apart."""
    import signal
    import socket
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    device = kg_e2e.ScriptedModbusTcp(units=set())  # answers no unit
    sensors = [{"id": "fridge", "interval": "1s", "stale_after": 30,
                "source": {"modbus": {"device": device.url, "unit_id": 1, "address": 0, "timeout": "4s"}}}]
    cfg = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors)
    del cfg["cameras"]
    gw = kg_e2e.Gateway(tmp_path, cfg, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    try:
        seen = []  # (monotonic time, message), stamped as they come by a reader of their own

        def read():
            while True:
                try:
                    seen.append((time.monotonic(), sock.recv(1024)))
                except OSError:
                    return

        threading.Thread(target=read, daemon=True).start()

        def receive_until(done):
            kg_e2e.wait_until(done, 30, what="the notifications")

        receive_until(lambda: sum(m == b"WATCHDOG=1" for _, m in seen) >= 3)
        assert seen[0][1] == b"READY=1"
        # Just after a request: the read has its whole timeout to wait when the stop comes.
        requests = device.requests
        kg_e2e.wait_until(lambda: device.requests > requests, 10, what="a Modbus request")
        asked = time.monotonic()
        gw.proc.send_signal(signal.SIGHUP)
        receive_until(lambda: any(m == b"READY=1" and t > asked for t, m in seen))
        ready = next(t for t, m in seen if m == b"READY=1" and t > asked)
        receive_until(lambda: sum(m == b"WATCHDOG=1" and t > ready for t, m in seen) >= 2)
        assert any(m == b"RELOADING=1" for t, m in seen if t > asked)
        feeds = [t for t, m in seen if m == b"WATCHDOG=1"]
        gaps = [b - a for a, b in zip(feeds, feeds[1:])]
        print(f"reload took {ready - asked:.2f} s; longest gap between feeds {max(gaps):.2f} s")
        assert ready - asked > 2, "the reload was too quick to show anything"
        assert max(gaps) < 1.6, gaps
        assert gw.terminate() == 0
    finally:
        if gw.running():
            gw.kill()
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        device.close()


def retained_states(broker, topic="kitchen/test-site/#", settle=1.0):
    """{topic: payload} of every retained message under `topic`, as a fresh subscriber (a dashboard
    that connects now) gets them right after its SUBACK."""
    import paho.mqtt.client as mqtt
    got = {}
    subscribed = threading.Event()
    client = mqtt.Client(client_id=f"e2e-retained-all-{time.time_ns()}", clean_session=True)
    client.on_connect = lambda c, u, f, rc: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda c, u, mid, granted: subscribed.set()
    client.on_message = lambda c, u, m: got.__setitem__(m.topic, bytes(m.payload)) if m.retain else None
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        if not subscribed.wait(5):
            raise AssertionError(f"could not subscribe to {topic} on {broker.url}")
        time.sleep(settle)  # the broker sends its retained messages right after the SUBACK
    finally:
        client.disconnect()
        client.loop_stop()
    return got


def test_retained_states_of_cameras_and_sensors_this_run_has_not_are_cleared(broker, rtsp_server, make_clip,
                                                                            gateway, tmp_path):
    """A camera or sensor removed from gateway.yaml while the gateway was stopped, or a camera set
    `enabled: false`, kept its last retained state on the broker for good: every dashboard showed a
    camera that no longer exists, online or with an open condition. Only reloads cleared such
    states, from memory. The gateway now reads its site's retained states at each connection and
    clears those of ids it does not publish, keeps its own (stored before it starts: a fresh broker
    has none at its first connection), and leaves those whose level no configuration can have as an
    id (cleared, the room refused their empty payload as "not a JSON object")."""
    import paho.mqtt.publish as publish
    site = "kitchen/test-site"
    left = {
        f"{site}/cameras/gone/state": {"site": "test-site", "camera": "gone", "online": True,
                                       "conditions": ["smoke"]},
        f"{site}/cameras/spare/state": {"site": "test-site", "camera": "spare", "online": True, "conditions": []},
        f"{site}/sensors/gone-fridge/state": {"site": "test-site", "sensor": "gone-fridge", "online": True,
                                              "value": 9.5, "conditions": ["too_warm"]},
    }
    own = {
        f"{site}/cameras/cam/state": {"site": "test-site", "camera": "cam", "online": False, "conditions": []},
        f"{site}/sensors/fridge/state": {"site": "test-site", "sensor": "fridge", "online": False,
                                         "conditions": []},
    }
    not_ids = {f"{site}/cameras//state": {"camera": ""}, f"{site}/cameras/not.an.id/state": {"camera": "x"},
               f"{site}/sensors/{'s' * 65}/state": {"sensor": "too long"}}
    stored = {**left, **own, **not_ids}
    publish.multiple([{"topic": t, "payload": json.dumps(p), "qos": 1, "retain": True} for t, p in stored.items()],
                     hostname="127.0.0.1", port=broker.port)
    before = kg_e2e.wait_until(lambda: (r := retained_states(broker)) and set(stored) <= set(r) and r, 10,
                               what="the states retained before the start")
    assert set(before) == set(stored), before
    # From before the gateway starts: every message it publishes on the site, an empty one included.
    collector = kg_e2e.Collector(broker, f"{site}/#")
    try:
        server = rtsp_server({"/cam": make_clip([("normal", 60)])})
        cfg = kg_e2e.base_config(broker, [kg_e2e.camera("cam", server.url("/cam")),
                                          kg_e2e.camera("spare", server.url("/cam"), enabled=False)], tmp_path)
        cfg["sensors"] = [{"id": "fridge", "source": {"mqtt": {"topic": "t/fridge"}}}]
        gw = gateway(cfg)

        def cleared():
            return all(any(p == b"" for _, p, _, _ in collector.on(t)) for t in left)

        kg_e2e.wait_until(cleared, 30, interval=0.2, what="the left states cleared")
        # Published by this run (not flagged retained: the collector was subscribed).
        kg_e2e.wait_until(lambda: all(any(not r for _, _, r, _ in collector.on(t)) for t in own), 30,
                          what="the camera's and the sensor's own states published")
        now = retained_states(broker)
        assert not set(left) & set(now), now
        assert set(own) | set(not_ids) <= set(now), now
        for topic in list(own) + list(not_ids):
            assert all(p != b"" for _, p, _, _ in collector.on(topic)), (topic, collector.on(topic))
        log = gw.output()
        for line in ["retained state of camera 'gone' cleared: not in this configuration",
                     "retained state of camera 'spare' cleared: disabled in this configuration",
                     "retained state of sensor 'gone-fridge' cleared: not in this configuration"]:
            assert log.count(line) == 1, f"{line!r} not logged once:\n{log}"
        assert log.count("cleared:") == 3, log
        assert gw.terminate() == 0
    finally:
        collector.close()


def test_a_reload_is_not_a_restart_to_the_room(broker, collector, schemas, make_clip, gateway, tmp_path):
    """A reload (SIGHUP, here for a camera's new name) said the site `offline` and then `online`,
    every camera and sensor `online: false` once, and a new `started_at`: to the room, each edit of
    the file was a restart, its cameras down for the seconds their streams took to open again. A
    reload that goes on as the same gateway (same site, topics, outbox, broker) now says none of it:
    `started_at` stays and `reloaded_at` says the reload. A reload to another site says the old one
    `offline`, as a stop does."""
    prefix = "kitchen/test-site"
    cam = kg_e2e.camera("cam", make_clip([("normal", 4)]), input={"loop": True}, health={"offline_after": "20s"})
    sensors = [{"id": "fridge", "interval": "1s", "stale_after": 10, "source": {"mqtt": {"topic": "probe/fridge"}}}]
    cfg = kg_e2e.base_config(broker, [cam], tmp_path, sensors=sensors)
    feeding = threading.Event()

    def feed():
        while not feeding.is_set():
            publish.single("probe/fridge", json.dumps({"temperature": 4.0}), hostname="127.0.0.1", port=broker.port)
            time.sleep(0.5)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        gw = gateway(cfg)

        def last(topic):
            return collector.last_json(f"{prefix}/{topic}")

        collector.wait_for(lambda: (c := last("cameras/cam/state")) and c["online"] and c["fps_in"] > 0 and
                           (s := last("sensors/fridge/state")) and s["online"], 20,
                           what="the camera and the fridge online")
        first = json.loads(kg_e2e.retained(broker, f"{prefix}/gateway"))
        assert "reloaded_at" not in first, first
        mark = len(collector.messages)

        edited = json.loads(json.dumps(cfg))
        edited["cameras"][0]["name"] = "Cooking area"
        gw.config_path.write_text(yaml.safe_dump(edited, sort_keys=False))
        gw.proc.send_signal(signal.SIGHUP)
        info = collector.wait_for(lambda: next((m for m in collector.json_on(f"{prefix}/gateway")[1:]
                                                if "reloaded_at" in m), None), 20, what="the reloaded run's gateway")
        assert info["started_at"] == first["started_at"], (first, info)
        assert kg_e2e.parse_time(info["reloaded_at"]) > kg_e2e.parse_time(first["started_at"]), info
        # The new run's own frames: its stream opened again.
        collector.wait_for(lambda: (c := last("cameras/cam/state")) and c["name"] == "Cooking area" and
                           c["fps_in"] > 0, 20, what="the camera streaming in the reloaded run")
        time.sleep(1.5)

        def since(topic):
            return [m for m in collector.messages[mark:] if m[0] == f"{prefix}/{topic}"]

        assert all(m[1] == b"online" for m in since("availability")), since("availability")
        for topic in ("cameras/cam/state", "sensors/fridge/state"):
            states = [json.loads(m[1]) for m in since(topic)]
            assert states and all(s["online"] for s in states), (topic, [(s["online"], s["time"]) for s in states])
        assert "stopped for the reload" in gw.output()
        assert not any(e["label"] == "offline" for e in collector.events()), collector.events()

        # Another site: the old one is left, and said offline as at a stop.
        moved = json.loads(json.dumps(edited))
        moved["site"]["id"] = "test-site-2"
        gw.config_path.write_text(yaml.safe_dump(moved, sort_keys=False))
        gw.proc.send_signal(signal.SIGHUP)
        collector.wait_for(lambda: kg_e2e.retained(broker, f"{prefix}/availability") == "offline", 20,
                           what="the old site offline")
        collector.wait_for(lambda: kg_e2e.retained(broker, "kitchen/test-site-2/availability") == "online", 20,
                           what="the new site online")
        assert json.loads(kg_e2e.retained(broker, f"{prefix}/cameras/cam/state"))["online"] is False
        schemas.validate_all(collector)
    finally:
        feeding.set()
        feeder.join(10)
