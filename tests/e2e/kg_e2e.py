"""Real peers for the end-to-end tests: Mosquitto, the GStreamer RTSP server, FFmpeg-made clips,
a TCP peer that never answers, and the gateway process itself."""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import jsonschema
import paho.mqtt.client as mqtt
import yaml

SOURCE_DIR = pathlib.Path(os.environ.get("KG_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
GATEWAY_BIN = os.environ.get("KG_GATEWAY_BIN", str(SOURCE_DIR / "build/gateway/kitchen-gateway"))
MODBUS_SERVER_BIN = str(pathlib.Path(os.environ.get("KG_TEST_RTSP_SERVER", str(SOURCE_DIR / "build/tests/support/x")))
                        .with_name("kg-test-modbus-server"))
RTSP_SERVER_BIN = os.environ.get("KG_TEST_RTSP_SERVER", str(SOURCE_DIR / "build/tests/support/kg-test-rtsp-server"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_until(predicate, timeout, interval=0.1, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Broker:
    """A Mosquitto broker on a free loopback port, stoppable and restartable on the same port."""

    def __init__(self, workdir, persistent=False):
        self.port = free_port()
        self.conf = pathlib.Path(workdir) / f"mosquitto-{self.port}.conf"
        conf = f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
        if os.geteuid() == 0:
            conf += "user root\n"  # stay able to write the test's own (root-owned) folders
        if persistent:
            # Sessions and queued QoS 1 messages survive a broker restart, as on a production broker.
            store = pathlib.Path(workdir) / f"mosquitto-{self.port}-data"
            store.mkdir(exist_ok=True)
            conf += f"persistence true\npersistence_location {store}/\nautosave_interval 1\n"
        else:
            conf += "persistence false\n"
        self.conf.write_text(conf)
        self.log = pathlib.Path(workdir) / f"mosquitto-{self.port}.log"
        self.proc = None
        self.start()

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(self.conf)], stdout=log, stderr=log)
        wait_port(self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self):
        return f"tcp://127.0.0.1:{self.port}"


class Collector:
    """Subscribes to everything on the broker and records what arrives; reconnects by itself."""

    def __init__(self, broker, topic="#", persistent=False):
        self.messages = []
        self.lock = threading.Lock()
        # A persistent session: the broker queues QoS 1 messages for us while we are away.
        self.client = mqtt.Client(client_id=f"e2e-collector-{os.getpid()}-{id(self)}", clean_session=not persistent)
        self.client.on_connect = lambda c, u, f, rc: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=1)
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        wait_until(lambda: self.client.is_connected(), 10, what="collector connected")

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain), time.time()))

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()

    def on(self, topic):
        with self.lock:
            return [m for m in self.messages if m[0] == topic]

    def json_on(self, topic):
        return [json.loads(m[1]) for m in self.on(topic)]

    def events(self, site="test-site", prefix="kitchen"):
        return self.json_on(f"{prefix}/{site}/events")

    def last_json(self, topic):
        msgs = self.on(topic)
        return json.loads(msgs[-1][1]) if msgs else None


def retained(broker, topic, timeout=3.0):
    """The retained value of `topic`, read by a fresh subscriber (None if none)."""
    got = []
    client = mqtt.Client(client_id=f"e2e-retained-{time.time_ns()}", clean_session=True)
    client.on_connect = lambda c, u, f, rc: c.subscribe(topic, qos=1)
    client.on_message = lambda c, u, m: got.append(bytes(m.payload)) if m.retain else None
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    deadline = time.time() + timeout
    while time.time() < deadline and not got:
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()
    return got[-1].decode() if got else None


