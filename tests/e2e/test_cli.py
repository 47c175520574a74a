"""The command line: --version, --check-config (valid, invalid with file:line), no broker contact."""

import socket
import subprocess

import kg_e2e


def run(*args):
    return subprocess.run([kg_e2e.GATEWAY_BIN, *args], capture_output=True, text=True, timeout=30)


def test_version():
    r = run("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("kitchen-gateway 0.")


def test_check_config_accepts_the_example():
    r = run("--check-config", str(kg_e2e.SOURCE_DIR / "config/gateway.example.yaml"))
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout


def test_check_config_reports_each_error_with_its_line_and_never_connects(tmp_path):
    # A broker that would notice any connection attempt.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "site: {id: s1, name: S}\n"
        f"mqtt: {{url: 'tcp://127.0.0.1:{port}'}}\n"
        "cameras:\n"
        "  - id: a\n"
        "    url: a.mp4\n"
        "    analysis: {fsp: 2}\n"      # line 6: unknown key
        "  - id: a\n"                   # line 7: duplicate id
        "    url: rtsp://cam/x\n"
    )
    r = run("--check-config", str(bad))
    assert r.returncode == 2
    assert f"{bad}:6:" in r.stderr and "unknown key 'fsp' (did you mean 'fps'?)" in r.stderr
    assert f"{bad}:7:" in r.stderr and "duplicate camera id 'a' (first used on line 4)" in r.stderr
    try:
        listener.accept()
        raise AssertionError("--check-config connected to the broker")
    except socket.timeout:
        pass
    finally:
        listener.close()


def test_running_with_a_bad_config_starts_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {id: s1}\ncameras: []\n")
    r = run("--config", str(bad))
    assert r.returncode == 2
    assert "site.name: missing required key" in r.stderr
    assert "cameras: expected a non-empty list" in r.stderr
