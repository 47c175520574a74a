"""The deployment's broker configuration, for real: deploy/mosquitto's ACL and per-site credentials
(made by add-site.sh) and a TLS listener with a CA from deploy/tls/make-test-ca.sh. A gateway
publishes under its own site over TLS; the same credentials cannot publish under another site, and
another site's credentials cannot take over its connection (or the room's) by its client id; the
shipped file is a drop-in for Debian's mosquitto.conf. And
the Debian package, installed with dpkg in a private mount namespace: who may read its config and
secrets."""

import json
import pathlib
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time

import pytest
import yaml

import paho.mqtt.client as mqtt

import kg_e2e

DEPLOY = kg_e2e.SOURCE_DIR / "deploy"


@pytest.fixture
def broker_dir():
    """A folder user mosquitto can read: a broker started as root runs as that user, as Debian's
    service does, before it reads its password file, ACL and TLS key, and pytest's tmp_path lies
    under /tmp/pytest-of-root, 0700."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="kg-deploy-broker-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _broker_files(broker_dir):
    """The central broker's files as a district makes them with deploy/'s scripts, in broker_dir:
    two sites' accounts and the room's, the shipped ACL, a test CA. Returns the passwords by user."""
    passwd = broker_dir / "passwd"
    out = {}
    for args in (["sch-0101"], ["sch-0102"], ["--room", "monitor-1"]):
        line = subprocess.run([str(DEPLOY / "mosquitto/add-site.sh"), *args, str(passwd)], check=True,
                              capture_output=True, text=True).stdout
        out[args[-1]] = line.split("password ")[1].split(" ")[0]
    assert stat.S_IMODE(passwd.stat().st_mode) & 0o007 == 0, "add-site.sh left the password hashes world-readable"
    shutil.copy(DEPLOY / "mosquitto/acl", broker_dir / "acl")
    subprocess.run([str(DEPLOY / "tls/make-test-ca.sh"), str(broker_dir / "tls"), "localhost"], check=True,
                   capture_output=True)
    return out


def _shipped_conf(broker_dir, plain, tls):
    """The shipped configuration, with the test's paths and ports."""
    conf = (DEPLOY / "mosquitto/mosquitto.conf").read_text()
    return (conf.replace("/etc/mosquitto/kitchen/passwd", str(broker_dir / "passwd"))
                .replace("/etc/mosquitto/kitchen/acl", str(broker_dir / "acl"))
                .replace("/etc/mosquitto/kitchen/tls", str(broker_dir / "tls"))
                .replace("listener 1883 127.0.0.1", f"listener {plain} 127.0.0.1")
                .replace("listener 8883", f"listener {tls} 127.0.0.1"))


def _mosquitto(conf, log, *ports):
    """Mosquitto on `conf`, its output in `log`, once it listens on every one of `ports` (else it is
    stopped and the assertion has the log's tail)."""
    with open(log, "wb") as broker_log:
        broker = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stdout=broker_log, stderr=broker_log)
    try:
        for port in ports:
            kg_e2e.wait_port(port, proc=broker, what="mosquitto")
    except (AssertionError, TimeoutError) as e:
        broker.kill()
        broker.wait()
        raise AssertionError(f"{e}\n{kg_e2e.tail(log)}") from None
    return broker


def _answers_mqtt(port):
    """Whether the broker on `port` answers an MQTT CONNECT (whatever its return code): its main loop
    runs, and its signal handlers are set. Listening comes before both: a SIGTERM in between kills it
    unsaved (CI, loaded: no mosquitto.db)."""
    connect = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 10, 0, 0])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(connect)
            return s.recv(4)[:1] == b"\x20"
    except OSError:
        return False


def test_the_room_accounts_are_not_site_ids(tmp_path):
    """monitor and monitor-* are the room's accounts, which the ACL lets read every site: add-site.sh
    gives them only with --room, and --room gives nothing else."""
    add = str(DEPLOY / "mosquitto/add-site.sh")
    for args in (["monitor"], ["monitor-1"], ["--room", "sch-0101"]):
        run = subprocess.run([add, *args, str(tmp_path / "passwd")], capture_output=True, text=True)
        assert run.returncode == 2 and "add-site: " in run.stderr, (args, run.stdout, run.stderr)
    assert not (tmp_path / "passwd").exists() or "monitor" not in (tmp_path / "passwd").read_text()
    shutil.copy(DEPLOY / "mosquitto/acl", tmp_path / "acl")
    run = subprocess.run([add, "--room", "monitor-2", str(tmp_path / "passwd")], capture_output=True, text=True)
    assert run.returncode == 0 and "room account monitor-2: username monitor-2 password " in run.stdout
    assert "no 'user monitor-2' block" in run.stderr, "the room's second account, without its ACL block, not said"


