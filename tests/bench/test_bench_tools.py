"""test_bench_tools.py: the benchmark's own tools tell the truth.

The LMTP benchmark (bench_lmtp.py, `make bench-lmtp`) is not a test, but the
parts it trusts are: lmtpload must count refusals as failures and exit
non-zero, physlimit must leave exactly the files it claims in new/, and the
delivery check must notice a lost or misplaced message. Likewise imapload (the
IMAP benchmark's load generator, bench_imap.py): against a real mailfleetd it
must complete its checked workload with zero errors, and it must count refused
logins, a wrong mailbox and a server that only says OK as errors. Fast (a few
seconds); ports 23030-23039 and harness ports (MF_PORT_MIN..MF_PORT_MAX) on
127.0.0.1.
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


# ---------------------------------------------------------------- imapload

IMAPLOAD = os.path.join(TOOLS, "imapload")
IMAP_MESSAGES = 120


@pytest.fixture
def imap_server(mf):
    """A node with an IMAP listener and users u1, u2 (password benchpw) whose
    INBOXes hold the benchmark's first IMAP_MESSAGES messages."""
    import mf as harness
    import bench_imap
    mf.add_domain(bench_lmtp.DOMAIN)
    for u in ("u1", "u2"):
        mf.add_user("%s@%s" % (u, bench_lmtp.DOMAIN), password="benchpw")
        bench_imap.fill([mf.store], u, IMAP_MESSAGES)
    node = mf.node(start=False)
    port = harness.free_port()
    node.settings["listeners"].append({"protocol": "imap", "address": "127.0.0.1", "port": port})
    with open(node.config_path, "w") as f:
        f.write(harness.render_config(node.settings))
    node.start()
    assert harness.wait_port(port, 10)
    return mf, port


def imapload(*args, **kw):
    return subprocess.run([IMAPLOAD] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=120, **kw)


def test_imapload_workload_against_mailfleetd(imap_server):
    mf, port = imap_server
    proc = imapload("--port", port, "--messages", IMAP_MESSAGES, "--clients", 2, "--iterations", 3)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fig = figures(proc.stdout)
    # 12 commands per session, 3 sessions per client, all checked
    assert (fig["errors"], fig["ops"], fig["sessions"]) == ("0", "72", "6")
    assert float(fig["rate"]) > 0
    # every appended message was expunged again, the flags are back
    for u in ("u1", "u2"):
        box = os.path.join(mf.store, bench_lmtp.DOMAIN, u, "Maildir")
        names = os.listdir(os.path.join(box, "cur")) + os.listdir(os.path.join(box, "new"))
        assert len(names) == IMAP_MESSAGES
        assert not any("S" in n.rsplit(":2,", 1)[-1] for n in names if ":2," in n)


def test_imapload_counts_refused_logins(imap_server):
    _, port = imap_server
    proc = imapload("--port", port, "--messages", IMAP_MESSAGES, "--clients", 2, "--iterations", 2,
                    "--password", "wrong")
    assert proc.returncode == 1
    fig = figures(proc.stdout)
    assert (fig["errors"], fig["ops"]) == ("4", "0")
    assert "LOGIN" in proc.stderr and " NO" in proc.stderr


def test_imapload_wrong_mailbox_size_is_an_error(imap_server):
    _, port = imap_server
    proc = imapload("--port", port, "--messages", IMAP_MESSAGES + 1, "--clients", 1,
                    "--iterations", 1)
    assert proc.returncode == 1
    assert figures(proc.stdout)["errors"] == "1"
    assert "SELECT: %d EXISTS, expected %d" % (IMAP_MESSAGES, IMAP_MESSAGES + 1) in proc.stderr


def test_imapload_idle_and_script_modes(imap_server):
    _, port = imap_server
    proc = subprocess.Popen([IMAPLOAD, "--idle", "30", "--port", str(port), "--users", "2",
                             "--messages", str(IMAP_MESSAGES)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = proc.stdout.readline()
    proc.stdin.close()
    out, err = proc.stdout.read(), proc.stderr.read()
    assert proc.wait(timeout=60) == 0, ready + out + err
    assert ready.startswith("ready ") and out.startswith("done ")
    ready, out = figures(ready[6:]), figures(out[5:])
    assert (ready["idling"], ready["errors"]) == ("30", "0")
    assert (out["closed"], out["errors"]) == ("30", "0")
    proc = imapload("--script", "--port", port, "--user", "u1@bench.test", "--",
                    "SELECT INBOX", "FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)")
    assert proc.returncode == 0, proc.stderr
    fig = figures(proc.stdout)
    assert fig["c1_exists"] == fig["c2_fetch"] == str(IMAP_MESSAGES)


class YesServer:
    """Answers every IMAP command with a tagged OK and nothing else."""

    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.sendall(b"* OK yes\r\n")
        for line in conn.makefile("rb"):
            conn.sendall(line.split(b" ", 1)[0] + b" OK done\r\n")
        conn.close()

    def close(self):
        self.sock.close()


def test_imapload_does_not_score_against_a_yes_server():
    import mf as harness
    port = harness.free_port()
    srv = YesServer(port)
    try:
        proc = imapload("--port", port, "--messages", 100, "--clients", 1, "--iterations", 3)
    finally:
        srv.close()
    assert proc.returncode == 1
    fig = figures(proc.stdout)
    assert fig["errors"] == "3" and fig["ops"] == "3"   # only the LOGINs count
    assert "SELECT: 0 EXISTS" in proc.stderr
