"""Real peers for the end-to-end tests and the gateway process itself: a Mosquitto broker, an MQTT
collector, the JSON Schemas of docs/schemas, FFmpeg-made H.264 clips (and H.265 copies of them), the
GStreamer RTSP server (tests/support), a TCP peer that never answers, Modbus peers. No mocks: every
peer is the real thing.

The fixtures that wrap these are in conftest.py; tests/e2e/test_fixtures.py checks the peers by
themselves, without the gateway."""

import datetime
import json
import os
import pathlib
import re
import select
import shutil
import signal
import socket
import subprocess
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
# LD_PRELOAD: the wall clock stepped by KG_CLOCK_STEP_S seconds after KG_CLOCK_STEP_AFTER_S (tests/support).
CLOCK_STEP_LIB = str(pathlib.Path(RTSP_SERVER_BIN).with_name("kg-test-clock-step.so"))
MOSQUITTO_BIN = "/usr/sbin/mosquitto"


def free_port():
    """A loopback TCP port nobody listens on now (the OS picks it: parallel tests never collide)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, proc=None, what="a listener"):
    """Until 127.0.0.1:port accepts a connection; fails at once if `proc` died meanwhile."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what}: nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_until(predicate, timeout, interval=0.1, what="condition"):
    """The first truthy value of predicate() within timeout seconds, else AssertionError."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def can_install_privately():
    """Root, and a private mount namespace with overlayfs: packages go into overlays on /etc, /usr
    and /var that vanish with the namespace, so the machine itself is untouched."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


def private_system(tmp_path):
    """The shell lines that lay writable overlays on /etc, /usr and /var and a fresh /run, to begin a
    script run by `unshare -m` (see can_install_privately). The overlays' changes go to a tmpfs
    mounted in the namespace on tmp_path/layers, not to tmp_path itself: overlayfs refuses an upper
    folder on an overlayfs, which is what tmp_path is on in a container whose root is one."""
    layers = tmp_path / "layers"
    layers.mkdir()
    lines = f"mount -t tmpfs tmpfs {layers}\n"
    for d in ("etc", "usr", "var"):
        lines += (f"mkdir {layers}/{d}-upper {layers}/{d}-work\n"
                  f"mount -t overlay overlay -o lowerdir=/{d},upperdir={layers}/{d}-upper,"
                  f"workdir={layers}/{d}-work /{d}\n")
    return lines + "mount -t tmpfs tmpfs /run\n"


def tail(path, limit=20000):
    path = pathlib.Path(path)
    return path.read_text(errors="replace")[-limit:] if path.exists() else f"({path} does not exist)"


class Broker:
    """A Mosquitto broker on a free loopback port, stoppable and restartable on the same port."""

    def __init__(self, workdir, persistent=False, extra_conf=""):
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
        self.conf.write_text(conf + extra_conf)
        self.log = pathlib.Path(workdir) / f"mosquitto-{self.port}.log"
        self.proc = None
        self.start()

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO_BIN, "-c", str(self.conf)], stdout=log, stderr=log)
        try:
            wait_port(self.port, proc=self.proc, what="mosquitto")
        except (AssertionError, TimeoutError) as e:
            self.kill()
            raise AssertionError(f"{e}\n{tail(self.log)}") from None

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

    def clients_connected(self):
        """How many MQTT clients completed a CONNECT with this broker (from its log)."""
        return tail(self.log, 10**9).count("New client connected")

    @property
    def url(self):
        return f"tcp://127.0.0.1:{self.port}"

    def failure_report(self):
        return [(f"mosquitto log (port {self.port})", tail(self.log))]


class Relay:
    """A TCP relay on a free loopback port to `port` (the broker): each connection accepted is
    handed to carry(client, server, n), n counting from 0, which starts the threads that move its
    bytes. close() ends it and every connection."""

    def __init__(self, port):
        self.target = port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"tcp://127.0.0.1:{self.port}"

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [client, server]
            n = self.connections
            self.connections += 1
            self.carry(client, server, n)

    def carry(self, client, server, n):
        threading.Thread(target=self.pump, args=(client, server), daemon=True).start()
        threading.Thread(target=self.pump, args=(server, client), daemon=True).start()

    def pump(self, src, dst, chunk=65536, on_data=None):
        """Copies src to dst until either closes, then closes both; on_data(n) after each n bytes."""
        try:
            while data := src.recv(chunk):
                dst.sendall(data)
                if on_data:
                    on_data(len(data))
        except OSError:
            pass
        self.drop(src, dst)

    @staticmethod
    def drop(*socks):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self.sock.close()
        self.drop(*self.conns)


