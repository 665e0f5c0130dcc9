"""POP3 against the real daemon: Python's poplib (and a raw socket client for
byte-exact checks) over plaintext, STLS and implicit TLS; every command and
its errors, AUTH PLAIN, the cluster-wide POP3 lock ([IN-USE], refresh, stale
lock broken), DELE + QUIT deletes while a dropped connection deletes nothing,
UIDLs stable across restarts and between two nodes and equal to the uidlist's
UID/UIDVALIDITY, an adopted Dovecot maildir keeps its UIDLs, bounded output to
a slow client, and fetchmail in keep mode fetching only new mail.

Ports: 27000-27999 (this file's range; the harness's own is switched for it).
"""
import base64
import os
import poplib
import re
import shutil
import socket
import ssl
import subprocess
import time

import pytest

import mf as harness

USERS = ("a", "b", "c")
PASSWORD = "secret"


class P3:
    """A test's POP3 world: the mf environment plus nodes with POP3 listeners."""

    def __init__(self, mf):
        self.mf = mf

    def node(self, overrides=None, start=True, tls_port=True):
        n = self.mf.node(overrides, start=False)
        n.pop3_port = harness.free_port()
        n.settings["listeners"].append({"protocol": "pop3", "address": "127.0.0.1",
                                        "port": n.pop3_port})
        n.pop3s_port = None
        if tls_port:
            n.pop3s_port = harness.free_port()
            n.settings["listeners"].append({"protocol": "pop3", "address": "127.0.0.1",
                                            "port": n.pop3s_port, "tls": True})
        with open(n.config_path, "w") as f:
            f.write(harness.render_config(n.settings))
        if start:
            n.start()
            assert harness.wait_port(n.pop3_port, 10, n.proc)
        return n

    def restart(self, n):
        self.mf.restart(n)
        assert harness.wait_port(n.pop3_port, 10, n.proc)

    def deliver(self, n, user, count, size=300, start=0):
        """count messages to user over LMTP; returns their CRLF texts."""
        msgs = []
        lm = n.lmtp()
        for i in range(count):
            m = harness.make_message(marker="m%d" % (start + i), size=size,
                                     subject="msg %d" % (start + i))
            lm.sendmail("sender@remote.test", ["%s@example.test" % user], m)
            msgs.append(m)
        lm.quit()
        return msgs

    def maildir(self, user):
        return self.mf.maildir("%s@example.test" % user)

    def files(self, user):
        return harness.maildir_files(self.maildir(user))

    def uidlist(self, user):
        with open(os.path.join(self.maildir(user), "mailfleet-uidlist")) as f:
            return f.read()


@pytest.fixture
def p3(mf, monkeypatch):
    monkeypatch.setattr(harness, "PORT_MIN", 27000)
    monkeypatch.setattr(harness, "PORT_MAX", 27999)
    mf.add_domain("example.test")
    for u in USERS:
        mf.add_user("%s@example.test" % u, password=PASSWORD)
    return P3(mf)


def login(n, user="a", password=PASSWORD, timeout=30):
    p = poplib.POP3("127.0.0.1", n.pop3_port, timeout=timeout)
    p.user("%s@example.test" % user)
    p.pass_(password)
    return p


class Raw:
    """A byte-exact POP3 client."""

    def __init__(self, port, tls=False, timeout=30):
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            s = harness.insecure_tls_context().wrap_socket(s)
        self.sock = s
        self.buf = b""
        self.pos = 0
        self.greeting = self.line()

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def line(self):
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                break
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("closed; buffered %r" % self.buf[self.pos:])
            self.buf = self.buf[self.pos:] + chunk
            self.pos = 0
        line = self.buf[self.pos:end]
        self.pos = end + 2
        return line.decode("utf-8", "replace")

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.line()

    def multi(self):
        lines = []
        while True:
            ln = self.line()
            if ln == ".":
                return lines
            lines.append(ln)

    def closed(self, timeout=10):
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, ssl.SSLError):
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def plain_b64(authcid, password, authzid=""):
    return base64.b64encode(("%s\0%s\0%s" % (authzid, authcid, password)).encode()).decode()


def wait_lock_free(p3, user, timeout=10):
    path = os.path.join(p3.maildir(user), "mailfleet-pop3.lock")
    deadline = time.monotonic() + timeout
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not os.path.exists(path)


# ------------------------------------------------------------ basics

