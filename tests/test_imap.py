"""test_imap.py: the IMAP server against the real daemon, with Python's imaplib,
a raw socket client for byte-exact cases (literals split across writes,
pipelining, malformed input), curl, and LMTP deliveries that an idling
session must see.

Each test gets its own node (directory with example.test users a..d, store,
LMTP and IMAP listeners on harness ports)."""
import base64
import imaplib
import re
import socket
import ssl
import subprocess
import threading
import time

import pytest

import mf as harness

USER, PASSWORD = "a@example.test", "secret"


def imap_node(mf, **settings):
    """A started node with an IMAP listener; returns (node, port)."""
    node = mf.node(start=False)
    port = harness.free_port()
    node.settings["listeners"].append({"protocol": "imap", "address": "127.0.0.1", "port": port})
    node.settings = harness.merge_settings(node.settings, settings)
    with open(node.config_path, "w") as f:
        f.write(harness.render_config(node.settings))
    node.start()
    assert harness.wait_port(port, 10)
    return node, port


@pytest.fixture
def imap(mf, domain):
    node, port = imap_node(mf)
    node.imap_port = port
    return node


def login(node, user=USER, password=PASSWORD):
    m = imaplib.IMAP4("127.0.0.1", node.imap_port, timeout=30)
    typ, _ = m.login(user, password)
    assert typ == "OK"
    return m


def message(subject="hello", body="body line\r\nsecond line\r\n", extra=""):
    return ("From: Sender <sender@remote.test>\r\nTo: a@example.test\r\n%s"
            "Subject: %s\r\nMessage-ID: <%s@mf.test>\r\n\r\n%s" % (
                extra, subject, subject.replace(" ", "."), body)).encode()


class Raw:
    """A byte-exact IMAP client."""

    def __init__(self, port, timeout=15):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.greeting = self.line()

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; buffered %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def until_tag(self, tag):
        """Lines (literals inlined) up to and including the tagged one."""
        lines = []
        while True:
            line = self.line()
            m = re.search(rb"\{(\d+)\}$", line)
            if m:
                line += b"\r\n" + self.read_exact(int(m.group(1))) + self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def cmd(self, tag, text):
        self.send(tag + b" " + text + b"\r\n")
        return self.until_tag(tag)

    def closed(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self):
        self.sock.close()


def raw_login(node):
    r = Raw(node.imap_port)
    assert r.cmd(b"L", b"LOGIN a@example.test secret")[-1].startswith(b"L OK")
    return r


# ---------------------------------------------------------------- step 1: session

def test_greeting_capability_and_noauth_commands(imap):
    r = Raw(imap.imap_port)
    assert r.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    lines = r.cmd(b"a1", b"CAPABILITY")
    caps = lines[0].split()
    assert lines[0].startswith(b"* CAPABILITY ")
    for cap in (b"IMAP4rev1", b"IDLE", b"UIDPLUS", b"MOVE", b"SASL-IR", b"AUTH=PLAIN", b"STARTTLS",
                b"LITERAL+", b"SPECIAL-USE", b"NAMESPACE", b"ID", b"ENABLE", b"UNSELECT",
                b"CONDSTORE", b"QRESYNC", b"IMAP4rev2", b"SEARCHRES", b"BINARY"):
        assert cap in caps
    # UTF8=ACCEPT only with imap { utf8_accept } (test_imap_utf8.py)
    assert b"UTF8=ACCEPT" not in caps
    # LITERAL+ only: it includes LITERAL- (RFC 7888 4)
    assert b"LITERAL-" not in caps
    assert r.cmd(b"a2", b"NOOP")[-1] == b"a2 OK NOOP completed"
    assert r.cmd(b"a3", b'ID ("name" "test")')[0] == b'* ID ("name" "mailfleet")'
    assert r.cmd(b"a4", b"SELECT INBOX")[-1].startswith(b"a4 BAD")
    assert r.cmd(b"a5", b"LIST \"\" *")[-1].startswith(b"a5 BAD")
    lines = r.cmd(b"a6", b"LOGOUT")
    assert lines[0].startswith(b"* BYE") and lines[-1].startswith(b"a6 OK")
    assert r.closed()


def test_login_and_wrong_password(imap):
    m = imaplib.IMAP4("127.0.0.1", imap.imap_port, timeout=30)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.login(USER, "wrong")
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.login("nobody@example.test", "secret")
    typ, data = m.login(USER, PASSWORD)
    assert typ == "OK" and b"CAPABILITY" in data[0] and b"AUTH=PLAIN" not in data[0]
    m.logout()


