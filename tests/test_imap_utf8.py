"""test_imap_utf8.py: UTF8=ACCEPT (RFC 6855) against the real daemon: ENABLE and
its ENABLED response (RFC 5161), UTF-8 mailbox names on the wire after it and
modified UTF-7 without it (CREATE, LIST, LSUB, STATUS, SELECT, RENAME, DELETE),
the APPEND "UTF8 (" literal8 ")" form (in memory, non-synchronizing and
streamed), messages with raw UTF-8 header fields (RFC 6532) in ENVELOPE and
BODY[HEADER.FIELDS], SEARCH over them, and the refusals: UTF8 APPEND before
ENABLE, 8-bit headers from a client that did not enable UTF-8, literal8 outside
APPEND, malformed UTF-8 in quoted strings, forbidden characters in names, and
SEARCH CHARSET after ENABLE UTF8=ACCEPT. UTF8=ACCEPT is offered with
imap { utf8_accept }; without it, ENABLE UTF8=ACCEPT enables nothing and a
legacy client's 8-bit header fields are stored as they are."""
import imaplib
import re

import pytest

from test_imap import Raw, imap_node, login

SUBJECT = "Grüße aus Köln".encode()
NAME = "Jöran Ärlig".encode()
MAILBOX = "jöran".encode()
HOST = "exämple.test".encode()
MSG = (b"From: " + NAME + b" <" + MAILBOX + b"@" + HOST + b">\r\n"
       b"To: a@example.test\r\nSubject: " + SUBJECT + b"\r\n"
       b"Message-ID: <utf8-1@mf.test>\r\n\r\nBody, caf\xc3\xa9.\r\n")


def lit(data):
    """A literal as the server sends it."""
    return b"{%d}\r\n%s" % (len(data), data)


def plit(data):
    """A LITERAL+ literal to send (no continuation to wait for)."""
    return b"{%d+}\r\n%s" % (len(data), data)


class Client(Raw):
    """Raw client whose responses may hold several literals in one line."""

    def until_tag(self, tag):
        lines = []
        while True:
            line = self.line()
            while True:
                m = re.search(rb"~?\{(\d+)\}$", line)
                if not m:
                    break
                line += b"\r\n" + self.read_exact(int(m.group(1))) + self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def literal_cmd(self, tag, head, data, tail=b"", literal8=False):
        """Sends head + a synchronizing literal of data + tail."""
        self.send(tag + b" " + head + (b"~" if literal8 else b"") + b"{%d}\r\n" % len(data))
        cont = self.line()
        if not cont.startswith(b"+"):
            return [cont]
        self.send(data + tail + b"\r\n")
        return self.until_tag(tag)


@pytest.fixture
def imap(mf, domain):
    node, port = imap_node(mf, imap={"utf8_accept": True})
    node.imap_port = port
    return node


@pytest.fixture
def plain_imap(mf, domain):
    node, port = imap_node(mf)
    node.imap_port = port
    return node


def client(node, enable=None):
    r = Client(node.imap_port)
    assert r.cmd(b"L", b"LOGIN a@example.test secret")[-1].startswith(b"L OK")
    if enable is not None:
        assert r.cmd(b"E", b"ENABLE " + enable) == [b"* ENABLED " + enable, b"E OK Enabled"]
    return r


def untagged(lines):
    return [line for line in lines if line.startswith(b"* ")]


def test_capability_and_enable(imap):
    r = Client(imap.imap_port)
    assert r.cmd(b"e0", b"ENABLE UTF8=ACCEPT")[-1] == b"e0 BAD Log in first"
    assert r.cmd(b"L", b"LOGIN a@example.test secret")[-1].startswith(b"L OK")
    assert b"UTF8=ACCEPT" in r.cmd(b"c", b"CAPABILITY")[0].split()
    assert r.cmd(b"e1", b"ENABLE UTF8=ACCEPT") == [b"* ENABLED UTF8=ACCEPT", b"e1 OK Enabled"]
    # RFC 5161 3.2: ENABLED lists only what this command newly enabled
    assert r.cmd(b"e2", b"ENABLE utf8=accept") == [b"* ENABLED", b"e2 OK Enabled"]
    assert r.cmd(b"e3", b"ENABLE X-UNKNOWN IMAP4rev2 UTF8=ACCEPT") == [
        b"* ENABLED IMAP4rev2", b"e3 OK Enabled"]
    r.close()
    r = client(imap)
    assert r.cmd(b"e", b"ENABLE IMAP4rev2 UTF8=ACCEPT") == [
        b"* ENABLED IMAP4rev2 UTF8=ACCEPT", b"e OK Enabled"]
    r.close()


