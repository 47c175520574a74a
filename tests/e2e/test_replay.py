"""Sequence numbers and replay (docs/mqtt.md): a real gateway and a real Mosquitto, the test playing the
monitoring room with a plain MQTT client. The events and clip reports of a run carry one stream and
the numbers 1..N without a gap; a replay request gets the kept messages again byte for byte, numbers
the outbox no longer keeps as `lost` "not kept", another stream as "unknown stream"; a malformed
request is logged and the gateway keeps answering. And the loss this exists for: a broker without
persistence restarted while a persistent-session subscriber is away."""

import json
import time

import paho.mqtt.client as mqtt

import kg_e2e

SITE = "test-site"
EVENTS = f"kitchen/{SITE}/events"
REPLAY = f"kitchen/{SITE}/replay"
LOST = f"kitchen/{SITE}/lost"


def flicker(clips):
    return clips("flicker", [("normal", 2), ("black", 2)] * 8)  # 32 s, looped


def config(broker, clips, tmp_path, **outbox):
    cam = kg_e2e.camera("cam", flicker(clips), input={"loop": True}, analysis={"fps": 4},
                        health={"confirm": "500ms", "clear": "500ms"})
    cfg = kg_e2e.base_config(broker, [cam], tmp_path)
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
    gw = kg_e2e.Gateway(tmp_path, config(broker, clips, tmp_path, keep_sent_size="4KiB"))
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
        info = json.loads(kg_e2e.retained(broker, f"kitchen/{SITE}/gateway"))
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
        time.sleep(8)  # messages flow, acknowledged by the broker, queued for the room's session
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
