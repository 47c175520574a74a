"""Camera health end to end. One gateway runs four file cameras (real time, played once):
normal->black->normal, normal->frozen->normal, normal->covered->normal (8 s, 12 s, 12 s) and 32 s of
normal picture. Each fault gives exactly one `start` and one `end` of its own label (same id, the
end after the start, lasting about the faulty segment), nothing else, with its evidence; the normal
camera gives no event at all; every message on the broker matches its schema.

The gateway is stopped once the events have ended and before the files end (32 s): a file that has
played to its end is an offline camera, which would (rightly) be another event."""

import json
import subprocess
import time

import pytest

import kg_e2e
from kg_e2e import parse_time

BEFORE, SEGMENT, AFTER = 8, 12, 12  # seconds of normal, faulty and normal picture
FAULTS = ["black", "frozen", "covered"]
FROZEN_AFTER = 4  # health.frozen_after of kg_e2e.camera()


class HealthRun:
    """One gateway over the four clips; what the broker carried, kept for the tests below."""

    def __init__(self, workdir, make_clip):
        self.workdir = workdir
        self.broker = kg_e2e.Broker(workdir)
        self.collector = kg_e2e.Collector(self.broker)
        self.gateway = None
        self.waits = []  # what the run waited for and did not get (the tests say what it means)
        clips = kg_e2e.in_parallel([lambda: make_clip([("normal", BEFORE + SEGMENT + AFTER)])] + [
            lambda fault=fault: make_clip([("normal", BEFORE), (fault, SEGMENT), ("normal", AFTER)])
            for fault in FAULTS])
        cams = [kg_e2e.camera(name, clip) for name, clip in zip(["normal"] + FAULTS, clips)]
        config = kg_e2e.base_config(self.broker, cams, workdir)
        config["evidence"].update({"clip_pre": "3s", "clip_post": "3s"})
        self.started_at = time.time()
        self.gateway = kg_e2e.Gateway(workdir, config)

    def run(self):
        c = self.collector
        # Stop once the events have ended (about BEFORE + SEGMENT into the files), before the files
        # end (then the cameras go offline, which would be other events). A last resort, whatever
        # did or did not arrive by then (the tests below say what is missing): measured from before
        # the gateway spawned, and a loaded machine may take long to start it and its cameras (the
        # files play from when their camera opens them), so it leaves room; a run that gets what it
        # waits for stops at once.
        stop_by = self.started_at + BEFORE + SEGMENT + AFTER + 20

        def ended(label):
            return any(e["camera"] == label and e["state"] == "end" for e in c.events())

        self.wait(lambda: all(ended(f) for f in FAULTS), stop_by, "an end event for each fault")
        self.wait(lambda: all(c.on(f"kitchen/test-site/events/{e['id']}/clip") for e in c.events()
                              if e["state"] == "start"), stop_by, "the clip report of each event", limit=10)
        # One state_interval and more after the last end, so the states show the conditions cleared.
        last_end = max((m[3] for m in c.on("kitchen/test-site/events")), default=time.time())
        time.sleep(max(0.0, min(last_end + 2.5, stop_by) - time.time()))
        self.stopping_at = time.time()
        self.exit_code = self.gateway.terminate()

    def wait(self, predicate, stop_by, what, limit=None):
        timeout = max(0.0, stop_by - time.time())
        try:
            kg_e2e.wait_until(predicate, min(timeout, limit or timeout), what=what)
        except AssertionError as e:
            self.waits.append(str(e))

    def close(self):
        if self.gateway is not None:
            self.gateway.kill()
        self.collector.close()
        self.broker.kill()

    def events(self, camera):
        """The camera's event messages in arrival order, each message once (delivery is at least once)."""
        seen, out = set(), []
        for e in self.collector.events():
            if e["camera"] == camera and e["message_id"] not in seen:
                seen.add(e["message_id"])
                out.append(e)
        return out

    def states(self, camera):
        """The camera's states received while the gateway ran normally (before the stop)."""
        topic = f"kitchen/test-site/cameras/{camera}/state"
        return [json.loads(m[1]) for m in self.collector.on(topic) if m[3] < self.stopping_at]

    def failure_report(self):
        return ([("waits that timed out", "\n".join(self.waits) or "none")] + self.gateway.failure_report()
                + self.broker.failure_report() + self.collector.failure_report())


@pytest.fixture(scope="module")
def health(tmp_path_factory, make_clip):
    run = HealthRun(tmp_path_factory.mktemp("health"), make_clip)
    try:
        run.run()
        yield run
    finally:
        run.close()


