"""pytest fixtures for the end-to-end suite (see harness.py)."""
import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session", autouse=True)
def dgram_qlen():
    restore = harness.raise_dgram_qlen(512)
    yield
    restore()


@pytest.fixture(scope="session")
def session_dir():
    d = tempfile.mkdtemp(prefix="agentd-e2e-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pg():
    cluster = harness.PgCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def receiver(pg, session_dir):
    r = harness.Receiver(pg, session_dir).start()
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def clean_receiver(receiver):
    receiver.reset()
    yield


@pytest.fixture
def workdir():
    # Short paths: unix socket names are limited to 108 bytes.
    d = tempfile.mkdtemp(prefix="agentd-t-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def agentd(request, receiver, workdir):
    """Factory: agentd(overrides={"batch": {"max_records": 10}}, name="a2") -> started Agentd.

    Skips the test while the agentd binary is not built. At teardown each
    instance gets SIGTERM; a crash, a non-zero exit or a hang fails the test,
    and agentd's stderr is shown when anything failed.
    """
    if not harness.agentd_available():
        pytest.skip(f"agentd is not built yet ({harness.AGENTD_BIN} missing)")
    started = []

    def factory(overrides=None, name=None, start=True):
        a = harness.Agentd(workdir, receiver.url, overrides, name=name or f"a{len(started) + 1}")
        started.append(a)
        return a.start() if start else a

    yield factory

    problems = []
    for a in started:
        try:
            rc = a.stop()
        except AssertionError as e:
            problems.append(str(e))
            continue
        if rc not in (None, 0):
            how = f"killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
            problems.append(f"{a.dir}: agentd {how}")
    failed = any(getattr(request.node, "rep_" + w, None) is not None and getattr(request.node, "rep_" + w).failed
                 for w in ("setup", "call"))
    if problems or failed:
        for a in started:
            print(f"----- agentd stderr ({a.dir}) -----\n{a.stderr()}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
