"""Availability: retained online while running, offline on a clean stop, and the broker's last will
when the gateway is killed."""

import time

import kg_e2e

TOPIC = "kitchen/test-site/availability"


def test_clean_stop_publishes_offline_and_a_kill_triggers_the_last_will(broker, collector, schemas, clips,
                                                                      gateways, tmp_path):
    cfg = kg_e2e.base_config(broker, [kg_e2e.camera("cam", clips("short", [("normal", 4)]), input={"loop": True})],
                             tmp_path)
    gw = gateways(cfg)
    kg_e2e.wait_until(lambda: kg_e2e.retained(broker, TOPIC) == "online", 10, what="retained online")
    assert collector.last_json("kitchen/test-site/gateway") is not None or kg_e2e.wait_until(
        lambda: collector.on("kitchen/test-site/gateway"), 5, what="gateway info")

    assert gw.terminate() == 0
    assert kg_e2e.retained(broker, TOPIC) == "offline"

    gw = gateways(cfg, name="second")
    kg_e2e.wait_until(lambda: kg_e2e.retained(broker, TOPIC) == "online", 10, what="online again")
    count = len(collector.on(TOPIC))
    gw.kill()  # SIGKILL: no chance to say goodbye; the broker publishes the will
    kg_e2e.wait_until(lambda: len(collector.on(TOPIC)) > count and collector.on(TOPIC)[-1][1] == b"offline", 10,
                      what="the last will")
    assert kg_e2e.retained(broker, TOPIC) == "offline"
    schemas.validate_all(collector)
