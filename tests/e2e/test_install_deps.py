"""scripts/install-deps.sh gives a machine what its use needs and no more: a canteen's box that
builds and runs the gateway gets neither the test peers (GStreamer's RTSP server, nginx, Chromium,
Selenium) nor a web server on port 80; the tests' mode still brings everything the suite uses, and
the nginx it brings is not left running or enabled at boot. The build works without the test-only
libraries, and the runtime mode covers what the Debian package's binaries link."""

import os
import pathlib
import re
import shutil
import subprocess

import pytest

import kg_e2e

SCRIPT = kg_e2e.SOURCE_DIR / "scripts/install-deps.sh"
MODES = ("runtime", "build", "demo", "tests")
# Installed only for the tests: peers, browsers, test frameworks (and what only they pull in).
TEST_ONLY = ("nginx", "libnginx-mod-", "chromium", "python3-selenium", "libgstrtspserver", "gstreamer1.0-rtsp",
             "python3-pytest", "libgtest", "libgmock", "libbenchmark")


def packages(mode):
    run = subprocess.run(["bash", str(SCRIPT), f"--{mode}", "--print"], capture_output=True, text=True, check=True)
    return run.stdout.split()


def test_only_the_tests_mode_brings_the_test_tools():
    listed = {mode: packages(mode) for mode in MODES}
    for mode in ("runtime", "build", "demo"):
        assert not [p for p in listed[mode] if p.startswith(TEST_ONLY)], mode
    # The default is the canteen's: build and run.
    default = subprocess.run(["bash", str(SCRIPT), "--print"], capture_output=True, text=True, check=True)
    assert default.stdout.split() == listed["build"]
    # The demo (scripts/demo.sh) runs a broker, its clients and FFmpeg; the build has none of them.
    assert {"mosquitto", "mosquitto-clients", "ffmpeg"} <= set(listed["demo"]) - set(listed["build"])
    # Each mode brings the one before it (the runtime libraries come through the -dev packages).
    assert set(listed["build"]) <= set(listed["demo"]) <= set(listed["tests"])
    # What the suite's peers and tools are.
    for needed in ("libgtest-dev", "libbenchmark-dev", "mosquitto", "libgstrtspserver-1.0-dev", "python3-pytest",
                   "chromium-driver", "python3-selenium", "nginx-light", "libnginx-mod-rtmp", "socat"):
        assert needed in listed["tests"], needed
    helped = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, check=True).stdout
    assert all(f"--{mode}" in helped for mode in MODES) and "--print" in helped
    wrong = subprocess.run(["bash", str(SCRIPT), "--test"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "'--test'" in wrong.stderr


def _simulate(names):
    """apt-get's dry run of installing `names` on a machine with no package at all: every package
    the install would bring, dependencies included."""
    run = subprocess.run(["apt-get", "install", "-s", "--no-install-recommends", "-o", f"Dir::State::status={os.devnull}",
                          "-o", "Debug::NoLocking=1", *names], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    return {ln.split()[1] for ln in run.stdout.splitlines() if ln.startswith("Inst ")}


@pytest.mark.skipif(not shutil.which("apt-get") or not list(pathlib.Path("/var/lib/apt/lists").glob("*Packages*")),
                    reason="needs apt-get and its package lists (apt-get update)")
def test_no_mode_but_the_tests_pulls_a_test_tool_in_through_dependencies():
    """Dependencies too: nothing the build or the demo installs brings nginx, Chromium or an RTSP
    server along (apt-get install -s against an empty system, without recommends as the script)."""
    # Each dry run is seconds of one core resolving the whole archive: they run side by side.
    brought = dict(zip(MODES, kg_e2e.in_parallel([lambda mode=mode: _simulate(packages(mode)) for mode in MODES])))
    for mode in ("runtime", "build", "demo"):
        assert "libopencv-dev" in brought[mode] or mode == "runtime"
        assert not sorted(p for p in brought[mode] if p.startswith(TEST_ONLY)), mode
    assert {"nginx", "chromium", "libgstrtspserver-1.0-0"} <= brought["tests"]


def test_the_build_needs_neither_googletest_nor_google_benchmark(tmp_path):
    """A canteen's box has neither: configuring without them builds the programs alone and says so;
    asking for the tests (scripts/test.sh's -DKG_BUILD_TESTS=ON) fails on what is missing."""
    without = ["-DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON", "-DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON"]
    run = subprocess.run(["cmake", "-S", str(kg_e2e.SOURCE_DIR), "-B", str(tmp_path / "b"), *without],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "kg-bench-checks is not built" in run.stdout and "the test suite is not built" in run.stdout
    targets = subprocess.run(["cmake", "--build", str(tmp_path / "b"), "--target", "help"],
                             capture_output=True, text=True, check=True).stdout
    assert "kitchen-gateway" in targets and "kitchen-monitor" in targets
    assert "kg-bench-checks" not in targets and "config_test" not in targets
    insist = subprocess.run(["cmake", "-S", str(kg_e2e.SOURCE_DIR), "-B", str(tmp_path / "t"), *without,
                             "-DKG_BUILD_TESTS=ON"], capture_output=True, text=True, timeout=120)
    assert insist.returncode != 0 and "GTest" in insist.stderr


@pytest.mark.skipif(not shutil.which("cpack") or not shutil.which("dpkg-deb"), reason="needs cpack and dpkg-deb")
def test_the_runtime_mode_has_every_library_the_package_links(tmp_path):
    """--runtime (the container's runtime stage) against the .deb's Depends, which dpkg-shlibdeps
    reads from the binaries themselves: a library the programs link and the list lacks would make
    the image's programs fail at start."""
    build = pathlib.Path(kg_e2e.GATEWAY_BIN).resolve().parents[1]
    if re.search(r"^KG_SANITIZE:STRING=.+$", (build / "CMakeCache.txt").read_text(), re.M):
        pytest.skip("a sanitizer build (scripts/sanitize.sh) links the sanitizers' runtimes; packages are "
                    "made from the ordinary build")
    subprocess.run(["cpack", "-G", "DEB", "--config", str(build / "CPackConfig.cmake"), "-B", str(tmp_path)],
                   check=True, capture_output=True)
    deb = next(tmp_path.glob("kitchen-gateway_*.deb"))
    depends = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True, check=True)
    needed = {d.split()[0] for d in depends.stdout.split(",") if d.strip()}
    # In every Debian system (essential or required), and adduser only for the package's postinst.
    base = {"libc6", "libgcc-s1", "libstdc++6", "adduser"}
    assert needed - base - set(packages("runtime")) == set()
    dockerfile = (kg_e2e.SOURCE_DIR / "deploy/container/Dockerfile").read_text()
    assert "install-deps.sh --runtime" in dockerfile


def _nginx_debs(folder):
    """The nginx packages the tests mode installs, fetched from Debian (None without the network)."""
    names = ["nginx-light", "nginx", "nginx-common", "libnginx-mod-rtmp", "libnginx-mod-http-echo"]
    run = subprocess.run(["apt-get", "download", *names], cwd=folder, capture_output=True, text=True)
    return run.returncode == 0 and len(list(folder.glob("*.deb"))) == len(names)


@pytest.mark.skipif(not kg_e2e.can_install_privately() or not shutil.which("dpkg-scanpackages"),
                    reason="needs root, unshare and mounts (overlayfs), dpkg-scanpackages")
def test_the_tests_mode_leaves_nginx_stopped_and_disabled(tmp_path):
    """The script run for real on a machine without nginx, in private mount, process and network
    namespaces (the overlays vanish with them, and nothing started inside could listen on the
    machine's port 80). Debian's nginx package enables nginx at boot and starts it where an init
    system runs (there is none in the namespace): the script stops it and disables it, so that a
    machine set up for the tests does not come up with a web server on port 80. Its packages come
    from a local repository of the real .debs; Docker's policy-rc.d, which forbids every start, is
    taken away as a real box has none (so that the script, not the policy, is what is tested)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    if not _nginx_debs(repo):
        pytest.skip("the nginx packages could not be downloaded (apt-get download)")
    system = tmp_path / "system"
    system.mkdir()
    script = f"""set -e
{kg_e2e.private_system(system)}
rm -f /usr/sbin/policy-rc.d
dpkg --purge nginx-light nginx libnginx-mod-rtmp libnginx-mod-http-echo nginx-common >/dev/null 2>&1
(cd {repo} && dpkg-scanpackages . 2>/dev/null >Packages)
rm -f /etc/apt/sources.list.d/*
echo 'deb [trusted=yes] file:{repo} ./' >/etc/apt/sources.list
# pytest's folders are root's alone: apt reads the repository as root, not as its _apt user.
echo 'APT::Sandbox::User "root";' >/etc/apt/apt.conf.d/99kg-test
dpkg-query -W -f='${{Status}}' nginx 2>/dev/null | grep -q 'install ok installed' && echo 'NGINX BEFORE'
bash {SCRIPT} --tests
dpkg-query -W -f='${{Status}}\\n' nginx-light libnginx-mod-rtmp | sed 's/^/STATUS /'
ls /etc/rc2.d /etc/rc3.d /etc/rc5.d | sed -n 's/^S[0-9]*nginx$/BOOT SysV &/p'
ls /etc/systemd/system/*.wants 2>/dev/null | sed -n 's/^nginx.service$/BOOT systemd &/p'
ss -ltnH 'sport = :80' | sed 's/^/LISTEN /'
"""
    run = subprocess.run(["unshare", "-m", "-p", "-n", "--fork", "--mount-proc", "bash", "-c", script],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "NGINX BEFORE" not in out
    assert out.count("STATUS install ok installed") == 2, out
    assert "BOOT " not in out, out
    assert "LISTEN " not in out, out
    assert "stopped and disabled" in out
