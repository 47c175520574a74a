"""Sequence numbers and replay (docs/mqtt.md): a real gateway and a real Mosquitto, the test playing the
monitoring room with a plain MQTT client. The events and clip reports of a run carry one stream and
the numbers 1..N without a gap; a replay request gets the kept messages again byte for byte, numbers
the outbox no longer keeps as `lost` "not kept", another stream as "unknown stream"; a malformed
request is logged and the gateway keeps answering. And the loss this exists for: a broker without
persistence restarted while a persistent-session subscriber is away; and the same with the real
kitchen-monitor as the room, which finds the gap and asks for it by itself."""

import datetime
import json
import signal
import time

import paho.mqtt.client as mqtt
import paho.mqtt.publish as publish
import yaml

import kg_e2e
import test_monitor  # its Monitor: the room's side, on a real kitchen-monitor

SITE = "test-site"
EVENTS = f"kitchen/{SITE}/events"
REPLAY = f"kitchen/{SITE}/replay"
LOST = f"kitchen/{SITE}/lost"


def flicker(clips):
    return clips("flicker", [("normal", 2), ("black", 2)] * 8)  # 32 s, looped


def config(broker, clips, tmp_path, cameras=("cam",), **outbox):
    cams = [kg_e2e.camera(c, flicker(clips), input={"loop": True}, analysis={"fps": 4},
                          health={"confirm": "500ms", "clear": "500ms"}) for c in cameras]
    cfg = kg_e2e.base_config(broker, cams, tmp_path)
    cfg["outbox"].update(outbox)
    return cfg


def numbered(collector):
    """(seq, stream, topic, payload bytes) of every event message and clip report, in arrival order."""
    out = []
    for topic, payload, _, _ in list(collector.messages):
        if topic == EVENTS or (topic.startswith(EVENTS + "/") and topic.endswith("/clip")):
            j = json.loads(payload)
            out.append((j["seq"], j["stream"], topic, payload))
    return out


def ask(client, stream, first, last, request_id):
    body = {"request_id": request_id, "site": SITE, "stream": stream, "from": first, "to": last,
            "monitor": "e2e-monitor", "time": "2026-12-01T10:00:00.000Z"}
    client.publish(REPLAY, json.dumps(body), qos=1).wait_for_publish(5)


def lost_answers(collector, request_id):
    return [j for j in collector.json_on(LOST) if j["request_id"] == request_id]


def monitor_client(broker):
    client = mqtt.Client(client_id=f"e2e-room-{time.time_ns()}")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    kg_e2e.wait_until(client.is_connected, 5, what="the room's client connected")
    return client