def test_capa_greeting_and_states(p3):
    n = p3.node()
    r = Raw(n.pop3_port)
    assert r.greeting.startswith("+OK")
    assert r.cmd("CAPA").startswith("+OK")
    caps = r.multi()
    for c in ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "USER",
              "SASL PLAIN", "STLS", "IMPLEMENTATION mailfleet"):
        assert c in caps, caps
    # TRANSACTION commands in AUTHORIZATION
    for c in ("STAT", "LIST", "RETR 1", "DELE 1", "UIDL", "TOP 1 1", "RSET", "NOOP"):
        reply = r.cmd(c)
        assert reply.startswith("-ERR") and "not valid in the AUTHORIZATION state" in reply, (c, reply)
    r.close()
    p3.deliver(n, "a", 1)
    p = login(n)
    caps = p.capa()
    assert "USER" not in caps and "STLS" not in caps and "UIDL" in caps
    # AUTHORIZATION commands in TRANSACTION
    for c in ("USER x", "PASS y", "STLS", "AUTH PLAIN"):
        with pytest.raises(poplib.error_proto, match="not valid in the TRANSACTION state"):
            p._shortcmd(c)
    p.quit()


def test_retrieve_list_top_uidl(p3):
    n = p3.node()
    msgs = p3.deliver(n, "a", 3, size=2000)
    p = login(n)
    count, total = p.stat()
    assert count == 3
    resp, listing, _ = p.list()
    sizes = [int(x.split()[1]) for x in listing]
    assert sum(sizes) == total
    for i in range(3):
        resp, lines, octets = p.retr(i + 1)
        # poplib undoes the dot-stuffing; octets counts the stuffed wire bytes
        body = b"\r\n".join(lines) + b"\r\n"
        assert body.endswith(msgs[i]), (body[-200:], msgs[i][-200:])
        assert len(body) == sizes[i]
        assert resp == ("+OK %d octets" % sizes[i]).encode()
        assert p.list(i + 1) == ("+OK %d %d" % (i + 1, sizes[i])).encode()
    # TOP: header, blank line, n body lines
    resp, lines, _ = p.top(2, 0)
    assert lines[-1] == b"" and b"Subject: msg 1" in lines
    resp, lines, _ = p.top(2, 2)
    assert lines[-2:] == [b"Body m1", b".leading dot line"]
    resp, lines, _ = p.top(2, 100000)
    assert lines == p.retr(2)[1]
    # UIDL list and single
    resp, uidls, _ = p.uidl()
    assert len(uidls) == 3 and len({u.split()[1] for u in uidls}) == 3
    assert p.uidl(2) == b"+OK " + uidls[1]
    assert p.noop().startswith(b"+OK")
    p.quit()


def test_dot_stuffing_on_the_wire(p3):
    n = p3.node()
    p3.deliver(n, "a", 1)
    r = Raw(n.pop3_port)
    r.cmd("USER a@example.test")
    assert r.cmd("PASS " + PASSWORD).startswith("+OK")
    assert r.cmd("RETR 1").startswith("+OK")
    lines = r.multi()
    assert "..leading dot line" in lines and "...two dots" in lines
    assert r.cmd("QUIT").startswith("+OK")
    r.close()


