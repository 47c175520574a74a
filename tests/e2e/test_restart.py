"""A gateway that goes away with events open, and the room's view of them afterwards.

1. Killed (SIGKILL) with a camera event and a sensor event open: the next start ends both, same ids,
   `end_reason` "gateway restarted", once each, and kitchen-monitor shows them ended. A clean stop
   then leaves nothing for the start after it to end; a reload ends each open event once
   ("gateway stopped"), never again as "gateway restarted".
2. Stopped 1-2 s after an event's start while its clip still waits for `clip_post`: the clip is cut
   from what the camera's ring holds, plays, and its report reaches the broker before the gateway
   exits.
3. Killed (SIGKILL) while a start's clip still waits for `clip_post`: the next start sends the clip
   report the room waits for, once, as an error, and deletes what a crash may have left at the clip's
   path.
4. Stopped with a camera's condition open: its retained state is published once more, not online
   and with no conditions, so neither a plain stop nor a reload that removes the camera leaves the
   room a condition whose event has ended."""

import json
import signal
import sqlite3
import subprocess
import time

import paho.mqtt.publish as publish

import kg_e2e
import test_monitor  # its Monitor: the room's side, on a real kitchen-monitor

FRIDGE_TOPIC = "zigbee2mqtt/sample_fridge"


def scene(clips):
    black = clips("black", [("black", 20)])
    camera = kg_e2e.camera("dark", black, input={"loop": True}, analysis={"fps": 4},
                           health={"confirm": "500ms", "clear": "500ms"})
    # Read from the test's broker: a reading above 8 degC opens an event at once.
    fridge = {"id": "sample-fridge", "name": "Sample fridge", "location": "sample_fridge", "interval": "1s",
              "stale_after": 600, "source": {"mqtt": {"topic": FRIDGE_TOPIC, "value": "temperature"}},
              "thresholds": [{"label": "too_warm", "above": 8, "for": "0s", "clear_for": "1s"}]}
    return camera, fridge


def open_in_outbox(tmp_path):
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        return [row[0] for row in db.execute("SELECT id FROM open_events")]


def test_events_left_open_by_a_kill_are_ended_at_the_next_start(tmp_path, broker, collector, clips, gateways,
                                                                 schemas):
    mon = test_monitor.Monitor(tmp_path, broker)
    camera, fridge = scene(clips)
    cfg = kg_e2e.base_config(broker, [camera], tmp_path, sensors=[fridge],
                             evidence={"mqtt_snapshots": False, "path": str(tmp_path / "evidence")})

    def starts():
        return {e["id"]: e for e in collector.events() if e["state"] == "start"}

    def ends(event_id):
        return [e for e in collector.events() if e["message_id"] == f"{event_id}:end"]

    def warm():
        publish.single(FRIDGE_TOPIC, json.dumps({"temperature": 9.5}), hostname="127.0.0.1", port=broker.port)

    try:
        first = gateways(cfg, "first")

        def both_open():
            warm()
            return {(e.get("camera"), e.get("sensor"), e["label"]) for e in starts().values()} >= {
                ("dark", None, "black"), (None, "sample-fridge", "too_warm")}

        kg_e2e.wait_until(both_open, 30, interval=1, what="a camera and a sensor event open")
        opened = starts()
        kg_e2e.wait_until(lambda: set(opened) <= set(mon.alert_ids()), 10, what="the room showing them")
        assert all(mon.get(f"/api/alerts/{i}")["condition"] == "start" for i in opened)
        first.kill()  # SIGKILL: no end, the broker publishes the last will
        assert not [e for e in collector.events() if e["state"] == "end"]

        second = gateways(cfg, "second")
        for event_id, start in opened.items():
            end = collector.wait_for(lambda: ends(event_id), 20, what=f"an end for {event_id}")[0]
            assert end["end_reason"] == "gateway restarted"
            for key in ("check", "label", "severity", "zone", "start_time", "camera", "sensor", "unit"):
                assert end.get(key) == start.get(key), (key, start, end)
            assert end["end_time"] == end["time"] and kg_e2e.parse_time(end["time"]) > kg_e2e.parse_time(
                start["time"])
        assert "ending them with 'gateway restarted'" in second.output()
        time.sleep(3)  # a second copy, from the record or from a resend, would arrive within this
        for event_id in opened:
            assert len(ends(event_id)) == 1, ends(event_id)
        # The room: each alert ended when the new run said so, and says why (not "cleared": the
        # condition may still be there).
        for event_id in opened:
            alert = kg_e2e.wait_until(lambda: (a := mon.get(f"/api/alerts/{event_id}"))["condition"] == "end" and a,
                                      10, what=f"{event_id} ended in the monitor")
            assert alert["end_time"] == ends(event_id)[0]["end_time"]
            assert alert["end_reason"] == "gateway restarted"

        # A clean stop ends what the second run opened ("gateway stopped") and leaves no record.
        kg_e2e.wait_until(lambda: [i for i in starts() if i not in opened], 30, what="a new event in the second run")
        assert second.terminate() == 0
        assert open_in_outbox(tmp_path) == []
        second_ids = [i for i in starts() if i not in opened]
        kg_e2e.wait_until(lambda: all(ends(i) for i in second_ids), 5, what="the stop's ends at the collector")
        assert all(ends(i)[0]["end_reason"] == "gateway stopped" for i in second_ids)

        # A reload hands the open events to the next life (the black picture goes on as one alert,
        # since the 66th session; before, it ended `gateway stopped` and started again): none is
        # ended at the reload, nor taken for left open by a crash; the stop ends each once.
        third = gateways(cfg, "third")
        kg_e2e.wait_until(lambda: [i for i in starts() if i not in opened and i not in second_ids], 30,
                          what="a new event in the third run")
        before_reload = [i for i in starts() if i not in opened and i not in second_ids]
        third.proc.send_signal(signal.SIGHUP)
        kg_e2e.wait_until(lambda: "stopped for the reload" in third.output(), 20, what="the reload")
        kg_e2e.wait_until(lambda: third.output().count("messages waiting") >= 2, 10, what="the reloaded outbox")
        time.sleep(3)
        for event_id in before_reload:
            assert ends(event_id) == [], ends(event_id)
        assert third.output().count("ending them with") == 0
        assert third.terminate() == 0
        for event_id in before_reload:
            collector.wait_for(lambda: ends(event_id), 10, what=f"an end for {event_id} at the stop")
            assert [e["end_reason"] for e in ends(event_id)] == ["gateway stopped"]
        restarted = [e for e in collector.events() if e.get("end_reason") == "gateway restarted"]
        assert sorted(e["id"] for e in restarted) == sorted(opened), restarted
        schemas.validate_all(collector)
    finally:
        mon.kill()


