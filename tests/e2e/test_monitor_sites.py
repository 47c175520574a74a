"""kitchen-monitor's sites against a real Mosquitto: the room's own broker connection, and the end of
a site.

1. The room loses the broker (killed) while its canteens are online: /api/me says it is not connected
   (since when, the last error), no site is ever listed silent meanwhile, nor in the API nor on the
   live stream (they are unknown, with their last state), and none after it is back until the sites
   had heartbeat_timeout to be heard again; a site that then says nothing is silent as before.
2. A decommissioned site: its retained availability and gateway message cleared with
   `mosquitto_pub -r -n` are clears (not refused, not counted), and an operator retires it: refused
   while a site is online, its open alert closed in the operator's name (the decision published as
   decision.schema.json says), no replay asked of it any more, gone from the list and on record; the
   broker's retained copy of another retired site does not bring that one back at a restart, and a
   message of the site's own does, as a new site.
3. The dashboard in headless Chromium: the banner while the room is not connected, and the Retire
   button of an offline site, with its confirmation."""

import json
import subprocess
import threading
import time

import pytest
from selenium.webdriver.common.by import By

import kg_e2e
from test_monitor import LiveStream, Monitors, click, event, now_iso, publish_all, publisher, sign_in, text_of

def stream(site):
    """A numbered stream of the site's own (one shared by two sites reads as a site renamed)."""
    return "5f0c2a9e8d7b" + site[-4:]


@pytest.fixture
def monitors(tmp_path):
    started = Monitors(tmp_path)
    yield started
    for m in started.items:
        m.kill()


def camera_state(site):
    return (f"kitchen/{site}/cameras/cooking/state", json.dumps(
        {"site": site, "camera": "cooking", "name": "Cooking", "online": True, "fps_in": 25.0, "fps_analysed": 2.0,
         "frames_dropped": 0, "reconnects_1h": 0, "stalls_1h": 0, "decode_errors": 0, "conditions": [],
         "last_frame_time": now_iso(), "time": now_iso()}))


def gateway_message(site, seq=0):
    return (f"kitchen/{site}/gateway", json.dumps(
        {"site": site, "name": f"Canteen {site}", "version": "0.1.0", "started_at": now_iso(-60),
         "cameras": [{"id": "cooking", "name": "Cooking", "public": False, "checks": ["bin_lid"]}],
         "sensors": [], "config_warnings": [], "stream": stream(site), "stream_started": now_iso(-3600), "seq": seq,
         "time": now_iso()}))


def states(mon):
    return {s["site"]: s for s in mon.get("/api/sites")}


class Heartbeats:
    """Working gateways: each site's camera state, live, now and every `every` seconds until close()."""

    def __init__(self, broker, sites, every=2.0):
        self.client = publisher(broker)
        self.sites = sites
        self.every = every
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            for site in self.sites:
                self.client.publish(*camera_state(site), qos=0)
            if self.stopping.wait(self.every):
                return

    def close(self):
        self.stopping.set()
        self.thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


def test_the_room_losing_the_broker_shows_no_canteen_silent(monitors, tmp_path):
    broker = kg_e2e.Broker(tmp_path, persistent=True)  # keeps the retained states across its restart
    try:
        mon = monitors(broker)  # heartbeat_timeout 10s
        working, hung = ["sch-0101", "sch-0102", "sch-0103"], "sch-0199"
        pub = publisher(broker)
        publish_all(pub, [(f"kitchen/{s}/availability", "online") for s in working + [hung]], retain=True)
        publish_all(pub, [camera_state(s) for s in working + [hung]], retain=True)
        kg_e2e.wait_until(lambda: all(states(mon).get(s, {}).get("state") == "online" for s in working + [hung]),
                          10, what="the four sites online")
        assert mon.get("/api/me")["broker"]["connected"] is True
        stream = LiveStream(mon)
        time.sleep(1.5)  # the broker's autosave (every second) has the retained states
        pub.disconnect()
        broker.kill()

        me = kg_e2e.wait_until(lambda: (lambda m: m if not m["broker"]["connected"] else None)(mon.get("/api/me")),
                               10, what="/api/me saying the room is not connected")
        assert me["broker"]["since"] and me["broker"]["last_error"], me
        assert mon.request("GET", "/readyz")[0] == 503
        # Longer than heartbeat_timeout (10 s): every site was silent by then before.
        end = time.time() + 13
        while time.time() < end:
            for site, row in states(mon).items():
                assert row["state"] == "unknown", row
                assert row["last_state"] == "online", row
                assert "not connected to the broker" in row["state_note"], row
            time.sleep(0.5)

        broker.start()
        kg_e2e.wait_until(lambda: mon.get("/api/me")["broker"]["connected"], 15, what="the room connected again")
        me = mon.get("/api/me")
        assert me["broker"]["settling_until"], me
        # Back, and its sites' last messages are over 13 s old: not silent before they had 10 s to come.
        rows = states(mon)
        for site in working + [hung]:
            assert rows[site]["state"] == "online", rows[site]
            assert rows[site]["heartbeat_age_s"] > 10, rows[site]
            assert "not heard from since the room connected" in rows[site]["state_note"], rows[site]
        beats = Heartbeats(broker, working)
        # The hung gateway says nothing: silent once heartbeat_timeout passed since the room was back.
        kg_e2e.wait_until(lambda: states(mon)[hung]["state"] == "silent", 15, what="the hung site silent")
        rows = states(mon)
        for site in working:
            assert rows[site]["state"] == "online" and rows[site]["state_note"] is None, rows[site]
        # The dashboards' live rows (the retained states the broker sent again brought them) never said
        # silent for a working site either.
        for site in working:
            said = [r["state"] for r in stream.rows(site)]
            assert said and "silent" not in said, (site, said)
        stream.close()
        beats.close()
        assert mon.terminate() == 0
    finally:
        broker.kill()


