"""The outbox against a hostile path to the monitoring room: a broker that refuses one message by
disconnecting (max_packet_size), an uplink so slow that a PUBACK takes longer than any timeout, a
connection that drops while it is being set up. In each the alerts must arrive, once each."""

import http.client
import json
import signal
import re
import sqlite3
import threading
import time

import kg_e2e

QUEUED = re.compile(r"event (\S+) queued")


def flicker(clips):
    return clips("flicker", [("normal", 2), ("black", 2)] * 8)  # 32 s, looped


def cameras(clip, n):
    return [kg_e2e.camera(f"cam{i}", clip, input={"loop": True}, analysis={"fps": 4},
                          health={"confirm": "500ms", "clear": "500ms"}) for i in range(n)]


def local_get(gw, path):
    """(status, text) of a GET on the gateway's local HTTP side."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.api_port(), timeout=10)
    conn.request("GET", path)
    r = conn.getresponse()
    text = r.read().decode()
    conn.close()
    return r.status, text


def metric(gw, name):
    text = local_get(gw, "/metrics")[1]
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, f"{name} not in /metrics:\n{text}"
    return float(found.group(1))


def test_a_message_the_broker_refuses_is_moved_aside_and_the_rest_flows(tmp_path, clips, schemas):
    # Every snapshot (a JPEG of some KiB) is over the limit; event JSON is well under it.
    broker = kg_e2e.Broker(tmp_path, extra_conf="max_packet_size 2500\n")
    collector = kg_e2e.Collector(broker)
    gw = kg_e2e.Gateway(tmp_path, kg_e2e.base_config(broker, cameras(flicker(clips), 2), tmp_path))
    try:
        # Eight events queued (about 10 s: two cameras, each opening and closing one every 4 s), their
        # refused snapshots among them: enough to show the alerts get past those.
        made = kg_e2e.wait_until(lambda: len(m := QUEUED.findall(gw.output())) >= 8 and m, 25,
                                 what="8 events queued")

        def stuck():
            received = {e["message_id"] for e in collector.events()}
            return [m for m in made if m not in received]

        try:
            # Snapshots keep coming and each costs a reconnect: allow the queue time to get there.
            kg_e2e.wait_until(lambda: not stuck(), 30, what="every queued event delivered")
        except AssertionError:
            raise AssertionError(f"{len(stuck())} of {len(made)} events stuck behind a refused message") from None
        dead = metric(gw, "kg_outbox_dead_total")
        print(f"\nrefused snapshots: {len(made)} events delivered, {dead:g} messages moved aside")
        assert dead >= 1
        assert gw.terminate() == 0
        assert not [t for t, *_ in collector.messages if t.endswith("/snapshot")]
        assert "moved aside to the outbox's dead table" in gw.output()
        # Kept, not deleted: the refused snapshots wait in the dead table for someone to look at.
        with sqlite3.connect(tmp_path / "outbox.db") as db:
            rows = db.execute("SELECT topic, length(payload), reason FROM dead").fetchall()
        assert len(rows) >= dead and all(t.endswith("/snapshot") and n > 2500 for t, n, _ in rows), rows
        schemas.validate_all(collector)
    finally:
        gw.kill() if gw.running() else None
        collector.close()
        broker.kill()


def test_messages_moved_aside_go_again_once_the_broker_takes_them(tmp_path, clips):
    """After the installer raises the broker's limit, POST /api/outbox/requeue sends the snapshots the
    broker refused: they reach the room instead of staying aside for ever."""
    broker = kg_e2e.Broker(tmp_path, extra_conf="max_packet_size 2500\n")
    collector = kg_e2e.Collector(broker)
    config = kg_e2e.base_config(broker, [kg_e2e.camera("cam0", clips("flicker-once", [("normal", 2), ("black", 3),
                                                                                   ("normal", 3)]),
                                                     input={"loop": False}, analysis={"fps": 4},
                                                     health={"confirm": "500ms", "clear": "500ms"})], tmp_path)
    config["api"] = {"listen": "127.0.0.1:0", "token": "tok-requeue-123456"}
    gw = kg_e2e.Gateway(tmp_path, config)
    auth = {"Authorization": "Bearer tok-requeue-123456"}

    def api(method, path):
        conn = http.client.HTTPConnection("127.0.0.1", gw.api_port(), timeout=10)
        conn.request(method, path, headers=auth)
        r = conn.getresponse()
        body = r.read()
        conn.close()
        return r.status, body

    try:
        # The clip's one event (black, then not) has one picture, its start's, over the limit.
        kg_e2e.wait_until(lambda: metric(gw, "kg_outbox_dead_total") >= 1, 60, interval=0.5,
                          what="the refused snapshots moved aside")
        status, body = api("GET", "/api/outbox/dead")
        aside = json.loads(body)
        assert status == 200 and len(aside) == 1 and all(d["topic"].endswith("/snapshot") for d in aside), aside
        assert api("GET", "/api/outbox/requeue")[0] == 405  # an action: POST only
        # The installer raises the limit and restarts the broker (Mosquitto 2.0.11 keeps the old
        # limit through a SIGHUP reload), then asks.
        connects = gw.output().count("[mqtt] connected")
        collector.subscribed.clear()
        broker.stop()
        broker.conf.write_text(broker.conf.read_text().replace("max_packet_size 2500\n", ""))
        broker.start()
        kg_e2e.wait_until(lambda: gw.output().count("[mqtt] connected") > connects, 15, what="the gateway back")
        assert collector.subscribed.wait(15), "the collector did not subscribe again"  # its own reconnect
        status, body = api("POST", "/api/outbox/requeue")
        assert status == 200 and json.loads(body)["requeued"] == len(aside), body
        topics = lambda: [t for t, *_ in collector.messages if t.endswith("/snapshot")]
        kg_e2e.wait_until(lambda: len(topics()) >= len(aside), 30, what="the snapshots delivered")
        assert sorted(topics()) == sorted(d["topic"] for d in aside)
        assert json.loads(api("GET", "/api/outbox/dead")[1]) == []
        assert gw.terminate() == 0
    finally:
        gw.kill() if gw.running() else None
        collector.close()
        broker.kill()


def test_a_slow_uplink_gets_each_message_once(tmp_path, clips, schemas):
    # 300 bytes/s: a snapshot of several KiB takes longer than 10 s to reach the broker.
    broker = kg_e2e.Broker(tmp_path)
    collector = kg_e2e.Collector(broker)
    link = kg_e2e.ThrottledLink(broker.port, rate=300)
    black = clips("black", [("black", 20)])
    cfg = kg_e2e.base_config(broker, cameras(black, 1), tmp_path)
    cfg["mqtt"].update({"url": link.url, "keepalive": "120s", "state_interval": "600s"})
    gw = kg_e2e.Gateway(tmp_path, cfg)
    try:
        start = collector.wait_for(lambda: [e for e in collector.events() if e["state"] == "start"], 30,
                                   what="the start")[0]
        snapshot = f"kitchen/test-site/events/{start['id']}/snapshot"
        collector.wait_for(lambda: collector.on(snapshot), 60, what="the snapshot through the slow link")
        time.sleep(15)  # a copy sent after a timeout would arrive within this
        copies = len(collector.on(snapshot))
        print(f"\nslow uplink: {link.carried} bytes carried, snapshot copies {copies}")
        assert copies == 1, f"the snapshot arrived {copies} times"
        # docs/mqtt.md: the snapshot follows its event's start.
        order = [t for t, p, *_ in collector.messages
                 if t == snapshot or (t.endswith("/events") and start["message_id"].encode() in p)]
        assert order[0].endswith("/events"), f"the snapshot came before the start: {order}"
        assert gw.terminate() == 0
        schemas.validate_all(collector)
    finally:
        gw.kill() if gw.running() else None
        link.close()
        collector.close()
        broker.kill()


def test_a_corrupt_outbox_file_is_moved_aside_and_a_new_durable_one_started(tmp_path, clips, schemas):
    garbage = bytes(range(256)) * 32  # 8 KiB that is no SQLite database
    (tmp_path / "outbox.db").write_bytes(garbage)
    broker = kg_e2e.Broker(tmp_path)
    collector = kg_e2e.Collector(broker)
    cfg = kg_e2e.base_config(broker, cameras(flicker(clips), 1), tmp_path,
                             evidence={"mqtt_snapshots": False, "path": str(tmp_path / "evidence")})
    gw = kg_e2e.Gateway(tmp_path, cfg, "first")
    second = None
    try:
        collector.wait_for(lambda: collector.events(), 20, what="an event through the new outbox")
        assert metric(gw, "kg_outbox_corrupt_files_total") == 1
        assert gw.terminate() == 0
        out = gw.output()
        aside = list(tmp_path.glob("outbox.db.corrupt-*"))
        assert len(aside) == 1 and aside[0].read_bytes() == garbage, aside
        assert re.search(r"error .*outbox .*moved aside to \S+outbox\.db\.corrupt-\d{8}T\d{6}Z", out), out
        assert "kept in memory only" not in out
        # Durable again: a second start opens the new file as it is, nothing moved aside.
        second = kg_e2e.Gateway(tmp_path, cfg, "second")
        kg_e2e.wait_until(lambda: "messages waiting" in second.output(), 10, what="the outbox opened")
        assert second.terminate() == 0
        assert len(list(tmp_path.glob("outbox.db.corrupt-*"))) == 1
        with sqlite3.connect(tmp_path / "outbox.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        schemas.validate_all(collector)
    finally:
        for g in (gw, second):
            if g is not None and g.running():
                g.kill()
        collector.close()
        broker.kill()


def test_a_stop_ends_every_open_event_and_the_restart_opens_a_new_one(tmp_path, clips, schemas):
    broker = kg_e2e.Broker(tmp_path)
    collector = kg_e2e.Collector(broker)
    black = clips("black", [("black", 20)])
    cams = [kg_e2e.camera("dark", black, input={"loop": True}, analysis={"fps": 4},
                          health={"confirm": "500ms", "clear": "500ms"}),
            kg_e2e.camera("gone", f"rtsp://127.0.0.1:{kg_e2e.free_port()}/cam")]  # nobody listens
    cfg = kg_e2e.base_config(broker, cams, tmp_path,
                             evidence={"mqtt_snapshots": False, "path": str(tmp_path / "evidence")})
    first = kg_e2e.Gateway(tmp_path, cfg, "first")
    second = None

    def starts(camera):
        return [e for e in collector.events() if e["state"] == "start" and e["camera"] == camera]

    try:
        collector.wait_for(lambda: starts("dark") and starts("gone"), 30, what="both cameras' events open")
        opened = {e["id"]: e for e in collector.events() if e["state"] == "start"}
        assert first.terminate() == 0
        # The ends were committed before the link closed: they are on the broker already.
        def ends():
            return {e["id"]: e for e in collector.events() if e["state"] == "end"}

        try:
            collector.wait_for(lambda: set(opened) <= set(ends()), 5, what="an end for each open event")
        except AssertionError:
            raise AssertionError(f"left open: {set(opened) - set(ends())}") from None
        ends = ends()
        for event_id in opened:
            assert ends[event_id]["end_reason"] == "gateway stopped"
        # With its best frame, as every other end: a stop sent it without one.
        dark = [ends[i] for i in opened if opened[i]["camera"] == "dark"]
        assert dark and all(e["evidence"]["snapshot_end"] for e in dark), dark
        assert all((tmp_path / "evidence" / e["evidence"]["snapshot_end"]).exists() for e in dark)
        assert {(e["camera"], e["label"]) for e in opened.values()} >= {("dark", "black"), ("gone", "offline")}

        second = kg_e2e.Gateway(tmp_path, cfg, "second")
        collector.wait_for(lambda: len(starts("dark")) >= 2, 30, what="a new start after the restart")
        again = starts("dark")[-1]
        assert again["id"] not in opened
        schemas.validate_all(collector)
    finally:
        for g in (first, second):
            if g is not None and g.running():
                g.kill()
        collector.close()
        broker.kill()


class CutAtSubscribe(kg_e2e.Relay):
    """A relay that reads the client's MQTT packets and, on each of the first len(delays)
    connections, holds back its first SUBSCRIBE and closes the connection delays[n] seconds later:
    the broker's CONNACK (and whatever came before the subscribe) got through, so the client saw the
    connection made, and then loses it while still setting it up."""

    def __init__(self, port, delays):
        self.delays = list(delays)
        self.cut = 0
        super().__init__(port)

    def carry(self, client, server, n):
        delay = self.delays[n] if n < len(self.delays) else None
        threading.Thread(target=self._client_to_server, args=(client, server, delay), daemon=True).start()
        threading.Thread(target=self.pump, args=(server, client), daemon=True).start()

    def _client_to_server(self, client, server, delay):
        buf = b""
        try:
            while data := client.recv(65536):
                buf += data
                # Whole packets only: fixed header, remaining length (1-4 bytes of 7 bits), body.
                while len(buf) >= 2:
                    length, shift, i = 0, 0, 1
                    while i < len(buf) and i <= 4:
                        length |= (buf[i] & 0x7F) << shift
                        shift += 7
                        i += 1
                        if not buf[i - 1] & 0x80:
                            break
                    else:
                        break
                    if len(buf) < i + length:
                        break
                    packet, buf = buf[:i + length], buf[i + length:]
                    if delay is not None and packet[0] >> 4 == 8:  # SUBSCRIBE
                        self.cut += 1
                        time.sleep(delay)
                        self.drop(client, server)
                        return
                    server.sendall(packet)
        except OSError:
            pass
        self.drop(client, server)


def test_a_connection_lost_while_it_is_set_up_is_made_again(tmp_path, clips, schemas):
    """The broker's CONNACK arrives, then the connection drops while the gateway subscribes to its
    replay requests (a broker restarting, a broker that answers a denied subscribe by closing). The
    link used to mark itself connected after the loss had been reported: every alert was then
    refused for good, with nothing to reconnect, until a restart."""
    broker = kg_e2e.Broker(tmp_path)
    collector = kg_e2e.Collector(broker)
    relay = CutAtSubscribe(broker.port, [0, 0.05, 0.3, 1.0, 0, 0.05, 0.3, 1.0])
    config = kg_e2e.base_config(broker, cameras(flicker(clips), 1), tmp_path)
    config["mqtt"]["url"] = relay.url
    gw = kg_e2e.Gateway(tmp_path, config)
    try:
        try:
            kg_e2e.wait_until(lambda: relay.cut == len(relay.delays) and relay.connections > relay.cut, 60)
        except AssertionError:
            raise AssertionError(f"{relay.connections} connections, {relay.cut} cut of {len(relay.delays)}: the link "
                                 f"did not connect again:\n{gw.output()[-3000:]}") from None
        made = kg_e2e.wait_until(lambda: len(m := QUEUED.findall(gw.output())) >= 4 and m, 30, what="4 events queued")

        def stuck():
            received = {e["message_id"] for e in collector.events()}
            return [m for m in made if m not in received]

        kg_e2e.wait_until(lambda: not stuck(), 30, what="every queued event delivered")
        assert gw.terminate() == 0
        out = gw.output()
        assert "lost while it was being set up; connecting again" in out, out[-3000:]
        schemas.validate_all(collector)
    finally:
        gw.kill() if gw.running() else None
        collector.close()
        relay.close()
        broker.kill()


def readyz(gw):
    return local_get(gw, "/readyz")


def site_behind_acl(tmp_path, clips, acl_text):
    """A Mosquitto whose ACL file (returned, to be mended) holds `acl_text`, a collector (the room,
    anonymous), and a gateway of one flickering camera with the account `test-site`."""
    acl = tmp_path / "acl"
    acl.write_text(acl_text)
    broker = kg_e2e.Broker(tmp_path, extra_conf=f"acl_file {acl}\n")
    collector = kg_e2e.Collector(broker)
    config = kg_e2e.base_config(broker, cameras(flicker(clips), 1), tmp_path)
    config["mqtt"]["username"] = "test-site"
    return acl, broker, collector, kg_e2e.Gateway(tmp_path, config)


def test_a_broker_whose_acl_drops_the_gateways_messages_gets_them_once_it_takes_them(tmp_path, clips, schemas):
    """An MQTT 3.1.1 broker acknowledges a publish its ACL refuses as if it took it (Mosquitto 2.0):
    a gateway the ACL did not let write (its username or topic prefix not the ACL's) counted its alerts
    delivered, /readyz said nothing, and the room never saw them (the deployment review). Its own
    `online` must come back to it: until it does, nothing is sent and the outbox keeps every message,
    said in the log, /readyz and /metrics; once the ACL is mended, all of it goes, once each."""
    # The room (the collector, anonymous) reads everything; the site may read its topics, not write them.
    acl, broker, collector, gw = site_behind_acl(tmp_path, clips, "topic read #\npattern read kitchen/%u/#\n")
    try:
        made = kg_e2e.wait_until(lambda: len(m := QUEUED.findall(gw.output())) >= 2 and m, 25,
                                 what="2 events queued")
        kg_e2e.wait_until(lambda: "never delivered it back to the gateway's own subscription" in gw.output(),
                          20, what="the dropped online said")
        status, body = readyz(gw)
        assert status == 503 and "nothing is sent: this gateway's own online" in body, body
        assert metric(gw, "kg_mqtt_delivery_confirmed") == 0
        assert metric(gw, "kg_outbox_delivered_total") == 0 and metric(gw, "kg_outbox_depth") >= 2
        assert not [t for t, *_ in collector.messages if t.startswith("kitchen/test-site/")]
        # The installer mends the ACL; Mosquitto reads it again on SIGHUP.
        acl.write_text("topic read #\npattern read kitchen/%u/#\npattern write kitchen/%u/#\n")
        broker.proc.send_signal(signal.SIGHUP)
        received = lambda: {e["message_id"] for e in collector.events()}
        kg_e2e.wait_until(lambda: set(made) <= received(), 40, what="the kept events delivered")
        assert "the broker delivers what this gateway publishes again" in gw.output()
        assert metric(gw, "kg_mqtt_delivery_confirmed") == 1
        assert "nothing is sent" not in readyz(gw)[1]
        # The site's numbered messages (events and clip reports), from the first, none twice, none missing.
        kg_e2e.wait_until(lambda: not metric(gw, "kg_outbox_depth"), 20, what="the outbox emptied")
        seqs = sorted(json.loads(p)["seq"] for t, p, *_ in collector.messages
                      if t.startswith("kitchen/test-site/events") and not t.endswith("/snapshot"))
        assert seqs == list(range(1, len(seqs) + 1)), seqs
        schemas.validate_all(collector)
    finally:
        gw.kill() if gw.running() else None
        collector.close()
        broker.kill()


def test_a_broker_that_hides_the_gateways_own_topic_gets_nothing_until_it_shows_it(tmp_path, clips):
    """A broker whose ACL lets the gateway write but not read its own availability topic: Mosquitto
    grants the subscription and delivers nothing on it, which looks the same as a refused write, so
    the gateway cannot tell its messages reach the room. It holds them and says what the broker must
    allow; once it does, they go."""
    acl, broker, collector, gw = site_behind_acl(tmp_path, clips, "topic read #\npattern write kitchen/%u/#\n")
    try:
        kg_e2e.wait_until(lambda: QUEUED.search(gw.output()), 25, what="an event queued")
        said = "the broker must let user 'test-site' write kitchen/test-site/# and read kitchen/test-site/availability"
        kg_e2e.wait_until(lambda: said in gw.output(), 20, what="what the broker must allow said")
        assert readyz(gw)[0] == 503 and not collector.events()
        acl.write_text("topic read #\npattern write kitchen/%u/#\npattern read kitchen/%u/availability\n")
        broker.proc.send_signal(signal.SIGHUP)
        kg_e2e.wait_until(lambda: collector.events(), 40, what="the events delivered")
        assert metric(gw, "kg_mqtt_delivery_confirmed") == 1
    finally:
        gw.kill() if gw.running() else None
        collector.close()
        broker.kill()
