"""Fixtures for the end-to-end tests: every peer is real (kg_e2e.py) and cleaned up after the test.
When a test fails, the logs of what it started (gateway, broker, RTSP server) and what the broker
carried are attached to its report."""

import pathlib
import shutil
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import kg_e2e  # noqa: E402


class _Started:
    """A factory fixture's value: starts things, remembers them, reports and cleans them up."""

    def __init__(self, make, cleanup):
        self.items = []
        self._make = make
        self._cleanup = cleanup

    def __call__(self, *args, **kwargs):
        item = self._make(*args, **kwargs)
        self.items.append(item)
        return item

    def cleanup(self):
        for item in self.items:
            try:
                self._cleanup(item)
            except Exception as e:  # clean up the others regardless
                print(f"cleanup of {item!r} failed: {e}")

    def failure_report(self):
        return [section for item in self.items if hasattr(item, "failure_report")
                for section in item.failure_report()]


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def make_clip(clip_dir):
    """make_clip(segments[, path][, gop=50]) -> path of an H.264 MP4, e.g. [("normal", 8), ("black", 12)];
    without a path, cached per session by its segments and GOP."""

    def make(segments, path=None, gop=50):
        return kg_e2e.make_clip(segments, path or clip_dir / f"{kg_e2e.clip_name(segments, gop)}.mp4", gop)

    return make


@pytest.fixture(scope="session")
def clips(make_clip):
    """clips(label, segments[, gop=50]): make_clip under a label kept for readability (cached by
    segments and GOP)."""
    return lambda label, segments, gop=50: make_clip(segments, gop=gop)


@pytest.fixture
def broker(tmp_path):
    """Mosquitto on a free loopback port: .stop(), .start() (same port), .kill(), .url, .port."""
    b = kg_e2e.Broker(tmp_path)
    yield b
    b.kill()


@pytest.fixture
def collector(broker):
    """Everything published on the broker (`#`, QoS 1): .messages, .wait_for(), .events(), ..."""
    c = kg_e2e.Collector(broker)
    yield c
    c.close()


@pytest.fixture(scope="session")
def schemas():
    """docs/schemas: .validate(topic, payload), .validate_all(collector)."""
    return kg_e2e.Schemas()


@pytest.fixture
def rtsp_server(tmp_path):
    """rtsp_server({"/cam": clip, ...}, drop_every=None) -> a started kg-test-rtsp-server: .url(mount),
    .stop(), .start() (same port), .kill()."""
    started = _Started(lambda mounts, **kw: kg_e2e.RtspServer(mounts, tmp_path, **kw), lambda s: s.kill())
    yield started
    started.cleanup()


@pytest.fixture
def silent_server():
    """silent_server() -> a TCP listener that accepts and never answers: .port, .url(), .accepted."""
    started = _Started(kg_e2e.SilentServer, lambda s: s.close())
    yield started
    started.cleanup()


@pytest.fixture
def gateway(tmp_path):
    """gateway(config_dict[, name][, env=dict]) -> a running kitchen-gateway (env: variables added to
    the test's own): .terminate() (SIGTERM, returns the exit code), .kill() (SIGKILL), .output().
    Killed after the test if still running."""
    started = _Started(lambda config, name="gateway", env=None: kg_e2e.Gateway(tmp_path, config, name, env),
                       lambda g: g.kill())
    yield started
    started.cleanup()


@pytest.fixture
def gateways(gateway):
    """The same factory as `gateway` (older spelling)."""
    return gateway


@pytest.fixture
def browser(tmp_path):
    """Real headless Chromium (Debian's chromium + chromedriver, driven by Selenium), autoplay allowed;
    the test is skipped when any of them is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="python3-selenium is not installed")
    from selenium.webdriver.chrome.service import Service
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip("chromium and chromium-driver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required", "--window-size=1280,900",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(chromedriver, log_path=str(tmp_path / "chromedriver.log")),
                              options=options)
    yield driver
    driver.quit()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed and rep.when in ("setup", "call"):
        seen = set()
        for value in getattr(item, "funcargs", {}).values():
            if id(value) in seen or not hasattr(value, "failure_report"):
                continue
            seen.add(id(value))
            try:
                for title, text in value.failure_report():
                    rep.sections.append((title, text))
            except Exception as e:  # a report must never hide the failure itself
                rep.sections.append(("failure report", f"could not be made: {e!r}"))
