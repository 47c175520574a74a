"""Camera health end to end: clips that go black, freeze or get covered each give exactly one start
and one end on a real broker, validated against the schemas; a normal clip gives none."""

import kg_e2e

SEGMENT = 12  # seconds of the faulty picture, between 8 s of normal before and 12 s after


def test_each_fault_is_one_event_with_a_start_and_an_end(broker, collector, schemas, clips, gateways, tmp_path):
    faults = ["black", "frozen", "covered"]
    cams = [kg_e2e.camera("normal", clips("normal", [("normal", 32)]))]
    for fault in faults:
        cams.append(kg_e2e.camera(fault, clips(fault, [("normal", 8), (fault, SEGMENT), ("normal", 12)])))
    gw = gateways(kg_e2e.base_config(broker, cams, tmp_path))

    def ended(label):
        return any(e["label"] == label and e["state"] == "end" for e in collector.events())

    kg_e2e.wait_until(lambda: all(ended(f) for f in faults), 40, what="an end event for each fault")
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
    assert [e for e in events if e["camera"] == "normal"] == []
    assert schemas.validate_all(collector) > 0