def test_numbers_without_gaps_and_replay_answers(tmp_path, clips, broker, collector, schemas):
    # About 8 messages fit in the sent table: the first numbers are pushed out as the run goes on.
    # Two cameras: their events share one numbering and bring the 20 messages in half the time.
    gw = kg_e2e.Gateway(tmp_path, config(broker, clips, tmp_path, cameras=("cam", "cam2"), keep_sent_size="4KiB"))
    room = monitor_client(broker)
    try:
        kg_e2e.wait_until(lambda: len(numbered(collector)) >= 20, 90, what="20 numbered messages")
        got = numbered(collector)
        streams = {s for _, s, _, _ in got}
        assert len(streams) == 1, streams
        stream = streams.pop()
        seqs = [n for n, _, _, _ in got]
        assert seqs == list(range(1, len(seqs) + 1)), f"not 1..N in order without gaps: {seqs}"
        assert any(t.endswith("/clip") for _, _, t, _ in got), "clip reports share the numbering"

        # The retained gateway message names the stream and how far the broker acknowledged it.
        info = json.loads(kg_e2e.wait_until(lambda: kg_e2e.retained(broker, f"kitchen/{SITE}/gateway"), 10,
                                            what="the retained gateway message"))
        assert info["stream"] == stream
        assert 1 <= info["seq"] <= max(seqs) + 5

        # The last numbers received are still kept: sent again unchanged, byte for byte.
        last = max(seqs)
        original = {n: (t, p) for n, _, t, p in got if n >= last - 2}
        before = len(collector.messages)
        ask(room, stream, last - 2, last, "recent")
        copies = lambda: [(t, p) for t, p, _, _ in collector.messages[before:]
                          if (t == EVENTS or t.endswith("/clip")) and json.loads(p)["seq"] in original]
        kg_e2e.wait_until(lambda: len(copies()) >= 3, 15, what="the 3 replayed messages")
        for topic, payload in copies():
            assert (topic, payload) == original[json.loads(payload)["seq"]]
        assert not lost_answers(collector, "recent")

        # The first numbers went out of the sent table long ago: lost, "not kept", in one message.
        ask(room, stream, 1, 3, "oldest")
        kg_e2e.wait_until(lambda: lost_answers(collector, "oldest"), 15, what="the lost answer")
        assert lost_answers(collector, "oldest") == [
            {"site": SITE, "stream": stream, "from": 1, "to": 3, "reason": "not kept", "request_id": "oldest",
             "time": lost_answers(collector, "oldest")[0]["time"]}]

        # Bad requests are logged with what is wrong, and the gateway keeps answering.
        room.publish(REPLAY, b"{ not json", qos=1).wait_for_publish(5)
        ask(room, stream, 5, 2, "reversed")
        other = "0123456789abcdef" if stream != "0123456789abcdef" else "fedcba9876543210"
        ask(room, other, 1, 40, "elsewhere")
        kg_e2e.wait_until(lambda: lost_answers(collector, "elsewhere"), 15, what="the unknown stream answer")
        answer = lost_answers(collector, "elsewhere")
        assert [(a["from"], a["to"], a["reason"], a["stream"]) for a in answer] == [(1, 40, "unknown stream", other)]
        out = gw.output()
        assert "replay request ignored: not JSON: { not json" in out
        assert "replay request ignored: 'from' 5 is after 'to' 2" in out
        assert not lost_answers(collector, "reversed")
        assert gw.running()

        # Numbers above the highest given are ignored: nothing is sent for them.
        ask(room, stream, 100000, 100009, "future")
        kg_e2e.wait_until(lambda: "replay request future" in gw.output(), 15, what="the future request handled")
        assert "10 above the highest number given" in gw.output()
        assert not lost_answers(collector, "future")

        assert gw.terminate() == 0
        # The gateway message followed the acknowledgements: republished only when its number changed.
        announced = [j["seq"] for j in collector.json_on(f"kitchen/{SITE}/gateway")]
        assert len(announced) >= 5 and announced == sorted(announced), announced
        assert all(a != b for a, b in zip(announced, announced[1:])), f"republished unchanged: {announced}"
        assert announced[-1] >= max(seqs) - 3, (announced, max(seqs))
        # Still no gap after everything: replays carried their old numbers, lost messages none.
        seqs = sorted({n for n, _, _, _ in numbered(collector)})
        assert seqs == list(range(1, len(seqs) + 1))
        # Every message keeps its schema, but for the request this test broke on purpose.
        checked = 0
        for topic, payload, _, _ in list(collector.messages):
            if payload != b"{ not json":
                schemas.validate(topic, payload)
                checked += 1
        assert checked > 40
    finally:
        room.loop_stop()
        if gw.running():
            gw.kill()


def test_a_broker_that_lost_its_queue_is_caught_up_by_replay(tmp_path, clips, schemas):
    """The loss the numbers exist for: the broker acknowledged the messages (the gateway deleted them
    from its queue) and then lost them with its own restart, before the room's persistent session
    received them. The room sees the gap, asks, and gets every message again."""
    broker = kg_e2e.Broker(tmp_path)  # persistence false: a restart forgets sessions and queues
    room_id = f"e2e-room-{time.time_ns()}"
    room = kg_e2e.Collector(broker, topic=f"kitchen/{SITE}/#", persistent=True, client_id=room_id)
    gw = kg_e2e.Gateway(tmp_path, config(broker, clips, tmp_path))
    asker = None
    try:
        kg_e2e.wait_until(lambda: len(numbered(room)) >= 3, 60, what="the first numbered messages")
        room.close()  # the room goes away; its session would queue what comes meanwhile
        # Messages flow, acknowledged by the broker (the gateway's retained message says how far) and
        # queued for the room's session: two of them are enough for a gap.
        last = max(n for n, _, _, _ in numbered(room))
        kg_e2e.wait_until(lambda: json.loads(kg_e2e.retained(broker, f"kitchen/{SITE}/gateway") or "{}")
                          .get("seq", 0) >= last + 2, 30, interval=0.5,
                          what="two more numbered messages acknowledged by the broker")
        broker.stop()
        broker.start()  # ... and forgotten by the restart
        room2 = kg_e2e.Collector(broker, topic=f"kitchen/{SITE}/#", persistent=True, client_id=room_id)
        asker = monitor_client(broker)
        try:
            kg_e2e.wait_until(lambda: numbered(room2), 60, what="a numbered message after the restart")
            seen = sorted({n for n, _, _, _ in numbered(room) + numbered(room2)})
            stream = numbered(room2)[0][1]
            missing = [n for n in range(1, max(seen) + 1) if n not in seen]
            assert missing, f"no gap to catch up: {seen}"
            print(f"\nbroker restart lost {len(missing)} numbered messages: {missing[0]}..{missing[-1]}")
            ask(asker, stream, missing[0], missing[-1], "catch-up")
            kg_e2e.wait_until(lambda: not [n for n in missing if n not in {x for x, _, _, _ in numbered(room2)}],
                              30, what="every missing number replayed")
            assert not lost_answers(room2, "catch-up")
            schemas.validate_all(room2)
        finally:
            room2.close()
        assert gw.terminate() == 0
    finally:
        if asker:
            asker.loop_stop()
        if gw.running():
            gw.kill()
        broker.kill()


