"""The command line: --version; --check-config on a valid file (exit 0) and on files with one error
each (exit 2, `FILE:LINE:COL: key.path: message` naming the right line); check mode never contacts
the broker or a camera (a real Mosquitto and a listening camera port watch for it)."""

import os
import re
import subprocess

import pytest

import kg_e2e

ERROR = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<key>\S+): (?P<message>.+)$")


def run(*args):
    return subprocess.run([kg_e2e.GATEWAY_BIN, *args], capture_output=True, text=True, timeout=30)


def errors_of(result, path):
    """The `FILE:LINE:COL: key: message` lines of stderr, as dicts."""
    found = [m.groupdict() for m in map(ERROR.match, result.stderr.splitlines()) if m]
    assert all(e["file"] == str(path) for e in found), result.stderr
    return found


def project_version():
    text = (kg_e2e.SOURCE_DIR / "CMakeLists.txt").read_text()
    return re.search(r"project\(\s*kitchen-gateway\s+VERSION\s+([0-9.]+)", text).group(1)


def config_text(broker_url, camera_url, camera_extra=""):
    """The spec's minimal config (a camera at line 4), with a second camera (its id at line 10)."""
    return (
        "site: {id: test-site, name: Test canteen}\n"                                     # 1
        f'mqtt: {{url: "{broker_url}", topic_prefix: kitchen, state_interval: 1s}}\n'     # 2
        "cameras:\n"                                                                      # 3
        "  - id: cam1\n"                                                                  # 4
        "    name: Cooking\n"                                                             # 5
        f"    url: {camera_url}\n"                                                        # 6
        "    input: {timeout: 3s, reconnect: {min: 500ms, max: 4s}, loop: false, realtime: true, transport: tcp}\n"
        "    analysis: {fps: 2, width: 320, height: 180}\n"                               # 8
        "    health: {offline_after: 4s, confirm: 2s, clear: 2s, frozen_after: 4s}\n"     # 9
        "  - id: cam2\n"                                                                  # 10
        "    url: kitchen.mp4\n"                                                          # 11
        "    analysis:\n"                                                                 # 12
        "      fps: 1\n"                                                                  # 13
        + camera_extra
    )


@pytest.fixture
def watched(broker, silent_server):
    """A real broker and a camera port that notice any connection; asserts none at the end."""
    camera = silent_server()
    yield broker, camera
    assert broker.clients_connected() == 0, "check mode connected to the broker"
    assert camera.accepted == 0, "check mode connected to a camera"


def test_version():
    r = run("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"kitchen-gateway {project_version()}"


def test_check_config_accepts_a_valid_file_and_contacts_nothing(watched, tmp_path):
    broker, camera = watched
    path = tmp_path / "gateway.yaml"
    path.write_text(config_text(broker.url, camera.url()))
    r = run("--check-config", str(path))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout, r.stdout
    assert errors_of(r, path) == []


def test_check_config_says_which_places_cannot_be_written_and_makes_none(watched, tmp_path):
    """The places the gateway writes, checked as the user that runs the check (the unit's
    ExecStartPre runs it as the service's user): an unwritable one was found only by the running
    gateway, in its log. Warnings, not errors: the gateway runs without them (alerts still go out).
    Nothing is made: run as root, a folder the check made would be root's."""
    broker, camera = watched
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "outbox.db").write_text("")
    (tmp_path / "outbox.db").chmod(0o444)  # made by another user (root by hand): root writes it all the same
    path = tmp_path / "gateway.yaml"
    path.write_text(config_text(broker.url, camera.url()) +
                    f"outbox: {{path: {tmp_path / 'outbox.db'}}}\n"
                    f"evidence: {{path: {tmp_path / 'a-file' / 'evidence'}}}\n"
                    f"training_frames: {{enabled: true, path: {tmp_path / 'later' / 'frames'}}}\n")
    r = run("--check-config", str(path))
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stdout.splitlines() if "cannot be written" in line]
    root = os.geteuid() == 0
    assert len(warnings) == (1 if root else 2), r.stdout
    if not root:
        assert warnings.pop(0).startswith(f"warning: outbox.path {tmp_path / 'outbox.db'} cannot be written "
                                          "(Permission denied): the gateway keeps its messages in memory only"), r.stdout
    assert warnings[0].startswith(f"warning: evidence.path {tmp_path / 'a-file' / 'evidence'} cannot be written "
                                  f"(not there, and {tmp_path / 'a-file'} cannot take it: not a folder): "
                                  "no snapshot or clip is kept (checked as uid "), r.stdout
    assert not (tmp_path / "later").exists(), "the check made a folder"


def test_check_config_accepts_the_shipped_example():
    path = kg_e2e.SOURCE_DIR / "config/gateway.example.yaml"
    r = run("--check-config", str(path))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