def test_authenticate_plain_continuation_and_sasl_ir(imap):
    token = base64.b64encode(b"\0a@example.test\0secret")
    r = Raw(imap.imap_port)
    r.send(b"a1 AUTHENTICATE PLAIN\r\n")
    assert r.line() == b"+ "
    r.send(token + b"\r\n")
    assert r.until_tag(b"a1")[-1].startswith(b"a1 OK [CAPABILITY ")
    r.close()

    r = Raw(imap.imap_port)
    assert r.cmd(b"b1", b"AUTHENTICATE PLAIN " + token)[-1].startswith(b"b1 OK")
    assert r.cmd(b"b2", b"NAMESPACE")[0] == b'* NAMESPACE (("" "/")) NIL NIL'
    assert r.cmd(b"b3", b"ENABLE CONDSTORE X-UNKNOWN")[0] == b"* ENABLED CONDSTORE"
    # enabled once: not named again
    assert r.cmd(b"b4", b"ENABLE CONDSTORE")[0] == b"* ENABLED"
    r.close()

    r = Raw(imap.imap_port)
    r.send(b"c1 AUTHENTICATE PLAIN\r\n")
    assert r.line() == b"+ "
    r.send(b"*\r\n")
    assert r.until_tag(b"c1")[-1].startswith(b"c1 BAD")
    bad = base64.b64encode(b"\0a@example.test\0nope")
    assert r.cmd(b"c2", b"AUTHENTICATE PLAIN " + bad)[-1].startswith(b"c2 NO [AUTHENTICATIONFAILED]")
    assert r.cmd(b"c3", b"AUTHENTICATE CRAM-MD5")[-1].startswith(b"c3 NO")
    r.close()


def test_imap_disabled_user(imap):
    imap_env_ctl = harness.ctl
    imap_env_ctl(imap.settings["directory"]["path"], "user", "access", "b@example.test", "imap=off")
    time.sleep(0.2)
    m = imaplib.IMAP4("127.0.0.1", imap.imap_port, timeout=30)
    with pytest.raises(imaplib.IMAP4.error, match="disabled"):
        m.login("b@example.test", "secret")
    m.logout()


def test_starttls(imap):
    m = imaplib.IMAP4("127.0.0.1", imap.imap_port, timeout=30)
    typ, _ = m.starttls(ssl_context=harness.insecure_tls_context())
    assert typ == "OK"
    typ, caps = m.capability()
    assert b"STARTTLS" not in caps[0]
    m.login(USER, PASSWORD)
    assert m.select("INBOX")[0] == "OK"
    m.logout()


def test_bad_commands_in_a_row_disconnect(imap):
    r = Raw(imap.imap_port)
    for i in range(9):
        assert r.cmd(b"x%d" % i, b"FROBNICATE")[-1].startswith(b"x%d BAD" % i)
    r.send(b"x9 FROBNICATE\r\n")
    lines = r.until_tag(b"x9")
    assert lines[-1].startswith(b"x9 BAD")
    assert r.line().startswith(b"* BYE")
    assert r.closed()


def test_line_too_long_and_malformed(imap):
    r = raw_login(imap)
    assert r.cmd(b"m1", b'SELECT "unterminated')[-1].startswith(b"m1 BAD")
    assert r.cmd(b"m2", b"FETCH 1 (FLAGS")[-1].startswith(b"m2 BAD")
    assert r.cmd(b"m3", b"SELECT INBOX")[-1].startswith(b"m3 OK")
    assert r.cmd(b"m4", b"FETCH abc FLAGS")[-1].startswith(b"m4 BAD")
    assert r.cmd(b"m5", b"FETCH 1 (FLAGS)")[-1].startswith(b"m5 BAD")   # empty mailbox
    assert r.cmd(b"m6", b"STORE 1:* FROB (\\Seen)")[-1].startswith(b"m6 BAD")
    r.send(b"m7 NOOP " + b"x" * 70000 + b"\r\n")
    lines = r.until_tag(b"m7") if not r.closed(timeout=0.5) else [b"m7 BAD closed"]
    assert lines[-1].startswith(b"m7 BAD") or lines[-1].startswith(b"* BYE")


# ---------------------------------------------------------------- step 2: folders