@pytest.mark.skipif(not pathlib.Path("/etc/mosquitto/mosquitto.conf").exists(), reason="no Debian mosquitto.conf")
def test_the_broker_conf_is_a_drop_in_for_debians_mosquitto(tmp_path, broker_dir):
    """Debian's /etc/mosquitto/mosquitto.conf (persistence, its location, include_dir conf.d) with the
    shipped file in its conf.d: the broker starts. The shipped file once repeated the main file's
    persistence_location, and Mosquitto refused to start (`Duplicate persistence_location value`)."""
    _broker_files(broker_dir)
    plain, tls = kg_e2e.free_port(), kg_e2e.free_port()
    (broker_dir / "conf.d").mkdir()
    (broker_dir / "conf.d/kitchen.conf").write_text(_shipped_conf(broker_dir, plain, tls))
    state = broker_dir / "state"
    state.mkdir()
    shutil.chown(state, "mosquitto")
    main = (pathlib.Path("/etc/mosquitto/mosquitto.conf").read_text()
            .replace("/etc/mosquitto/conf.d", str(broker_dir / "conf.d"))
            .replace("/run/mosquitto/mosquitto.pid", str(state / "mosquitto.pid"))
            .replace("/var/lib/mosquitto/", f"{state}/")
            .replace("log_dest file /var/log/mosquitto/mosquitto.log", "log_dest stderr"))
    assert f"include_dir {broker_dir / 'conf.d'}" in main and f"persistence_location {state}/" in main, main
    (tmp_path / "mosquitto.conf").write_text(main)
    log = tmp_path / "mosquitto.log"
    broker = _mosquitto(tmp_path / "mosquitto.conf", log, plain, tls)
    kg_e2e.wait_until(lambda: _answers_mqtt(plain), 10, what="the broker answering MQTT")
    broker.terminate()
    broker.wait()
    # Persistence from Debian's file: the broker saved its state where that file says.
    assert (state / "mosquitto.db").exists(), kg_e2e.tail(log)


