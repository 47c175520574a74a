"""Region checks end to end on generated scenes: litter left on a clean floor, a bin lid left open,
movement at night, a station left unattended; each raises exactly one event (start and end) in its
zone, and normal staff traffic raises none."""

import kg_e2e

FLOOR = [[0, 0.6], [1, 0.6], [1, 1], [0, 1]]
STOVE = [[0.6, 0.2], [0.95, 0.2], [0.95, 0.95], [0.6, 0.95]]
BIN = [[0.05, 0.55], [0.25, 0.55], [0.25, 0.95], [0.05, 0.95]]


def cam(cam_id, url, checks, zones, rules, **extra):
    c = kg_e2e.camera(cam_id, url, input={"loop": False}, analysis={"fps": 4, "width": 320, "height": 180},
                      checks=checks, zones=zones, rules=rules)
    c.update(extra)
    return c


def test_region_checks_raise_one_event_each_and_traffic_none(broker, collector, schemas, tmp_path, gateways):
    d = tmp_path
    walkers = [kg_e2e.walker(1, 7), kg_e2e.walker(30, 36)]
    litter = {"w": 80, "h": 40, "colour": "0x181818", "x": "300", "y": "270", "enable": "between(t,10,24)"}
    lid = {"w": 110, "h": 40, "colour": "0xd0c040", "x": "40", "y": "200", "enable": "between(t,10,24)"}
    rodent = {"w": 24, "h": 12, "colour": "0x909090", "x": "100+(t-12)*60", "y": "300", "enable": "between(t,12,17)"}
    cook = {"w": 50, "h": 150, "colour": "0x2a3550", "x": "420+20*sin(t*3)", "y": "120",
            "enable": "lt(t,6)+between(t,24,40)"}
    made = kg_e2e.in_parallel([
        lambda: kg_e2e.make_scene(d / "floor.mp4", 40, boxes=walkers + [litter]),
        lambda: kg_e2e.make_scene(d / "bin.mp4", 40, boxes=walkers + [lid]),
        lambda: kg_e2e.make_scene(d / "night.mp4", 40, background="night", boxes=[rodent]),
        lambda: kg_e2e.make_scene(d / "stove.mp4", 40, boxes=[cook]),
        lambda: kg_e2e.make_scene(d / "busy.mp4", 40, boxes=[kg_e2e.walker(t, t + 6) for t in (1, 9, 17, 25)]),
    ])
    scenes = dict(zip(["floor", "bin", "night", "stove", "busy"], made))
    quick = {"confirm": "4s", "clear": "2s", "cooldown": "0s", "median_window": 1}
    cams = [
        cam("floor", scenes["floor"], ["cleanliness"], {"floor": {"polygon": FLOOR, "checks": ["cleanliness"]}},
            {"cleanliness": quick}),
        cam("bin", scenes["bin"], ["bin_lid"], {"bins": {"polygon": BIN, "checks": ["bin_lid"]}}, {"bin_lid": quick}),
        cam("night", scenes["night"], ["after_hours_motion"], {},
            {"after_hours_motion": {"confirm": "1s", "clear": "2s", "cooldown": "0s", "schedule": "closed"}},
            scene={"min_area": 0.0005}),
        cam("stove", scenes["stove"], ["unattended"], {"stove": {"polygon": STOVE, "checks": ["unattended"]}},
            {"unattended": {"clear": "1s", "cooldown": "0s"}}, scene={"unattended_after": "8s"}),
        cam("busy", scenes["busy"], ["cleanliness", "bin_lid"],
            {"floor": {"polygon": FLOOR, "checks": ["cleanliness"]}, "bins": {"polygon": BIN, "checks": ["bin_lid"]}},
            {"cleanliness": quick, "bin_lid": quick}),
    ]
    config = kg_e2e.base_config(broker, cams, tmp_path)
    config["schedules"] = {"closed": {"times": ["00:00-00:00"], "on_holidays": True}}  # all day, for the test
    gw = gateways(config)

    expected = {"floor": ("cleanliness", "dirty", "floor"), "bin": ("bin_lid", "open", "bins"),
                "night": ("after_hours_motion", "motion", None), "stove": ("unattended", "unattended", "stove")}

    def ended(cam_id):
        return any(e["camera"] == cam_id and e["state"] == "end" for e in collector.events())

    kg_e2e.wait_until(lambda: all(ended(c) for c in expected), 45, what="an end event on every camera")
    assert gw.terminate() == 0
    events = collector.events()
    for cam_id, (check, label, zone) in expected.items():
        mine = [e for e in events if e["camera"] == cam_id]
        assert [e["state"] for e in mine] == ["start", "end"], (cam_id, mine)
        start = mine[0]
        assert (start["check"], start["label"], start["zone"]) == (check, label, zone), start
        if check != "unattended":
            assert start["boxes"], start  # the thing is boxed
    night = [e for e in events if e["camera"] == "night"][0]
    assert night["severity"] == 1  # a rodent is tier 1
    # The litter lay from 10 s to 24 s: the event covers that, give or take the analysis steps.
    floor = [e for e in events if e["camera"] == "floor"]
    assert 10 <= floor[1]["duration_s"] <= 17, floor[1]
    assert [e for e in events if e["camera"] == "busy"] == [], "staff walking by raised an event"
    schemas.validate_all(collector)