def test_list_default_folders_special_use(imap):
    m = login(imap)
    typ, data = m.list()
    assert typ == "OK"
    listed = {re.search(rb'"([^"]*)"$', d).group(1): d for d in data}
    assert set(listed) == {b"INBOX", b"Drafts", b"Sent", b"Trash", b"Junk", b"Archive"}
    assert b"\\Drafts" in listed[b"Drafts"] and b"\\Sent" in listed[b"Sent"]
    assert b"\\Trash" in listed[b"Trash"] and b"\\Junk" in listed[b"Junk"]
    assert b"\\Archive" in listed[b"Archive"] and b"\\HasNoChildren" in listed[b"INBOX"]
    typ, data = m.lsub()
    assert len(data) == 6
    # the hierarchy delimiter query
    typ, data = m.list('""', '""')
    assert data == [b'(\\Noselect) "/" ""']
    m.logout()


def test_create_delete_rename_children_subscriptions(imap):
    m = login(imap)
    assert m.create("Work/Projects/2026")[0] == "OK"
    assert m.create("Work")[0] == "NO"            # exists (made as a superior)
    assert m.create("Bad.Name")[0] == "NO"
    typ, data = m.list('""', "Work*")
    names = [d.split(b'"/" ')[1] for d in data]
    assert names == [b'"Work"', b'"Work/Projects"', b'"Work/Projects/2026"']
    assert b"\\HasChildren" in data[0] and b"\\HasNoChildren" in data[2]
    typ, data = m.list('""', "%")
    assert b'"Work/Projects"' not in b" ".join(data) and b'"Work"' in b" ".join(data)
    assert m.delete("Work")[0] == "OK"   # children stay, Work is \Noselect
    assert m.rename("Work", "Job")[0] == "OK"
    typ, data = m.list('""', "*")
    joined = b" ".join(data)
    assert b'"Job/Projects/2026"' in joined and b'"Work' not in joined
    assert m.subscribe("Job/Projects")[0] == "OK"
    typ, data = m.lsub('""', "Job*")
    assert data == [b'() "/" "Job/Projects"']
    typ, data = m._simple_command("LIST", "(SUBSCRIBED)", '""', "*")
    typ, data = m._untagged_response(typ, data, "LIST")
    sub = [d for d in data if b"Job/Projects" in d]
    assert sub and b"\\Subscribed" in sub[0]
    assert len(data) == 7
    assert m.unsubscribe("Job/Projects")[0] == "OK"
    assert m.delete("Job/Projects/2026")[0] == "OK"
    assert m.delete("Nope")[0] == "NO"
    assert m.delete("INBOX")[0] == "NO"
    m.logout()


def test_list_extended_return_options(imap):
    m = login(imap)
    typ, data = m._simple_command("LIST", '""', "(INBOX Sent)", "RETURN", "(SUBSCRIBED CHILDREN SPECIAL-USE)")
    typ, data = m._untagged_response(typ, data, "LIST")
    assert len(data) == 2
    assert all(b"\\Subscribed" in d for d in data)
    typ, data = m._simple_command("LIST", "(SPECIAL-USE)", '""', "*")
    typ, data = m._untagged_response(typ, data, "LIST")
    assert len(data) == 5
    m.logout()


def test_status(imap):
    m = login(imap)
    for i in range(3):
        m.append("Drafts", r"(\Seen)" if i == 0 else None, None, message("s%d" % i))
    typ, data = m.status("Drafts", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT SIZE)")
    assert typ == "OK"
    text = data[0].decode()
    assert "MESSAGES 3" in text and "UIDNEXT 4" in text and "UNSEEN 2" in text
    size = sum(len(message("s%d" % i)) for i in range(3))
    assert "SIZE %d" % size in text
    assert m.status("Nope", "(MESSAGES)")[0] == "NO"
    m.logout()


# ---------------------------------------------------------------- step 3: select and fetch

MULTIPART = (b"From: =?utf-8?q?J=C3=B6rg?= <joerg@remote.test>\r\nTo: a@example.test, b@example.test\r\n"
             b"Subject: multi\r\nDate: Mon, 2 Mar 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n"
             b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nfirst part\r\n"
             b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
             b"AAECAw==\r\n--XX--\r\n")