class ThrottledLink(Relay):
    """A relay that carries client -> server bytes at `rate` bytes per second (server -> client at
    full speed): a slow uplink to the broker."""

    def __init__(self, port, rate):
        self.rate = rate
        self.carried = 0  # client -> server bytes
        super().__init__(port)

    def carry(self, client, server, n):
        def slow(count):
            self.carried += count
            time.sleep(count / self.rate)

        threading.Thread(target=self.pump, args=(client, server, 64, slow), daemon=True).start()
        threading.Thread(target=self.pump, args=(server, client), daemon=True).start()


class Collector:
    """Subscribes to `topic` (default everything) at QoS 1 and records what arrives as
    (topic, payload bytes, retain flag, receive time); reconnects by itself."""

    def __init__(self, broker, topic="#", persistent=False, client_id=None):
        self.messages = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        # A persistent session: the broker queues QoS 1 messages for us while we are away (for a
        # collector that comes back under the same client_id).
        self.client = mqtt.Client(client_id=client_id or f"e2e-collector-{os.getpid()}-{id(self)}",
                                  clean_session=not persistent)
        self.client.on_connect = lambda c, u, f, rc: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, granted: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=1)
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        # Subscribed (SUBACK), not just connected: nothing the gateway sends afterwards is missed.
        if not self.subscribed.wait(10):
            self.close()
            raise AssertionError(f"the collector could not subscribe on {broker.url}")

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain), time.time()))

    def close(self):
        self.client.disconnect()  # first: the network thread then ends at once, not after its 1 s poll
        self.client.loop_stop()

    def wait_for(self, predicate, timeout, what="condition", interval=0.1):
        """The first truthy predicate() within timeout seconds, else AssertionError naming `what`."""
        return wait_until(predicate, timeout, interval=interval, what=what)

    def on(self, topic):
        with self.lock:
            return [m for m in self.messages if m[0] == topic]

    def json_on(self, topic):
        return [json.loads(m[1]) for m in self.on(topic)]

    def events(self, site="test-site", prefix="kitchen"):
        """Every message on <prefix>/<site>/events, parsed, in arrival order."""
        return self.json_on(f"{prefix}/{site}/events")

    def states(self, camera, site="test-site", prefix="kitchen"):
        """Every state message of one camera, parsed, in arrival order."""
        return self.json_on(f"{prefix}/{site}/cameras/{camera}/state")

    def last_json(self, topic):
        msgs = self.on(topic)
        return json.loads(msgs[-1][1]) if msgs else None

    def failure_report(self):
        with self.lock:
            lines = [f"{t:.3f} {topic}{' (retained)' if r else ''} {p[:300]!r}" for topic, p, r, t in self.messages]
        return [("what the broker carried (last 200 messages)", "\n".join(lines[-200:]))]


def retained(broker, topic, timeout=3.0):
    """The retained value of `topic` as text, read by a fresh subscriber (None if there is none)."""
    got = []
    subscribed = threading.Event()
    client = mqtt.Client(client_id=f"e2e-retained-{os.getpid()}-{time.time_ns()}", clean_session=True)
    client.on_connect = lambda c, u, f, rc: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda c, u, mid, granted: subscribed.set()
    client.on_message = lambda c, u, m: got.append(bytes(m.payload)) if m.retain else None
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        if not subscribed.wait(timeout):
            raise AssertionError(f"could not subscribe to {topic} on {broker.url}")
        deadline = time.time() + 1.0  # the broker sends retained messages right after the SUBACK
        while time.time() < deadline and not got:
            time.sleep(0.02)
    finally:
        client.disconnect()
        client.loop_stop()
    return got[-1].decode() if got else None


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _is_date_time(value):
    """RFC 3339 date-time. jsonschema 4.10 checks this format only with rfc3339-validator, which
    Debian does not install, so without this checker `format: date-time` would pass anything."""
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    datetime.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))  # ValueError on 2026-13-40
    return True