def test_errors(p3):
    n = p3.node({"limits": {"bad_commands_max": 30}})
    p3.deliver(n, "a", 2)
    r = Raw(n.pop3_port)
    assert r.cmd("XYZZY").startswith("-ERR Unknown command")
    assert r.cmd("PASS nouser").startswith("-ERR Send USER first")
    assert r.cmd("USER").startswith("-ERR Wrong number of arguments")
    assert r.cmd("APOP a@example.test 0123456789abcdef").startswith("-ERR APOP is not supported")
    assert r.cmd("CAPA extra").startswith("-ERR CAPA takes no arguments")
    assert r.cmd("").startswith("-ERR Empty command line")
    assert r.cmd("NO\x01OP").startswith("-ERR Control character")
    assert r.cmd("USER a@example.test") == "+OK Send your password"
    assert r.cmd("PASS wrong") == "-ERR [AUTH] Authentication failed"
    assert r.cmd("USER nobody@example.test").startswith("+OK")
    assert r.cmd("PASS " + PASSWORD) == "-ERR [AUTH] Authentication failed"
    assert r.cmd("AUTH CRAM-MD5").startswith("-ERR Unsupported authentication mechanism")
    assert r.cmd("X" * 9000).startswith("-ERR Line too long")
    r.cmd("USER a@example.test")
    assert r.cmd("PASS " + PASSWORD).startswith("+OK Logged in, 2 messages")
    for c, want in (("RETR", "-ERR Wrong number of arguments"),
                    ("RETR 0", "-ERR No such message"),
                    ("RETR 3", "-ERR No such message"),
                    ("RETR x", "-ERR Invalid message number"),
                    ("RETR -1", "-ERR Invalid message number"),
                    ("RETR 99999999999", "-ERR Invalid message number"),
                    ("TOP 1", "-ERR Wrong number of arguments"),
                    ("TOP 1 x", "-ERR Invalid number of lines"),
                    ("LIST 1 2", "-ERR Wrong number of arguments"),
                    ("LIST 7", "-ERR No such message"),
                    ("UIDL 7", "-ERR No such message"),
                    ("STAT 1", "-ERR STAT takes no arguments"),
                    ("DELE", "-ERR Wrong number of arguments")):
        assert r.cmd(c).startswith(want), c
    assert r.cmd("DELE 1").startswith("+OK")
    assert r.cmd("DELE 1").startswith("-ERR No such message")
    assert r.cmd("RETR 1").startswith("-ERR No such message")
    assert r.cmd("LIST 1").startswith("-ERR No such message")
    assert r.cmd("STAT").startswith("+OK 1 ")
    assert r.cmd("LIST").startswith("+OK")
    assert [x.split()[0] for x in r.multi()] == ["2"]
    assert r.cmd("RSET").startswith("+OK")
    assert r.cmd("STAT").startswith("+OK 2 ")
    assert r.cmd("QUIT").startswith("+OK")
    assert r.closed()
    assert len(p3.files("a")) == 2


def test_bad_commands_in_a_row_disconnect(p3):
    n = p3.node({"limits": {"bad_commands_max": 3}})
    r = Raw(n.pop3_port)
    assert r.cmd("BOGUS").startswith("-ERR")
    assert r.cmd("NOOP").startswith("-ERR")   # not valid before login: counts
    assert r.cmd("BOGUS").startswith("-ERR Unknown command")
    assert r.line().startswith("-ERR Too many bad commands")
    assert r.closed()


def test_line_too_long_then_session_goes_on(p3):
    n = p3.node()
    r = Raw(n.pop3_port)
    r.send("NOOP " + "x" * 20000 + "\r\nCAPA\r\n")
    assert r.line().startswith("-ERR Line too long")
    assert r.line().startswith("+OK Capability")
    assert "UIDL" in r.multi()
    r.close()


def test_pipelining(p3):
    n = p3.node()
    p3.deliver(n, "a", 3)
    r = Raw(n.pop3_port)
    r.send("USER a@example.test\r\nPASS %s\r\nSTAT\r\nUIDL\r\nRETR 1\r\nLIST 2\r\nDELE 3\r\n"
           "RETR 3\r\nQUIT\r\n" % PASSWORD)
    assert r.line().startswith("+OK")
    assert r.line().startswith("+OK Logged in")
    assert r.line().startswith("+OK 3 ")
    assert r.line().startswith("+OK") and len(r.multi()) == 3
    assert r.line().startswith("+OK") and "X-Mf-Test: begin" in r.multi()
    assert r.line().startswith("+OK 2 ")
    assert r.line().startswith("+OK Message 3 marked")
    assert r.line().startswith("-ERR No such message")
    assert r.line().startswith("+OK mailfleet POP3 signing off (1 messages deleted)")
    assert r.closed()
    assert len(p3.files("a")) == 2


# ------------------------------------------------------------ TLS and AUTH

def test_stls(p3):
    n = p3.node()
    p3.deliver(n, "a", 1)
    p = poplib.POP3("127.0.0.1", n.pop3_port, timeout=30)
    p.stls(context=harness.insecure_tls_context())
    assert "STLS" not in p.capa()
    with pytest.raises(poplib.error_proto, match="TLS is already active"):
        p._shortcmd("STLS")
    p.user("a@example.test")
    p.pass_(PASSWORD)
    assert p.stat()[0] == 1
    p.quit()


