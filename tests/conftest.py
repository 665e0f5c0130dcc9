"""conftest.py: pytest fixtures for the integration tests.

`mf` gives a test its own world in its tmp dir (directory, store, TLS cert) and
starts nodes on request (mf.node(...)). At teardown every node still running
gets SIGTERM; the test fails if a node did not exit with status 0 (unless the
test SIGKILLed it on purpose) or if its stderr holds an AddressSanitizer,
LeakSanitizer or UBSan ("runtime error") report.
"""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mf as harness  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "fixed_ports: uses the embedded default's fixed ports")


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    harness.make_cert(str(d), name="cert", cn="mailfleet-test", serial=1)
    return str(d)


@pytest.fixture
def mf(tmp_path, tls_dir):
    env = harness.MfEnv(tmp_path, tls_dir=tls_dir)
    yield env
    problems = env.stop_all()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def domain_template(tmp_path_factory):
    """A directory with example.test: users a, b, c (quota 10M) and d (quota 2K),
    made once with mailfleetctl (each run of the ASan build costs ~0.5 s)."""
    d = str(tmp_path_factory.mktemp("directory-template") / "directory")
    harness.ctl(d, "domain", "add", "example.test")
    for u in ("a", "b", "c"):
        harness.ctl(d, "user", "add", "%s@example.test" % u, "--quota", "10M", stdin="secret\n")
    harness.ctl(d, "user", "add", "d@example.test", "--quota", "2K", stdin="secret\n")
    return d


@pytest.fixture
def domain(mf, domain_template):
    """example.test with users a, b, c (quota 10M) and d (quota 2K), in a copy of
    the session's template directory."""
    shutil.copytree(domain_template, mf.directory, dirs_exist_ok=True)
    return "example.test"
