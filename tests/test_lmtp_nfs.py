"""test_lmtp_nfs.py: the core LMTP delivery tests against the libnfs store
backend: mailfleetd's store.location is an nfs:// URL served by a real
nfs-ganesha (VFS backend, loopback, private ports) that tests/nfs/ganesha.py
starts; the files are checked through the exported folder on local disk.
If ganesha cannot start, every test here fails with the reason (no skip)."""
import os
import shutil
import tempfile

import pytest

import mf as h
from nfs import ganesha
from test_lmtp import (bulk_deliver, check_multi_recipient, check_sigkill_after_final_dot,
                       check_sigkill_during_data, check_stored_exactly)

# 4 x 500 = 2,000 messages, as on POSIX (about 50 s under ASan on 2 cores:
# every message is several NFS round trips).
BULK_PER_CONN = 500


@pytest.fixture(scope="module")
def nfs_server():
    export = tempfile.mkdtemp(prefix="mf-nfs-export-", dir="/tmp")
    work = tempfile.mkdtemp(prefix="mf-nfs-work-", dir="/tmp")
    server, error = None, None
    try:
        server = ganesha.start(export, h.free_port(), h.free_port(), work)
    except Exception as e:  # the tests fail with this, they are not skipped
        error = "nfs-ganesha did not start: %s" % e
    yield server, error, export
    if server is not None:
        server.stop()
    shutil.rmtree(export, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def nfs(mf, nfs_server, request):
    """Points mf at a fresh folder of the export, through libnfs."""
    server, error, export = nfs_server
    if server is None:
        pytest.fail(error, pytrace=False)
    assert server.alive(), "ganesha died:\n" + server.log_tail()
    sub = request.node.name.replace("[", "-").replace("]", "")
    os.makedirs(os.path.join(export, sub))
    mf.use_store(server.url(sub, version=3), os.path.join(export, sub))
    return server


def test_nfs_multi_recipient(mf, domain, nfs):
    node = mf.node()
    check_multi_recipient(mf, node)
    assert "nfs" in open(node.config_path).read()


def test_nfs_bulk_4_connections(mf, domain, nfs):
    node = mf.node()
    sent = bulk_deliver([node], ["a@example.test"], BULK_PER_CONN, 4)
    assert len(sent["a@example.test"]) == 4 * BULK_PER_CONN
    check_stored_exactly(mf, "a@example.test", sent["a@example.test"])


def test_nfs_sigkill_during_data(mf, domain, nfs):
    check_sigkill_during_data(mf, mf.node())


def test_nfs_sigkill_after_final_dot(mf, domain, nfs):
    check_sigkill_after_final_dot(mf, mf.node(), rounds=3)


def test_nfs_two_nodes_same_mailboxes(mf, domain, nfs):
    """Two mailfleetd processes on different ports, each with 2 connections,
    deliver at once into the same three mailboxes over libnfs: nothing lost,
    nothing doubled."""
    n1 = mf.node()
    n2 = mf.node()
    assert n1.lmtp_port != n2.lmtp_port
    rcpts = ["a@example.test", "b@example.test", "c@example.test"]
    sent = bulk_deliver([n1, n2], rcpts, 150, 2)
    assert sum(len(v) for v in sent.values()) == 600
    for r in rcpts:
        check_stored_exactly(mf, r, sent[r])