def test_select_fetch_items(imap, mf):
    m = login(imap)
    msg = message("first")
    # an LMTP delivery (stored with LF) and an APPEND
    res = harness.deliver(imap, "s@remote.test", ["a@example.test"], msg)
    assert res["a@example.test"][0] == 250
    typ, data = m.append("INBOX", None, None, MULTIPART)
    assert typ == "OK" and b"APPENDUID" in data[0]
    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"2"]
    assert m.untagged_responses.get("UIDVALIDITY")
    assert m.untagged_responses.get("UIDNEXT") == [b"3"]
    assert b"\\Seen" in m.untagged_responses["PERMANENTFLAGS"][0]

    typ, data = m.fetch("1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE)")
    stored = open(harness.maildir_files(mf.maildir(USER))[0], "rb").read()
    assert re.search(rb"RFC822.SIZE %d" % (len(stored) + stored.count(b"\n")), data[0])
    assert re.search(rb'INTERNALDATE "\d\d-\w\w\w-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"', data[0])
    assert b"RFC822.SIZE %d" % len(MULTIPART) in data[1]

    typ, data = m.fetch("2", "(ENVELOPE BODYSTRUCTURE)")
    assert b'"multi"' in data[0] and b'"=?utf-8?q?J=C3=B6rg?="' in data[0]
    assert b'("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 10 0 ' in data[0]
    assert b'"mixed" ("boundary" "XX")' in data[0]

    typ, data = m.fetch("2", "(BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[HEADER.FIELDS (Subject To)] "
                             "BODY.PEEK[HEADER.FIELDS.NOT (Subject To From Date MIME-Version Content-Type)])")
    parts = dict((re.search(rb"(BODY\[[^\]]*\])", d[0]).group(1), d[1]) for d in data if isinstance(d, tuple))
    assert parts[b"BODY[1]"] == b"first part"
    assert parts[b"BODY[2.MIME]"].startswith(b"Content-Type: application/octet-stream\r\n")
    assert parts[b"BODY[HEADER.FIELDS (Subject To)]"] == \
        b"To: a@example.test, b@example.test\r\nSubject: multi\r\n\r\n"
    assert parts[b"BODY[HEADER.FIELDS.NOT (Subject To From Date MIME-Version Content-Type)]"] == b"\r\n"

    typ, data = m.fetch("2", "(BODY.PEEK[]<10.20> BODY.PEEK[TEXT] RFC822.HEADER)")
    assert data[0][1] == MULTIPART[10:30]
    assert data[1][1] == MULTIPART[MULTIPART.index(b"\r\n\r\n") + 4:]
    assert data[2][1] == MULTIPART[:MULTIPART.index(b"\r\n\r\n") + 4]
    typ, data = m.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in data[0]
    # a non-PEEK body fetch sets \Seen and reports it
    typ, data = m.fetch("1", "(BODY[])")
    assert data[0][1] == msg.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")[-len(msg):] or \
        data[0][1].endswith(msg)
    assert b"\\Seen" in data[1] or b"\\Seen" in data[0][0]
    typ, data = m.fetch("1", "(FLAGS)")
    assert b"\\Seen" in data[0]
    typ, data = m.uid("FETCH", "2", "(RFC822.SIZE)")
    assert re.match(rb"2 \(UID 2 RFC822.SIZE \d+\)", data[0])
    typ, data = m.fetch("1", "(RFC822.TEXT)")
    assert data[0][1].startswith(b"body line\r\n")
    m.logout()


def test_examine_is_read_only(imap):
    m = login(imap)
    m.append("INBOX", None, None, message("ro"))
    typ, data = m.select("INBOX", readonly=True)
    assert typ == "OK"
    typ, data = m.fetch("1", "(BODY[])")
    typ, data = m.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in data[0]
    assert m.store("1", "+FLAGS", "(\\Seen)")[0] == "NO"
    m.logout()


@pytest.mark.parametrize("queue_max", [16 * 1024, 256 * 1024])
def test_big_message_streamed_in_pieces(mf, domain, queue_max):
    node, port = imap_node(mf, limits={"output_queue_max": queue_max})
    node.imap_port = port
    body = b"".join(b"line %07d abcdefghijklmnopqrstuvwxyz\r\n" % i for i in range(60000))
    big = message("big", body.decode())
    m = login(node)
    assert m.append("INBOX", None, None, big)[0] == "OK"
    m.select("INBOX")
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert data[0][1] == big
    # many messages in one FETCH go out in batches
    for i in range(40):
        m.append("INBOX", None, None, message("batch%d" % i, "z" * 20000 + "\r\n"))
    m.select("INBOX")
    typ, data = m.fetch("1:*", "(UID BODY.PEEK[TEXT])")
    bodies = [d for d in data if isinstance(d, tuple)]
    assert len(bodies) == 41 and bodies[-1][1] == b"z" * 20000 + b"\r\n"
    m.logout()


