"""Availability: retained `online` while the gateway runs; SIGTERM exits 0 leaving a retained
`offline`; a restart says `online` again; a SIGKILL makes the broker publish the last will `offline`
at once (the socket closes with the process, no keep-alive wait). Retained values are read by fresh
subscribers, as a monitoring room that connects later would see them."""

import json
import re
import time

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
    assert kg_e2e.retained(broker, TOPIC) == "offline"

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
    assert kg_e2e.retained(broker, TOPIC) == "offline"  # the will is retained
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
        cfg = kg_e2e.base_config(broker, [kg_e2e.camera("cam", clip, input={"loop": True})], tmp_path / name)
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
    assert first.terminate() == 0 and second.terminate() == 0