def test_stls_discards_plaintext_after_it(p3):
    n = p3.node()
    r = Raw(n.pop3_port)
    r.send("STLS\r\nUSER injected@example.test\r\n")
    assert r.line() == "+OK Begin TLS negotiation"
    assert r.buf[r.pos:] == b""
    tls = harness.insecure_tls_context().wrap_socket(r.sock)
    r.sock = tls
    # the injected USER was dropped: PASS has no USER to go with
    assert r.cmd("PASS " + PASSWORD).startswith("-ERR Send USER first")
    r.close()


def test_pop3s_implicit_tls(p3):
    n = p3.node({"limits": {"output_queue_max": "64K"}})
    p3.deliver(n, "a", 2)
    # a message far bigger than the output queue, streamed through TLS
    big = b"Subject: big\n\n" + b"".join(b"line %07d .\n.dot\n" % i for i in range(100000))
    write_msg(p3.maildir("a"), "new", "1900000000.M1P1.big,S=%d" % len(big), big)
    p = poplib.POP3_SSL("127.0.0.1", n.pop3s_port, context=harness.insecure_tls_context(),
                        timeout=30)
    assert "STLS" not in p.capa()
    p.user("a@example.test")
    p.pass_(PASSWORD)
    assert p.stat()[0] == 3
    assert len(p.retr(2)[1]) > 5
    resp, lines, octets = p.retr(3)
    assert b"\n".join(lines) + b"\n" == big
    p.quit()


def test_require_tls(p3):
    n = p3.node({"pop3": {"require_tls": True}})
    r = Raw(n.pop3_port)
    r.cmd("CAPA")
    caps = r.multi()
    assert "USER" not in caps and "SASL PLAIN" not in caps and "STLS" in caps
    assert r.cmd("USER a@example.test").startswith("-ERR [AUTH] Plaintext authentication is disallowed")
    assert r.cmd("AUTH PLAIN " + plain_b64("a@example.test", PASSWORD)).startswith("-ERR [AUTH]")
    r.close()
    p = poplib.POP3("127.0.0.1", n.pop3_port, timeout=30)
    p.stls(context=harness.insecure_tls_context())
    p.user("a@example.test")
    p.pass_(PASSWORD)
    p.quit()


def test_auth_plain(p3):
    n = p3.node()
    p3.deliver(n, "a", 1)
    r = Raw(n.pop3_port)
    assert r.cmd("AUTH").startswith("+OK") and r.multi() == ["PLAIN"]
    # continuation, cancelled
    assert r.cmd("AUTH PLAIN") == "+ "
    assert r.cmd("*") == "-ERR Authentication cancelled"
    # continuation, bad base64
    assert r.cmd("AUTH PLAIN") == "+ "
    assert r.cmd("not base64!").startswith("-ERR [AUTH] Invalid base64")
    # wrong password, initial response
    assert r.cmd("AUTH PLAIN " + plain_b64("a@example.test", "nope")) == \
        "-ERR [AUTH] Authentication failed"
    # authorization as someone else
    assert r.cmd("AUTH PLAIN " + plain_b64("a@example.test", PASSWORD, "b@example.test")) \
        .startswith("-ERR [AUTH] Authorization as another user")
    # continuation, good
    assert r.cmd("AUTH PLAIN") == "+ "
    assert r.cmd(plain_b64("a@example.test", PASSWORD)).startswith("+OK Logged in, 1 messages")
    assert r.cmd("QUIT").startswith("+OK")
    r.close()
    # initial response with authzid equal to authcid
    r = Raw(n.pop3_port)
    assert r.cmd("AUTH PLAIN " + plain_b64("a@example.test", PASSWORD, "a@example.test")) \
        .startswith("+OK Logged in")
    assert r.cmd("QUIT").startswith("+OK")
    r.close()


def test_pop3_access_switch(p3):
    n = p3.node()
    p3.mf.ctl("user", "access", "b@example.test", "imap=on", "pop3=off")
    time.sleep(1.5)   # the daemon picks the change up within a second
    r = Raw(n.pop3_port)
    r.cmd("USER b@example.test")
    assert r.cmd("PASS " + PASSWORD) == "-ERR [AUTH] POP3 access is disabled for this account"
    r.close()
    p3.mf.ctl("user", "access", "b@example.test", "imap=on", "pop3=on")
    time.sleep(1.5)
    login(n, "b").quit()


# ------------------------------------------------------------ lock, DELE, UPDATE