class Schemas:
    """The JSON Schemas of docs/schemas (the contract), chosen by topic."""

    def __init__(self):
        d = SOURCE_DIR / "docs/schemas"
        self.by_name = {p.name.split(".")[0]: json.loads(p.read_text()) for p in d.glob("*.schema.json")}
        assert self.by_name, f"no schemas in {d}"
        self.format_checker = jsonschema.FormatChecker()
        self.format_checker.checks("date-time", raises=ValueError)(_is_date_time)
        self.validators = {}
        for name, schema in self.by_name.items():
            jsonschema.Draft202012Validator.check_schema(schema)
            self.validators[name] = jsonschema.Draft202012Validator(schema, format_checker=self.format_checker)

    def schema_for(self, topic):
        parts = topic.split("/")
        if topic.endswith("/availability"):
            return "availability"
        if topic.endswith("/gateway"):
            return "gateway"
        if topic.endswith("/events"):
            return "event"
        if topic.endswith("/replay"):
            return "replay"
        if topic.endswith("/lost"):
            return "lost"
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

    def errors(self, topic, payload):
        """Why this message breaks the contract (empty list when it keeps it)."""
        try:
            name = self.schema_for(topic)
        except AssertionError as e:
            return [str(e)]
        if name is None:
            return [] if payload[:2] == b"\xff\xd8" else [f"{topic}: not a JPEG"]
        if name in ("camera-state", "sensor-state") and payload == b"":
            return []  # a retained state cleared: the camera or sensor was removed (docs/mqtt.md)
        try:
            value = payload.decode() if name == "availability" else json.loads(payload)
        except (UnicodeDecodeError, ValueError) as e:
            return [f"{topic}: not {'text' if name == 'availability' else 'JSON'}: {e}: {payload[:200]!r}"]
        return [f"{topic}: {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}: {payload[:300]!r}"
                for e in self.validators[name].iter_errors(value)]

    def validate(self, topic, payload):
        errors = self.errors(topic, payload)
        assert not errors, "\n".join(errors)

    def validate_all(self, collector, site="test-site", require=True):
        """Validates every message the collector received for `site`; fails listing every mismatch.
        Returns how many were checked (with require, at least one must have arrived)."""
        count, errors = 0, []
        for topic, payload, _, _ in list(collector.messages):
            if f"/{site}/" in topic or topic.endswith(f"/{site}"):
                errors += self.errors(topic, payload)
                count += 1
        assert not errors, f"{len(errors)} schema violations in {count} messages:\n" + "\n".join(errors[:20])
        assert count or not require, f"no message arrived for site {site}"
        return count


# Clip segments, 640x360 at 25 fps. Encoded at a constant QP (see make_clip).
SEGMENTS = {
    # A sensor-like scene: temporal noise, so consecutive frames always differ as a real camera's do.
    "normal": "testsrc2=size=640x360:rate=25:duration={d},noise=alls=8:allf=t",
    # Near-black (grey level ~5 of 255) with a little noise.
    "black": "color=c=0x050505:size=640x360:rate=25:duration={d},noise=alls=8:allf=t",
    # One frame of the normal scene repeated exactly, no noise: what a hung encoder sends.
    "frozen": "testsrc2=size=640x360:rate=25:duration=1,trim=end_frame=1,loop=loop=-1:size=1,"
              "trim=duration={d},setpts=N/25/TB",
    # A hand over the lens: a smooth dark-brown gradient (mean grey ~45, no edges) that slowly
    # breathes. Drawn small and scaled up, then blurred: geq at full size is 15x slower.
    "covered": "nullsrc=size=64x36:rate=25:duration={d},format=yuv420p,"
               "geq=lum='28+72*(0.45*X/W+0.55*Y/H)+4*sin(2*PI*T/6)':cb=116:cr=142,"
               "scale=640x360:flags=bicubic,gblur=sigma=12",
}


def clip_name(segments, gop=50):
    """A cache key naming a clip by its segments (and a GOP other than 50):
    [("normal", 8), ("black", 12)] -> normal8-black12; with gop=25 -> normal8-black12-gop25."""
    return "-".join(f"{kind}{seconds:g}" for kind, seconds in segments) + (f"-gop{gop}" if gop != 50 else "")