@pytest.mark.parametrize("extra, line, key", [
    ("      fsp: 2\n", 14, "cameras[1].analysis.fsp"),          # block mapping
    ("    helth: {clear: 2s}\n", 14, "cameras[1].helth"),       # a whole section misspelt
], ids=["nested", "section"])
def test_check_config_reports_an_unknown_key_at_its_line(watched, tmp_path, extra, line, key):
    broker, camera = watched
    path = tmp_path / "unknown.yaml"
    path.write_text(config_text(broker.url, camera.url(), extra))
    r = run("--check-config", str(path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    errors = errors_of(r, path)
    assert len(errors) == 1, r.stderr  # exactly this one problem, nothing else in the file is wrong
    assert int(errors[0]["line"]) == line, r.stderr
    assert errors[0]["key"] == key, r.stderr
    assert "unknown key" in errors[0]["message"], r.stderr


def test_check_config_unknown_key_in_a_flow_mapping(watched, tmp_path):
    broker, camera = watched
    path = tmp_path / "flow.yaml"
    path.write_text(config_text(broker.url, camera.url()).replace("frozen_after: 4s}", "frozen_after: 4s, frozn: 1}"))
    r = run("--check-config", str(path))
    assert r.returncode == 2
    errors = errors_of(r, path)
    assert [(int(e["line"]), e["key"]) for e in errors] == [(9, "cameras[0].health.frozn")], r.stderr


def test_check_config_loads_the_detectors_the_cameras_use(watched, tmp_path):
    """A mistyped model path, or a model that cannot raise the check's alarm, fails the check (and so
    systemd's ExecStartPre) instead of stopping the gateway at start or leaving the check blind."""
    broker, camera = watched
    path = tmp_path / "detectors.yaml"
    models = kg_e2e.SOURCE_DIR / "models"
    path.write_text(f"detectors: {{mask: {models / 'kitchen-head-covering.yaml'}, "
                    f"head_covering: {models / 'kitchen-head-covring.yaml'}}}\n"
                    + config_text(broker.url, camera.url(), "    checks: [mask, head_covering]\n"))
    r = run("--check-config", str(path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    # Each at its place in the file: line 1, the column where its value starts.
    lines = [line for line in r.stderr.splitlines() if line.startswith(f"{path}:")]
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith(f"{path}:1:19: detectors.mask: ") and "no class labelled 'no_mask'" in lines[0], r.stderr
    column = len(f"detectors: {{mask: {models / 'kitchen-head-covering.yaml'}, head_covering: ") + 1
    assert lines[1].startswith(f"{path}:1:{column}: detectors.head_covering: ") and "kitchen-head-covring.yaml" in lines[1], r.stderr
    # The checks a camera does not run are not loaded.
    path.write_text(path.read_text().replace("    checks: [mask, head_covering]\n", ""))
    r = run("--check-config", str(path))
    assert r.returncode == 0, r.stderr


def test_check_config_names_an_input_size_the_network_cannot_take(watched, tmp_path):
    """A manifest copy at 500x500 for a network that takes multiples of 32: one line naming the
    config key, the manifest and the size, and none of OpenCV's internals before it."""
    broker, camera = watched
    models = kg_e2e.SOURCE_DIR / "models"
    manifest = tmp_path / "head500.yaml"
    manifest.write_text((models / "kitchen-head-covering.yaml").read_text()
                        .replace("\nmodel: kitchen-one-pass-heads.onnx", f"\nmodel: {models / 'kitchen-one-pass-heads.onnx'}")
                        .replace("ensemble: [kitchen-covering-heads.onnx]",
                                 f"ensemble: [{models / 'kitchen-covering-heads.onnx'}]")
                        .replace("width: 512, height: 512", "width: 500, height: 500"))
    path = tmp_path / "size.yaml"
    path.write_text(f"detectors: {{head_covering: {manifest}}}\n"
                    + config_text(broker.url, camera.url(), "    checks: [head_covering]\n"))
    r = run("--check-config", str(path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[0].startswith(f"{path}:1:28: detectors.head_covering: "), r.stderr
    assert f"{manifest}: " in lines[0] and "cannot take an input of 500x500" in lines[0], r.stderr
    assert "[ERROR" not in r.stderr, r.stderr


def test_check_config_reports_a_duplicate_camera_id_at_its_line(watched, tmp_path):
    broker, camera = watched
    path = tmp_path / "duplicate.yaml"
    path.write_text(config_text(broker.url, camera.url()).replace("- id: cam2", "- id: cam1"))
    r = run("--check-config", str(path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    errors = errors_of(r, path)
    assert len(errors) == 1, r.stderr
    assert int(errors[0]["line"]) == 10, r.stderr  # the second use, not the first
    assert errors[0]["key"] == "cameras[1].id", r.stderr
    assert "duplicate" in errors[0]["message"] and "cam1" in errors[0]["message"], r.stderr


def test_running_with_a_bad_config_starts_nothing(watched, tmp_path):
    broker, camera = watched
    path = tmp_path / "bad.yaml"
    path.write_text(config_text(broker.url, camera.url()).replace("name: Test canteen", "nam: Test canteen"))
    r = run("--config", str(path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    keys = [e["key"] for e in errors_of(r, path)]
    assert "site.nam" in keys or "site.name" in keys, r.stderr


def test_a_configuration_file_that_cannot_be_read_is_a_configuration_error(tmp_path):
    """--config with a file that is not there, or a folder, exits 2 naming why, as --check-config does
    (systemd's unit and scripts read 2 as "fix the file"); it was CLI11's exit 105."""
    for path in [tmp_path / "missing.yaml", tmp_path]:
        for option in ["--config", "--check-config"]:
            r = run(option, str(path))
            assert r.returncode == 2, (option, path, r.returncode, r.stderr)
            assert f"{path}: cannot read the file: " in r.stderr, r.stderr
    for path, why in [(tmp_path / "missing.yaml", "No such file or directory"), (tmp_path, "it is a folder")]:
        r = subprocess.run([os.environ.get("KG_MONITOR_BIN", str(kg_e2e.SOURCE_DIR / "build/gateway/kitchen-monitor")), "--config", str(path)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and f"{path}: cannot read the file: {why}" in r.stderr, (r.returncode, r.stderr)


def test_log_lines_are_utc_and_carry_their_priority_for_the_journal(broker, gateway, tmp_path):
    """The text log's times are UTC and say so (a box set to Shanghai time wrote local times without
    an offset, 8 hours from the JSON log and every MQTT message); under systemd (stderr is the
    journal's stream, JOURNAL_STREAM) each line starts with its syslog priority, so that
    `journalctl -p warning` finds the warnings and errors (the installer review: it found none)."""
    import datetime
    config = kg_e2e.base_config(broker, [kg_e2e.camera("cam", "rtsp://127.0.0.1:1/none", public=True)], tmp_path)
    for name, journal in (("plain", False), ("journal", True)):
        log_path = tmp_path / f"{name}.log"
        log_path.touch()
        st = os.stat(log_path)
        env = {"TZ": "Asia/Shanghai"}
        if journal:
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        before = datetime.datetime.now(datetime.timezone.utc)
        gw = gateway(config, name, env=env)
        # A warning (public cameras without the public side) and an error (the camera refused).
        kg_e2e.wait_until(lambda: "[cam:cam]" in gw.output() and "configuration: " in gw.output(), 15,
                          what="the camera's first refusal and the configuration's warning")
        assert gw.terminate() == 0
        lines = [ln for ln in gw.output().splitlines() if re.match(r"(<\d>)?\d{4}-", ln)]
        assert lines, gw.output()
        for line in lines:
            m = re.match(r"(<(\d)>)?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (\w+) ", line)
            assert m, line
            assert (m.group(1) is not None) == journal, line
            when = datetime.datetime.fromisoformat(m.group(3)).replace(tzinfo=datetime.timezone.utc)
            assert abs((when - before).total_seconds()) < 60, line  # UTC, not Shanghai's +8 h
            if journal:
                assert m.group(2) == {"debug": "7", "info": "6", "warn": "4", "warning": "4", "error": "3",
                                      "critical": "2"}[m.group(4)], line
        if journal:
            assert any(ln.startswith("<4>") and "configuration: " in ln for ln in lines), lines
            assert any(ln.startswith("<6>") for ln in lines), lines


def test_a_gateway_without_the_projects_models_says_so_and_where_it_looked(broker, tmp_path):
    """`detectors: auto` with the project's models missing (a binary outside its package's layout, a
    package built without them) ran the cascades with one line naming them (the installer review):
    now a warning, to the log and the room, naming the manifest and the folders looked in."""
    import shutil
    import yaml
    bin_dir = tmp_path / "opt" / "bin"
    bin_dir.mkdir(parents=True)
    binary = shutil.copy(kg_e2e.GATEWAY_BIN, bin_dir / "kitchen-gateway")
    config = kg_e2e.base_config(broker, [kg_e2e.camera("cam", "rtsp://127.0.0.1:1/none", checks=["mask"])], tmp_path)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = dict(os.environ)
    env.pop("KG_MODELS_DIR", None)
    proc = subprocess.Popen([binary, "--config", str(path)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env=env)
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "detectors.mask is auto" in line or len(lines) > 200:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    warning = next((ln for ln in lines if "detectors.mask is auto" in ln), None)
    assert warning is not None, "".join(lines)
    assert "kitchen-mask.yaml with its network files, in " in warning and str(tmp_path / "opt") in warning, warning
    assert "classic back-end" in warning and "warn" in warning, warning