def test_in_use_for_a_second_session(p3):
    n = p3.node()
    p3.deliver(n, "a", 1)
    first = login(n)
    r = Raw(n.pop3_port)
    r.cmd("USER a@example.test")
    assert r.cmd("PASS " + PASSWORD) == \
        "-ERR [IN-USE] The mailbox is in use by another POP3 session"
    # still in AUTHORIZATION: another user is fine on the same connection
    r.cmd("USER b@example.test")
    assert r.cmd("PASS " + PASSWORD).startswith("+OK Logged in")
    assert r.cmd("QUIT").startswith("+OK")
    r.close()
    first.quit()
    login(n).quit()


def test_in_use_across_two_nodes(p3):
    n1 = p3.node()
    n2 = p3.node()
    p3.deliver(n1, "a", 1)
    first = login(n1)
    r = Raw(n2.pop3_port)
    r.cmd("USER a@example.test")
    assert r.cmd("PASS " + PASSWORD).startswith("-ERR [IN-USE]")
    r.close()
    first.quit()
    login(n2).quit()


def test_dele_quit_deletes(p3):
    n = p3.node()
    p3.deliver(n, "a", 4)
    before = p3.files("a")
    p = login(n)
    uidls = [u.split()[1] for u in p.uidl()[1]]
    p.dele(1)
    p.dele(3)
    # nothing is deleted before QUIT
    assert p3.files("a") == before
    assert p.quit() == b"+OK mailfleet POP3 signing off (2 messages deleted)"
    after = p3.files("a")
    assert len(after) == 2
    assert not os.path.exists(os.path.join(p3.maildir("a"), "mailfleet-pop3.lock"))
    p = login(n)
    assert [u.split()[1] for u in p.uidl()[1]] == [uidls[1], uidls[3]]
    p.quit()
    assert len(p3.uidlist("a").splitlines()) == 1 + 2


def test_dele_dropped_connection_deletes_nothing(p3):
    n = p3.node()
    p3.deliver(n, "a", 3)
    before = p3.files("a")
    r = Raw(n.pop3_port)
    r.cmd("USER a@example.test")
    assert r.cmd("PASS " + PASSWORD).startswith("+OK")
    assert r.cmd("DELE 1").startswith("+OK")
    assert r.cmd("DELE 2").startswith("+OK")
    r.close()   # no QUIT
    assert wait_lock_free(p3, "a"), "lock not released after the connection dropped"
    assert p3.files("a") == before
    p = login(n)
    assert p.stat()[0] == 3
    p.quit()


def test_dele_killed_during_session_deletes_nothing(p3):
    n = p3.node()
    p3.deliver(n, "a", 2)
    p = login(n)
    p.dele(1)
    n.kill()
    p.close()
    assert len(p3.files("a")) == 2


def test_stale_lock_is_broken(p3):
    n = p3.node({"pop3": {"lock_timeout": 10}})
    p3.deliver(n, "a", 1)
    lock = os.path.join(p3.maildir("a"), "mailfleet-pop3.lock")
    with open(lock, "w") as f:
        f.write("deadnode 1 1 1\n")
    # fresh: in use
    r = Raw(n.pop3_port)
    r.cmd("USER a@example.test")
    assert r.cmd("PASS " + PASSWORD).startswith("-ERR [IN-USE]")
    # older than lock_timeout by the store's clock: broken
    old = time.time() - 60
    os.utime(lock, (old, old))
    r.cmd("USER a@example.test")
    assert r.cmd("PASS " + PASSWORD).startswith("+OK Logged in")
    assert r.cmd("QUIT").startswith("+OK")
    r.close()
    assert not os.path.exists(lock)


def test_lock_is_refreshed_while_the_session_lives(p3):
    n = p3.node({"pop3": {"lock_timeout": 10}})
    p3.deliver(n, "a", 1)
    p = login(n)
    lock = os.path.join(p3.maildir("a"), "mailfleet-pop3.lock")
    first_mtime = os.stat(lock).st_mtime
    time.sleep(13)   # longer than lock_timeout, idle
    assert os.stat(lock).st_mtime > first_mtime
    r = Raw(n.pop3_port)
    r.cmd("USER a@example.test")
    assert r.cmd("PASS " + PASSWORD).startswith("-ERR [IN-USE]")
    r.close()
    assert p.stat()[0] == 1
    p.quit()


# ------------------------------------------------------------ UIDLs