def test_curl_reads_by_uid(imap):
    m = login(imap)
    msg = message("for curl")
    m.append("INBOX", None, None, message("other"))
    m.append("INBOX", None, None, msg)
    m.logout()
    out = subprocess.run(["curl", "-s", "--max-time", "20", "--user", "%s:%s" % (USER, PASSWORD),
                          "imap://127.0.0.1:%d/INBOX;UID=2" % imap.imap_port],
                         capture_output=True, timeout=30)
    assert out.returncode == 0
    assert out.stdout == msg


# ---------------------------------------------------------------- step 4: changes

def test_store_flags_keywords_silent(imap):
    m = login(imap)
    for i in range(3):
        m.append("INBOX", None, None, message("st%d" % i))
    m.select("INBOX")
    typ, data = m.store("1:2", "+FLAGS", "(\\Flagged $Label1)")
    assert typ == "OK" and len(data) == 2
    assert b"\\Flagged" in data[0] and b"$Label1" in data[0]
    typ, data = m.store("1", "-FLAGS.SILENT", "(\\Flagged)")
    assert typ == "OK" and data == [None]
    typ, data = m.uid("STORE", "3", "FLAGS", "(\\Answered \\Draft)")
    assert b"UID 3" in data[0] and b"\\Answered \\Draft" in data[0]
    typ, data = m.fetch("1:3", "(FLAGS)")
    assert b"\\Flagged" not in data[0] and b"$Label1" in data[0]
    assert b"\\Flagged" in data[1]
    with pytest.raises(imaplib.IMAP4.error, match="Invalid STORE"):
        m.store("1", "+FLAGS", "(\\Bogus)")
    m.select("INBOX")
    assert b"$Label1" in m.untagged_responses["FLAGS"][0]
    # flags survive a new session
    m2 = login(imap)
    m2.select("INBOX")
    typ, data = m2.fetch("2", "(FLAGS)")
    assert b"\\Flagged" in data[0] and b"$Label1" in data[0]
    m2.logout()
    m.logout()


def test_expunge_close_uid_expunge(imap):
    m = login(imap)
    for i in range(5):
        m.append("INBOX", None, None, message("ex%d" % i))
    m.select("INBOX")
    m.store("2,4", "+FLAGS", "(\\Deleted)")
    typ, data = m.expunge()
    assert typ == "OK" and data == [b"4", b"2"]
    m.store("1:3", "+FLAGS", "(\\Deleted)")
    typ, data = m.uid("EXPUNGE", "1")
    assert typ == "OK"
    typ, data = m.search(None, "ALL")
    assert data == [b"1 2"]
    typ, data = m.fetch("1:*", "(UID)")
    assert [re.search(rb"UID (\d+)", d).group(1) for d in data] == [b"3", b"5"]
    assert m.close()[0] == "OK"
    typ, data = m.status("INBOX", "(MESSAGES)")
    assert b"MESSAGES 0" in data[0]
    m.logout()


def test_copy_move_uidplus(imap):
    m = login(imap)
    for i in range(3):
        m.append("INBOX", "(\\Flagged)" if i == 1 else None, None, message("cp%d" % i))
    m.select("INBOX")
    typ, data = m.copy("1:2", "Archive")
    assert typ == "OK"
    code = m.untagged_responses
    typ, data = m.uid("COPY", "3", "Nope")
    assert typ == "NO" and b"TRYCREATE" in data[0]
    typ, data = m._simple_command("MOVE", "2", "Trash")
    assert typ == "OK"
    assert b"EXPUNGE" in b" ".join(x for x in [b"EXPUNGE"] if m.untagged_responses.get("EXPUNGE"))
    typ, data = m.search(None, "ALL")
    assert data == [b"1 2"]
    typ, data = m.status("Archive", "(MESSAGES)")
    assert b"MESSAGES 2" in data[0]
    m.select("Trash")
    typ, data = m.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (Subject)])")
    assert b"\\Flagged" in data[0][0] and b"Subject: cp1" in data[0][1]
    m.logout()


