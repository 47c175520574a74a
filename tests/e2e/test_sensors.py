"""Kitchen sensors end to end with real peers: MQTT JSON sensors (Zigbee2MQTT and Tasmota style)
through a real Mosquitto, a Modbus TCP freezer and a Modbus RTU cabinet on a serial line (socat
pseudo-terminals) served by libmodbus. Thresholds with durations, a sensor that goes silent, garbage
payloads, retained current values and per-minute roll-ups, all validated against the schemas. The
rules' long durations (10 minutes, 48 hours, disinfection windows) run on scripted time in
tests/unit/sensors_test.cpp."""

import json
import pathlib
import re
import signal
import subprocess
import threading
import time

import yaml

import paho.mqtt.publish as publish

import kg_e2e

PREFIX = "kitchen/test-site"


def test_sensors_from_mqtt_modbus_tcp_and_rtu(broker, collector, schemas, gateways, tmp_path):
    (tmp_path / "local").mkdir()
    local = kg_e2e.Broker(tmp_path / "local")  # the edge box's own broker, where sensors publish
    modbus_port = kg_e2e.free_port()
    freezer = kg_e2e.ModbusServer(tcp_port=modbus_port)
    pty = kg_e2e.PtyPair(tmp_path)
    cabinet = kg_e2e.ModbusServer(rtu_device=pty.a, unit=3)
    try:
        freezer.set(0, -200)  # -20.0 degC at scale 0.1
        cabinet.set_float(2, 25.0)
        sensors = [
            {"id": "sample-fridge", "name": "Sample fridge", "location": "sample_fridge", "interval": "1s",
             "stale_after": 3, "valid_range": [-40, 60],
             "source": {"mqtt": {"topic": "zigbee2mqtt/sample_fridge", "value": "temperature"}},
             "thresholds": [{"label": "too_warm", "above": 8, "for": "2s", "clear_for": "1s", "hysteresis": 0.5}]},
            {"id": "freezer", "location": "freezer", "interval": "500ms",
             # A host name (libmodbus' modbus_new_tcp takes dotted IPv4 only: this never connected).
             "source": {"modbus": {"device": f"tcp://localhost:{modbus_port}", "unit_id": 1, "address": 0,
                                   "type": "int16", "scale": 0.1}},
             "thresholds": [{"label": "too_warm", "above": -18, "for": "2s", "clear_for": "1s", "severity": 1}]},
            {"id": "cabinet", "location": "cabinet", "interval": "500ms",
             "source": {"modbus": {"device": f"rtu:{pty.b}", "baud": 9600, "unit_id": 3, "address": 2,
                                   "register": "input", "type": "float32"}}},
            {"id": "gas", "kind": "gas", "location": "kitchen", "unit": "ppm", "interval": "1s", "stale_after": 30,
             "source": {"mqtt": {"topic": "tele/gas/SENSOR", "value": "MQ2.Gas"}},
             "thresholds": [{"label": "leak", "above": 1000, "for": "0s", "clear_for": "1s", "severity": 1}]},
        ]
        config = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors, sensors_mqtt=local.url)
        del config["cameras"]
        gw = gateways(config)

        def fridge(value):
            publish.single("zigbee2mqtt/sample_fridge", json.dumps({"temperature": value, "humidity": 60}),
                           hostname="127.0.0.1", port=local.port)

        def events(sensor):
            return [(e["check"], e["label"], e["state"]) for e in collector.events() if e.get("sensor") == sensor]

        def state(sensor):
            return collector.last_json(f"{PREFIX}/sensors/{sensor}/state")

        kg_e2e.wait_until(lambda: "reading 2 MQTT sensors" in gw.output(), 10, what="the sensor input subscribed")
        # MQTT: warm for 4 s (alarm after 2 s), then cool again (ends after 1 s back below 7.5).
        for _ in range(6):
            fridge(4.0)
            time.sleep(0.5)
        # Garbage on the sensor's topic is logged and counted; nothing crashes, nothing is inferred.
        publish.single("zigbee2mqtt/sample_fridge", "not json at all", hostname="127.0.0.1", port=local.port)
        publish.single("zigbee2mqtt/sample_fridge", '{"temperature": "hot"}', hostname="127.0.0.1", port=local.port)
        for _ in range(8):
            fridge(9.5)
            time.sleep(0.5)
        for _ in range(6):
            fridge(5.0)
            time.sleep(0.5)
        # The end comes 1 s after the first cool reading, on the gateway's clock: wait for it. The
        # fridge then goes silent, so its offline start may follow the end by the time it is read.
        fridge_events = kg_e2e.wait_until(
            lambda: ev if ("sensor", "too_warm", "end") in (ev := events("sample-fridge")) else None, 15,
            what="the sample fridge's alarm to end")
        assert fridge_events[:2] == [("sensor", "too_warm", "start"), ("sensor", "too_warm", "end")], fridge_events
        assert all(e == ("sensor_health", "offline", "start") for e in fridge_events[2:]), fridge_events
        warm = [e for e in collector.events() if e.get("sensor") == "sample-fridge"][0]
        assert warm["value"] >= 8 and warm["unit"] == "degC" and warm["severity"] == 2

        # Modbus TCP: the freezer warms to -15.0 degC, then recovers.
        freezer.set(0, -150)
        kg_e2e.wait_until(lambda: ("sensor", "too_warm", "start") in events("freezer"), 8, what="freezer alarm")
        freezer.set(0, -200)
        kg_e2e.wait_until(lambda: ("sensor", "too_warm", "end") in events("freezer"), 8, what="freezer recovered")
        assert [e for e in collector.events() if e.get("sensor") == "freezer"][0]["severity"] == 1

        # Modbus RTU over a serial line: the cabinet heats up; its retained state shows it.
        cabinet.set_float(2, 125.5)
        kg_e2e.wait_until(lambda: (s := state("cabinet")) and s["value"] == 125.5, 8, what="cabinet at 125.5")

        # MQTT, Tasmota style: a gas leak is immediate and tier 1.
        publish.single("tele/gas/SENSOR", json.dumps({"Time": "2026-11-24T10:00:00", "MQ2": {"Gas": 1500}}),
                       hostname="127.0.0.1", port=local.port)
        kg_e2e.wait_until(lambda: ("sensor", "leak", "start") in events("gas"), 5, what="gas leak")

        # The sample fridge stopped reporting after its last reading: offline after 3 intervals.
        kg_e2e.wait_until(lambda: ("sensor_health", "offline", "start") in events("sample-fridge"), 8,
                          what="sample fridge offline")
        assert state("sample-fridge")["online"] is False or kg_e2e.wait_until(
            lambda: state("sample-fridge")["online"] is False, 3, what="state offline")
        # Why: the broker is connected, and nothing came on its topic (its device, battery or radio).
        gone = next(e for e in collector.events()
                    if e.get("sensor") == "sample-fridge" and e["label"] == "offline" and e["state"] == "start")
        assert gone["cause"]["kind"] == "silent" and "zigbee2mqtt/sample_fridge" in gone["cause"]["text"], gone
        # And its retained state says it while the outage lasts (the room's sensor list).
        kg_e2e.wait_until(lambda: (state("sample-fridge").get("cause") or {}).get("kind") == "silent", 5,
                          what="the state's cause")

        assert gw.running()
        assert gw.terminate() == 0
        log = gw.output()
        # Both counted; said once a minute a sensor (a device whose every message is unreadable
        # would write a line each).
        assert "has no number at 'temperature' (1 rejected so far)" in log
        assert "2 rejected so far" not in log
        # What the stop sent was acknowledged by the broker; the collector may get it a moment later.
        fridge_state = collector.wait_for(lambda: (s := state("sample-fridge")) and s["value"] == 5.0 and s, 5,
                                          what="the fridge's last state")
        assert fridge_state["location"] == "sample_fridge"
        # Roll-ups: every minute that had readings, min / mean / max.
        rollups = collector.wait_for(
            lambda: (r := collector.json_on(f"{PREFIX}/sensors/sample-fridge/rollup")) and
            min(x["min"] for x in r) == 4.0 and max(x["max"] for x in r) == 9.5 and r, 5,
            what="the roll-ups, the stop's partial minute with them")
        assert all(r["min"] <= r["mean"] <= r["max"] for r in rollups)
        assert min(r["min"] for r in rollups) == 4.0 and max(r["max"] for r in rollups) == 9.5
        schemas.validate_all(collector)
        for topic, payload, retain, _ in collector.messages:  # what the broker carried (shown with -s)
            if "/sensors/" in topic or (topic.endswith("/events") and b'"sensor"' in payload):
                print(f"BROKER {topic}{' (retained)' if retain else ''} {payload.decode()[:300]}")
    finally:
        freezer.close()
        cabinet.close()
        pty.close()
        local.kill()


