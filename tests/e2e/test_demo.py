"""README's first command, scripts/demo.sh, does what README says: the demo camera's camera_health
event arrives on the local broker, the parents' page at http://127.0.0.1:8081/ serves the camera's
live stream while it runs, and what it prints is text an installer can read (a snapshot's JPEG bytes
are shown as their size, not poured onto the terminal)."""

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request

import pytest

import kg_e2e

# The demo's fixed addresses (config/demo.yaml, scripts/demo.sh). The demo starts its own broker on
# 1883 unless one already listens there, and then uses that one as it is, as Debian's mosquitto
# service does once `install-deps.sh --demo` installed it on a machine with systemd: the test runs
# either way, as long as that broker lets the demo in without credentials.
WEB_PORTS = (8080, 8081)
MQTT_PORT = 1883


def _listening(port):
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _anonymous_broker_refuses():
    if not _listening(MQTT_PORT):
        return False
    import paho.mqtt.client as mqtt
    c = mqtt.Client(client_id="kg-test-demo-probe")
    try:
        return c.connect("127.0.0.1", MQTT_PORT, keepalive=5) != 0 or c.loop(timeout=2) != 0 or \
            not c.is_connected()
    except OSError:
        return True
    finally:
        c.disconnect()


def _stuck_subscriber(folder):
    """A mosquitto_sub that no stop signal ends, put first on PATH: the real one, started with
    SIGTERM, SIGINT, SIGALRM and SIGHUP blocked (a blocked signal stays blocked across exec). That is
    how mosquitto_sub 2.0 is left when its signal handler deadlocks on the library's mutexes
    (eclipse-mosquitto/mosquitto#3175), which happened to the demo in CI: its -W timeout never ended
    it, and the demo ran until the test gave up."""
    real = shutil.which("mosquitto_sub")
    assert real, "mosquitto_sub is not installed (scripts/install-deps.sh --tests brings it)"
    wrapper = folder / "mosquitto_sub"
    # Each writes its pid (exec keeps it) for the test to find one left running.
    wrapper.write_text(f"""#!{sys.executable}
import os, signal, sys
with open({str(folder / "subscribers")!r}, "a") as pids:
    print(os.getpid(), file=pids)
signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGHUP}})
os.execv({real!r}, [{real!r}] + sys.argv[1:])
""")
    wrapper.chmod(0o755)
    return folder


def _running(pid):
    """Whether pid is a process that has not ended (a zombie has)."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(any(_listening(p) for p in WEB_PORTS), reason="the demo's ports 8080/8081 are in use")
@pytest.mark.skipif(_anonymous_broker_refuses(), reason="the broker on 1883 refuses anonymous clients")
def test_demo_prints_events_as_text_and_serves_the_parents_page(tmp_path):
    own_broker = not _listening(MQTT_PORT)
    build = pathlib.Path(kg_e2e.GATEWAY_BIN).resolve().parents[1]
    # 32 s: the black picture's event comes about 24 s after the gateway starts (black at 20 s of the
    # clip, confirmed after 3 s), with its snapshot; the rest of the demo's loop is not checked here.
    # Its subscribers are ones that no signal stops: the demo must end anyway.
    path = f"{_stuck_subscriber(tmp_path)}{os.pathsep}{os.environ['PATH']}"
    env = dict(os.environ, KG_BUILD_DIR=str(build), KG_DEMO_SECONDS="32", KG_JOBS="2", PATH=path)
    log = tmp_path / "demo.log"
    with open(log, "wb") as stderr:
        demo = subprocess.Popen([str(kg_e2e.SOURCE_DIR / "scripts/demo.sh")], stdout=subprocess.PIPE,
                                stderr=stderr, env=env, start_new_session=True)
    out = bytearray()

    def read():  # as it comes: the checks below run while the demo does
        for chunk in iter(lambda: demo.stdout.read1(65536), b""):
            out.extend(chunk)

    # A daemon: a process of the demo left holding the pipe must not keep the test from reporting.
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        kg_e2e.wait_until(lambda: b"demo: the gateway runs" in out, 120, what="the demo started")
        # The parents' page and the demo camera's live HLS playlist, as README promises.
        page = kg_e2e.wait_until(lambda: _get("http://127.0.0.1:8081/"), 15, what="the parents' page")
        assert b"<html" in page
        playlist = kg_e2e.wait_until(lambda: _get("http://127.0.0.1:8081/live/demo-kitchen/index.m3u8"), 20,
                                     what="the demo camera's playlist")
        assert b"#EXTM3U" in playlist and b".m4s" in playlist
        try:
            # The demo stops 32 s after it printed that the gateway runs.
            assert demo.wait(timeout=60) == 0, log.read_text(errors="replace")[-3000:]
        except subprocess.TimeoutExpired:
            left = subprocess.run(["ps", "-o", "pid,ppid,stat,etime,args", "--ppid", str(demo.pid), "-s",
                                   str(demo.pid)], capture_output=True, text=True).stdout
            raise AssertionError(f"the demo did not end 60 s after its playlist; still running:\n{left}\n"
                                 f"its log:\n{log.read_text(errors='replace')[-3000:]}") from None
    finally:
        # The demo's own stop is what failed, if anything is left: nothing gentler would do. Its broker
        # and subscribers run in sessions of their own.
        if demo.poll() is None:
            children = subprocess.run(["ps", "--ppid", str(demo.pid), "-o", "pid="], capture_output=True,
                                      text=True).stdout.split()
            os.killpg(demo.pid, 9)
            for pid in children:
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
            demo.wait(timeout=10)
        subscribers = [int(pid) for pid in (tmp_path / "subscribers").read_text().split()] \
            if (tmp_path / "subscribers").exists() else []
        left = [pid for pid in subscribers if _running(pid)]
        for pid in left:
            try:
                if b"mosquitto_sub" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, 9)
            except (FileNotFoundError, ProcessLookupError):
                pass  # ended meanwhile
        reader.join(timeout=10)
    assert len(subscribers) == 2 and not left, f"subscribers {subscribers}, left running: {left}"
    text = out.decode("utf-8")  # raises on a JPEG's bytes
    lines = text.splitlines()
    events = [ln for ln in lines if ln.startswith("kitchen/demo-canteen/events ")]
    assert any('"check":"camera_health"' in ln and '"label":"black"' in ln for ln in events), text[-3000:]
    snapshots = [ln for ln in lines if "/snapshot" in ln]
    assert snapshots, text[-3000:]
    assert all(ln.startswith("kitchen/demo-canteen/events/") and ln.endswith(" bytes>") for ln in snapshots), \
        snapshots
    # The demo's processes are gone: its ports are free again (a broker it found running stays).
    ports = WEB_PORTS + ((MQTT_PORT,) if own_broker else ())
    kg_e2e.wait_until(lambda: not any(_listening(p) for p in ports), 10, what="the demo's ports freed")


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read() if r.status == 200 else None
    except OSError:
        return None