def uidlist_records(text):
    """{filename base: uid}, uidvalidity"""
    lines = text.splitlines()
    validity = int(re.search(r" V(\d+)", lines[0]).group(1))
    recs = {}
    for ln in lines[1:]:
        m = re.match(r"(\d+) .*?:(.*)$", ln)
        recs[m.group(2).split(":2,")[0]] = int(m.group(1))
    return recs, validity


def test_uidl_is_uid_and_uidvalidity_and_survives_restarts(p3):
    n = p3.node()
    p3.deliver(n, "a", 5)
    p = login(n)
    uidls = p.uidl()[1]
    p.quit()
    recs, validity = uidlist_records(p3.uidlist("a"))
    want = sorted("%08x%08x" % (uid, validity) for uid in recs.values())
    assert sorted(u.split()[1].decode() for u in uidls) == want
    p3.restart(n)
    p = login(n)
    assert p.uidl()[1] == uidls
    p.quit()
    # a second node on the same store sees the same
    n2 = p3.node()
    p = login(n2)
    assert p.uidl()[1] == uidls
    p.quit()


def test_uidl_identical_between_two_nodes_with_new_mail(p3):
    n1 = p3.node()
    n2 = p3.node()
    p3.deliver(n1, "a", 3)
    p3.deliver(n2, "a", 3, start=3)
    p = login(n2)
    u2 = p.uidl()[1]
    p.quit()
    p = login(n1)
    u1 = p.uidl()[1]
    p.quit()
    assert u1 == u2 and len(u1) == 6


def test_uidl_format_setting(p3):
    n = p3.node({"pop3": {"uidl_format": "%v.%u"}})
    p3.deliver(n, "a", 2)
    p = login(n)
    uidls = [u.split()[1].decode() for u in p.uidl()[1]]
    p.quit()
    _, validity = uidlist_records(p3.uidlist("a"))
    assert uidls == ["%d.1" % validity, "%d.2" % validity]