def test_a_late_modbus_answer_does_not_take_the_sensor_offline(broker, collector, gateways, tmp_path):
    """A Modbus TCP device answers one read after the gateway gave up on it. Before, that late answer
    was read as the answer to the next request, transaction ids never matched again and the sensor
    stayed offline for good; now the gateway reconnects after a failed read and reads on. A device
    that is merely slow is read with a longer source.modbus.timeout."""
    late = kg_e2e.ScriptedModbusTcp(delay=1.5, slow=1)
    slow = kg_e2e.ScriptedModbusTcp(delay=1.5, slow=10**6)  # every answer 1.5 s late
    late.registers[0] = 42
    slow.registers[0] = 17
    try:
        sensors = [
            {"id": "freezer", "interval": "500ms", "stale_after": 4,
             "source": {"modbus": {"device": late.url, "address": 0, "timeout": "500ms"}}},
            {"id": "blast-chiller", "interval": "1s", "stale_after": 5,
             "source": {"modbus": {"device": slow.url, "address": 0, "timeout": "3s"}}},
        ]
        config = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors)
        del config["cameras"]
        gw = gateways(config)

        def state(sensor):
            return collector.last_json(f"{PREFIX}/sensors/{sensor}/state")

        kg_e2e.wait_until(lambda: "Modbus read of" in gw.output(), 10, what="the first read timing out")
        late.registers[0] = 43  # only a read after the late answer can see this
        kg_e2e.wait_until(lambda: (s := state("freezer")) and s["value"] == 43 and s["online"], 10,
                          what="the freezer read again after the late answer")
        requests = late.requests
        time.sleep(3)
        assert late.requests >= requests + 4, "the freezer is no longer polled"
        assert state("freezer")["online"] and state("freezer")["value"] == 43
        assert late.connections == 2, f"{late.connections} connections: expected one reconnect after the timeout"
        assert "reconnecting, so that a late answer is not read as the next" in gw.output()

        kg_e2e.wait_until(lambda: (s := state("blast-chiller")) and s["value"] == 17 and s["online"], 10,
                          what="the slow device read within its 3 s timeout")
        assert "blast-chiller: Modbus read" not in gw.output()
        assert gw.terminate() == 0
    finally:
        late.close()
        slow.close()


def test_a_stop_does_not_wait_for_every_silent_unit_on_a_serial_line(broker, collector, gateways, tmp_path):
    """A serial line whose units are all unpowered: each read waits its whole timeout. A stop asked
    during the first read went on reading the others, one timeout each, before the gateway could
    exit (and a reload waited the same, with nothing to feed the watchdog). Now the poller stops
    after the read in progress, and the pollers of several devices are all asked before any is
    joined."""
    pty = kg_e2e.PtyPair(tmp_path)  # nothing answers on the other end
    try:
        sensors = [{"id": f"unit{u}", "interval": "1s",
                    "source": {"modbus": {"device": f"rtu:{pty.b}", "unit_id": u, "address": 0, "timeout": "4s"}}}
                   for u in (1, 2, 3)]
        config = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors)
        del config["cameras"]
        gw = gateways(config)
        # The first unit's read has timed out; the poller waits out a late answer, then reads unit 2.
        kg_e2e.wait_until(lambda: "sensor unit1: Modbus read" in gw.output(), 10, what="the first read timing out")
        asked = time.monotonic()
        assert gw.terminate() == 0
        took = time.monotonic() - asked
        assert took < 4.5, f"the stop took {took:.1f} s: it waited for the other units' reads"
    finally:
        pty.close()


def test_modbus_sensors_keep_every_descriptor_under_1024(broker, collector, gateways, tmp_path):
    """libmodbus waits with select(), which writes past its set for a descriptor of 1024 or more.
    With Modbus sensors the gateway keeps its soft open-files limit at 1024 even when its unit or
    shell set it higher (the kernel hands out the lowest free descriptor), and reads on."""
    device = kg_e2e.ScriptedModbusTcp(delay=0, slow=0)
    device.registers[0] = 42
    try:
        sensors = [{"id": "freezer", "interval": "500ms",
                    "source": {"modbus": {"device": device.url, "address": 0}}}]
        config = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors)
        del config["cameras"]
        gw = kg_e2e.Gateway(tmp_path, config, wrapper=["prlimit", "--nofile=4096:8192"])
        try:
            kg_e2e.wait_until(lambda: (s := collector.last_json(f"{PREFIX}/sensors/freezer/state")) and
                              s["value"] == 42, 10, what="the freezer read")
            limits = pathlib.Path(f"/proc/{gw.proc.pid}/limits").read_text()
            soft, hard = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits).groups()
            assert (int(soft), int(hard)) == (1024, 8192), limits
            assert "open files limited to 1024 (Modbus sensors" in gw.output()
            assert gw.terminate() == 0
        finally:
            gw.kill()
    finally:
        device.close()

    # Without Modbus sensors the limit the gateway was given stays.
    (tmp_path / "no-modbus").mkdir()
    sensors = [{"id": "fridge", "source": {"mqtt": {"topic": "fridge/#"}}}]
    config = kg_e2e.base_config(broker, [], tmp_path / "no-modbus", sensors=sensors)
    del config["cameras"]
    gw = kg_e2e.Gateway(tmp_path / "no-modbus", config, wrapper=["prlimit", "--nofile=4096:8192"])
    try:
        kg_e2e.wait_until(lambda: "reading 1 MQTT sensors" in gw.output(), 10, what="the gateway up")
        limits = pathlib.Path(f"/proc/{gw.proc.pid}/limits").read_text()
        assert re.search(r"Max open files\s+4096\s+8192", limits), limits
    finally:
        gw.kill()