class Schemas:
    """The JSON Schemas of docs/schemas, chosen by topic."""

    def __init__(self):
        d = SOURCE_DIR / "docs/schemas"
        self.by_name = {p.name.split(".")[0]: json.loads(p.read_text()) for p in d.glob("*.schema.json")}

    def schema_for(self, topic):
        parts = topic.split("/")
        if topic.endswith("/availability"):
            return "availability"
        if topic.endswith("/gateway"):
            return "gateway"
        if topic.endswith("/events"):
            return "event"
        if len(parts) >= 5 and parts[-3] == "cameras" and parts[-1] == "state":
            return "camera-state"
        if len(parts) >= 5 and parts[-3] == "sensors" and parts[-1] == "state":
            return "sensor-state"
        if len(parts) >= 5 and parts[-3] == "sensors" and parts[-1] == "rollup":
            return "sensor-rollup"
        if len(parts) >= 5 and parts[-3] == "events" and parts[-1] == "snapshot":
            return None  # binary JPEG
        if len(parts) >= 5 and parts[-3] == "events" and parts[-1] == "clip":
            return "clip"
        raise AssertionError(f"no schema documented for topic {topic}")

    def validate(self, topic, payload):
        name = self.schema_for(topic)
        if name is None:
            assert payload[:2] == b"\xff\xd8", f"{topic}: not a JPEG"
            return
        schema = self.by_name[name]
        value = payload.decode() if name == "availability" else json.loads(payload)
        jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(value)

    def validate_all(self, collector, site="test-site"):
        count = 0
        for topic, payload, _, _ in list(collector.messages):
            if f"/{site}/" in topic or topic.endswith(f"/{site}"):
                self.validate(topic, payload)
                count += 1
        return count


SEGMENTS = {
    # A sensor-like scene: every frame differs a little, as a real camera's do.
    "normal": "testsrc2=size=640x360:rate=25:duration={d},noise=alls=8:allf=t",
    "black": "color=c=0x060606:size=640x360:rate=25:duration={d},noise=alls=2:allf=t",
    # One frame of the scene repeated exactly: what a hung encoder sends.
    "frozen": "testsrc2=size=640x360:rate=25:duration=1,trim=end_frame=1,loop=loop=-1:size=1,"
    "trim=duration={d},setpts=N/25/TB",
    # A hand over the lens: dark, smooth, out of focus.
    "covered": "nullsrc=size=640x360:rate=25:duration={d},format=yuv420p,"
    "geq=lum='35+50*Y/H+15*sin(X/W*3.14)':cb=118:cr=140,noise=alls=1:allf=t",
}


def make_clip(segments, path):
    """An H.264 MP4 from [(kind, seconds), ...]; cached by name."""
    path = pathlib.Path(path)
    if path.exists():
        return str(path)
    args = ["ffmpeg", "-loglevel", "error", "-y"]
    for kind, seconds in segments:
        args += ["-f", "lavfi", "-i", SEGMENTS[kind].format(d=seconds)]
    n = len(segments)
    inputs = "".join(f"[{i}:v]" for i in range(n))
    args += ["-filter_complex", f"{inputs}concat=n={n}:v=1:a=0,format=yuv420p[v]", "-map", "[v]",
             "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0",
             "-movflags", "+faststart", str(path) + ".tmp.mp4"]
    subprocess.run(args, check=True)
    os.replace(str(path) + ".tmp.mp4", path)
    return str(path)