def test_site_credentials_acl_and_tls(tmp_path, broker_dir, clips, schemas):
    out = _broker_files(broker_dir)
    plain, tls = kg_e2e.free_port(), kg_e2e.free_port()
    # No `user root`: started as root, Mosquitto runs as its default user, mosquitto, as a district's
    # broker does, so the files the scripts made must be readable by it (the TLS key, the passwd file).
    (tmp_path / "mosquitto.conf").write_text(_shipped_conf(broker_dir, plain, tls))
    broker = _mosquitto(tmp_path / "mosquitto.conf", tmp_path / "mosquitto.log", plain, tls)
    try:
        got = []
        monitor_drops = []
        monitor = mqtt.Client(client_id="monitor-test")
        monitor.username_pw_set("monitor-1", out["monitor-1"])
        subscribed = threading.Event()
        monitor.on_connect = lambda c, u, f, rc: c.subscribe("kitchen/#", qos=1)
        monitor.on_subscribe = lambda c, u, mid, granted: subscribed.set()
        monitor.on_message = lambda c, u, m: got.append((m.topic, bytes(m.payload)))
        monitor.on_disconnect = lambda c, u, rc: monitor_drops.append(rc)
        monitor.connect("127.0.0.1", plain)
        monitor.loop_start()
        assert subscribed.wait(10), "the monitor's subscription was not granted"

        def connected(user, client_id):
            client = mqtt.Client(client_id=client_id)
            client.username_pw_set(user, out[user])
            client.connect("127.0.0.1", plain)
            client.loop_start()
            return client

        def done(client):
            client.disconnect()
            client.loop_stop()

        # A state each site left retained (of a camera sch-0101's configuration no longer has): the
        # ACL's `pattern read kitchen/%u/cameras/+/state` lets the gateway read, and clear, its own.
        # These clients, like the intruder below, use a site's own account while its gateway is not
        # connected: the broker names a session by its account, so one would end the gateway's.
        for user, topic in (("sch-0101", "kitchen/sch-0101/cameras/gone/state"),
                            ("sch-0102", "kitchen/sch-0102/cameras/gone/state")):
            left = connected(user, f"left-{user}")
            left.publish(topic, b'{"camera": "gone", "online": true}', qos=1, retain=True).wait_for_publish(5)
            done(left)
        kg_e2e.wait_until(lambda: sum(t.endswith("/cameras/gone/state") for t, _ in got) == 2, 5,
                          what="the left states stored")
        # The same credentials cannot speak for another site: the broker drops the message.
        intruder = connected("sch-0101", "intruder")
        intruder.publish("kitchen/sch-0102/events", b'{"fake": true}', qos=1).wait_for_publish(5)
        intruder.publish("kitchen/sch-0101/probe", b"mine", qos=1).wait_for_publish(5)
        kg_e2e.wait_until(lambda: ("kitchen/sch-0101/probe", b"mine") in got, 5, what="own topic delivered")
        time.sleep(0.5)
        assert [t for t, _ in got if t.startswith("kitchen/sch-0102/")] == ["kitchen/sch-0102/cameras/gone/state"]
        done(intruder)

        # The gateway of sch-0101, over TLS with the site's credentials.
        cam = kg_e2e.camera("cam", clips("short", [("normal", 4)]), input={"loop": True})
        config = kg_e2e.base_config(type("B", (), {"url": f"ssl://localhost:{tls}"})(), [cam], tmp_path)
        config["site"]["id"] = "sch-0101"
        config["mqtt"].update({"username": "sch-0101", "password": out["sch-0101"],
                               "tls": {"ca_file": str(broker_dir / "tls/ca.crt")}})
        gw = kg_e2e.Gateway(tmp_path, config)
        try:
            # `online` comes after the gateway's subscriptions (its replay requests among them).
            kg_e2e.wait_until(lambda: ("kitchen/sch-0101/availability", b"online") in got, 15, what="online over TLS")
            kg_e2e.wait_until(lambda: ("kitchen/sch-0101/cameras/gone/state", b"") in got, 15,
                              what="the site's left state cleared under the deployment's ACL")
            # Another canteen's account with this gateway's client id (and then with the room's): the
            # broker takes the account as the session's name, so neither connection is taken over.
            # Before (no use_username_as_clientid), the gateway was thrown off, its last will said
            # `offline`, and the room's persistent session went to the intruder.
            since = len(got)
            for client_id in ("kitchen-gateway-sch-0101", "monitor-test"):
                thief = connected("sch-0102", client_id)
                time.sleep(1.5)
                done(thief)
            time.sleep(1)
            assert not [l for l in gw.output().splitlines() if "connection to" in l and " lost" in l], gw.output()
            assert ("kitchen/sch-0101/availability", b"offline") not in got[since:], got[since:]
            assert monitor_drops == [], "the room's connection was taken over"
            # Replay: only the room may ask a site; the site reads its requests and answers on lost.
            def replay_request(request_id):
                return json.dumps({"request_id": request_id, "site": "sch-0101", "stream": "0000000000000000",
                                   "from": 1, "to": 5, "monitor": "monitor-test",
                                   "time": "2026-12-01T10:00:00.000Z"}).encode()
            other = connected("sch-0102", "other-site")
            other.publish("kitchen/sch-0101/replay", replay_request("from-another-site"), qos=1).wait_for_publish(5)
            done(other)
            monitor.publish("kitchen/sch-0101/replay", replay_request("from-the-room"), qos=1).wait_for_publish(5)
            lost = lambda: [json.loads(p) for t, p in got if t == "kitchen/sch-0101/lost"]
            kg_e2e.wait_until(lost, 15, what="the site's answer on kitchen/sch-0101/lost")
            time.sleep(0.5)
            assert [(a["request_id"], a["reason"]) for a in lost()] == [("from-the-room", "unknown stream")]
            schemas.validate("kitchen/sch-0101/lost", json.dumps(lost()[0]).encode())
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
            # The gateway of sch-0102 over TLS without a `tls` block: the system's trust store (here
            # OpenSSL's SSL_CERT_FILE, where a real box has the district CA installed). Before, Paho
            # refused an ssl:// URL without TLS options at every connect, after "configuration OK".
            second = json.loads(json.dumps(config))
            second["site"]["id"] = "sch-0102"
            second["mqtt"].update({"password": out["sch-0102"], "username": "sch-0102"})
            del second["mqtt"]["tls"]
            second["outbox"] = {"path": str(tmp_path / "outbox-0102.db")}
            second["evidence"] = {**second["evidence"], "path": str(tmp_path / "evidence-0102")}
            gw2 = kg_e2e.Gateway(tmp_path, second, "gateway-0102", env={"SSL_CERT_FILE": str(broker_dir / "tls/ca.crt")})
            try:
                kg_e2e.wait_until(lambda: ("kitchen/sch-0102/availability", b"online") in got, 15,
                                  what="sch-0102 online over TLS with the system's trust store")
                # The pattern is per user: sch-0102's own gateway reads and clears its left state.
                kg_e2e.wait_until(lambda: ("kitchen/sch-0102/cameras/gone/state", b"") in got, 15,
                                  what="sch-0102's left state cleared by its own gateway")
                assert gw2.terminate() == 0
            finally:
                if gw2.running():
                    gw2.kill()
            # A refused password and a broker certificate no trusted CA signed are said as what they
            # are: Paho's "CONNACK return code" and "TCP/TLS connect failure" (the same as for a broker
            # that is down) told an installer nothing (a review).
            refused = json.loads(json.dumps(second))
            refused["mqtt"].update({"url": f"mqtt://127.0.0.1:{plain}", "password": "wrong"})
            refused["outbox"] = {"path": str(tmp_path / "outbox-refused.db")}
            refused["evidence"] = {**second["evidence"], "path": str(tmp_path / "evidence-refused")}
            untrusted = json.loads(json.dumps(second))
            untrusted["outbox"] = {"path": str(tmp_path / "outbox-untrusted.db")}
            untrusted["evidence"] = {**second["evidence"], "path": str(tmp_path / "evidence-untrusted")}
            # And a broker that is not running (nothing listens on its port): Paho's "TCP/TLS connect
            # failure" again, now with what a connect of the gateway's own found.
            stopped = json.loads(json.dumps(refused))
            stopped["mqtt"] = {**second["mqtt"], "url": f"mqtt://127.0.0.1:{kg_e2e.free_port()}"}
            stopped["outbox"] = {"path": str(tmp_path / "outbox-stopped.db")}
            stopped["evidence"] = {**second["evidence"], "path": str(tmp_path / "evidence-stopped")}
            gw3 = kg_e2e.Gateway(tmp_path, refused, "gateway-refused")
            gw4 = kg_e2e.Gateway(tmp_path, untrusted, "gateway-untrusted",
                                 env={"SSL_CERT_FILE": str(broker_dir / "tls/broker.crt")})
            gw5 = kg_e2e.Gateway(tmp_path, stopped, "gateway-stopped")
            try:
                kg_e2e.wait_until(lambda: "cannot connect to" in gw3.output(), 15, what="the refusal said")
                kg_e2e.wait_until(lambda: "(TLS: " in gw4.output(), 15, what="the TLS failure said")
                kg_e2e.wait_until(lambda: "(TCP: " in gw5.output(), 15, what="the stopped broker said")
            finally:
                gw3.kill()
                gw4.kill()
                gw5.kill()
            line = next(l for l in gw5.output().splitlines() if "(TCP: " in l)
            assert "TCP/TLS connect failure (TCP: connection refused by 127.0.0.1 port" in line, line
            assert "nothing listens there (the broker is not running, or another port)" in line, line
            assert "(TCP: " not in gw3.output(), "a broker that answered is not probed"
            line = next(l for l in gw3.output().splitlines() if "cannot connect to" in l)
            assert "error" in line and ("bad user name or password" in line or "not authorised" in line), line
            line = next(l for l in gw4.output().splitlines() if "(TLS: " in l)
            assert "certificate" in line, line
            assert gw.terminate() == 0
        finally:
            if gw.running():
                gw.kill()
        monitor.loop_stop()
    finally:
        broker.kill()
        broker.wait()