def test_mqtt_sensor_filters_and_resubscribing(broker, collector, gateways, tmp_path):
    """A filter like fridge/# also takes a message on `fridge` itself (MQTT spec 4.7.1.2); after the
    sensors' broker restarts the input subscribes again and every sensor reads on. A filter the broker
    would refuse (a/#/b) is refused by --check-config, naming the key, instead of having the broker
    disconnect the input and silence every MQTT sensor."""
    (tmp_path / "local").mkdir()
    local = kg_e2e.Broker(tmp_path / "local")
    try:
        sensors = [
            {"id": "fridge", "interval": "1s", "source": {"mqtt": {"topic": "fridge/#"}}},
            {"id": "freezer", "interval": "1s", "source": {"mqtt": {"topic": "freezer/temp"}}},
        ]
        config = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors, sensors_mqtt=local.url)
        del config["cameras"]

        bad = json.loads(json.dumps(config))
        bad["sensors"].append({"id": "odd", "source": {"mqtt": {"topic": "a/#/b"}}})
        bad_path = tmp_path / "bad.yaml"
        bad_path.write_text(yaml.safe_dump(bad, sort_keys=False))
        check = subprocess.run([kg_e2e.GATEWAY_BIN, "--check-config", str(bad_path)], capture_output=True, text=True,
                               timeout=30)
        assert check.returncode == 2 and "sensors[2].source.mqtt.topic: 'a/#/b'" in check.stderr, check.stderr

        gw = gateways(config)

        def value(sensor):
            s = collector.last_json(f"{PREFIX}/sensors/{sensor}/state")
            return s and s["value"]

        def publish_both(fridge, freezer):
            publish.single("fridge", json.dumps({"temperature": fridge}), hostname="127.0.0.1", port=local.port)
            publish.single("freezer/temp", json.dumps({"temperature": freezer}), hostname="127.0.0.1",
                           port=local.port)

        kg_e2e.wait_until(lambda: "reading 2 MQTT sensors" in gw.output(), 10, what="the sensor input subscribed")
        kg_e2e.wait_until(lambda: publish_both(3.5, -19.5) or (value("fridge"), value("freezer")) == (3.5, -19.5),
                          10, interval=0.5, what="both sensors read")

        local.stop()
        local.start()
        kg_e2e.wait_until(lambda: publish_both(4.5, -18.5) or (value("fridge"), value("freezer")) == (4.5, -18.5),
                          40, interval=0.5, what="both sensors read after the broker restarted")
        assert gw.terminate() == 0
    finally:
        local.kill()


def test_no_value_and_impossible_values_stay_out_of_states_and_rollups(broker, collector, schemas, gateways,
                                                                         tmp_path):
    """A Modbus float32 NaN (how devices say "no measurement") and a value outside valid_range (-127
    from a DS18B20 whose wire broke) raise `invalid` but stay out of states and the minute's roll-up.
    Before, both went into the roll-ups as null / -127, which the schema does not allow; and the NaN,
    taken for a failed read, made the answering device's sensor offline."""
    (tmp_path / "local").mkdir()
    local = kg_e2e.Broker(tmp_path / "local")
    device = kg_e2e.ScriptedModbusTcp()
    device.set_float(0, float("nan"))
    try:
        sensors = [
            {"id": "probe", "interval": "500ms", "stale_after": 100,
             "source": {"modbus": {"device": device.url, "address": 0, "type": "float32"}}},
            {"id": "fridge", "interval": "1s", "stale_after": 100, "valid_range": [-40, 60],
             "source": {"mqtt": {"topic": "fridge"}}},
        ]
        config = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors, sensors_mqtt=local.url)
        del config["cameras"]
        gw = gateways(config)
        kg_e2e.wait_until(lambda: "register 0 holds no number (nan)" in gw.output(), 10, what="the NaN refused")
        kg_e2e.wait_until(lambda: "reading 2 MQTT sensors" in gw.output() or "reading 1 MQTT sensors" in gw.output(),
                          10, what="the MQTT input subscribed")
        for value in (4.0, -127, 5.0, -127):
            publish.single("fridge", json.dumps({"temperature": value}), hostname="127.0.0.1", port=local.port)
            time.sleep(0.3)
        kg_e2e.wait_until(lambda: any(e.get("sensor") == "fridge" and e["label"] == "invalid"
                                      for e in collector.events()), 10, what="the fridge's invalid event")
        kg_e2e.wait_until(lambda: any(e.get("sensor") == "probe" and e["label"] == "invalid"
                                      for e in collector.events()), 10, what="the probe's invalid event")
        probe = collector.last_json(f"{PREFIX}/sensors/probe/state")
        assert probe is not None and probe["value"] is None
        assert not any(e.get("sensor") == "probe" and e["label"] == "offline" for e in collector.events())
        assert gw.terminate() == 0  # publishes the minute in progress as a partial roll-up
        collector.wait_for(lambda: collector.on(f"{PREFIX}/sensors/fridge/rollup"), 10, what="the fridge's roll-up")
        rollups = collector.json_on(f"{PREFIX}/sensors/fridge/rollup")
        assert min(r["min"] for r in rollups) == 4.0 and max(r["max"] for r in rollups) == 5.0, rollups
        assert sum(r["count"] for r in rollups) == 2, rollups
        assert not collector.on(f"{PREFIX}/sensors/probe/rollup")
        schemas.validate_all(collector)
    finally:
        device.close()
        local.kill()