def clear_retained(broker, topic):
    """What an operator types to delete a retained message (an empty retained message)."""
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-r", "-n", "-t", topic],
                   check=True, timeout=10)


def test_a_decommissioned_site_is_cleared_and_retired(broker, monitors, collector, schemas):
    mon = monitors(broker, extra={"replay": {"after": "1s", "every": "1s"}})
    pub = publisher(broker)
    gone, working, kept = "sch-9001", "sch-9002", "sch-9003"
    alert = "19ab3c0f2e3-0000000000009001"
    for site in (gone, working, kept):
        publish_all(pub, [(f"kitchen/{site}/availability", "online"), gateway_message(site, 1), camera_state(site)],
                    retain=True)
    # sch-9003 numbers its messages and number 2 never came: the room asks for it every second.
    publish_all(pub, [(f"kitchen/{kept}/events", json.dumps({**event("19ab3c0f2e3-0000000000009003", kept),
                                                              "stream": stream(kept), "seq": 3})),
                      (f"kitchen/{gone}/events", json.dumps(event(alert, gone)))])
    kg_e2e.wait_until(lambda: collector.on(f"kitchen/{kept}/replay"), 10, what="a replay request to sch-9003")
    publish_all(pub, [(f"kitchen/{s}/availability", "offline") for s in (gone, kept)], retain=True)
    kg_e2e.wait_until(lambda: states(mon)[gone]["state"] == "offline" and states(mon)[gone]["open_alerts"] == 1, 10,
                      what="sch-9001 offline with its open alert")

    # Decommissioned: its three retained topics cleared as the review did.
    for topic in ("availability", "gateway", "cameras/cooking/state"):
        clear_retained(broker, f"kitchen/{gone}/{topic}")
    kg_e2e.wait_until(lambda: not states(mon)[gone]["cameras"], 10, what="the camera forgotten")
    kg_e2e.wait_until(lambda: "its retained gateway message was cleared" in mon.output(), 10, what="the clear said")
    out = mon.output()
    assert f"{gone}: its retained availability message was cleared on the broker" in out, out[-3000:]
    assert "refused message" not in out, out[-3000:]
    assert mon.metric('kgm_messages_total{outcome="refused"}') == 0

    # An operator retires it; not a site that is online.
    status, body = mon.request("POST", f"/api/sites/{working}/retire", {})
    assert status == 409 and f"{working} is online" in body["error"], (status, body)
    status, body = mon.request("POST", f"/api/sites/{gone}/retire", {"note": "canteen closed"})
    assert status == 200, (status, body)
    assert body["alerts_closed"] == [alert] and body["operator"] == "wang", body
    topic = f"kitchen/{gone}/decisions/{alert}"
    decision = kg_e2e.wait_until(lambda: collector.json_on(topic), 10, what="the decision closing its alert")
    assert not list(schemas.validators["decision"].iter_errors(decision[-1])), decision[-1]
    assert decision[-1]["action"] == "close" and decision[-1]["operator"] == "wang"
    assert decision[-1]["note"] == f"site {gone} retired by wang: canteen closed"
    closed = mon.get(f"/api/alerts/{alert}")
    assert closed["status"] == "closed" and closed["close_note"] == decision[-1]["note"], closed
    assert gone not in states(mon)
    assert mon.get("/api/retired-sites")[0]["site"] == gone
    assert "wang retired site sch-9001" in mon.output()

    # sch-9003 retired with its retained availability left at the broker: no replay asked of it any
    # more, and the broker's copy does not bring it back when the room connects again.
    assert mon.request("POST", f"/api/sites/{kept}/retire", {})[0] == 200
    time.sleep(1.2)
    asked = len(collector.on(f"kitchen/{kept}/replay"))
    time.sleep(3)
    assert len(collector.on(f"kitchen/{kept}/replay")) == asked, "the room still asks a retired site for replays"
    assert mon.terminate() == 0
    mon = monitors(broker, db=mon.workdir / "monitor.db")
    time.sleep(1.5)  # the retained messages came with the subscription
    assert set(states(mon)) == {working}, states(mon)
    assert f"{kept} was retired by an operator" in mon.output()

    # The decommissioned id used again: a message of its own, a new site.
    publish_all(pub, [(f"kitchen/{gone}/availability", "online"), camera_state(gone)], retain=True)
    kg_e2e.wait_until(lambda: states(mon).get(gone, {}).get("state") == "online", 10, what="sch-9001 back")
    assert states(mon)[gone]["open_alerts"] == 0
    assert mon.metric('kgm_messages_total{outcome="refused"}') == 0
    pub.disconnect()
    assert mon.terminate() == 0