ROOM_REPLAY = {"replay": {"after": "2s", "every": "4s"}}


class GasSite:
    """A canteen whose only source is a gas detector on its own broker, so that each alarm is a
    start and an end made on demand; and what of them the collector and the room have."""

    def __init__(self, tmp_path, broker, collector, gateways):
        self.local = kg_e2e.Broker(tmp_path)  # the canteen's own broker, where its gas detector publishes
        self.broker, self.collector = broker, collector
        sensors = [{"id": "gas", "kind": "gas", "location": "kitchen", "unit": "ppm", "interval": "1s",
                    "stale_after": 60, "source": {"mqtt": {"topic": "tele/gas/SENSOR", "value": "MQ2.Gas"}},
                    "thresholds": [{"label": "leak", "above": 1000, "for": "0s", "clear_for": "1s",
                                    "severity": 1}]}]
        self.config = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors, sensors_mqtt=self.local.url)
        del self.config["cameras"]
        self.mon = None
        try:
            self.gw = gateways(self.config)
            # A reading published before the gateway's subscription is granted is dropped by the broker.
            kg_e2e.wait_until(lambda: "reading 1 MQTT sensors" in self.gw.output(), 10,
                              what="the gas detector subscribed")
        except BaseException:
            self.local.kill()
            raise

    def gas(self, ppm):
        publish.single("tele/gas/SENSOR", json.dumps({"MQ2": {"Gas": ppm}}), hostname="127.0.0.1",
                       port=self.local.port)

    def sent(self):
        return {e["message_id"]: e for e in self.collector.events()}

    def leaks(self, n):
        """n gas alarms, each a start and an end the collector saw."""
        for _ in range(n):
            before = len(self.sent())
            self.gas(2500)
            kg_e2e.wait_until(lambda: len(self.sent()) == before + 1, 10, what="a leak's start")
            kg_e2e.wait_until(lambda: (self.gas(10), len(self.sent()) == before + 2)[1], 10, interval=0.5,
                              what="its end")

    def acknowledged(self):
        """Waits until the gateway's retained message says the broker acknowledged everything sent."""
        top = max(e["seq"] for e in self.sent().values())
        kg_e2e.wait_until(lambda: json.loads(kg_e2e.retained(self.broker, f"kitchen/{SITE}/gateway") or "{}")
                          .get("seq") == top, 10, what="the gateway's acknowledged seq published")

    def in_room(self):
        ids = {e["id"] for e in self.sent().values()}
        got = set()
        for i in ids:
            status, detail = self.mon.request("GET", f"/api/alerts/{i}")
            if status == 200:
                got |= {h["message_id"] for h in detail["history"]}
        return got

    def site(self):
        return [s for s in self.mon.get("/api/sites") if s["site"] == SITE][0]

    def close(self):
        self.local.kill()