def test_bad_uidl_format_is_a_config_error(p3, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text('pop3 = { uidl_format = "%v"; };\n')
    proc = subprocess.run([harness.MAILFLEETD, "--config", str(conf), "--check-config"],
                          capture_output=True, text=True, env=harness.san_env())
    assert proc.returncode != 0
    assert "pop3.uidl_format" in proc.stderr + proc.stdout


def write_msg(maildir, sub, name, body):
    path = os.path.join(maildir, sub, name)
    with open(path, "wb") as f:
        f.write(body)
    return path


def test_adopted_dovecot_maildir_keeps_uidls(p3):
    n = p3.node()
    md = p3.maildir("c")
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    bodies = {}
    names = []
    for i, uid in enumerate((17, 23, 42)):
        body = b"From: x@y.test\nSubject: old %d\n\nbody %d\n" % (i, i)
        name = "1500000%03d.M1P2.oldhost,S=%d,W=%d" % (i, len(body), len(body) + 4)
        write_msg(md, "cur", name + ":2,S", body)
        bodies[uid] = body
        names.append(name)
    with open(os.path.join(md, "dovecot-uidlist"), "w") as f:
        f.write("3 V1234567890 N50 G0123456789abcdef0123456789abcdef\n")
        f.write("17 :%s:2,S\n" % names[0])
        f.write("23 W40 :%s:2,S\n" % names[1])
        # a UIDL kept from the server before Dovecot (P) wins
        f.write("42 Pold-server-uidl-42 :%s:2,S\n" % names[2])
    p = login(n, "c")
    uidls = [u.split()[1].decode() for u in p.uidl()[1]]
    sizes = [int(x.split()[1]) for x in p.list()[1]]
    r1 = p.retr(1)
    p.quit()
    assert uidls == ["%08x%08x" % (17, 1234567890), "%08x%08x" % (23, 1234567890),
                     "old-server-uidl-42"]
    assert sizes == [len(bodies[17]) + 4, len(bodies[23]) + 4, len(bodies[42]) + 4]
    assert b"\r\n".join(r1[1]) + b"\r\n" == bodies[17].replace(b"\n", b"\r\n")


def test_sizes_are_cached_in_the_uidlist(p3):
    """Files without ,W= in their name are read once; their wire size is then
    kept in the uidlist (W field) and used at later logins."""
    n = p3.node()
    md = p3.maildir("a")
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    bodies = [b"Subject: %d\n\n%s" % (i, b"line\n" * (i + 1)) for i in range(3)]
    for i, body in enumerate(bodies):
        write_msg(md, "new", "1700000000.M%dP1.t,S=%d" % (i, len(body)), body)
    p = login(n)
    sizes = [int(x.split()[1]) for x in p.list()[1]]
    p.quit()
    assert sizes == [len(b) + b.count(b"\n") for b in bodies]
    ws = [int(w) for w in re.findall(r"(?m)^\d+ W(\d+) ", p3.uidlist("a"))]
    assert ws == sizes
    # the cache is what LIST reports: a file changed behind the store's back
    # (same name) keeps its cached size
    with open(p3.files("a")[0], "ab") as f:
        f.write(b"appended\n")
    p = login(n)
    assert [int(x.split()[1]) for x in p.list()[1]] == sizes
    p.quit()


def test_wire_size_from_file_name(p3):
    """,W=<n> in a file name (as written at delivery, or by Dovecot) is the size."""
    n = p3.node()
    md = p3.maildir("a")
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    write_msg(md, "cur", "1700000000.M1P1.t,S=10,W=12345:2,S", b"Subject: x\n")
    p = login(n)
    assert p.list(1) == b"+OK 1 12345"
    p.quit()


def test_lz4_store(p3):
    n = p3.node({"store": {"compress_lz4": True}})
    msgs = p3.deliver(n, "a", 2, size=12000)
    with open(p3.files("a")[0], "rb") as f:
        assert f.read(4) == b"\x04\x22\x4d\x18"
    p = login(n)
    sizes = [int(x.split()[1]) for x in p.list()[1]]
    for i in range(2):
        body = b"\r\n".join(p.retr(i + 1)[1]) + b"\r\n"
        assert len(body) == sizes[i] and body.endswith(msgs[i])
    p.quit()


# ------------------------------------------------------------ bounded output

def test_slow_client_big_message_and_listing(p3):
    n = p3.node({"limits": {"output_queue_max": "64K", "message_size_max": "20M"}})
    head = harness.make_message(marker="big")
    pad = b"".join(b"%06d abcdefghijklmnopqrstuvwxyz0123456789\r\n.dotted line %06d\r\n" % (i, i)
                   for i in range(6 * 1024 * 1024 // 64))
    big = head + pad
    lm = n.lmtp()
    lm.sendmail("s@remote.test", ["a@example.test"], big)
    lm.quit()
    # many small messages for a long UIDL listing (bigger than the queue)
    md = p3.maildir("a")
    for i in range(3000):
        write_msg(md, "new", "1900000000.M%dP1.bulk,S=20" % i, b"Subject: s\n\nbody....\n")
    r = Raw(n.pop3_port)
    r.cmd("USER a@example.test")
    assert r.cmd("PASS " + PASSWORD).startswith("+OK Logged in, 3001 messages")
    r.send("RETR 1\r\nUIDL\r\nLIST\r\n")
    time.sleep(2)   # the client does not read; the server must not give up or buffer it all
    assert n.running()
    with open("/proc/%d/status" % n.pid) as f:
        rss_kb = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    assert r.line().startswith("+OK")
    body = "\r\n".join(r.multi()) + "\r\n"
    assert body.endswith(big.decode().replace("\r\n.", "\r\n..")), "message corrupted"
    assert r.line().startswith("+OK") and len(r.multi()) == 3001
    assert r.line().startswith("+OK") and len(r.multi()) == 3001
    assert r.cmd("QUIT").startswith("+OK")
    r.close()
    assert rss_kb < 400 * 1024


# ------------------------------------------------------------ fetchmail

def run_fetchmail(n, home, mda_dir, idfile):
    rc = os.path.join(home, "fetchmailrc")
    with open(rc, "w") as f:
        f.write('poll 127.0.0.1 with proto POP3 port %d uidl\n'
                '  user "a@example.test" there with password "%s" is "root" here\n'
                '  keep sslproto "" mda "/bin/sh -c \'cat > %s/msg.$$.$(date +%%s%%N)\'"\n'
                % (n.pop3_port, PASSWORD, mda_dir))
    os.chmod(rc, 0o600)
    proc = subprocess.run(["fetchmail", "-f", rc, "-i", idfile, "--nosyslog", "-v",
                           "--nodetach", "--norewrite"],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, HOME=home, FETCHMAILHOME=home))
    # 0: mail fetched, 1: no new mail
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc


def test_fetchmail_keep_fetches_only_new_mail(p3, tmp_path):
    n = p3.node()
    p3.deliver(n, "a", 4)
    home = str(tmp_path / "fmhome")
    got = str(tmp_path / "got")
    os.makedirs(home)
    os.makedirs(got)
    idfile = os.path.join(home, ".fetchids")
    run_fetchmail(n, home, got, idfile)
    assert len(os.listdir(got)) == 4
    assert len(p3.files("a")) == 4          # keep: nothing deleted
    p3.restart(n)
    proc = run_fetchmail(n, home, got, idfile)
    assert proc.returncode == 1, proc.stdout + proc.stderr   # nothing new
    assert len(os.listdir(got)) == 4
    p3.deliver(n, "a", 2, start=4)
    run_fetchmail(n, home, got, idfile)
    files = os.listdir(got)
    assert len(files) == 6
    subjects = set()
    for fn in files:
        with open(os.path.join(got, fn), "rb") as f:
            subjects.add(re.search(rb"Subject: (msg \d+)", f.read()).group(1))
    assert subjects == {b"msg %d" % i for i in range(6)}
    assert len(p3.files("a")) == 6


# ------------------------------------------------------------ login fast path, read-ahead

def test_login_without_listing_still_sees_every_change(p3):
    n = p3.node()
    p3.deliver(n, "a", 3)
    login(n).quit()                      # full sync, marks when it began
    time.sleep(1.3)
    p = login(n)                         # new/ and cur/ unchanged: the uidlist is used as is
    first = p.uidl()[1]
    p.quit()
    assert os.path.exists(os.path.join(p3.maildir("a"), "mailfleet-pop3.synced"))
    p3.deliver(n, "a", 1, start=3)       # new/ changes
    p = login(n)
    assert p.uidl()[1][:3] == first and p.stat()[0] == 4
    p.quit()
    time.sleep(1.3)
    # another client (IMAP) sets a flag (rename in cur/) and expunges a message
    files = p3.files("a")
    cur = os.path.join(p3.maildir("a"), "cur")
    os.makedirs(cur, exist_ok=True)
    moved = os.path.join(cur, os.path.basename(files[0]).split(":")[0] + ":2,S")
    os.rename(files[0], moved)
    os.unlink(files[1])
    p = login(n)
    uidls = p.uidl()[1]
    assert p.stat()[0] == 3
    body = b"\r\n".join(p.retr(1)[1]) + b"\r\n"   # the renamed file is found
    p.quit()
    with open(moved, "rb") as f:
        assert body == f.read().replace(b"\n", b"\r\n")
    assert len(uidls) == 3


def test_retr_in_order_with_read_ahead(p3):
    n = p3.node()
    msgs = [harness.make_message(marker="ra%d" % i, size=500 + (i * 3571) % 40000,
                                 subject="msg %d" % i) for i in range(40)]
    md = p3.maildir("a")
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    for i, m in enumerate(msgs):
        body = harness.lf(m)
        write_msg(md, "new", "1700000000.M%03dP1.t,S=%d" % (i, len(body)), body)
    r = Raw(n.pop3_port)
    r.cmd("USER a@example.test")
    assert r.cmd("PASS " + PASSWORD).startswith("+OK Logged in, 40 messages")
    assert r.cmd("LIST").startswith("+OK")
    sizes = [int(x.split()[1]) for x in r.multi()]
    assert r.cmd("DELE 5").startswith("+OK")
    order = [i for i in range(1, 41) if i != 5]
    r.send("".join("RETR %d\r\n" % i for i in order) + "TOP 7 0\r\nRETR 3\r\n")
    got = {}
    for i in order:
        line = r.line()
        assert line == "+OK %d octets" % sizes[i - 1], (i, line)
        got[i] = "\r\n".join(x[1:] if x.startswith("..") else x for x in r.multi()) + "\r\n"
        assert len(got[i]) == sizes[i - 1]
        assert got[i].encode() == msgs[i - 1], i
    assert r.line().startswith("+OK") and "Subject: msg 6" in r.multi()
    assert r.line().startswith("+OK")
    assert "\r\n".join(x[1:] if x.startswith("..") else x for x in r.multi()) + "\r\n" == got[3]
    assert r.cmd("QUIT").startswith("+OK mailfleet POP3 signing off (1 messages deleted)")
    r.close()