def test_retained_messages_and_device_clocks_that_are_off(broker, collector, gateways, tmp_path):
    """A dead sensor's retained last message (Zigbee2MQTT keeps one) used to read as a fresh reading
    on every subscribe; a device clock a day ahead turned offline detection off for a day. Now the
    retained message without a time of its own is not a reading, and a clock that is off is logged
    and the arrival time used."""
    (tmp_path / "local").mkdir()
    local = kg_e2e.Broker(tmp_path / "local")
    try:
        publish.single("dead/t", json.dumps({"temperature": 3.0}), retain=True, hostname="127.0.0.1",
                       port=local.port)
        sensors = [
            {"id": "dead", "interval": "1s", "source": {"mqtt": {"topic": "dead/t"}}},
            {"id": "ahead", "interval": "1s", "source": {"mqtt": {"topic": "ahead/t", "time": "ts"}}},
            # Tasmota's Time is local time without an offset: said once, and timed by arrival.
            {"id": "tasmota", "interval": "1s", "stale_after": 100,
             "source": {"mqtt": {"topic": "tele/fridge/SENSOR", "value": "DS18B20.Temperature", "time": "Time"}}},
        ]
        config = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors, sensors_mqtt=local.url)
        del config["cameras"]
        gw = gateways(config)
        kg_e2e.wait_until(lambda: "reading 3 MQTT sensors" in gw.output(), 10, what="the sensor input subscribed")

        def state(sensor):
            return collector.last_json(f"{PREFIX}/sensors/{sensor}/state")

        # A device a day ahead keeps reporting: it is online, and stays online while it reports.
        for _ in range(12):
            publish.single("ahead/t", json.dumps({"temperature": 4.0, "ts": time.time() + 86400}),
                           hostname="127.0.0.1", port=local.port)
            publish.single("tele/fridge/SENSOR", json.dumps({"Time": "2026-11-24T10:00:00",
                                                              "DS18B20": {"Temperature": 3.5}, "TempUnit": "C"}),
                           hostname="127.0.0.1", port=local.port)
            time.sleep(0.5)
        ahead = state("ahead")
        assert ahead and ahead["online"] is True and ahead["value"] == 4.0, ahead
        # ... and once it stops, it goes offline within stale_after intervals, not a day later.
        kg_e2e.wait_until(lambda: any(e["sensor"] == "ahead" and e["label"] == "offline" and e["state"] == "start"
                                      for e in collector.events() if e.get("sensor")), 10, what="ahead: offline")
        dead = state("dead")
        assert dead and dead["online"] is False and dead["value"] is None, dead
        assert gw.terminate() == 0
        out = gw.output()
        assert "sensor ahead: its clock is 86" in out and "timed by their arrival" in out, out[-2000:]
        assert "sensor dead: retained messages on dead/t are not counted as readings" in out, out[-2000:]
        assert out.count("sensor tasmota: its time at 'Time' (\"2026-11-24T10:00:00\") is not ISO 8601") == 1, \
            out[-2000:]
        assert collector.last_json(f"{PREFIX}/sensors/tasmota/state")["value"] == 3.5
    finally:
        local.kill()


def test_true_false_sensors_end_their_alarms(broker, collector, gateways, tmp_path):
    """Zigbee2MQTT door contacts and gas detectors send true/false, read as 1/0. The natural limits,
    `below: 1` for {"contact": false} and `above: 0` for {"gas": true}, took the default hysteresis
    of 0.5: the alarm could end only at 1.5 or -0.5, values these sensors never send, so a door shut
    again or a leak over stayed an alarm until the gateway stopped."""
    (tmp_path / "local").mkdir()
    local = kg_e2e.Broker(tmp_path / "local")
    try:
        sensors = [
            {"id": "cold-room-door", "kind": "door", "unit": "", "interval": "1s", "stale_after": 30,
             "source": {"mqtt": {"topic": "zigbee2mqtt/cold_room_door", "value": "contact"}},
             "thresholds": [{"label": "door_open", "below": 1, "for": "0s", "clear_for": "0s"}]},
            {"id": "gas", "kind": "gas", "unit": "", "interval": "1s", "stale_after": 30,
             "source": {"mqtt": {"topic": "zigbee2mqtt/gas", "value": "gas"}},
             "thresholds": [{"label": "leak", "above": 0, "for": "0s", "clear_for": "0s", "severity": 1}]},
        ]
        config = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors, sensors_mqtt=local.url)
        del config["cameras"]
        gw = gateways(config)
        kg_e2e.wait_until(lambda: "reading 2 MQTT sensors" in gw.output(), 10, what="the sensor input subscribed")

        def send(topic, payload):
            publish.single(topic, json.dumps(payload), hostname="127.0.0.1", port=local.port)
            time.sleep(0.3)

        def events(sensor):
            return [(e["label"], e["state"]) for e in collector.events() if e.get("sensor") == sensor]

        send("zigbee2mqtt/cold_room_door", {"contact": False, "battery": 90})
        send("zigbee2mqtt/gas", {"gas": True, "battery_low": False})
        kg_e2e.wait_until(lambda: events("cold-room-door") == [("door_open", "start")] and
                          events("gas") == [("leak", "start")], 10, what="door open and gas alarms")
        send("zigbee2mqtt/cold_room_door", {"contact": True, "battery": 90})
        send("zigbee2mqtt/gas", {"gas": False, "battery_low": False})
        kg_e2e.wait_until(lambda: ("door_open", "end") in events("cold-room-door") and ("leak", "end") in events("gas"),
                          10, what="both alarms ended by the sensors, not by the stop")
        ends = [e for e in collector.events() if e.get("sensor") and e["state"] == "end"]
        assert all(e["end_reason"] == "cleared" for e in ends), ends
        assert gw.terminate() == 0
    finally:
        local.kill()