def test_utf8_mailbox_names_round_trip(imap):
    u = client(imap, b"UTF8=ACCEPT")
    legacy = client(imap)
    assert u.cmd(b"c1", 'CREATE "Résumé/Café"'.encode()) == [b"c1 OK Create completed"]
    assert u.cmd(b"c2", b"CREATE " + plit("日本語".encode())) == [b"c2 OK Create completed"]
    assert u.cmd(b"l1", 'LIST "" "Résumé*"'.encode()) == [
        '* LIST (\\HasChildren) "/" "Résumé"'.encode(),
        '* LIST (\\HasNoChildren) "/" "Résumé/Café"'.encode(), b"l1 OK List completed"]
    assert u.cmd(b"l2", 'LIST "" "日*"'.encode())[0] == '* LIST (\\HasNoChildren) "/" "日本語"'.encode()
    # the same mailboxes in modified UTF-7 for a client that did not enable UTF-8
    assert legacy.cmd(b"l", b'LIST "" R*') == [
        b'* LIST (\\HasChildren) "/" "R&AOk-sum&AOk-"',
        b'* LIST (\\HasNoChildren) "/" "R&AOk-sum&AOk-/Caf&AOk-"', b"l OK List completed"]
    assert legacy.cmd(b"l2", b'LIST "" &*')[0] == b'* LIST (\\HasNoChildren) "/" "&ZeVnLIqe-"'
    assert u.cmd(b"s", 'SUBSCRIBE "Résumé/Café"'.encode()) == [b"s OK Subscribe completed"]
    assert u.cmd(b"ls", 'LSUB "" "Résumé/*"'.encode()) == [
        '* LSUB () "/" "Résumé/Café"'.encode(), b"ls OK Lsub completed"]
    assert legacy.cmd(b"ls", b'LSUB "" R*')[0] == b'* LSUB () "/" "R&AOk-sum&AOk-/Caf&AOk-"'
    assert u.cmd(b"st", 'STATUS "Résumé/Café" (MESSAGES UIDNEXT)'.encode()) == [
        '* STATUS "Résumé/Café" (MESSAGES 0 UIDNEXT 1)'.encode(), b"st OK Status completed"]
    lines = u.cmd(b"sel", 'SELECT "Résumé/Café"'.encode())
    assert lines[-1] == b"sel OK [READ-WRITE] Select completed"
    assert b"* 0 EXISTS" in lines
    assert u.cmd(b"un", b"UNSELECT")[-1].startswith(b"un OK")
    lines = legacy.cmd(b"sel", b'EXAMINE "R&AOk-sum&AOk-/Caf&AOk-"')
    assert lines[-1] == b"sel OK [READ-ONLY] Examine completed"
    legacy.cmd(b"cl", b"CLOSE")
    # RENAME and DELETE by UTF-8 name; the other session sees the result
    assert u.cmd(b"r", 'RENAME "Résumé/Café" "Résumé/Thé"'.encode()) == [b"r OK Rename completed"]
    assert u.cmd(b"l3", 'LIST "" "Résumé/*"'.encode())[:-1] == [
        '* LIST (\\HasNoChildren) "/" "Résumé/Thé"'.encode()]
    assert legacy.cmd(b"l3", b'LIST "" R&AOk-sum&AOk-/*')[:-1] == [
        b'* LIST (\\HasNoChildren) "/" "R&AOk-sum&AOk-/Th&AOk-"']
    assert legacy.cmd(b"d", b'DELETE "R&AOk-sum&AOk-/Th&AOk-"') == [b"d OK Delete completed"]
    assert u.cmd(b"d2", b"DELETE " + plit("日本語".encode())) == [b"d2 OK Delete completed"]
    assert u.cmd(b"l4", 'LIST "" "Résumé*"'.encode()) == [
        '* LIST (\\HasNoChildren) "/" "Résumé"'.encode(), b"l4 OK List completed"]
    # a client without UTF-8 sends modified UTF-7: raw 8-bit is no valid name
    assert legacy.cmd(b"c", 'CREATE "Noël"'.encode()) == [b"c NO [CANNOT] Invalid mailbox name"]
    u.close()
    legacy.close()