def _can_install_privately():
    return shutil.which("cpack") is not None and kg_e2e.can_install_privately()


def _build_package(tmp_path):
    build = pathlib.Path(kg_e2e.GATEWAY_BIN).resolve().parents[1]
    subprocess.run(["cpack", "-G", "DEB", "--config", str(build / "CPackConfig.cmake"), "-B", str(tmp_path / "pkg")],
                   check=True, capture_output=True)
    return next((tmp_path / "pkg").glob("kitchen-gateway_*.deb"))


@pytest.mark.skipif(not _can_install_privately(), reason="needs root, unshare and mounts (overlayfs)")
def test_package_keeps_the_config_and_secrets_from_other_users(tmp_path):
    """The .deb, installed with dpkg: the config (which names camera passwords in RTSP URLs) is
    readable by root and the service's group only, the secrets file the unit reads is root's alone,
    and the service user can still check its config, as the unit's ExecStartPre does. A config an
    earlier version left world-readable is tightened on upgrade, its content kept; one made by hand
    as root, closed to the service, is opened to its group. A config that
    takes its MQTT password from secrets.env passes deploy/README.md's check; an upgrade whose
    program refuses the config installs and says so loudly, naming the error. The examples the
    docs point to are in /usr/share/doc/kitchen-gateway/examples."""
    deb = _build_package(tmp_path)
    installed_here = pathlib.Path("/etc/kitchen-gateway/secrets.env").exists()
    # deploy/README.md's check of the config, as the service user with secrets.env loaded.
    readme_check = next(ln for ln in (DEPLOY / "README.md").read_text().splitlines()
                        if ln.startswith("sh -c 'set -a; . /etc/kitchen-gateway/secrets.env;"))
    layers = kg_e2e.private_system(tmp_path)
    report = "stat -c 'STAT %n %U:%G %a' /etc/kitchen-gateway /etc/kitchen-gateway/gateway.yaml " \
             "/etc/kitchen-gateway/secrets.env\n"
    script = f"""set -e
{layers}
DEBIAN_FRONTEND=noninteractive dpkg -i {deb} >/dev/null
{report}
sed -n 's/^EnvironmentFile=/UNIT /p' /usr/lib/systemd/system/kitchen-gateway.service
runuser -u nobody -- cat /etc/kitchen-gateway/gateway.yaml >/dev/null 2>&1 && echo 'NOBODY read'
runuser -u kitchen-gateway -- /usr/bin/kitchen-gateway --check-config /etc/kitchen-gateway/gateway.yaml
# An earlier version's copy: root:root 0644, edited by the installer.
echo '# edited' >>/etc/kitchen-gateway/gateway.yaml
chown root:root /etc/kitchen-gateway/gateway.yaml
chmod 0644 /etc/kitchen-gateway/gateway.yaml
DEBIAN_FRONTEND=noninteractive dpkg -i {deb} >/dev/null
echo UPGRADE
{report}
tail -n 1 /etc/kitchen-gateway/gateway.yaml
# Made by hand as root before the package (README's build from source): closed to the service.
chown root:root /etc/kitchen-gateway /etc/kitchen-gateway/gateway.yaml
chmod 0700 /etc/kitchen-gateway
chmod 0600 /etc/kitchen-gateway/gateway.yaml
DEBIAN_FRONTEND=noninteractive dpkg -i {deb} >/dev/null 2>"{tmp_path}/by-hand.err"
echo BY_HAND
{report}
cat "{tmp_path}/by-hand.err"
echo SECRETS
# The config's MQTT password from secrets.env, as the example says: root's plain check cannot see it,
# deploy/README.md's check (as the service user, with the secrets loaded) can.
echo 'KG_MQTT_PASSWORD=s3cret' >>/etc/kitchen-gateway/secrets.env
sed -i -e 's/^  # username: /  username: /' -e 's/^  # password: /  password: /' /etc/kitchen-gateway/gateway.yaml
grep -q '^  password: ' /etc/kitchen-gateway/gateway.yaml && echo 'PASSWORD IN THE CONFIG'
/usr/bin/kitchen-gateway --check-config /etc/kitchen-gateway/gateway.yaml >/dev/null 2>&1 || echo 'PLAIN CHECK REFUSED'
{readme_check} >/dev/null && echo 'README CHECK OK'
DEBIAN_FRONTEND=noninteractive dpkg -i {deb} >/dev/null 2>"{tmp_path}/upgrade-ok.err"
grep -q WARNING "{tmp_path}/upgrade-ok.err" && echo 'WARNED ON A GOOD CONFIG'
# An upgrade whose program refuses the config: installed, and said loudly.
echo 'typo_key: 1' >>/etc/kitchen-gateway/gateway.yaml
DEBIAN_FRONTEND=noninteractive dpkg -i {deb} >/dev/null 2>"{tmp_path}/upgrade.err" && echo 'BROKEN UPGRADE INSTALLED'
echo WARNED
cat "{tmp_path}/upgrade.err"
echo EXAMPLES
cd /usr/share/doc/kitchen-gateway/examples
stat -c 'EXAMPLE %n %a' monitor.example.yaml deploy/README.md deploy/mosquitto/acl deploy/mosquitto/mosquitto.conf \
    deploy/mosquitto/add-site.sh deploy/tls/make-test-ca.sh ../docs/config.md ../docs/schemas/event.schema.json
"""
    run = subprocess.run(["unshare", "-m", "bash", "-c", script], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    first, upgraded = run.stdout.split("UPGRADE\n")
    upgraded, secrets = upgraded.split("SECRETS\n")
    upgraded, by_hand = upgraded.split("BY_HAND\n")
    secrets, warned = secrets.split("WARNED\n")
    warned, examples = warned.split("EXAMPLES\n")
    assert secrets.splitlines() == ["PASSWORD IN THE CONFIG", "PLAIN CHECK REFUSED", "README CHECK OK",
                                    "BROKEN UPGRADE INSTALLED"], run.stdout + run.stderr
    assert "WARNING" in warned and "typo_key" in warned and "NOT restarted" in warned, warned
    assert {ln.split()[1]: ln.split()[2] for ln in examples.splitlines() if ln.startswith("EXAMPLE ")} == {
        "monitor.example.yaml": "644", "deploy/README.md": "644", "deploy/mosquitto/acl": "644",
        "deploy/mosquitto/mosquitto.conf": "644", "deploy/mosquitto/add-site.sh": "755",
        "deploy/tls/make-test-ca.sh": "755",
        # Where README.md's links (docs/config.md, ...) lead in the installed copy too.
        "../docs/config.md": "644", "../docs/schemas/event.schema.json": "644"}, examples
    modes = lambda text: {ln.split()[1]: tuple(ln.split()[2:]) for ln in text.splitlines() if ln.startswith("STAT ")}
    expected = {"/etc/kitchen-gateway": ("root:kitchen-gateway", "750"),
                "/etc/kitchen-gateway/gateway.yaml": ("root:kitchen-gateway", "640"),
                "/etc/kitchen-gateway/secrets.env": ("root:root", "600")}
    assert modes(first) == expected, run.stdout
    assert "UNIT -/etc/kitchen-gateway/secrets.env" in first
    assert "NOBODY read" not in first
    assert "configuration OK" in first
    assert modes(upgraded) == expected, run.stdout
    assert upgraded.splitlines()[-1] == "# edited"
    # What was made by hand as root is opened to the service's group, and said.
    assert modes(by_hand) == expected, run.stdout
    assert "/etc/kitchen-gateway was root:root 700" in by_hand, by_hand
    assert "gateway.yaml was root:root 600, which the service cannot read" in by_hand, by_hand
    # Nothing leaked out of the namespace.
    assert pathlib.Path("/etc/kitchen-gateway/secrets.env").exists() == installed_here


# What the package and its units make on a canteen's box, as `HAS <what>` lines.
_LEFT_BEHIND = """for p in /etc/kitchen-gateway/gateway.yaml /etc/kitchen-gateway/secrets.env /etc/kitchen-gateway/ca.crt \\
         /etc/kitchen-gateway /var/lib/kitchen-gateway/outbox.db /var/lib/kitchen-gateway \\
         /var/lib/kitchen-monitor /var/lib/private/kitchen-monitor \\
         /etc/systemd/system/multi-user.target.wants/kitchen-gateway.service; do
  if [ -e "$p" ] || [ -L "$p" ]; then echo "HAS $p"; fi
done
getent passwd kitchen-gateway >/dev/null && echo 'HAS user'
getent group kitchen-gateway >/dev/null && echo 'HAS group'
[ "$(getent shadow kitchen-gateway | cut -d: -f8)" = 1 ] && echo 'HAS locked user'
true
"""


@pytest.mark.skipif(not _can_install_privately(), reason="needs root, unshare and mounts (overlayfs)")
def test_remove_keeps_the_sites_config_and_data_and_purge_removes_them(tmp_path):
    """Debian policy, with dpkg in a private mount namespace: `dpkg -r` keeps the config, the
    secrets, the state (the outbox of unsent alerts) and the service user, and a reinstall finds them
    as they were; `dpkg --purge` removes all the package made: config, secrets, both units' state
    folders, the administrator's enable links, and locks the user (not deleted: files it owns may
    remain), which a reinstall unlocks. A file the administrator put in /etc/kitchen-gateway is kept,
    with its folder, and purge says so."""
    deb = _build_package(tmp_path)
    script = f"""set -e
{kg_e2e.private_system(tmp_path)}
dpkg -i {deb} >/dev/null
# What the units make while they run, and the administrator's own edits.
install -d -o kitchen-gateway -g kitchen-gateway -m 0750 /var/lib/kitchen-gateway
echo 'unsent alerts' >/var/lib/kitchen-gateway/outbox.db
mkdir -p /var/lib/private/kitchen-monitor /etc/systemd/system/multi-user.target.wants
echo 'alerts' >/var/lib/private/kitchen-monitor/monitor.db
ln -s private/kitchen-monitor /var/lib/kitchen-monitor
ln -s /usr/lib/systemd/system/kitchen-gateway.service /etc/systemd/system/multi-user.target.wants/
echo '# edited' >>/etc/kitchen-gateway/gateway.yaml
echo 'KG_MQTT_PASSWORD=s3cret' >>/etc/kitchen-gateway/secrets.env
echo INSTALLED
{_LEFT_BEHIND}
dpkg -r kitchen-gateway >/dev/null
echo REMOVED
{_LEFT_BEHIND}
dpkg -i {deb} >/dev/null
echo REINSTALLED
tail -n 1 /etc/kitchen-gateway/gateway.yaml
tail -n 1 /etc/kitchen-gateway/secrets.env
echo 'a certificate' >/etc/kitchen-gateway/ca.crt
dpkg --purge kitchen-gateway >/dev/null 2>"{tmp_path}/purge.err"
echo PURGED
{_LEFT_BEHIND}
cat "{tmp_path}/purge.err"
rm /etc/kitchen-gateway/ca.crt
dpkg -i {deb} >/dev/null
[ "$(getent shadow kitchen-gateway | cut -d: -f8)" = 1 ] && echo 'STILL LOCKED'
runuser -u kitchen-gateway -- true && echo 'USER WORKS'
dpkg --purge kitchen-gateway >/dev/null
echo PURGED AGAIN
{_LEFT_BEHIND}
"""
    run = subprocess.run(["unshare", "-m", "bash", "-c", script], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    installed, rest = run.stdout.split("REMOVED\n")
    removed, rest = rest.split("REINSTALLED\n")
    reinstalled, rest = rest.split("PURGED\n")
    purged, purged_again = rest.split("PURGED AGAIN\n")
    has = lambda text: {ln[4:] for ln in text.splitlines() if ln.startswith("HAS ")}
    everything = {"/etc/kitchen-gateway/gateway.yaml", "/etc/kitchen-gateway/secrets.env", "/etc/kitchen-gateway",
                  "/var/lib/kitchen-gateway/outbox.db", "/var/lib/kitchen-gateway", "/var/lib/kitchen-monitor",
                  "/var/lib/private/kitchen-monitor", "/etc/systemd/system/multi-user.target.wants/kitchen-gateway.service",
                  "user", "group"}
    assert has(installed) == everything, run.stdout
    assert has(removed) == everything, run.stdout
    assert reinstalled.splitlines() == ["# edited", "KG_MQTT_PASSWORD=s3cret"], run.stdout
    locked = {"user", "group", "locked user"}
    assert has(purged) == {"/etc/kitchen-gateway", "/etc/kitchen-gateway/ca.crt"} | locked, run.stdout
    assert "/etc/kitchen-gateway kept" in purged
    assert "STILL LOCKED" not in purged and "USER WORKS" in purged, run.stdout
    assert has(purged_again) == locked, run.stdout


def _docker_ignores(patterns, path):
    """Docker's rule for .dockerignore: a pattern is matched (Go filepath.Match: `*` and `?` within one
    folder name, `**` across any number of them) against the path relative to the context or any of
    its parent folders, which excludes everything under them; the last matching pattern wins."""
    def regex(pattern):
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return out

    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        compiled = re.compile(regex(raw[1:] if negate else raw))
        if any(compiled.fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


def test_the_container_context_is_the_sources_alone():
    """deploy/container/Dockerfile copies the whole context (COPY . /src): the build folders, the demo
    clip and the git history stay out of it, every source the build needs goes in."""
    ignore = kg_e2e.SOURCE_DIR / ".dockerignore"
    assert ignore.exists(), "no .dockerignore: docker sends build/ (1 GB and more) with every image build"
    patterns = [ln.strip() for ln in ignore.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    for out in ("build/CMakeCache.txt", "build-release/gateway/kitchen-gateway", ".git/HEAD",
                "config/demo/kitchen.mp4", "tests/e2e/__pycache__/kg_e2e.cpython-311.pyc",
                "models/train/pretrained/x.pt"):
        assert _docker_ignores(patterns, out), out
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=kg_e2e.SOURCE_DIR, capture_output=True, text=True)
    sources = tracked.stdout.split("\0") if tracked.returncode == 0 else \
        [p.relative_to(kg_e2e.SOURCE_DIR).as_posix() for d in ("src", "gateway", "cmake", "models", "scripts")
         for p in (kg_e2e.SOURCE_DIR / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    for path in filter(None, sources):
        assert not _docker_ignores(patterns, path), f"{path} is a source, yet left out of the image's context"


def _published_address(port):
    """The host address a compose `ports:` entry binds: short syntax [HOST_IP:]HOST:CONTAINER[/PROTO]
    (an IPv6 address in brackets) or the long syntax's host_ip; None for every interface."""
    if isinstance(port, dict):
        return port.get("host_ip")
    text = str(port).split("/")[0]
    if text.startswith("["):
        return text[1:text.index("]")]
    parts = text.split(":")
    return parts[0] if len(parts) == 3 else None


def test_the_trial_compose_file_publishes_nothing_beyond_this_machine():
    """compose.yaml's broker takes anonymous clients and the gateway's 8080 is its local API: published
    on every interface, anyone on the canteen's network could publish alerts for any site or read the
    metrics. Each published port is bound to loopback; opening one is a deliberate edit (the file says
    how). The file must also be YAML that compose can read at all."""
    compose = yaml.safe_load((DEPLOY / "container/compose.yaml").read_text())
    published = {name: service.get("ports", []) for name, service in compose["services"].items()}
    assert published["broker"] and published["gateway"] and published["monitor"]
    for name, ports in published.items():
        assert compose["services"][name].get("network_mode") != "host", name
        for port in ports:
            assert _published_address(port) in ("127.0.0.1", "::1"), f"{name} publishes {port} on every interface"
    # Docker's json-file log grows without bound unless capped: months of a gateway's warnings.
    for name, service in compose["services"].items():
        options = (service.get("logging") or {}).get("options", {})
        assert options.get("max-size") and options.get("max-file"), f"{name}'s log is not capped"
    # The parents' segments go to /dev/shm, 64 MiB in a container unless compose says otherwise.
    shm = compose["services"]["gateway"].get("shm_size", "64m")
    size = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmg]?)b?", str(shm).strip().lower())
    assert size, f"the gateway's shm_size {shm!r} is not a size compose reads"
    shm_bytes = float(size[1]) * {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[size[2]]
    assert shm_bytes >= 128 << 20, f"the gateway's shm_size {shm!r}: one public camera fills 64 MiB"
    # What the services themselves need: the broker inside compose's network, by its service name.
    gateway = yaml.safe_load((DEPLOY / "container/gateway.yaml").read_text())
    assert gateway["mqtt"]["url"] == "tcp://broker:1883"


def test_the_units_reload_checks_the_file_then_reloads_the_gateway(broker, gateway, make_clip, tmp_path):
    """`systemctl reload kitchen-gateway` runs the unit's ExecReload= lines in order, stopping at the
    first that fails. Run here as systemd would (no systemd in the test): a valid edit reloads the
    running gateway; a typo fails the reload with its error and leaves the gateway alone."""
    unit = (DEPLOY / "systemd/kitchen-gateway.service").read_text()
    lines = [ln.split("=", 1)[1] for ln in unit.splitlines() if ln.startswith("ExecReload=")]
    assert lines, "the unit has no ExecReload=: `systemctl reload kitchen-gateway` is refused"
    cam = kg_e2e.camera("cam", make_clip([("normal", 4)]), input={"loop": True})
    gw = gateway(kg_e2e.base_config(broker, [cam], tmp_path))
    kg_e2e.wait_until(lambda: "kitchen-gateway" in gw.output() and "[cam:cam]" in gw.output(), 15,
                      what="the gateway running")

    def systemctl_reload():
        for line in lines:
            argv = [kg_e2e.GATEWAY_BIN if a == "/usr/bin/kitchen-gateway" else
                    str(gw.config_path) if a == "/etc/kitchen-gateway/gateway.yaml" else
                    str(gw.proc.pid) if a == "$MAINPID" else a for a in line.split()]
            run = subprocess.run(argv, capture_output=True, text=True)
            if run.returncode != 0:
                return run
        return None

    gw.config_path.write_text(gw.config_path.read_text().replace("Test canteen", "Reloaded canteen"))
    assert systemctl_reload() is None
    kg_e2e.wait_until(lambda: "reloading " in gw.output(), 10, what="the gateway reloading")
    kg_e2e.wait_until(lambda: gw.output().count("starting with") == 2, 20, what="the second run")

    gw.config_path.write_text(gw.config_path.read_text() + "typo_key: 1\n")
    failed = systemctl_reload()
    assert failed is not None and failed.returncode == 2
    assert "typo_key" in failed.stdout + failed.stderr
    time.sleep(1)
    assert gw.output().count("reloading ") == 1 and "reload refused" not in gw.output()
    assert gw.running()
    assert gw.terminate() == 0