def test_the_room_gets_back_what_the_broker_lost(tmp_path, broker, collector, gateways, schemas):
    """Both real sides: the gateway deletes a message once the broker acknowledged it; a broker that
    then dies before it saved the monitor's queue (here: one without persistence, killed while the
    monitor is away) loses it. The real kitchen-monitor sees the gap when the gateway reconnects,
    asks the real gateway on `replay`, and gets the very same messages again; what the gateway no
    longer keeps comes back as `lost`, counted, never asked for again."""
    canteen = GasSite(tmp_path, broker, collector, gateways)
    try:
        gw, config = canteen.gw, canteen.config
        sent, leaks, in_room, site = canteen.sent, canteen.leaks, canteen.in_room, canteen.site
        canteen.mon = mon = test_monitor.Monitor(tmp_path, broker, extra=ROOM_REPLAY)

        leaks(2)
        kg_e2e.wait_until(lambda: in_room() == set(sent()), 15, what="the first alarms in the room")
        first = sent()
        seqs = sorted(e["seq"] for e in first.values())
        assert seqs == list(range(1, len(seqs) + 1)), seqs
        assert len({e["stream"] for e in first.values()}) == 1

        # The room goes away (its persistent session keeps a queue on the broker), three more alarms
        # are acknowledged by the broker and leave the gateway's outbox, and the broker dies without
        # having saved them.
        assert mon.terminate() == 0
        leaks(3)
        kg_e2e.wait_until(lambda: json.loads(kg_e2e.retained(broker, "kitchen/test-site/gateway") or "{}")
                          .get("seq") == len(sent()), 10, what="the gateway's acknowledged seq published")
        broker.kill()
        broker.start()
        canteen.mon = mon = test_monitor.Monitor(tmp_path, broker, extra=ROOM_REPLAY)

        # The gateway reconnects and says how far it got; the room sees the gap and asks for it.
        kg_e2e.wait_until(lambda: in_room() == set(sent()), 40, what="the lost alarms replayed into the room")
        assert site()["missing_messages"] == 0 and site()["lost_messages"] == 0
        assert len(mon.alert_ids()) == len({e["id"] for e in sent().values()})  # each alarm once
        replayed = [json.loads(p) for t, p, r, _ in collector.messages if t == "kitchen/test-site/events"]
        assert len(replayed) > len(sent())  # the replay went over the broker again...
        for m in replayed:  # ...byte for byte the messages first sent, valid as any event
            assert m == sent()[m["message_id"]]
        for t, p, r, _ in collector.messages:
            if t == "kitchen/test-site/replay":
                schemas.validate(t, p)

        # What the gateway no longer keeps comes back as lost: counted, not asked for again.
        config["outbox"]["keep_sent"] = "0"
        gw.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        reloads = gw.output().count("stopped for the reload")
        gw.proc.send_signal(signal.SIGHUP)
        kg_e2e.wait_until(lambda: gw.output().count("stopped for the reload") > reloads, 15, what="the reload")
        kg_e2e.wait_until(lambda: gw.output().count("reading 1 MQTT sensors") >= 2, 15, what="the reloaded run")
        assert mon.terminate() == 0
        before = set(sent())
        leaks(1)
        gone = set(sent()) - before
        kg_e2e.wait_until(lambda: json.loads(kg_e2e.retained(broker, "kitchen/test-site/gateway") or "{}")
                          .get("seq") == max(e["seq"] for e in sent().values()), 10,
                          what="the gateway's acknowledged seq published")
        broker.kill()
        broker.start()
        canteen.mon = mon = test_monitor.Monitor(tmp_path, broker, extra=ROOM_REPLAY)
        kg_e2e.wait_until(lambda: site()["lost_messages"] == len(gone), 40, what="the lost messages counted")
        assert site()["missing_messages"] == 0
        lost = [json.loads(p) for t, p, r, _ in collector.messages if t == "kitchen/test-site/lost"]
        assert lost and all(m["reason"] == "not kept" for m in lost), lost
        for t, p, r, _ in collector.messages:
            if t == "kitchen/test-site/lost":
                schemas.validate(t, p)
        asked = mon.output().count("replay")
        time.sleep(10)  # two more `every` periods: nothing more is asked for
        assert mon.output().count("replay") == asked
        assert mon.terminate() == 0
    finally:
        canteen.close()


def test_a_new_sites_first_alarms_lost_by_the_broker_are_asked_for(tmp_path, broker, collector, gateways,
                                                                   schemas):
    """A canteen that joins while the room runs: its first alarms reach the broker, which
    acknowledges them (the gateway lets them go) and dies, without persistence, before the room,
    away for a moment, had them. The room first hears of the site through the gateway message the
    restarted broker gets at the reconnect, at seq 4. It used to take 1-4 as delivered before it
    watched, as for a site older than the room: four alarms lost with no gap shown. The gateway
    message says when the stream began; begun after the room's start, the room asks from 1."""
    room = test_monitor.Monitor(tmp_path, broker, extra=ROOM_REPLAY)  # the room, watching first
    kg_e2e.wait_until(lambda: "following sites since" in room.output(), 10, what="the room subscribed")
    assert room.terminate() == 0  # away: its persistent session keeps a queue on the broker
    canteen = GasSite(tmp_path, broker, collector, gateways)
    try:
        canteen.leaks(2)
        canteen.acknowledged()
        first = canteen.sent()
        assert sorted(e["seq"] for e in first.values()) == [1, 2, 3, 4]
        gateway = json.loads(kg_e2e.retained(broker, f"kitchen/{SITE}/gateway"))
        schemas.validate(f"kitchen/{SITE}/gateway", json.dumps(gateway))
        began = datetime.datetime.fromisoformat(gateway["stream_started"].replace("Z", "+00:00"))
        run = datetime.datetime.fromisoformat(gateway["started_at"].replace("Z", "+00:00"))
        assert abs((began - run).total_seconds()) < 30  # a new outbox: its stream began with this run
        broker.kill()
        broker.start()
        canteen.mon = test_monitor.Monitor(tmp_path, broker, extra=ROOM_REPLAY)
        kg_e2e.wait_until(lambda: canteen.in_room() == set(first), 40,
                          what="the new site's first alarms replayed into the room")
        assert canteen.site()["missing_messages"] == 0 and canteen.site()["lost_messages"] == 0
        assert "following stream " + gateway["stream"] + " from its first number" in canteen.mon.output()
        assert canteen.mon.terminate() == 0
    finally:
        canteen.close()