def test_bad_names_and_literal8(imap):
    u = client(imap, b"UTF8=ACCEPT")
    legacy = client(imap)
    # malformed UTF-8 in a quoted string: BAD (RFC 6855 3)
    assert u.cmd(b"b1", b'CREATE "bad\xff"') == [b"b1 BAD Invalid UTF-8 in a quoted string"]
    assert u.cmd(b"b2", b'CREATE "\xc3\x28x"') == [b"b2 BAD Invalid UTF-8 in a quoted string"]
    assert u.cmd(b"b3", b'LIST "" "\xed\xa0\x80"') == [b"b3 BAD Invalid UTF-8 in a quoted string"]
    # in a literal it is no valid name
    assert u.cmd(b"b4", b"CREATE " + plit(b"bad\xff")) == [b"b4 NO [CANNOT] Invalid mailbox name"]
    # controls and line / paragraph separators are not allowed in names
    for tag, name in ((b"n1", "a\u0085b"), (b"n2", "a\u2028b"), (b"n3", "a\u2029b"), (b"n4", "a\u0009b")):
        assert u.cmd(tag, b'CREATE "' + name.encode() + b'"') == [tag + b" NO [CANNOT] Invalid mailbox name"]
    assert legacy.cmd(b"n5", b'CREATE "a&AIU-b"') == [b"n5 NO [CANNOT] Invalid mailbox name"]
    assert legacy.cmd(b"n6", b'CREATE "a&ICg-b"') == [b"n6 NO [CANNOT] Invalid mailbox name"]
    # literal8 is APPEND's message only, no string elsewhere
    assert u.literal_cmd(b"b5", b"CREATE ", b"Box8", literal8=True) == [b"b5 BAD Invalid arguments"]
    assert u.literal_cmd(b"b6", b"SELECT ", b"INBOX", literal8=True) == [b"b6 BAD Invalid mailbox name"]
    assert u.cmd(b"l", b'LIST "" Box8')[:-1] == []
    # with BINARY a literal8 is a valid APPEND message in any session
    lines = legacy.literal_cmd(b"a", b"APPEND INBOX ", b"Subject: bin\r\n\r\nx\r\n", literal8=True)
    assert re.fullmatch(rb"a OK \[APPENDUID \d+ 1\] Append completed", lines[-1])
    u.close()
    legacy.close()