def make_clip(segments, path, gop=50):
    """An H.264 MP4 (libx264 ultrafast, 640x360, 25 fps, GOP 50 unless given, yuv420p) from
    [(kind, seconds), ...] with kinds of SEGMENTS; an existing file at `path` is reused."""
    path = pathlib.Path(path)
    if path.exists():
        return str(path)
    for kind, seconds in segments:
        assert kind in SEGMENTS and seconds > 0, f"bad segment {(kind, seconds)}"
    assert gop > 0, f"bad GOP {gop}"
    args = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]
    for kind, seconds in segments:
        args += ["-f", "lavfi", "-i", SEGMENTS[kind].format(d=seconds)]
    n = len(segments)
    inputs = "".join(f"[{i}:v]" for i in range(n))
    tmp = path.with_name(path.name + ".tmp.mp4")
    # A constant QP (not CRF): every key frame of a frozen segment is coded exactly like the last, so
    # its decoded frames are bit-identical (with CRF they drift by ~0.2 grey levels at each GOP).
    args += ["-filter_complex", f"{inputs}concat=n={n}:v=1:a=0,format=yuv420p[v]", "-map", "[v]",
             "-c:v", "libx264", "-preset", "ultrafast", "-qp", "34", "-threads", "1",
             "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-an", "-movflags", "+faststart", str(tmp)]
    subprocess.run(args, check=True)
    os.replace(tmp, path)
    return str(path)


def hevc_copy(source, path=None):
    """An H.265 MP4 of an H.264 clip of make_clip or make_scene (libx265 ultrafast with its B-frames,
    a constant QP, an IDR key frame every 50 frames as the source has (closed GOPs, as cameras send),
    tagged hvc1): the same picture as many cameras (Hikvision, Dahua, Uniview) send it by default.
    Beside the source unless `path` is given; an existing file is reused. Encoded on every core: the
    tests that make one run alone (RUN_SERIAL), and on two cores a 60 s clip takes 6 s instead of 10."""
    source = pathlib.Path(source)
    path = pathlib.Path(path) if path else source.with_name(f"{source.stem}-hevc.mp4")
    if path.exists():
        return str(path)
    tmp = path.with_name(path.name + ".tmp.mp4")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(source), "-c:v", "libx265",
                    "-preset", "ultrafast", "-x265-params",
                    "qp=34:keyint=50:min-keyint=50:scenecut=0:open-gop=0:log-level=error",
                    "-tag:v", "hvc1", "-an", "-movflags", "+faststart", str(tmp)], check=True)
    os.replace(tmp, path)
    return str(path)


class RtspServer:
    """kg-test-rtsp-server on a free port serving {mount: clip}; stoppable, restartable on the same
    port, killable."""

    def __init__(self, mounts, workdir=None, drop_every=None, auth=None):
        self.port = free_port()
        self.mounts = dict(mounts)
        self.drop_every = drop_every  # one RTP packet in this many is never sent (a lossy network)
        self.auth = auth  # "user:password" every mount asks for (401 without it)
        self.log = pathlib.Path(workdir) / f"rtsp-server-{self.port}.log" if workdir else None
        self.proc = None
        self.start()

    def start(self, timeout=10):
        args = [RTSP_SERVER_BIN, "--port", str(self.port)]
        if self.auth:
            args += ["--auth", self.auth]
        if self.drop_every:
            args += ["--drop-every", str(self.drop_every)]
        for mount, path in self.mounts.items():
            args += ["--mount", f"{mount}={path}"]
        err = open(self.log, "ab") if self.log else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        finally:
            if self.log:
                err.close()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode(errors="replace") if ready else ""
        if line.strip() != "READY":
            self.kill()
            raise AssertionError(f"the RTSP server did not start on port {self.port} (said {line!r})"
                                 + (f":\n{tail(self.log)}" if self.log else ""))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._close()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close()

    def _close(self):
        if self.proc is not None:
            self.proc.stdout.close()
        self.proc = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def url(self, mount="/cam"):
        return f"rtsp://127.0.0.1:{self.port}{mount}"

    def failure_report(self):
        return [(f"RTSP server log (port {self.port})", tail(self.log))] if self.log else []


NGINX_RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"


def has_nginx_rtmp():
    return os.path.exists(NGINX_RTMP_MODULE) and shutil.which("nginx") is not None


