"""Fixtures for the end-to-end tests: every peer is real and cleaned up after the test."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import kg_e2e  # noqa: E402


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """Generated H.264 clips, made once per session."""
    d = tmp_path_factory.mktemp("clips")
    return lambda name, segments: kg_e2e.make_clip(segments, d / f"{name}.mp4")


@pytest.fixture
def broker(tmp_path):
    b = kg_e2e.Broker(tmp_path)
    yield b
    b.kill()


@pytest.fixture
def collector(broker):
    c = kg_e2e.Collector(broker)
    yield c
    c.close()


@pytest.fixture(scope="session")
def schemas():
    return kg_e2e.Schemas()


@pytest.fixture
def gateways(tmp_path, request):
    """Starts gateways with gateways(config); kills what is left and prints logs on failure."""
    started = []

    def start(config, name="gateway"):
        g = kg_e2e.Gateway(tmp_path, config, name)
        started.append(g)
        return g

    yield start
    for g in started:
        g.kill() if g.running() else None
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        for g in started:
            print(f"--- {g.log_path} ---\n{g.output()[-20000:]}")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