def test_copyuid_and_appenduid_values(imap):
    r = raw_login(imap)
    lines = r.cmd(b"a1", b"APPEND INBOX (\\Seen) \"05-Mar-2024 10:11:12 +0200\" {12+}\r\nSubject: x\r\n")
    m = re.match(rb"a1 OK \[APPENDUID (\d+) 1\]", lines[-1])
    assert m, lines
    validity = m.group(1)
    r.cmd(b"a2", b"SELECT INBOX")
    lines = r.cmd(b"a3", b"FETCH 1 (INTERNALDATE FLAGS)")
    assert b'INTERNALDATE "05-Mar-2024 08:11:12 +0000"' in lines[0] and b"\\Seen" in lines[0]
    lines = r.cmd(b"a4", b"UID COPY 1 Sent")
    m2 = re.match(rb"a4 OK \[COPYUID (\d+) 1 1\]", lines[-1])
    assert m2 and m2.group(1) != b"" and validity
    lines = r.cmd(b"a5", b"APPEND Nope {3+}\r\nabc")
    assert lines[-1].startswith(b"a5 NO [TRYCREATE]")
    r.close()


def test_append_literal_split_and_limit(mf, domain):
    node, port = imap_node(mf, limits={"message_size_max": 100000})
    node.imap_port = port
    r = raw_login(node)
    assert b"APPENDLIMIT=100000" in r.cmd(b"c", b"CAPABILITY")[0]
    msg = message("split", "x" * 70000 + "\r\n")
    r.send(b"a1 APPEND INBOX {%d}\r\n" % len(msg))
    assert r.line().startswith(b"+")
    for i in range(0, len(msg), 997):
        r.send(msg[i:i + 997])
        time.sleep(0.001)
    r.send(b"\r\n")
    assert r.until_tag(b"a1")[-1].startswith(b"a1 OK [APPENDUID")
    # over the limit: refused before the data is sent
    lines = r.cmd(b"a2", b"APPEND INBOX {200000}")
    assert lines[-1].startswith(b"a2 NO [TOOBIG]")
    # a small literal in another command, and pipelining
    r.send(b"p1 SELECT {5}\r\n")
    assert r.line().startswith(b"+")
    r.send(b"INBOX\r\np2 NOOP\r\np3 FETCH 1 (RFC822.SIZE)\r\n")
    lines = r.until_tag(b"p3")
    text = b"\n".join(lines)
    assert b"p1 OK [READ-WRITE]" in text and b"p2 OK" in text
    assert b"RFC822.SIZE %d" % len(msg) in text
    r.close()


# ---------------------------------------------------------------- step 5: updates and IDLE

def test_idle_sees_lmtp_delivery_and_other_session(imap):
    m = login(imap)
    m.append("INBOX", None, None, message("pre"))
    r = raw_login(imap)
    r.cmd(b"s", b"SELECT INBOX")
    r.send(b"i1 IDLE\r\n")
    assert r.line().startswith(b"+ ")
    t0 = time.monotonic()
    res = harness.deliver(imap, "s@remote.test", ["a@example.test"], message("during idle"))
    assert res["a@example.test"][0] == 250
    assert r.line() == b"* 2 EXISTS"
    assert time.monotonic() - t0 < 3.0
    assert re.match(rb"\* \d RECENT", r.line())
    m.select("INBOX")
    m.store("1", "+FLAGS", "(\\Flagged)")
    line = r.line()
    assert re.match(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Flagged.*\)\)", line), line
    m.store("1", "+FLAGS", "(\\Deleted)")
    m.expunge()
    # the \\Deleted change may or may not show before the expunge
    lines = [r.line()]
    if lines[0] != b"* 1 EXPUNGE":
        lines.append(r.line())
    assert lines[-1] == b"* 1 EXPUNGE", lines
    r.send(b"DONE\r\n")
    assert r.until_tag(b"i1")[-1] == b"i1 OK Idle completed"
    m.logout()
    r.close()