def test_dashboard_banner_and_retire_button(broker, monitors, browser):
    mon = monitors(broker)
    pub = publisher(broker)
    alert = "19ab3c0f2e3-0000000000009101"
    # Its alert before its offline: a site heard after it said offline may be a live one behind a
    # stale last will, and is not retired.
    publish_all(pub, [("kitchen/sch-9101/events", json.dumps(event(alert, "sch-9101")))])
    publish_all(pub, [("kitchen/sch-9101/availability", "offline"), ("kitchen/sch-9102/availability", "online"),
                      ("kitchen/sch-9103/availability", "offline")], retain=True)
    beats = Heartbeats(broker, ["sch-9102"])
    sign_in(browser, mon)

    def row(site):
        return text_of(browser, f"#sites tr[data-site='{site}']")

    def button(site):
        return browser.find_elements(By.CSS_SELECTOR, f"#sites tr[data-site='{site}'] button.retire")

    kg_e2e.wait_until(lambda: "offline" in row("sch-9101") and "online" in row("sch-9102"), 10, what="both sites")
    assert button("sch-9101") and not button("sch-9102"), "Retire belongs to the offline site only"
    kg_e2e.wait_until(lambda: text_of(browser, f"#alerts tr[data-id='{alert}']"), 10, what="its open alert listed")

    # Asked first: cancelled, nothing happens.
    retire = "#sites tr[data-site='sch-9101'] button.retire"
    click(browser, retire)
    dialog = browser.switch_to.alert
    assert "Retire site sch-9101?" in dialog.text and "1 open alert(s) will be closed in your name" in dialog.text
    dialog.dismiss()
    time.sleep(0.5)
    assert "sch-9101" in row("sch-9101") and mon.get(f"/api/alerts/{alert}")["status"] == "open"
    click(browser, retire)
    browser.switch_to.alert.accept()
    kg_e2e.wait_until(lambda: not row("sch-9101"), 10, what="the retired site gone from the list")
    kg_e2e.wait_until(lambda: not text_of(browser, f"#alerts tr[data-id='{alert}']"), 10,
                      what="its alert gone from the open ones")
    assert mon.get(f"/api/alerts/{alert}")["closed_by"] == "wang"

    # Another operator retires a site (here through the API): this page drops its row from the live
    # stream, not at its reading of the whole list every 20 s.
    kg_e2e.wait_until(lambda: "offline" in row("sch-9103"), 5, what="the other offline site")
    assert mon.request("POST", "/api/sites/sch-9103/retire", {})[0] == 200
    kg_e2e.wait_until(lambda: not row("sch-9103"), 5, what="the site another operator retired gone from the list")

    # The room loses the broker: the banner, and no site's state shown as known.
    assert not browser.find_element(By.ID, "room-banner").is_displayed()
    beats.close()
    broker.kill()
    kg_e2e.wait_until(lambda: browser.find_element(By.ID, "room-banner").is_displayed(), 10, what="the banner")
    banner = text_of(browser, "#room-banner")
    assert "The room is not connected to the broker since" in banner and "the sites' states are not known" in banner
    assert "Last error:" in banner, banner
    kg_e2e.wait_until(lambda: text_of(browser, "#sites tr[data-site='sch-9102'] td.state").startswith("unknown"), 5,
                      what="the online site shown as not known")
    # Waited for, not read once: the page redraws its rows as updates come (a row read while it is
    # replaced reads as empty).
    kg_e2e.wait_until(lambda: "last: online" in text_of(browser, "#sites tr[data-site='sch-9102'] td.state"), 5,
                      what="the site's last known state")
    browser.save_screenshot(str(mon.workdir / "monitor-room-disconnected.png"))
    broker.start()
    beats = Heartbeats(broker, ["sch-9102"])
    kg_e2e.wait_until(lambda: not browser.find_element(By.ID, "room-banner").is_displayed(), 15,
                      what="the banner gone once the room is connected")
    kg_e2e.wait_until(lambda: text_of(browser, "#sites tr[data-site='sch-9102'] td.state").startswith("online"), 10,
                      what="the site's state shown again")
    beats.close()
    pub.disconnect()
    assert mon.terminate() == 0