def test_append_utf8_form_and_envelope(imap):
    u = client(imap, b"UTF8=ACCEPT")
    lines = u.literal_cmd(b"a1", b"APPEND INBOX (\\Seen) UTF8 (", MSG, b")", literal8=True)
    assert re.fullmatch(rb"a1 OK \[APPENDUID (\d+) 1\] Append completed", lines[-1]), lines
    # non-synchronizing literal8 inside UTF8 ( )
    u.send(b"a2 APPEND INBOX UTF8 (~{%d+}\r\n%s)\r\n" % (len(MSG), MSG))
    assert re.fullmatch(rb"a2 OK \[APPENDUID \d+ 2\] Append completed", u.until_tag(b"a2")[-1])
    # a message over the in-memory literal size is streamed from inside the list
    big = MSG + b"x" * 100 + b"\r\n" + (b"y" * 998 + b"\r\n") * 120
    lines = u.literal_cmd(b"a3", b'APPEND INBOX UTF8 (', big, b")", literal8=True)
    assert re.fullmatch(rb"a3 OK \[APPENDUID \d+ 3\] Append completed", lines[-1])
    # the header bytes come back as they were (8-bit text goes in literals);
    # the first session to see the appended messages has them \Recent
    u.cmd(b"s", b"SELECT INBOX")
    lines = u.cmd(b"f1", b"FETCH 1 (FLAGS ENVELOPE)")
    assert lines == [
        b"* 1 FETCH (FLAGS (\\Seen \\Recent) ENVELOPE (NIL " + lit(SUBJECT) + b" ((" + lit(NAME) +
        b" NIL " + lit(MAILBOX) + b" " + lit(HOST) + b")) ((" + lit(NAME) + b" NIL " +
        lit(MAILBOX) + b" " + lit(HOST) + b")) ((" + lit(NAME) + b" NIL " + lit(MAILBOX) +
        b" " + lit(HOST) + b')) ((NIL NIL "a" "example.test")) NIL NIL NIL "<utf8-1@mf.test>"))',
        b"f1 OK Fetch completed"]
    lines = u.cmd(b"f2", b"FETCH 2 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")
    hdr = b"From: " + NAME + b" <" + MAILBOX + b"@" + HOST + b">\r\nSubject: " + SUBJECT + b"\r\n\r\n"
    assert lines[0] == b"* 2 FETCH (BODY[HEADER.FIELDS (SUBJECT FROM)] " + lit(hdr) + b")"
    lines = u.cmd(b"f3", b"FETCH 3 (RFC822.SIZE BODY.PEEK[])")
    assert lines[0] == b"* 3 FETCH (RFC822.SIZE %d BODY[] %s)" % (len(big), lit(big))
    u.close()


def test_append_refusals_without_enable(imap):
    legacy = client(imap)
    # the UTF8 form needs ENABLE UTF8=ACCEPT
    lines = legacy.literal_cmd(b"a1", b"APPEND INBOX UTF8 (", MSG, b")", literal8=True)
    assert lines == [b"a1 BAD APPEND UTF8 needs ENABLE UTF8=ACCEPT"]
    # RFC 6855 4: 8-bit header fields from a client that did not enable UTF-8
    assert legacy.literal_cmd(b"a2", b"APPEND INBOX ", MSG) == [
        b"a2 NO 8-bit header fields need ENABLE UTF8=ACCEPT"]
    # 8-bit in the body only is fine
    body8 = b"Subject: plain\r\n\r\ncaf\xc3\xa9\r\n"
    assert legacy.literal_cmd(b"a3", b"APPEND INBOX ", body8)[-1].startswith(b"a3 OK [APPENDUID ")
    legacy.cmd(b"s", b"SELECT INBOX")
    assert legacy.cmd(b"n", b"NOOP")[-1] == b"n OK NOOP completed"
    assert b"* 1 EXISTS" in legacy.cmd(b"s2", b"SELECT INBOX")
    # UTF8 ( ... ) around anything but one literal is a syntax error
    u = client(imap, b"UTF8=ACCEPT")
    assert u.cmd(b"a4", b'APPEND INBOX UTF8 ("Subject: x")') == [b"a4 BAD APPEND needs a message literal"]
    # an IMAP4rev2 client may append UTF-8 headers with a plain literal
    rev2 = client(imap, b"IMAP4rev2")
    assert rev2.literal_cmd(b"a5", b"APPEND INBOX ", MSG)[-1].startswith(b"a5 OK [APPENDUID ")
    for r in (legacy, u, rev2):
        r.close()


def test_imaplib_utf8_append(imap):
    """Python's imaplib wraps the message in UTF8 ( ) once UTF8=ACCEPT is on."""
    m = login(imap)
    assert m.enable("UTF8=ACCEPT")[0] == "OK"
    assert m.append("INBOX", None, None, MSG)[0] == "OK"
    m.select("INBOX")
    typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and data[0][1] == b"Subject: " + SUBJECT + b"\r\n\r\n"
    m.logout()
    m = imaplib.IMAP4("127.0.0.1", imap.imap_port, timeout=30)
    m.login("a@example.test", "secret")
    typ, data = m.list('""', "*")
    assert typ == "OK"
    m.logout()