class RtspServer:
    def __init__(self, mounts):
        self.port = free_port()
        self.mounts = mounts
        self.proc = None
        self.start()

    def start(self):
        args = [RTSP_SERVER_BIN, "--port", str(self.port)]
        for mount, path in self.mounts.items():
            args += ["--mount", f"{mount}={path}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        assert line.strip() == "READY", f"RTSP server did not start: {line!r}"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def url(self, mount):
        return f"rtsp://127.0.0.1:{self.port}{mount}"


class SilentServer:
    """Accepts TCP connections and never sends a byte: a camera that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
            except OSError:
                return

    def close(self):
        self.closed = True
        self.sock.close()
        for c in self.conns:
            c.close()


class Gateway:
    def __init__(self, workdir, config, name="gateway"):
        self.workdir = pathlib.Path(workdir)
        self.config_path = self.workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = self.workdir / f"{name}.log"
        self.proc = None
        self.start()

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([GATEWAY_BIN, "--config", str(self.config_path)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        try:
            code = self.proc.wait(0.3)
        except subprocess.TimeoutExpired:
            return
        raise AssertionError(f"the gateway exited at once with {code}:\n{self.output()}")

    def terminate(self, timeout=20):
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.proc = None
        self.log.close()
        return code

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        self.log.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def output(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def base_config(broker, cameras, workdir, **extra):
    cfg = {
        "site": {"id": "test-site", "name": "Test canteen"},
        "mqtt": {"url": broker.url, "topic_prefix": "kitchen", "state_interval": "1s",
                 "reconnect": {"min": "200ms", "max": "1s"}},
        "outbox": {"path": str(pathlib.Path(workdir) / "outbox.db")},
        "evidence": {"path": str(pathlib.Path(workdir) / "evidence")},
        "cameras": cameras,
    }
    cfg.update(extra)
    return cfg


def camera(cam_id, url, **overrides):
    cam = {
        "id": cam_id,
        "name": cam_id.title(),
        "url": url,
        "input": {"timeout": "3s", "reconnect": {"min": "500ms", "max": "2s"}, "realtime": True},
        "analysis": {"fps": 2, "width": 320, "height": 180},
        "health": {"offline_after": "4s", "confirm": "2s", "clear": "2s", "frozen_after": "4s"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cam.get(key), dict):
            cam[key] = {**cam[key], **value}
        else:
            cam[key] = value
    return cam


def make_scene(path, seconds, background="kitchen", boxes=()):
    """A synthetic, static kitchen view (tiled wall and floor, sensor noise) with coloured boxes laid
    over it: people walking (moving boxes), litter, an open bin lid, a rodent at night.

    boxes: dicts with w, h, colour and either x/y expressions of t (ffmpeg overlay syntax) and an
    `enable` expression."""
    path = pathlib.Path(path)
    if path.exists():
        return str(path)
    if background == "kitchen":
        bg = (f"color=c=0x8a9098:size=640x360:rate=25:duration={seconds},"
              "drawgrid=w=40:h=40:t=2:c=0x5a6068,"
              "drawbox=x=0:y=220:w=640:h=140:c=0x70685e:t=fill,"  # the floor
              "noise=alls=3:allf=t")
    else:  # a dark infrared night view
        bg = (f"color=c=0x1c1c1c:size=640x360:rate=25:duration={seconds},"
              "drawgrid=w=80:h=80:t=1:c=0x262626,noise=alls=4:allf=t")
    args = ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", bg]
    chain, last = [], "0:v"
    for i, b in enumerate(boxes):
        args += ["-f", "lavfi", "-i", f"color=c={b['colour']}:size={b['w']}x{b['h']}:rate=25:duration={seconds}"]
        out = f"v{i}"
        chain.append(f"[{last}][{i + 1}:v]overlay=x='{b['x']}':y='{b['y']}':enable='{b.get('enable', '1')}'[{out}]")
        last = out
    chain.append(f"[{last}]format=yuv420p[v]")
    args += ["-filter_complex", ";".join(chain), "-map", "[v]", "-c:v", "libx264", "-preset", "ultrafast",
             "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", str(path) + ".tmp.mp4"]
    subprocess.run(args, check=True)
    os.replace(str(path) + ".tmp.mp4", path)
    return str(path)


def walker(start, end, y=150, speed=110, colour="0x2a3550"):
    """A person-sized box walking left to right between `start` and `end` seconds."""
    return {"w": 50, "h": 150, "colour": colour, "y": str(y), "x": f"(t-{start})*{speed}",
            "enable": f"between(t,{start},{end})"}


class ModbusServer:
    """kg-test-modbus-server over TCP (port) or RTU (a serial device), driven through its stdin."""

    def __init__(self, tcp_port=None, rtu_device=None, unit=1):
        args = [MODBUS_SERVER_BIN] + (["--tcp", str(tcp_port)] if tcp_port else
                                      ["--rtu", str(rtu_device), "--unit", str(unit)])
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.strip() == "READY", f"Modbus server did not start: {line!r}"

    def command(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "OK"

    def set(self, address, value):
        self.command(f"set {address} {int(value)}")

    def set_float(self, address, value):
        import struct
        hi, lo = struct.unpack(">HH", struct.pack(">f", value))
        self.set(address, hi)
        self.set(address + 1, lo)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(5)


class PtyPair:
    """Two linked pseudo-terminals from socat: a serial line for Modbus RTU tests."""

    def __init__(self, workdir):
        self.a, self.b = pathlib.Path(workdir) / "ttyA", pathlib.Path(workdir) / "ttyB"
        self.proc = subprocess.Popen(["socat", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
                                     stderr=subprocess.DEVNULL)
        wait_until(lambda: self.a.exists() and self.b.exists(), 5, what="socat's ptys")

    def close(self):
        self.proc.terminate()
        self.proc.wait(5)
