"""test_bench_tools.py: the benchmark's own tools tell the truth.

The LMTP benchmark (bench_lmtp.py, `make bench-lmtp`) is not a test, but the
parts it trusts are: lmtpload must count refusals as failures and exit
non-zero, physlimit must leave exactly the files it claims in new/, and the
delivery check must notice a lost or misplaced message. Fast (a few seconds);
ports 23030-23039 on 127.0.0.1.
"""
import os
import socket
import subprocess
import sys
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import bench_lmtp  # noqa: E402

TOOLS = os.path.join(ROOT, os.environ.get("MF_BUILD", "build/asan"), "tools")
LMTPLOAD = os.path.join(TOOLS, "lmtpload")
PHYSLIMIT = os.path.join(TOOLS, "physlimit")


def figures(stdout):
    return dict(kv.split("=", 1) for kv in stdout.split())


@pytest.fixture
def sink():
    proc = subprocess.Popen([LMTPLOAD, "--sink", "23030"])
    try:
        bench_lmtp.wait_port(23030, proc, "sink")
        yield 23030
    finally:
        bench_lmtp.stop_proc(proc)


def test_lmtpload_against_sink(sink):
    proc = subprocess.run([LMTPLOAD, "--port", str(sink), "--messages", "300", "--users", "7",
                           "--connections", "3", "--size", "5000"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    fig = figures(proc.stdout)
    assert fig["ok"] == "300" and fig["failed"] == "0"
    assert float(fig["rate"]) > 0


class RefusingServer:
    """A minimal pipelining LMTP server that refuses RCPT for u2 and records
    the recipients and DATA sizes it accepted."""

    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(8)
        self.accepted = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        f = conn.makefile("rb")
        conn.sendall(b"220 test\r\n")
        rcpt_ok = False
        for line in f:
            cmd = line[:4].upper()
            if cmd == b"LHLO":
                conn.sendall(b"250-test\r\n250 PIPELINING\r\n")
            elif cmd == b"RCPT":
                rcpt_ok = b"<u2@" not in line
                rcpt = line
                conn.sendall(b"250 ok\r\n" if rcpt_ok else b"550 5.1.1 no such user\r\n")
            elif cmd == b"DATA":
                if not rcpt_ok:
                    conn.sendall(b"503 5.5.1 no valid recipients\r\n")
                    continue
                conn.sendall(b"354 go\r\n")
                size = 0
                for data in f:
                    if data == b".\r\n":
                        break
                    size += len(data)
                with self.lock:
                    self.accepted.append((rcpt, size))
                conn.sendall(b"250 2.0.0 ok\r\n")
            elif cmd == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                break
            else:
                conn.sendall(b"250 ok\r\n")
        conn.close()

    def close(self):
        self.sock.close()


def test_lmtpload_counts_refusals_and_exits_nonzero():
    srv = RefusingServer(23031)
    try:
        proc = subprocess.run([LMTPLOAD, "--port", "23031", "--messages", "40", "--users", "4",
                               "--connections", "2", "--size", "3000"],
                              capture_output=True, text=True, timeout=60)
    finally:
        srv.close()
    assert proc.returncode == 1
    fig = figures(proc.stdout)
    # message i goes to u(i % 4 + 1): every 4th one is for u2 and is refused
    assert fig["ok"] == "30" and fig["failed"] == "10"
    assert "550 5.1.1" in proc.stderr
    assert len(srv.accepted) == 30
    assert all(b"<u2@" not in r for r, _ in srv.accepted)
    assert all(2500 < size < 3100 for _, size in srv.accepted)


@pytest.mark.parametrize("dir_fsync", [False, True])
def test_physlimit_leaves_every_file_in_new(tmp_path, dir_fsync):
    cmd = [PHYSLIMIT, "--location", str(tmp_path), "--messages", "120", "--users", "9",
           "--threads", "3", "--size", "4000", "--prefix", "p"]
    proc = subprocess.run(cmd + (["--dir-fsync"] if dir_fsync else []),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    fig = figures(proc.stdout)
    assert fig["ok"] == "120" and fig["found"] == "120"
    assert fig["dir_fsync"] == ("1" if dir_fsync else "0")
    new = tmp = 0
    for u in range(1, 10):
        box = tmp_path / "p" / ("u%d" % u) / "Maildir"
        files = os.listdir(box / "new")
        new += len(files)
        tmp += len(os.listdir(box / "tmp"))
        assert all(os.path.getsize(box / "new" / n) == 4000 for n in files)
    assert (new, tmp) == (120, 0)


def test_physlimit_fails_when_files_are_already_there(tmp_path):
    cmd = [PHYSLIMIT, "--location", str(tmp_path), "--messages", "10", "--users", "2"]
    assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    # a second run finds 20 files where it wrote 10: the count check must fail
    assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == 1


def write_message(root, user, tag, i):
    d = root / bench_lmtp.DOMAIN / user / "Maildir" / "new"
    d.mkdir(parents=True, exist_ok=True)
    (d / ("%s.%d" % (tag, i))).write_bytes(
        b"Return-Path: <x@y>\r\nMessage-ID: <%s.%d@%s>\r\n\r\nbody\r\n"
        % (tag.encode(), i, bench_lmtp.DOMAIN.encode()))


def test_check_delivered(tmp_path):
    for i in range(20):
        write_message(tmp_path, "u%d" % (i % 5 + 1), "t", i)
    bench_lmtp.check_delivered(str(tmp_path), "t", 20, 5, "x")
    os.unlink(tmp_path / bench_lmtp.DOMAIN / "u3" / "Maildir" / "new" / "t.7")
    with pytest.raises(bench_lmtp.BenchError, match="1 of 20 messages missing"):
        bench_lmtp.check_delivered(str(tmp_path), "t", 20, 5, "x")
    write_message(tmp_path, "u3", "t", 7)
    write_message(tmp_path, "u1", "t", 7)   # a copy in the wrong mailbox
    with pytest.raises(bench_lmtp.BenchError, match="mailbox of u1"):
        bench_lmtp.check_delivered(str(tmp_path), "t", 20, 5, "x")
