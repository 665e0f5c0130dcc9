"""The NFS test harness itself (tests/nfs/ganesha.py): two servers at once on
one rpcbind, each serving its own export over NFSv3 and NFSv4, one surviving
the other's stop; clear failures for a busy port."""
import os
import socket
import tempfile
import threading

import pytest

from nfs import ganesha

PORTS = [(25510, 25511), (25512, 25513)]


def test_two_instances_at_once():
    base = tempfile.mkdtemp(prefix="mf-ganesha-", dir="/tmp")
    servers, errors = [None, None], []

    def start(i):
        try:
            servers[i] = ganesha.start(os.path.join(base, "e%d" % i), *PORTS[i],
                                       os.path.join(base, "w%d" % i))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        a, b = servers
        assert a.url("x/y", version=4) == (
            "nfs://127.0.0.1%s/x/y?nfsport=%d&mountport=%d&version=4"
            % (a.export_dir, PORTS[0][0], PORTS[0][1]))
        for g in servers:
            for version in (3, 4):
                assert ganesha.probe(g.url(version=version)) is None
        # each serves its own export: a's URL path is not exported by b
        wrong = b.url().replace(b.export_dir, a.export_dir)
        assert ganesha.probe(wrong) is not None
        a.stop()
        assert not a.alive()
        assert ganesha.probe(b.url()) is None
        assert ganesha.probe(b.url(version=4)) is None
    finally:
        for g in servers:
            if g is not None:
                g.stop()
        os.system("rm -rf '%s'" % base)


def test_busy_port_fails_clearly():
    base = tempfile.mkdtemp(prefix="mf-ganesha-", dir="/tmp")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 25514))
        s.listen(1)
        with pytest.raises(ganesha.GaneshaError, match="already in use"):
            ganesha.start(os.path.join(base, "e"), 25514, 25515, os.path.join(base, "w"))
    os.system("rm -rf '%s'" % base)