def ffprobe_seconds(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-count_frames", "-show_streams",
                          "-show_format", str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    video = [s for s in info["streams"] if s["codec_type"] == "video"]
    assert video and int(video[0]["nb_read_frames"]) > 0, info
    return float(info["format"]["duration"])


def test_a_stop_cuts_the_clips_still_waiting_for_their_post_roll(tmp_path, broker, collector, clips, gateways,
                                                                 schemas):
    camera, _ = scene(clips)
    cfg = kg_e2e.base_config(broker, [camera], tmp_path,
                             evidence={"mqtt_snapshots": False, "path": str(tmp_path / "evidence"),
                                       "clip_pre": "2s", "clip_post": "30s"})
    gw = gateways(cfg)
    start = collector.wait_for(lambda: [e for e in collector.events() if e["state"] == "start"], 30,
                               what="an event start")[0]
    named = start["evidence"]["clip"]
    assert named and named.endswith(".mp4")
    time.sleep(1.5)  # well inside clip_post: the clip is still pending
    stopping = time.monotonic()
    assert gw.terminate() == 0
    took = time.monotonic() - stopping
    topic = f"kitchen/test-site/events/{start['id']}/clip"
    # Queued before the outbox closed: on the broker already, not at the next start.
    reports = collector.wait_for(lambda: collector.json_on(topic), 5, what="the clip report")
    assert len(reports) == 1, reports
    report = reports[0]
    assert "error" not in report, report
    assert report["path"] == named
    # Shorter than asked (2 s + 30 s), and the report says how long it is.
    assert 0 < report["duration_s"] < 20, report
    clip = tmp_path / "evidence" / named
    assert clip.is_file() and clip.stat().st_size == report["bytes"]
    assert abs(ffprobe_seconds(clip) - report["duration_s"]) < 1.0
    assert "clip cut short" in gw.output()
    print(f"\nstop with a pending clip: {took:.2f} s to exit, clip {report['duration_s']} s, {report['bytes']} bytes")
    schemas.validate_all(collector)


def pending_clips_in_outbox(tmp_path):
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        return [row[0] for row in db.execute("SELECT event_id FROM pending_clips")]


def test_a_clip_a_kill_left_pending_is_reported_as_not_recorded_at_the_next_start(tmp_path, broker, collector,
                                                                                 clips, gateways, schemas):
    camera, _ = scene(clips)
    cfg = kg_e2e.base_config(broker, [camera], tmp_path,
                             evidence={"mqtt_snapshots": False, "path": str(tmp_path / "evidence"),
                                       "min_free": "32MiB", "clip_pre": "2s", "clip_post": "30s"})
    first = gateways(cfg, "first")
    start = collector.wait_for(lambda: [e for e in collector.events() if e["state"] == "start"], 30,
                               what="an event start")[0]
    named = start["evidence"]["clip"]
    assert named and named.endswith(".mp4")
    time.sleep(1.0)  # well inside clip_post: the clip is still pending
    first.kill()
    topic = f"kitchen/test-site/events/{start['id']}/clip"
    assert collector.json_on(topic) == []
    assert start["id"] in pending_clips_in_outbox(tmp_path)
    # What a power cut may leave: the clip renamed before its data reached the disk, and an
    # unfinished write. Neither may stay where the start said the clip would be.
    clip = tmp_path / "evidence" / named
    clip.parent.mkdir(parents=True, exist_ok=True)
    clip.write_bytes(b"\0" * 4096)
    part = clip.with_name(clip.name + ".part")
    part.write_bytes(b"\0" * 4096)

    second = gateways(cfg, "second")
    collector.wait_for(lambda: collector.json_on(topic), 20, what="the clip report at the next start")
    time.sleep(3)  # a second copy would arrive within this
    reports = collector.json_on(topic)
    numbers = [(r.pop("stream", None), r.pop("seq", None)) for r in reports]
    assert reports == [{"id": start["id"], "site": "test-site", "camera": "dark", "start_time": start["start_time"],
                        "error": "gateway restarted before the clip was recorded"}], reports
    # Numbered in the same stream as the start, after it: the restart goes on with the stream.
    assert numbers[0][0] == start["stream"] and numbers[0][1] > start["seq"], (numbers, start)
    assert not clip.exists() and not part.exists()
    assert "clip(s) promised by the previous run were never reported" in second.output()
    # The event itself is ended as before.
    assert [e["end_reason"] for e in collector.events() if e["message_id"] == f"{start['id']}:end"] == [
        "gateway restarted"]
    # A clean stop reports the second run's own clips itself and leaves none pending.
    assert second.terminate() == 0
    assert pending_clips_in_outbox(tmp_path) == []

    third = gateways(cfg, "third")
    kg_e2e.wait_until(lambda: "[mqtt] connected" in third.output(), 10, what="the third run connected")
    time.sleep(3)
    assert len(collector.json_on(topic)) == 1
    assert "were never reported" not in third.output()
    assert third.terminate() == 0
    schemas.validate_all(collector)


def test_a_second_gateway_on_the_same_outbox_is_refused(broker, tmp_path):
    """Two processes on one outbox would send each other's messages and end each other's open events
    as if left by a crash: the second one refuses to start, naming the outbox and the first's pid, and
    the first runs on. Once the first has stopped, the outbox is free again."""
    config = kg_e2e.base_config(broker, [], tmp_path)
    del config["cameras"]
    config["sensors"] = [{"id": "fridge", "source": {"mqtt": {"topic": "t/fridge"}}}]
    first = kg_e2e.Gateway(tmp_path, config, name="first")
    kg_e2e.wait_until(lambda: "[mqtt] connected" in first.output(), 10, what="the first gateway connected")
    second_cfg = tmp_path / "second.yaml"
    second_cfg.write_text(first.config_path.read_text())
    done = subprocess.run([kg_e2e.GATEWAY_BIN, "--config", str(second_cfg)], capture_output=True, text=True,
                          timeout=30)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert f"outbox {tmp_path / 'outbox.db'}: another kitchen-gateway runs on it" in out, out
    assert f"(pid {first.proc.pid})" in out, out
    assert first.running() and "gateway restarted" not in first.output()
    assert first.terminate() == 0
    again = kg_e2e.Gateway(tmp_path, config, name="again")
    kg_e2e.wait_until(lambda: "[mqtt] connected" in again.output(), 10, what="a gateway on the freed outbox")
    assert again.terminate() == 0


def test_a_stop_leaves_no_condition_in_a_cameras_retained_state(tmp_path, broker, collector, clips, gateways):
    camera, _ = scene(clips)
    gw = gateways(kg_e2e.base_config(broker, [camera], tmp_path))

    def retained():
        payload = kg_e2e.retained(broker, "kitchen/test-site/cameras/dark/state")
        return json.loads(payload) if payload else {"conditions": None}

    kg_e2e.wait_until(lambda: retained()["conditions"] == ["black"], 20, what="the black condition in the state")
    assert gw.terminate() == 0

    def ends():
        return [e for e in collector.events() if e.get("camera") == "dark" and e["state"] == "end"]

    # What the stop sent was acknowledged by the broker; the collector may get it a moment later.
    collector.wait_for(ends, 10, what="the black event's end")
    assert [e["end_reason"] for e in ends()] == ["gateway stopped"], ends()
    state = kg_e2e.wait_until(lambda: (s := retained())["conditions"] is not None and s["online"] is False and s,
                              10, what="the camera's retained state offline")
    assert state["conditions"] == [] and state["online"] is False, state