def test_a_unit_that_never_answers_does_not_silence_the_others_on_its_device(broker, collector, gateways,
                                                                             tmp_path):
    """Two sensors behind one Modbus TCP gateway; the first has a unit id no device answers to (a
    typo, a dead fridge controller). Each of its reads times out and drops the connection, and every
    round started again with it: when its timeout and the reconnect took as long as its interval, the
    freezer behind it was never read, raised `offline` and could not raise `too_warm`. And the dead
    unit's failed reads are logged once, not at every poll, then once when it answers again."""
    device = kg_e2e.ScriptedModbusTcp(units={1})
    device.registers[0] = -150 & 0xFFFF  # -15.0 degC: a freezer too warm
    try:
        sensors = [
            {"id": "fridge", "interval": "1s", "stale_after": 5,
             "source": {"modbus": {"device": device.url, "unit_id": 7, "address": 0, "scale": 0.1}}},
            {"id": "freezer", "interval": "1s", "stale_after": 5,
             "source": {"modbus": {"device": device.url, "unit_id": 1, "address": 0, "scale": 0.1}},
             "thresholds": [{"label": "too_warm", "above": -18, "for": "0s", "severity": 1}]},
        ]
        config = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors)
        del config["cameras"]
        gw = gateways(config)

        def events(sensor):
            return [(e["label"], e["state"]) for e in collector.events() if e.get("sensor") == sensor]

        kg_e2e.wait_until(lambda: ("too_warm", "start") in events("freezer"), 10, what="the freezer's alarm")
        kg_e2e.wait_until(lambda: ("offline", "start") in events("fridge"), 10, what="the silent unit offline")
        time.sleep(3)
        freezer = collector.last_json(f"{PREFIX}/sensors/freezer/state")
        assert freezer["online"] and freezer["value"] == -15.0, freezer
        assert ("offline", "start") not in events("freezer")
        # Logged when it starts failing, not at every poll: a dead unit may stay so for months.
        failed = "sensor fridge: Modbus read of"
        assert gw.output().count(failed) == 1, gw.output()
        # Nor the reconnect each of its failed reads makes (the TCP gateway itself answers): a line
        # or two a poll, for good, filled the journal.
        assert gw.output().count("reconnecting") == 1, gw.output()
        assert gw.output().count("connected to Modbus device") <= 2, gw.output()
        # Its offline alert says why: the unit does not answer (its unit id, wiring or power).
        silent = next(e for e in collector.events()
                      if e.get("sensor") == "fridge" and e["label"] == "offline" and e["state"] == "start")
        assert silent["cause"]["kind"] == "no_answer" and "unit 7" in silent["cause"]["text"], silent
        # The unit answers again (its controller was repaired): said once.
        device.units.add(7)
        kg_e2e.wait_until(lambda: "sensor fridge: " in gw.output() and "read again after" in gw.output(), 10,
                          what="the unit read again")
        assert gw.output().count(failed) == 1
        # The whole device goes (its TCP gateway switched off): each sensor on it says so.
        device.close()
        kg_e2e.wait_until(lambda: ("offline", "start") in events("freezer"), 15, what="the freezer offline")
        down = next(e for e in collector.events()
                    if e.get("sensor") == "freezer" and e["label"] == "offline" and e["state"] == "start")
        assert down["cause"]["kind"] == "unreachable" and "cannot connect to Modbus device" in down["cause"]["text"], \
            down
        assert gw.terminate() == 0
    finally:
        device.close()


class RefusingBroker(kg_e2e.LoopbackServer):
    """Just enough of an MQTT 3.1.1 broker to accept a connection and refuse every subscription
    (SUBACK 0x80), as EMQX or HiveMQ do for a filter their ACL denies (Mosquitto grants it and
    delivers nothing)."""

    def __init__(self):
        self.refused = 0
        super().__init__(backlog=4)

    @staticmethod
    def _read_packet(conn):
        head = conn.recv(1)
        if not head:
            return None, b""
        length, shift = 0, 0
        while True:
            b = conn.recv(1)[0]
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        body = b""
        while len(body) < length:
            chunk = conn.recv(length - len(body))
            if not chunk:
                return None, b""
            body += chunk
        return head[0] >> 4, body

    def _serve(self, conn):
        try:
            while True:
                kind, body = self._read_packet(conn)
                if kind is None or kind == 14:  # gone, or DISCONNECT
                    return
                if kind == 1:  # CONNECT: accepted
                    conn.sendall(bytes([0x20, 2, 0, 0]))
                elif kind == 8:  # SUBSCRIBE: its packet id, and 0x80 for each filter
                    filters = 0
                    i = 2
                    while i < len(body):
                        n = body[i] << 8 | body[i + 1]
                        i += 2 + n + 1
                        filters += 1
                    self.refused += filters
                    conn.sendall(bytes([0x90, 2 + filters]) + body[:2] + bytes([0x80] * filters))
                elif kind == 10:  # UNSUBSCRIBE
                    conn.sendall(bytes([0xB0, 2]) + body[:2])
                elif kind == 12:  # PINGREQ
                    conn.sendall(bytes([0xD0, 0]))
        except OSError:
            pass
        finally:
            conn.close()


def test_a_sensor_whose_subscription_the_broker_refuses_says_so(broker, collector, schemas, gateways, tmp_path):
    """A sensor broker that refuses the subscription (its ACL for the gateway's account): the
    sensor's offline alert said `silent` ("nothing usable on its topic: the device, its battery or
    its radio"), sending someone to the fridge (the review of the 65th session's sensor causes).
    Now it says the broker refused it."""
    refusing = RefusingBroker()
    try:
        sensors = [{"id": "fridge", "interval": "1s", "stale_after": 2,
                    "source": {"mqtt": {"topic": "zigbee2mqtt/fridge"}}}]
        config = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors)
        del config["cameras"]
        config["sensors_mqtt"] = f"tcp://127.0.0.1:{refusing.port}"
        gw = gateways(config)
        kg_e2e.wait_until(lambda: "refused the subscription to 'zigbee2mqtt/fridge'" in gw.output(), 15,
                          what="the refusal logged")
        start = collector.wait_for(
            lambda: next((e for e in collector.events() if e.get("sensor") == "fridge" and e["label"] == "offline"
                          and e["state"] in ("start", "update") and e.get("cause", {}).get("kind") == "error"), None),
            15, what="the offline alert saying the subscription was refused")
        assert "refused the subscription to 'zigbee2mqtt/fridge'" in start["cause"]["text"], start
        assert refusing.refused >= 1
        assert gw.terminate() == 0
        schemas.validate_all(collector)
    finally:
        refusing.close()