class NginxRtmp:
    """nginx with its RTMP module on a free loopback port, as the media server an RTMP push reaches
    (application `live`): .port, .url(path), .log_text(), .stop(), .kill()."""

    def __init__(self, workdir):
        self.port = free_port()
        self.dir = pathlib.Path(workdir) / "nginx"
        self.dir.mkdir()
        conf = self.dir / "nginx.conf"
        conf.write_text(f"""load_module {NGINX_RTMP_MODULE};
daemon off;
master_process off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log info;
events {{}}
rtmp {{ server {{ listen 127.0.0.1:{self.port}; application live {{ live on; record off; }} }} }}
""")
        self.proc = subprocess.Popen(["nginx", "-p", str(self.dir), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port, proc=self.proc, what="nginx-rtmp")
        except BaseException:
            self.kill()
            raise

    def url(self, path):
        return f"rtmp://127.0.0.1:{self.port}/{path}"

    def log_text(self):
        return (self.dir / "error.log").read_text()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class PacedHttpStream:
    """Serves a file over HTTP at `rate` bytes/s, looped for ever: a camera that keeps sending."""

    def __init__(self, path, rate):
        import http.server
        import socketserver
        import threading

        data = pathlib.Path(path).read_bytes()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.end_headers()
                start, sent, chunk = time.time(), 0, 188 * 20
                try:
                    while not server.closing:
                        for i in range(0, len(data), chunk):
                            self.wfile.write(data[i:i + chunk])
                            sent += chunk
                            ahead = start + sent / rate - time.time()
                            if ahead > 0:
                                time.sleep(ahead)
                except OSError:
                    pass  # the gateway hung up

            def log_message(self, *args):
                pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.closing = False
        self.server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def close(self):
        self.server.closing = True
        self.server.shutdown()
        self.server.server_close()


class SilentServer:
    """Accepts TCP connections on a free loopback port and never sends a byte: a camera that hangs."""

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

    @property
    def accepted(self):
        """How many connections it accepted so far."""
        return len(self.conns)

    def url(self, scheme="rtsp", path="/cam"):
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def close(self):
        self.closed = True
        self.sock.close()
        for c in self.conns:
            c.close()


class Gateway:
    """The kitchen-gateway process on a YAML config written from a dict; its stdout and stderr go to
    <workdir>/<name>.log."""

    def __init__(self, workdir, config, name="gateway", env=None, wrapper=()):
        self.env = dict(os.environ, **(env or {}))
        self.wrapper = list(wrapper)  # a command the gateway runs under, e.g. ["prlimit", "--nofile=64"]
        self.workdir = pathlib.Path(workdir)
        self.name = name
        self.config_path = self.workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = self.workdir / f"{name}.log"
        self.log = None
        self.proc = None
        self.start()

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*self.wrapper, GATEWAY_BIN, "--config", str(self.config_path)], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)
        try:
            code = self.proc.wait(0.3)
        except subprocess.TimeoutExpired:
            return
        self.proc = None
        self.log.close()
        raise AssertionError(f"the gateway exited at once with {code}:\n{self.output()}")

    def terminate(self, timeout=20):
        """SIGTERM, wait for the exit, return the exit code (None if it was not running)."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)  # TimeoutExpired leaves it to kill()
        self.proc = None
        self.log.close()
        return code

    def kill(self):
        """SIGKILL (no goodbye: the broker publishes the last will)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        if self.log:
            self.log.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def output(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def api_port(self, timeout=10):
        """The local HTTP API's port, from the log line `local API on HOST:PORT (port N)`."""
        found = wait_until(lambda: re.search(r"local API on \S+ \(port (\d+)\)", self.output()), timeout,
                           what="the local API's port in the gateway log")
        return int(found.group(1))

    def failure_report(self):
        return [(f"gateway log {self.log_path}", tail(self.log_path))]


def base_config(broker, cameras, workdir, **extra):
    """A gateway config for site test-site, prefix kitchen, state every second, everything it writes
    or listens on private to the test."""
    cfg = {
        "site": {"id": "test-site", "name": "Test canteen"},
        "mqtt": {"url": broker.url, "topic_prefix": "kitchen", "state_interval": "1s",
                 "reconnect": {"min": "200ms", "max": "1s"}},
        "outbox": {"path": str(pathlib.Path(workdir) / "outbox.db")},
        # min_free low: the tests are about evidence, not about the machine's free disk (a CI box
        # has been seen with 287 MB free, under the 1 GiB default).
        "evidence": {"path": str(pathlib.Path(workdir) / "evidence"), "min_free": "32MiB"},
        # The local HTTP side on a port of its own: the default 127.0.0.1:8080 would collide between
        # gateways of parallel tests and with whatever else runs on the machine.
        "api": {"listen": "127.0.0.1:0"},
        "cameras": cameras,
    }
    # An evidence section given is merged into this one: a test that sets clip timings keeps the
    # low min_free (a whole dict given had silently restored the 1 GiB default).
    if isinstance(extra.get("evidence"), dict):
        extra["evidence"] = {**cfg["evidence"], **extra["evidence"]}
    cfg.update(extra)
    return cfg


def camera(cam_id, url, **overrides):
    """A camera with short test timings; sections in overrides are merged key by key."""
    cam = {
        "id": cam_id,
        "name": cam_id.title(),
        "url": url,
        "input": {"timeout": "3s", "reconnect": {"min": "500ms", "max": "2s"}, "realtime": True},
        "analysis": {"fps": 2, "width": 320, "height": 180},
        "health": {"offline_after": "4s", "confirm": "2s", "clear": "2s", "frozen_after": "4s"},
    }
    if str(url).startswith("rtsp://"):
        cam["input"]["transport"] = "tcp"
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cam.get(key), dict):
            cam[key] = {**cam[key], **value}
        else:
            cam[key] = value
    return cam