def test_the_gateway_ran_and_stopped_cleanly(health):
    assert health.exit_code == 0
    assert not health.waits, health.waits


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_is_exactly_one_event_with_a_start_and_an_end(health, fault):
    events = health.events(fault)
    assert {e["label"] for e in events} == {fault}, f"other labels on the {fault} camera: {events}"
    assert [e["state"] for e in events if e["state"] != "update"] == ["start", "end"], events
    assert events[0]["state"] == "start" and events[-1]["state"] == "end", events  # updates in between
    start, end = events[0], events[-1]
    assert {e["id"] for e in events} == {start["id"]}, "the id changed during the event"
    assert start["message_id"] == start["id"] + ":start" and end["message_id"] == end["id"] + ":end"
    assert start["check"] == "camera_health" and end["check"] == "camera_health"
    assert start["end_time"] is None
    assert start["start_time"] == end["start_time"]
    assert parse_time(end["end_time"]) > parse_time(start["start_time"])
    assert abs(end["duration_s"] - (parse_time(end["end_time"]) - parse_time(start["start_time"]))) < 0.01, end

    # It lasted about as long as the faulty picture. A frozen picture counts from frozen_after of
    # sameness or from the sameness's beginning (the docs do not say which): either is accepted.
    expected = [SEGMENT - FROZEN_AFTER, SEGMENT] if fault == "frozen" else [SEGMENT]
    assert any(abs(end["duration_s"] - x) <= 2.5 for x in expected), (expected, end)
    # And it is the faulty segment that started it: the file began playing when the gateway started.
    offset = parse_time(start["start_time"]) - health.started_at
    print(f"{fault}: lasted {end['duration_s']:.1f}s, started {offset:.1f}s into the clip")
    assert BEFORE - 1 <= offset <= BEFORE + SEGMENT - 2, f"started {offset:.1f}s into the clip"


@pytest.mark.parametrize("fault", FAULTS)
def test_the_state_shows_the_condition_while_it_lasts(health, fault):
    states = health.states(fault)
    conditions = [s["conditions"] for s in states]
    assert [fault] in conditions, conditions
    assert all(c in ([], [fault]) for c in conditions), conditions
    assert conditions[-1] == [], "the condition is still shown after its end"
    # A black, frozen or covered camera still delivers frames: online throughout.
    first_online = next(i for i, s in enumerate(states) if s["online"])
    assert all(s["online"] for s in states[first_online:]), [s["online"] for s in states]


def test_a_normal_clip_raises_no_event(health):
    assert health.events("normal") == []
    states = health.states("normal")
    assert states and all(s["conditions"] == [] for s in states)
    assert states[-1]["online"] is True and 1 <= states[-1]["fps_analysed"] <= 3, states[-1]


def test_no_other_camera_or_label_appears(health):
    cameras = {e["camera"] for e in health.collector.events()}
    assert cameras <= set(FAULTS), cameras
    for e in health.collector.events():
        assert e["label"] == e["camera"], e


def test_every_message_matches_its_schema(health, schemas):
    assert health.collector.events(), "no event arrived"
    assert health.collector.on("kitchen/test-site/gateway")
    assert schemas.validate_all(health.collector) > 0


def probe_duration(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return float(json.loads(out)["format"]["duration"])


@pytest.mark.parametrize("fault", FAULTS)
def test_each_event_has_its_evidence(health, fault):
    events = health.events(fault)
    start, end = events[0], events[-1]
    evidence_dir = health.workdir / "evidence"
    assert start["evidence"]["errors"] == [] and end["evidence"]["errors"] == []
    # The start snapshot on disk and, byte for byte, on MQTT; the best frame at the end.
    snapshot = evidence_dir / start["evidence"]["snapshot"]
    assert snapshot.read_bytes()[:2] == b"\xff\xd8"
    sent = health.collector.on(f"kitchen/test-site/events/{start['id']}/snapshot")
    assert len(sent) == 1 and sent[0][1] == snapshot.read_bytes()
    assert (evidence_dir / end["evidence"]["snapshot_end"]).exists()
    # The clip: from clip_pre (3 s) before the start to clip_post (3 s) after it was confirmed, from
    # the key frame before (GOP 2 s): no shorter than asked, at most a GOP longer.
    report = health.collector.json_on(f"kitchen/test-site/events/{start['id']}/clip")
    assert len(report) == 1 and "error" not in report[0], report
    assert report[0]["path"] == start["evidence"]["clip"]
    asked = parse_time(start["time"]) - parse_time(start["start_time"]) + 6
    length = probe_duration(evidence_dir / report[0]["path"])
    assert asked - 0.6 <= length <= asked + 2.6, (asked, length)