def test_a_reload_that_removes_a_sensor_leaves_no_alarm_in_its_retained_state(broker, collector, schemas,
                                                                            gateways, tmp_path):
    """A gas detector in alarm is removed by a reload (SIGHUP) that also raises the fridge's limit.
    The stop ended both events, but the retained states kept `conditions: ["leak"]` and
    `online: true`: the removed sensor's state stayed on the broker, and in the room, as a leak for
    good. Now a stop or reload publishes each sensor's state once more: no conditions, not online;
    and the state of a sensor the reload removed is cleared (an empty retained message)."""
    (tmp_path / "local").mkdir()
    local = kg_e2e.Broker(tmp_path / "local")
    feeding = threading.Event()
    feeder = None
    try:
        sensors = [
            {"id": "fridge", "interval": "1s", "stale_after": 5, "source": {"mqtt": {"topic": "fridge"}},
             "thresholds": [{"label": "too_warm", "above": 8, "for": "1s", "clear_for": "1s"}]},
            {"id": "gas", "kind": "gas", "unit": "ppm", "interval": "1s", "stale_after": 5,
             "source": {"mqtt": {"topic": "gas", "value": "gas"}},
             "thresholds": [{"label": "leak", "above": 1000, "for": "0s", "severity": 1}]},
        ]
        config = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors, sensors_mqtt=local.url)
        del config["cameras"]
        gw = gateways(config)

        def feed():
            while not feeding.is_set():
                publish.single("fridge", json.dumps({"temperature": 9.0}), hostname="127.0.0.1", port=local.port)
                publish.single("gas", json.dumps({"gas": 1500}), hostname="127.0.0.1", port=local.port)
                time.sleep(0.3)

        # A daemon, and joined before the broker goes: paho's publish.single retries for ever when the
        # broker is killed under it, which held pytest at exit after a failure.
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()

        def events(sensor):
            return [(e["label"], e["state"], e.get("end_reason")) for e in collector.events()
                    if e.get("sensor") == sensor]

        def retained(sensor):  # None while there is none
            text = kg_e2e.retained(broker, f"{PREFIX}/sensors/{sensor}/state")
            return json.loads(text) if text else None

        kg_e2e.wait_until(lambda: ("too_warm", "start", None) in events("fridge") and
                          ("leak", "start", None) in events("gas"), 10, what="both alarms")
        kg_e2e.wait_until(lambda: (s := retained("gas")) and s["conditions"] == ["leak"], 5,
                          what="the leak in the state")

        reloaded = json.loads(json.dumps(config))
        reloaded["sensors"] = [reloaded["sensors"][0]]
        reloaded["sensors"][0]["thresholds"][0]["above"] = 10
        gw.config_path.write_text(yaml.safe_dump(reloaded, sort_keys=False))
        gw.proc.send_signal(signal.SIGHUP)
        kg_e2e.wait_until(lambda: gw.output().count("reading 1 MQTT sensors") >= 1, 15, what="the reloaded run")
        reloaded_at = time.time()
        gas_events = [("leak", "start", None), ("leak", "end", "gateway stopped")]
        fridge_events = [("too_warm", "start", None), ("too_warm", "end", "gateway stopped")]
        kg_e2e.wait_until(lambda: events("gas") == gas_events, 10, what=f"gas events {gas_events}")
        kg_e2e.wait_until(lambda: events("fridge") == fridge_events, 10, what=f"fridge events {fridge_events}")
        # The removed detector's retained state is cleared, not left on the broker for good.
        kg_e2e.wait_until(lambda: kg_e2e.retained(broker, f"{PREFIX}/sensors/gas/state") is None, 10,
                          what="the gas detector's retained state cleared")
        # Still read after the reload, at 9 now within its new limit of 10.
        kg_e2e.wait_until(lambda: (f := retained("fridge")) and f["conditions"] == [] and f["online"] is True
                          and f["value"] == 9.0, 10, what="the fridge online at 9.0 with no condition")
        # Nothing more for either sensor in the 2 s after the reload (9.0 is within the new limit).
        time.sleep(max(0.0, reloaded_at + 2 - time.time()))
        assert events("gas") == gas_events
        assert events("fridge") == fridge_events
        feeding.set()
        feeder.join()
        assert gw.terminate() == 0
        fridge = kg_e2e.wait_until(lambda: (f := retained("fridge")) and f["online"] is False and f, 10,
                                   what="the fridge's retained state offline")
        assert fridge["conditions"] == [] and fridge["online"] is False, fridge
        schemas.validate_all(collector)
    finally:
        feeding.set()
        if feeder is not None:
            feeder.join(10)
        local.kill()


def test_a_door_left_open_raises_its_alarm_without_another_message(broker, collector, gateways, tmp_path):
    """A Zigbee door contact reports when the door opens and then nothing until it shuts. `for` ran
    out only when a reading came, so the alarm waited for the next message, the one saying the door
    was shut: a door left open never raised door_open. The last reading now holds until the next
    one while the sensor is online."""
    (tmp_path / "local").mkdir()
    local = kg_e2e.Broker(tmp_path / "local")
    try:
        sensors = [
            {"id": "cold-room-door", "kind": "door", "unit": "", "interval": "1h",
             "source": {"mqtt": {"topic": "zigbee2mqtt/cold_room_door", "value": "contact"}},
             "thresholds": [{"label": "door_open", "below": 1, "for": "2s", "clear_for": "0s"}]},
        ]
        config = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors, sensors_mqtt=local.url)
        del config["cameras"]
        gw = gateways(config)
        kg_e2e.wait_until(lambda: "reading 1 MQTT sensors" in gw.output(), 10, what="the sensor input subscribed")

        def events():
            return [e for e in collector.events() if e.get("sensor") == "cold-room-door"]

        opened = time.time()
        publish.single("zigbee2mqtt/cold_room_door", json.dumps({"contact": False}), hostname="127.0.0.1",
                       port=local.port)
        kg_e2e.wait_until(lambda: events(), 10, what="door_open from the one message")
        start = events()[0]
        assert (start["label"], start["state"], start["value"]) == ("door_open", "start", 0.0), start
        assert 1.5 <= kg_e2e.parse_time(start["time"]) - opened <= 4, start
        publish.single("zigbee2mqtt/cold_room_door", json.dumps({"contact": True}), hostname="127.0.0.1",
                       port=local.port)
        kg_e2e.wait_until(lambda: [e["state"] for e in events()] == ["start", "end"], 10, what="the door shut")
        assert events()[1]["end_reason"] == "cleared"
        assert gw.terminate() == 0
    finally:
        local.kill()