def parse_time(iso):
    """Seconds since the epoch of a UTC ISO 8601 time as the gateway writes it."""
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


CAMERA_STATE = "kitchen/test-site/cameras/{}/state"  # base_config's site


def latest_state(collector, cam):
    """The last state `cam` published, or None."""
    return collector.last_json(CAMERA_STATE.format(cam))


def frames_flowing(collector, cam, after=0.0):
    """The latest state of `cam` when it is online with a frame decoded after `after` (epoch s)."""
    s = latest_state(collector, cam)
    if s and s["online"] and s["last_frame_time"] and parse_time(s["last_frame_time"]) > after:
        return s
    return None


def in_parallel(calls):
    """The results of calls (functions without arguments), run on as many threads as there are cores:
    clips made by FFmpeg processes of their own, each mostly on one core, for a test that needs
    several before it can start."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=max(1, min(len(calls), os.cpu_count() or 1))) as pool:
        return [f.result() for f in [pool.submit(c) for c in calls]]


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


class LoopbackServer:
    """A TCP server on a free loopback port for a fake device or broker: each connection is served
    by `_serve(conn)` on a thread of its own, after `_accepted()` (under `.lock`) counts it."""

    def __init__(self, backlog=8):
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self._accepted()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _accepted(self):
        pass

    def _serve(self, conn):
        raise NotImplementedError

    def close(self):
        self.closed = True
        self.sock.close()


class ScriptedModbusTcp(LoopbackServer):
    """A Modbus TCP device written in Python (functions 03 and 04), for what libmodbus's server will
    not do: answer late. The first `slow` answers are sent `delay` seconds after their request, as by
    a busy device or one behind a radio link. Registers: .registers[address] = 16-bit value (0 if
    unset); .connections and .requests count what it saw. With `units`, only those unit ids are
    answered: a Modbus TCP gateway whose serial line has no device at the others stays silent."""

    def __init__(self, delay=0.0, slow=0, units=None):
        self.delay, self.slow, self.units = delay, slow, units
        self.registers = {}
        self.connections = 0
        self.requests = 0
        super().__init__()

    def set_float(self, address, value):
        import struct
        self.registers[address], self.registers[address + 1] = struct.unpack(">HH", struct.pack(">f", value))

    @property
    def url(self):
        return f"tcp://127.0.0.1:{self.port}"

    def _accepted(self):
        self.connections += 1

    def _serve(self, conn):
        import struct
        buf = b""
        with conn:
            while not self.closed:
                try:
                    data = conn.recv(1024)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while len(buf) >= 12:  # MBAP header (7) + function, address, count (5)
                    tid, _, _, unit, fc, address, count = struct.unpack(">HHHBBHH", buf[:12])
                    buf = buf[12:]
                    body = struct.pack(">BB", fc, 2 * count) + b"".join(
                        struct.pack(">H", self.registers.get(address + i, 0) & 0xFFFF) for i in range(count))
                    answer = struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body
                    with self.lock:
                        self.requests += 1
                        late = self.requests <= self.slow
                    if self.units is not None and unit not in self.units:
                        continue
                    if late:
                        threading.Timer(self.delay, self._send, args=(conn, answer)).start()
                    else:
                        self._send(conn, answer)

    @staticmethod
    def _send(conn, answer):
        try:
            conn.sendall(answer)
        except OSError:
            pass  # the gateway hung up meanwhile: what a real device sees too