def test_noop_reports_changes(imap):
    a = login(imap)
    b = raw_login(imap)
    a.append("INBOX", None, None, message("n1"))
    b.cmd(b"s", b"SELECT INBOX")
    a.append("INBOX", None, None, message("n2"))
    lines = b.cmd(b"n", b"NOOP")
    assert b"* 2 EXISTS" in lines
    a.select("INBOX")
    a.store("1", "+FLAGS", "(\\Seen)")
    lines = b.cmd(b"n2", b"NOOP")
    assert any(re.match(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Seen", l) for l in lines), lines
    # UID commands report changes too, before their own results
    a.append("INBOX", None, None, message("n3"))
    lines = b.cmd(b"u1", b"UID FETCH 1:* (FLAGS)")
    assert lines[0] == b"* 3 EXISTS" and lines[-1].startswith(b"u1 OK"), lines
    assert sum(b" FETCH (" in l for l in lines) == 3
    a.store("2", "+FLAGS", "(\\Deleted)")
    a.expunge()
    lines = b.cmd(b"u2", b"UID SEARCH ALL")
    assert lines[:2] == [b"* 2 EXPUNGE", b"* SEARCH 1 3"], lines
    a.logout()
    b.close()


# ---------------------------------------------------------------- step 6: search

def test_search_keys(imap):
    m = login(imap)
    m.append("INBOX", "(\\Seen)", '"01-Jan-2024 12:00:00 +0000"', message("Alpha report", "Some BODY text\r\n"))
    m.append("INBOX", "(\\Flagged)", '"15-Jun-2025 12:00:00 +0000"', message("beta", "x" * 3000 + "\r\n"))
    m.append("INBOX", None, None, message("=?utf-8?q?Gr=C3=BC=C3=9Fe?= gamma", "hello\r\n",
                                          extra="Cc: carol@remote.test\r\nX-Custom: Yes\r\n"))
    m.select("INBOX")

    def search(*keys, uid=False):
        typ, data = m.uid("SEARCH", *keys) if uid else m.search(None, *keys)
        assert typ == "OK", (keys, data)
        return data[0].decode().split()

    assert search("ALL") == ["1", "2", "3"]
    assert search("SEEN") == ["1"]
    assert search("UNSEEN") == ["2", "3"]
    assert search("FLAGGED") == ["2"]
    assert search("SUBJECT", "alpha") == ["1"]
    assert search("BODY", '"body TEXT"') == ["1"]
    assert search("TEXT", "carol") == ["3"]
    assert search("FROM", "SENDER@remote") == ["1", "2", "3"]
    assert search("CC", "carol") == ["3"]
    assert search("HEADER", "X-Custom", "yes") == ["3"]
    assert search("LARGER", "2000") == ["2"]
    assert search("SMALLER", "2000") == ["1", "3"]
    assert search("BEFORE", "1-Jan-2025") == ["1"]
    assert search("ON", "15-Jun-2025") == ["2"]
    assert search("SINCE", "1-Jan-2025") == ["2", "3"]
    assert search("OR", "SEEN", "FLAGGED") == ["1", "2"]
    assert search("NOT", "SEEN") == ["2", "3"]
    assert search("2:*") == ["2", "3"]
    assert search("UID", "1,3") == ["1", "3"]
    assert search("(OR SEEN FLAGGED) LARGER 2000") == ["2"]
    assert search("SUBJECT", "beta", uid=True) == ["2"]
    typ, data = m.search("UTF-8", "SUBJECT", '"Grüße"'.encode())
    assert typ == "OK" and data[0] == b"3"
    b64 = ("MIME-Version: 1.0\r\nSubject: enc\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           "--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
           "Content-Transfer-Encoding: quoted-printable\r\n\r\nK=E4se und Brot\r\n"
           "--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           "aGlkZGVuIHdvcmQgaGVyZQ==\r\n--b--\r\n").encode()
    m.append("INBOX", None, None, b64)
    m.noop()
    assert search("BODY", '"hidden WORD"') == ["4"]
    assert search("TEXT", "aGlkZGVu") == []          # the encoded form is not text
    typ, data = m.search("UTF-8", "BODY", '"Käse"'.encode())
    assert typ == "OK" and data[0] == b"4"
    typ, data = m.search("KOI8-R", "ALL")
    assert typ == "NO"
    with pytest.raises(imaplib.IMAP4.error):
        m.search(None, "FROBNICATE")
    m.logout()


def test_two_sessions_append_concurrently_unique_uids(imap):
    errors = []

    def worker(k):
        try:
            m = login(imap)
            for i in range(10):
                typ, data = m.append("INBOX", None, None, message("c%d-%d" % (k, i)))
                assert typ == "OK"
            m.logout()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    m = login(imap)
    m.select("INBOX")
    typ, data = m.fetch("1:*", "(UID)")
    uids = [int(re.search(rb"UID (\d+)", d).group(1)) for d in data]
    assert uids == list(range(1, 31))
    m.logout()


def test_modified_utf7_names_and_rename_inbox(imap):
    m = login(imap)
    assert m.create("Entw&APw-rfe")[0] == "OK"          # "Entwürfe"
    assert m.create("&Jjo")[0] == "NO"                  # not canonical modified UTF-7
    typ, data = m.list('""', "Entw*")
    assert data == [b'(\\HasNoChildren) "/" "Entw&APw-rfe"']
    m.append("INBOX", None, None, message("moved1"))
    m.append("INBOX", None, None, message("moved2"))
    assert m.rename("INBOX", '"Old Mail"')[0] == "OK"
    typ, data = m.status("INBOX", "(MESSAGES)")
    assert b"MESSAGES 0" in data[0]
    typ, data = m.status('"Old Mail"', "(MESSAGES)")
    assert b"MESSAGES 2" in data[0]
    m.logout()


def test_append_over_quota(imap):
    m = login(imap, "d@example.test")                   # quota 2K
    assert m.append("INBOX", None, None, message("small"))[0] == "OK"
    typ, data = m.append("INBOX", None, None, message("big", "y" * 4000 + "\r\n"))
    assert typ == "NO" and b"OVERQUOTA" in data[0]
    m.logout()


def test_imaps_implicit_tls(mf, domain):
    node = mf.node(start=False)
    port = harness.free_port()
    node.settings["listeners"].append({"protocol": "imap", "address": "127.0.0.1", "port": port,
                                       "tls": True})
    with open(node.config_path, "w") as f:
        f.write(harness.render_config(node.settings))
    node.start()
    assert harness.wait_port(port, 10)
    m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=harness.insecure_tls_context(), timeout=30)
    typ, caps = m.capability()
    assert b"STARTTLS" not in caps[0] and b"AUTH=PLAIN" in caps[0]
    m.login(USER, PASSWORD)
    assert m.append("INBOX", None, None, message("tls"))[0] == "OK"
    m.select("INBOX")
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert data[0][1] == message("tls")
    m.logout()


MBSYNCRC = """IMAPAccount t
Host 127.0.0.1
Port {port}
User a@example.test
Pass secret
SSLType None
AuthMechs PLAIN

IMAPStore remote
Account t

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel c
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
"""


def mbsync(rc):
    out = subprocess.run(["mbsync", "-Dn", "-c", rc, "-a"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return [l for l in (out.stdout + out.stderr).splitlines() if l.startswith(">>> ")]


def test_mbsync_down_up_and_nothing_again(imap, tmp_path):
    import os
    if not os.path.exists("/usr/bin/mbsync"):
        pytest.skip("mbsync (isync) is not installed")
    m = login(imap)
    t0 = time.time()
    for i in range(500):
        m.append("INBOX", r"(\Seen)" if i % 3 == 0 else None, None, message("mb%d" % i))
    print("APPEND x500: %.1f s" % (time.time() - t0))
    m.append("Sent", r"(\Seen)", None, message("sent one"))
    local = tmp_path / "local"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(MBSYNCRC.format(port=imap.imap_port, local=local))
    sent = mbsync(str(rc))
    assert any("BODY.PEEK[]" in l for l in sent)
    files = {p.name for p in (local / "INBOX").glob("*/*")}
    assert len(files) == 500
    assert len(list((local / "Sent").glob("*/*"))) == 1
    for i in range(5):
        (local / "INBOX" / "new" / ("%d.L%d.local" % (time.time(), i))).write_bytes(
            b"From: l@x.test\nSubject: local %d\n\nbody\n" % i)
    time.sleep(1.1)   # mbsync waits for the maildir's mtime to settle otherwise
    sent = mbsync(str(rc))
    assert any(" APPEND " in l for l in sent)
    typ, data = m.status("INBOX", "(MESSAGES)")
    assert b"MESSAGES 505" in data[0]
    # a third run transfers nothing
    sent = mbsync(str(rc))
    assert not any(" APPEND " in l or "BODY.PEEK[]" in l or " STORE " in l for l in sent), sent
    m.logout()


def test_concurrent_flag_changes_are_not_lost(imap):
    m = login(imap)
    for i in range(30):
        m.append("INBOX", None, None, message("fl%d" % i))
    errors = []

    def worker(flag):
        try:
            c = login(imap)
            c.select("INBOX")
            for i in range(1, 31):
                typ, _ = c.store(str(i), "+FLAGS.SILENT", "(%s)" % flag)
                assert typ == "OK"
            c.logout()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(f,)) for f in ("\\Seen", "\\Flagged", "$Work")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    m.select("INBOX")
    typ, data = m.fetch("1:*", "(FLAGS)")
    assert len(data) == 30
    for d in data:
        assert b"\\Seen" in d and b"\\Flagged" in d and b"$Work" in d, d
    m.logout()