def test_a_reload_keeps_a_door_open_and_the_minute_in_progress(broker, collector, gateways, tmp_path):
    """A reload (SIGHUP) rebuilt the sensors without their last readings: a door contact that had
    reported "open" (and says nothing more until it shuts) was unknown to the new run, so a door
    opened shortly before a reload never raised door_open. And the minute in progress went out as
    a partial roll-up at the reload, then again with the rest of its readings: two roll-ups for one
    minute, the second replacing the first in the room. Now a reload hands each sensor's last
    reading and minute in progress to the next run."""
    (tmp_path / "local").mkdir()
    local = kg_e2e.Broker(tmp_path / "local")
    try:
        sensors = [
            {"id": "door", "kind": "door", "unit": "", "interval": "1h",
             "source": {"mqtt": {"topic": "zigbee2mqtt/door", "value": "contact"}},
             "thresholds": [{"label": "door_open", "below": 1, "for": "3s", "clear_for": "0s"}]},
            # Timed by its own clock, so that the test knows which minute each reading falls in.
            {"id": "fridge", "interval": "1s", "stale_after": 600,
             "source": {"mqtt": {"topic": "fridge/t", "time": "ts"}}},
        ]
        config = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors, sensors_mqtt=local.url)
        del config["cameras"]
        gw = gateways(config)
        kg_e2e.wait_until(lambda: "reading 2 MQTT sensors" in gw.output(), 10, what="the sensor input subscribed")

        def fridge(ts, value):
            publish.single("fridge/t", json.dumps({"temperature": value, "ts": ts}), hostname="127.0.0.1",
                           port=local.port)

        def door_events():
            return [(e["label"], e["state"], e.get("end_reason")) for e in collector.events()
                    if e.get("sensor") == "door"]

        minute = (int(time.time()) // 60 - 2) * 60  # two minutes back: within what a device clock may lag
        fridge(minute + 10, 3.0)
        fridge(minute + 20, 4.0)
        opened = time.time()
        publish.single("zigbee2mqtt/door", json.dumps({"contact": False}), hostname="127.0.0.1", port=local.port)

        def value(sensor):
            s = collector.last_json(f"{PREFIX}/sensors/{sensor}/state")
            return s and s["value"]

        # The old run has both readings (its states, sent every second, say so) before the reload.
        collector.wait_for(lambda: value("door") == 0 and value("fridge") == 4.0, 10, what="both readings taken")
        runs = gw.output().count("reading 2 MQTT sensors")
        # The next run resumes the door's reading when it starts, and the `for` that was running from
        # the door's opening: the alarm comes 3 s after that, dated from it, the reload or not.
        gw.proc.send_signal(signal.SIGHUP)  # the same file: nothing changes but the run
        kg_e2e.wait_until(lambda: gw.output().count("reading 2 MQTT sensors") > runs, 15, what="the reloaded run")
        fridge(minute + 30, 5.0)
        fridge(minute + 40, 6.0)
        fridge(minute + 70, 7.0)  # the next minute: the one before is complete

        # The door, silent since it opened, raises its alarm `for` after the reload.
        kg_e2e.wait_until(lambda: ("door_open", "start", None) in door_events(), 10, what="door_open after the reload")
        start = [e for e in collector.events() if e.get("sensor") == "door"][-1]
        assert 2.9 <= kg_e2e.parse_time(start["time"]) - opened <= 10, (start, opened)
        assert abs(kg_e2e.parse_time(start["start_time"]) - opened) <= 1, (start, opened)
        assert door_events() == [("door_open", "start", None)], door_events()

        rollups = kg_e2e.wait_until(lambda: [r for r in collector.json_on(f"{PREFIX}/sensors/fridge/rollup")
                                             if kg_e2e.parse_time(r["minute"]) == minute], 10,
                                    what="the fridge's roll-up of the reloaded minute")
        time.sleep(1)
        rollups = [r for r in collector.json_on(f"{PREFIX}/sensors/fridge/rollup")
                   if kg_e2e.parse_time(r["minute"]) == minute]
        assert len(rollups) == 1, rollups
        assert (rollups[0]["count"], rollups[0]["min"], rollups[0]["max"], rollups[0]["mean"]) == (4, 3.0, 6.0, 4.5)
        assert gw.terminate() == 0
    finally:
        local.kill()


def test_readings_sent_while_a_reload_changes_runs_are_all_taken(broker, collector, gateways, tmp_path):
    """A reload made the sensor input again: its clean session took about a second to connect and
    subscribe, and what the sensors sent (QoS 0, as Zigbee2MQTT and Tasmota do) in that second was
    lost; a gas detector's one "true" waited for its next message. The connection is handed to the
    next run now: every reading sent across the reload is taken, counted in the minute's roll-up."""
    import paho.mqtt.client as mqtt

    (tmp_path / "local").mkdir()
    local = kg_e2e.Broker(tmp_path / "local")
    device = mqtt.Client(client_id="kg-test-fridge")
    try:
        sensors = [
            # Timed by its own clock, so that every reading falls in one minute whatever the hour.
            {"id": "fridge", "interval": "1s", "stale_after": 600,
             "source": {"mqtt": {"topic": "fridge/t", "time": "ts"}}},
        ]
        config = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors, sensors_mqtt=local.url)
        del config["cameras"]
        gw = gateways(config)
        kg_e2e.wait_until(lambda: "reading 1 MQTT sensors" in gw.output(), 10, what="the sensor input subscribed")
        device.connect("127.0.0.1", local.port)
        device.loop_start()
        minute = (int(time.time()) // 60 - 2) * 60  # two minutes back: within what a device clock may lag
        runs = gw.output().count("reading 1 MQTT sensors")
        sent = 0
        started = time.time()
        while time.time() - started < 4:
            if sent == 25:
                gw.proc.send_signal(signal.SIGHUP)  # the same file: nothing changes but the run
            info = device.publish("fridge/t", json.dumps({"temperature": 3.0, "ts": minute + 10 + sent * 0.02}), qos=0)
            info.wait_for_publish()
            sent += 1
            time.sleep(0.02)
        kg_e2e.wait_until(lambda: gw.output().count("reading 1 MQTT sensors") > runs, 15, what="the reloaded run")
        assert "the connection kept across the reload" in gw.output(), gw.output()[-3000:]
        # The next minute closes the one before.
        device.publish("fridge/t", json.dumps({"temperature": 3.0, "ts": minute + 70}), qos=0).wait_for_publish()
        rollups = kg_e2e.wait_until(lambda: [r for r in collector.json_on(f"{PREFIX}/sensors/fridge/rollup")
                                             if kg_e2e.parse_time(r["minute"]) == minute], 10,
                                    what="the fridge's roll-up of the reloaded minute")
        time.sleep(1)
        rollups = [r for r in collector.json_on(f"{PREFIX}/sensors/fridge/rollup")
                   if kg_e2e.parse_time(r["minute"]) == minute]
        assert [r["count"] for r in rollups] == [sent], (sent, rollups)
        assert gw.terminate() == 0
    finally:
        device.loop_stop()
        local.kill()


def test_a_gas_leak_across_a_reload_stays_open_in_the_room(broker, collector, gateways, tmp_path):
    """A reload hands the sensors' open alarms to the next run: the room saw a gas leak end ("gateway
    stopped", not seen to clear) and a new one start, notified and to be acknowledged again, after
    every configuration edit. It is one alert now, which ends, under its id, when the gas clears.
    (Before that, the reloaded run's start ended what the previous run had left open in the room
    ("gateway restarted") after the carried reading had raised the leak again: the room saw it end
    while it went on. The start leaves the alarms handed over alone.)"""
    (tmp_path / "local").mkdir()
    local = kg_e2e.Broker(tmp_path / "local")
    try:
        sensors = [
            {"id": "gas", "kind": "gas", "unit": "", "interval": "1h",
             "source": {"mqtt": {"topic": "zigbee2mqtt/gas", "value": "gas"}},
             "thresholds": [{"label": "leak", "above": 0, "clear_for": "0s"}]},
        ]
        config = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors, sensors_mqtt=local.url)
        del config["cameras"]
        gw = gateways(config)
        kg_e2e.wait_until(lambda: "reading 1 MQTT sensors" in gw.output(), 10, what="the sensor input subscribed")

        def gas(on):
            publish.single("zigbee2mqtt/gas", json.dumps({"gas": on}), hostname="127.0.0.1", port=local.port)

        def leak_events():
            return [(e["state"], e.get("end_reason")) for e in collector.events() if e.get("sensor") == "gas"]

        gas(True)
        collector.wait_for(lambda: leak_events() == [("start", None)], 10, what="the leak alarm")
        runs = gw.output().count("reading 1 MQTT sensors")
        gw.proc.send_signal(signal.SIGHUP)
        kg_e2e.wait_until(lambda: gw.output().count("reading 1 MQTT sensors") > runs, 15, what="the reloaded run")
        kg_e2e.wait_until(lambda: "its leak alert" in gw.output() and "goes on after the reload" in gw.output(), 10,
                          what="the leak taken over by the reloaded run")
        time.sleep(2)  # anything the reloaded run's start sends has arrived by now
        assert leak_events() == [("start", None)], leak_events()
        assert "did not stop cleanly" not in gw.output()
        assert "ending them with" not in gw.output()  # nothing taken for left by a crash

        gas(False)
        collector.wait_for(lambda: len(leak_events()) >= 2, 10, what="the leak's end when the gas clears")
        assert leak_events()[1] == ("end", "cleared"), leak_events()
        ids = [e["id"] for e in collector.events() if e.get("sensor") == "gas"]
        assert ids[0] == ids[1], ids
        assert gw.terminate() == 0
    finally:
        local.kill()


