"""The deployment's broker configuration, for real: deploy/mosquitto's ACL and per-site credentials
(made by add-site.sh) and a TLS listener with a CA from deploy/tls/make-test-ca.sh. A gateway
publishes under its own site over TLS; the same credentials cannot publish under another site."""

import subprocess
import time

import paho.mqtt.client as mqtt

import kg_e2e

DEPLOY = kg_e2e.SOURCE_DIR / "deploy"


def test_site_credentials_acl_and_tls(tmp_path, clips, schemas):
    passwd = tmp_path / "passwd"
    out = {}
    for user in ("sch-0101", "sch-0102", "monitor"):
        line = subprocess.run([str(DEPLOY / "mosquitto/add-site.sh"), user, str(passwd)], check=True,
                              capture_output=True, text=True).stdout
        out[user] = line.split("password ")[1].split(" ")[0]
    subprocess.run([str(DEPLOY / "tls/make-test-ca.sh"), str(tmp_path / "tls"), "localhost"], check=True,
                   capture_output=True)
    plain, tls = kg_e2e.free_port(), kg_e2e.free_port()
    # The shipped configuration, with this test's paths and ports.
    conf = (DEPLOY / "mosquitto/mosquitto.conf").read_text()
    conf = (conf.replace("/etc/mosquitto/kitchen/passwd", str(passwd))
                .replace("/etc/mosquitto/kitchen/acl", str(DEPLOY / "mosquitto/acl"))
                .replace("/etc/mosquitto/kitchen/tls", str(tmp_path / "tls"))
                .replace("listener 1883 127.0.0.1", f"listener {plain} 127.0.0.1")
                .replace("listener 8883", f"listener {tls} 127.0.0.1")
                .replace("persistence true", "persistence false")
                .replace("persistence_location /var/lib/mosquitto/", ""))
    (tmp_path / "mosquitto.conf").write_text(conf + "user root\n")
    broker = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(tmp_path / "mosquitto.conf")],
                              stderr=subprocess.DEVNULL)
    try:
        kg_e2e.wait_port(plain)
        kg_e2e.wait_port(tls)
        got = []
        monitor = mqtt.Client(client_id="monitor-test")
        monitor.username_pw_set("monitor", out["monitor"])
        monitor.on_connect = lambda c, u, f, rc: c.subscribe("kitchen/#", qos=1)
        monitor.on_message = lambda c, u, m: got.append((m.topic, bytes(m.payload)))
        monitor.connect("127.0.0.1", plain)
        monitor.loop_start()
        kg_e2e.wait_until(lambda: monitor.is_connected(), 5, what="monitor connected")

        # The gateway of sch-0101, over TLS with the site's credentials.
        cam = kg_e2e.camera("cam", clips("short", [("normal", 4)]), input={"loop": True})
        config = kg_e2e.base_config(type("B", (), {"url": f"ssl://localhost:{tls}"})(), [cam], tmp_path)
        config["site"]["id"] = "sch-0101"
        config["mqtt"].update({"username": "sch-0101", "password": out["sch-0101"],
                               "tls": {"ca_file": str(tmp_path / "tls/ca.crt")}})
        gw = kg_e2e.Gateway(tmp_path, config)
        try:
            kg_e2e.wait_until(lambda: ("kitchen/sch-0101/availability", b"online") in got, 15, what="online over TLS")
            # The same credentials cannot speak for another site: the broker drops the message.
            intruder = mqtt.Client(client_id="intruder")
            intruder.username_pw_set("sch-0101", out["sch-0101"])
            intruder.connect("127.0.0.1", plain)
            intruder.loop_start()
            intruder.publish("kitchen/sch-0102/events", b'{"fake": true}', qos=1).wait_for_publish(5)
            intruder.publish("kitchen/sch-0101/probe", b"mine", qos=1).wait_for_publish(5)
            kg_e2e.wait_until(lambda: ("kitchen/sch-0101/probe", b"mine") in got, 5, what="own topic delivered")
            time.sleep(0.5)
            assert not [t for t, _ in got if t.startswith("kitchen/sch-0102/")]
            intruder.loop_stop()
            # Wrong password: refused.
            bad = mqtt.Client(client_id="bad")
            bad.username_pw_set("sch-0102", "wrong")
            bad.connect("127.0.0.1", plain)
            rc = []
            bad.on_connect = lambda c, u, f, r: rc.append(r)
            bad.loop_start()
            kg_e2e.wait_until(lambda: rc, 5, what="a CONNACK")
            assert rc[0] != 0
            bad.loop_stop()
            assert gw.terminate() == 0
        finally:
            if gw.running():
                gw.kill()
        monitor.loop_stop()
    finally:
        broker.kill()
        broker.wait()