def test_search_utf8_headers(imap):
    u = client(imap, b"UTF8=ACCEPT")
    assert u.literal_cmd(b"a", b"APPEND INBOX UTF8 (", MSG, b")", literal8=True)[-1].startswith(b"a OK")
    assert u.literal_cmd(b"b", b"APPEND INBOX ", b"Subject: other\r\n\r\nx\r\n")[-1].startswith(b"b OK")
    u.cmd(b"s", b"SELECT INBOX")
    assert u.cmd(b"s1", 'SEARCH SUBJECT "köln"'.encode()) == [b"* SEARCH 1", b"s1 OK SEARCH completed"]
    assert u.cmd(b"s2", 'SEARCH FROM "JÖRAN"'.encode()) == [b"* SEARCH 1", b"s2 OK SEARCH completed"]
    assert u.cmd(b"s3", 'SEARCH FROM "exämple"'.encode()) == [b"* SEARCH 1", b"s3 OK SEARCH completed"]
    assert u.cmd(b"s4", 'SEARCH NOT SUBJECT "Grüße"'.encode()) == [b"* SEARCH 2", b"s4 OK SEARCH completed"]
    # RFC 6855 3: no CHARSET once UTF8=ACCEPT is enabled
    assert u.cmd(b"s5", 'SEARCH CHARSET UTF-8 SUBJECT "Köln"'.encode()) == [
        b"s5 BAD No CHARSET after ENABLE UTF8=ACCEPT"]
    assert u.cmd(b"s6", b"UID SEARCH CHARSET US-ASCII ALL") == [b"s6 BAD No CHARSET after ENABLE UTF8=ACCEPT"]
    u.close()
    # without the ENABLE, SEARCH CHARSET UTF-8 with a literal finds the same
    legacy = client(imap)
    legacy.cmd(b"s", b"EXAMINE INBOX")
    assert legacy.cmd(b"s1", b"SEARCH CHARSET UTF-8 SUBJECT " + plit("KÖLN".encode())) == [
        b"* SEARCH 1", b"s1 OK SEARCH completed"]
    assert legacy.cmd(b"s2", b"SEARCH CHARSET UTF-8 HEADER FROM " + plit("ärlig".encode())) == [
        b"* SEARCH 1", b"s2 OK SEARCH completed"]
    assert untagged(legacy.cmd(b"s3", b"SEARCH CHARSET KOI8-R ALL")) == []
    legacy.close()


def test_not_offered_by_default(plain_imap):
    """Without imap { utf8_accept }: no UTF8=ACCEPT, ENABLE of it enables
    nothing, and 8-bit header fields from a legacy client (old mail copied
    by a migration tool) are stored and returned byte for byte."""
    r = Client(plain_imap.imap_port)
    assert r.cmd(b"L", b"LOGIN a@example.test secret")[-1].startswith(b"L OK")
    caps = r.cmd(b"c", b"CAPABILITY")[0].split()
    assert b"UTF8=ACCEPT" not in caps and b"IMAP4rev2" in caps
    assert r.cmd(b"e", b"ENABLE UTF8=ACCEPT") == [b"* ENABLED", b"e OK Enabled"]
    lines = r.literal_cmd(b"a1", b"APPEND INBOX UTF8 (", MSG, b")", literal8=True)
    assert lines == [b"a1 BAD APPEND UTF8 needs ENABLE UTF8=ACCEPT"]
    latin1 = b"From: J\xf6ran <j@example.test>\r\nSubject: Gr\xfc\xdfe\r\n\r\nbody\r\n"
    assert r.literal_cmd(b"a2", b"APPEND INBOX ", latin1)[-1].startswith(b"a2 OK [APPENDUID ")
    r.cmd(b"s", b"SELECT INBOX")
    lines = r.cmd(b"f", b"FETCH 1 (BODY.PEEK[])")
    assert lines[0] == b"* 1 FETCH (BODY[] " + lit(latin1) + b")"
    # names stay modified UTF-7 on the wire
    assert r.cmd(b"c1", b'CREATE "Caf&AOk-"')[-1].startswith(b"c1 OK")
    assert b'"Caf&AOk-"' in b"".join(r.cmd(b"l", b'LIST "" Caf*'))
    r.close()