def test_mqtt_sensors_read_with_an_account(gateways, tmp_path):
    """MQTT sensors on a broker that wants an account. Without `sensors_mqtt` they are read from
    `mqtt`'s broker with `mqtt`'s account (they used to connect anonymously and were refused,
    "CONNACK return code" for ever); `sensors_mqtt` as a map names another broker and its account."""
    import http.client

    def broker_with_account(user, password):
        pw = tmp_path / f"pw-{user}"
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), user, password], check=True)
        return kg_e2e.Broker(tmp_path, extra_conf=f"allow_anonymous false\npassword_file {pw}\n")

    def last_value(port, sensor):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/sensors", headers={"Authorization": "Bearer t0ken"})
        sensors = json.loads(conn.getresponse().read())
        conn.close()
        return next((s.get("value") for s in sensors if s["sensor"] == sensor), None)

    uplink = broker_with_account("site", "s3cret")
    local = broker_with_account("z2m", "l0cal")
    try:
        sensors = [{"id": "fridge", "interval": "1s", "source": {"mqtt": {"topic": "zigbee2mqtt/fridge"}}}]
        config = kg_e2e.base_config(uplink, [], tmp_path, sensors=sensors)
        del config["cameras"]
        config["mqtt"].update({"username": "site", "password": "s3cret"})
        config["api"] = {"listen": "127.0.0.1:0", "token": "t0ken"}
        gw = gateways(config)
        port = gw.api_port()

        def read(broker, auth, value):
            publish.single("zigbee2mqtt/fridge", json.dumps({"temperature": value}), hostname="127.0.0.1",
                           port=broker.port, auth=auth)
            return last_value(port, "fridge") == value

        kg_e2e.wait_until(lambda: read(uplink, {"username": "site", "password": "s3cret"}, 3.5), 15,
                          what="a reading through mqtt's broker and account")
        assert "CONNACK" not in gw.output(), gw.output()[-2000:]
        assert gw.terminate() == 0

        config["sensors_mqtt"] = {"url": local.url, "username": "z2m", "password": "l0cal"}
        gw = gateways(config, "local")
        port = gw.api_port()
        kg_e2e.wait_until(lambda: read(local, {"username": "z2m", "password": "l0cal"}, 4.5), 15,
                          what="a reading through sensors_mqtt's broker and account")
        assert "CONNACK" not in gw.output(), gw.output()[-2000:]
        assert "l0cal" not in gw.output() and "s3cret" not in gw.output()
        assert gw.terminate() == 0
    finally:
        uplink.kill()
        local.kill()


def test_a_wall_clock_set_ahead_neither_silences_the_sensors_nor_confirms_a_threshold_early(broker, collector,
                                                                                              gateways, tmp_path):
    """NTP sets the box's clock an hour ahead a few seconds after the start (a box without a battery
    clock) while a fridge is warm. Staleness and `for` were timed on the wall clock: every sensor was
    taken for silent for an hour (an offline alert each, ended by its next reading), and the fridge's
    two warm seconds for an hour (too_warm at once, not after `for: 12s`). Both are timed on the
    steady clock now."""
    (tmp_path / "local").mkdir()
    local = kg_e2e.Broker(tmp_path / "local")
    try:
        sensors = [
            {"id": "fridge", "kind": "temperature", "unit": "degC", "interval": "1s", "stale_after": 3,
             "source": {"mqtt": {"topic": "sensors/fridge", "value": "temperature"}},
             "thresholds": [{"label": "too_warm", "above": 8, "for": "12s", "clear_for": "0s"}]},
        ]
        config = kg_e2e.base_config(broker, [], tmp_path, sensors=sensors, sensors_mqtt=local.url)
        del config["cameras"]
        gw = gateways(config, env={"LD_PRELOAD": kg_e2e.CLOCK_STEP_LIB, "KG_CLOCK_STEP_AFTER_S": "8",
                                   "KG_CLOCK_STEP_S": "3600"})
        kg_e2e.wait_until(lambda: "reading 1 MQTT sensors" in gw.output(), 10, what="the sensor input subscribed")

        def events():
            return [e for e in collector.events() if e.get("sensor") == "fridge"]

        started = time.monotonic()
        warm_from = None
        while time.monotonic() - started < 22:
            warm = time.monotonic() - started > 2
            if warm and warm_from is None:
                warm_from = time.monotonic()
            publish.single("sensors/fridge", json.dumps({"temperature": 9.0 if warm else 4.0}), hostname="127.0.0.1",
                           port=local.port)
            if events():
                break
            time.sleep(0.5)
        # The step came 8 s after the process started, with the fridge warm for a few seconds of its 12.
        assert [(e["label"], e["state"]) for e in events()][:1] == [("too_warm", "start")], events()
        confirmed_after = time.monotonic() - warm_from
        assert confirmed_after > 10, f"too_warm after {confirmed_after:.1f} s warm, not 12"
        assert not any(e["check"] == "sensor_health" for e in events()), events()
        assert gw.terminate() == 0
    finally:
        local.kill()
