"""Camera health end to end: clips that go black, freeze or get covered each give exactly one start
and one end on a real broker, with their evidence (snapshot on disk and on MQTT, an MP4 clip around
the start), all validated against the schemas; a normal clip gives none."""

import datetime
import json
import subprocess

import kg_e2e


def seconds(iso):
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def probe_duration(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return float(json.loads(out)["format"]["duration"])

SEGMENT = 12  # seconds of the faulty picture, between 8 s of normal before and 12 s after


def test_each_fault_is_one_event_with_a_start_and_an_end(broker, collector, schemas, clips, gateways, tmp_path):
    faults = ["black", "frozen", "covered"]
    cams = [kg_e2e.camera("normal", clips("normal", [("normal", 32)]))]
    for fault in faults:
        cams.append(kg_e2e.camera(fault, clips(fault, [("normal", 8), (fault, SEGMENT), ("normal", 12)])))
    config = kg_e2e.base_config(broker, cams, tmp_path)
    config["evidence"].update({"clip_pre": "3s", "clip_post": "3s"})
    gw = gateways(config)
    evidence_dir = tmp_path / "evidence"

    def ended(label):
        return any(e["label"] == label and e["state"] == "end" for e in collector.events())

    kg_e2e.wait_until(lambda: all(ended(f) for f in faults), 40, what="an end event for each fault")
    kg_e2e.wait_until(lambda: all(collector.on(f"kitchen/test-site/events/{e['id']}/clip")
                                  for e in collector.events() if e["state"] == "start"), 10, what="the clips")
    assert gw.terminate() == 0  # before the files end and the cameras go offline

    events = collector.events()
    for fault in faults:
        mine = [e for e in events if e["camera"] == fault]
        assert [e["state"] for e in mine] == ["start", "end"], mine
        start, end = mine
        assert start["label"] == end["label"] == fault
        assert start["check"] == "camera_health" and start["severity"] == 2
        assert start["id"] == end["id"]
        assert end["message_id"] == end["id"] + ":end"
        assert end["end_time"] > start["start_time"]
        # A frozen picture counts as frozen only after health.frozen_after (4 s) of sameness.
        expected = SEGMENT - 4 if fault == "frozen" else SEGMENT
        assert abs(end["duration_s"] - expected) <= 2.0, end

        # Evidence: the start snapshot on disk and on MQTT, the best frame at the end, the clip.
        assert start["evidence"]["errors"] == [] and end["evidence"]["errors"] == []
        snapshot = evidence_dir / start["evidence"]["snapshot"]
        assert snapshot.read_bytes()[:2] == b"\xff\xd8"
        sent = collector.on(f"kitchen/test-site/events/{start['id']}/snapshot")
        assert len(sent) == 1 and sent[0][1] == snapshot.read_bytes()
        assert (evidence_dir / end["evidence"]["snapshot_end"]).exists()
        report = collector.json_on(f"kitchen/test-site/events/{start['id']}/clip")
        assert len(report) == 1 and "error" not in report[0], report
        clip = evidence_dir / report[0]["path"]
        assert report[0]["path"] == start["evidence"]["clip"]
        # From 3 s before the start to 3 s after it was confirmed, the first packet on a key frame
        # (GOP 2 s): no shorter than asked, at most a GOP longer.
        asked = seconds(start["time"]) - seconds(start["start_time"]) + 6
        assert asked - 0.6 <= probe_duration(clip) <= asked + 2.6, (asked, probe_duration(clip))
    assert [e for e in events if e["camera"] == "normal"] == []
    assert schemas.validate_all(collector) > 0
