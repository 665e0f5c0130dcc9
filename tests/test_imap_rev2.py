"""test_imap_rev2.py: IMAP4rev2 (RFC 9051) behaviour once a client ENABLEs it
(no RECENT, no \\Recent, no UNSEEN code, the LIST line in SELECT, CLOSED, UTF-8
mailbox names in SELECT/COPY/MOVE/APPEND), FETCH BINARY / BINARY.PEEK /
BINARY.SIZE (RFC 3516) with transfer decoding, partials, literal8 for NULs and
UNKNOWN-CTE, and SEARCHRES "$" in FETCH, STORE, COPY and its reset on SELECT."""
import base64
import re

from test_imap import Raw, imap, login  # noqa: F401 (fixture)


def raw(node):
    r = Raw(node.imap_port)
    assert r.cmd(b"L", b"LOGIN a@example.test secret")[-1].startswith(b"L OK")
    return r


PAYLOAD = bytes(range(256)) * 3 + b"\x00tail"
# the CRLF before a boundary belongs to the boundary (RFC 2046 5.1.1)
QP_TEXT = "Grüße, caf\u00e9 = coffee".encode()
MIXED = (b"From: s@remote.test\r\nTo: a@example.test\r\nSubject: binary\r\n"
         b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
         b"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
         b"Gr=C3=BC=C3=9Fe, caf=C3=A9 =3D coffee\r\n"
         b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
         + base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n") +
         b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n"
         b"--b--\r\n")


def literal_of(line):
    """(prefix, payload) of a FETCH line with one inlined literal."""
    m = re.search(rb"(~?)\{(\d+)\}\r\n", line)
    n = int(m.group(2))
    start = m.end()
    return m.group(1), line[start:start + n]


def test_binary_fetch(imap):
    m = login(imap)
    assert m.append("INBOX", None, None, MIXED)[0] == "OK"
    m.logout()
    r = raw(imap)
    r.cmd(b"s", b"SELECT INBOX")
    lines = r.cmd(b"b1", b"FETCH 1 (BINARY.PEEK[1])")
    assert lines[-1] == b"b1 OK Fetch completed"
    tilde, data = literal_of(lines[0])
    assert tilde == b"" and data == QP_TEXT
    lines = r.cmd(b"b2", b"FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])")
    tilde, data = literal_of(lines[0])
    assert tilde == b"~" and data == PAYLOAD               # NUL inside: literal8
    assert b"BINARY.SIZE[2] %d" % len(PAYLOAD) in lines[0]
    lines = r.cmd(b"b3", b"FETCH 1 (BINARY.PEEK[2]<10.20>)")
    assert b"BINARY[2]<10> " in lines[0] and literal_of(lines[0])[1] == PAYLOAD[10:30]
    # the unknown encoding fails the command, nothing half sent
    lines = r.cmd(b"b4", b"FETCH 1 (BINARY.PEEK[3])")
    assert lines == [b"b4 NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding"]
    # BINARY[] is the whole message; not PEEK sets \Seen
    lines = r.cmd(b"b5", b"FETCH 1 (BINARY[])")
    assert literal_of(lines[0])[1] == MIXED and b"\\Seen" in lines[0]
    # HEADER/TEXT/MIME sections are served as BODY[] serves them
    assert r.cmd(b"b6", b"FETCH 1 (BINARY.PEEK[1.MIME])")[0] == \
        r.cmd(b"b6b", b"FETCH 1 (BODY.PEEK[1.MIME])")[0].replace(b"BODY[", b"BINARY[")
    # bad forms are BAD
    assert r.cmd(b"b6c", b"FETCH 1 (BINARY[1.BOGUS])")[-1].startswith(b"b6c BAD")
    assert r.cmd(b"b7", b"FETCH 1 (BINARY.SIZE[1]<0.5>)")[-1].startswith(b"b7 BAD")
    r.close()


def test_rev2_select_and_flags(imap):
    m = login(imap)
    for i in range(3):
        assert m.append("INBOX", None, None, b"Subject: %d\r\n\r\nx\r\n" % i)[0] == "OK"
    assert m.create("Caf&AOk-")[0] == "OK"
    m.logout()
    # deliver into new/ so the messages are \Recent for the first session
    r = raw(imap)
    assert r.cmd(b"e", b"ENABLE IMAP4rev2")[0] == b"* ENABLED IMAP4rev2"
    lines = r.cmd(b"s", b"SELECT INBOX")
    assert lines[-1].startswith(b"s OK [READ-WRITE]")
    assert b"* 3 EXISTS" in lines and b'* LIST () "/" "INBOX"' in lines
    assert not any(b"RECENT" in ln or b"[UNSEEN" in ln for ln in lines)
    f = r.cmd(b"f", b"FETCH 1:* (FLAGS)")
    assert not any(b"\\Recent" in ln for ln in f)
    # UTF-8 names in SELECT and COPY; CLOSED when switching
    lines = r.cmd(b"s2", 'SELECT "Café"'.encode())
    assert lines[0] == b"* OK [CLOSED] Previous mailbox closed"
    assert lines[-1].startswith(b"s2 OK") and '* LIST () "/" "Café"'.encode() in lines
    r.cmd(b"s3", b"SELECT INBOX")
    assert r.cmd(b"c", 'COPY 1 "Café"'.encode())[-1].startswith(b"c OK [COPYUID")
    r.close()
    m = login(imap)
    typ, data = m.status("Caf&AOk-", "(MESSAGES)")
    assert typ == "OK" and b"MESSAGES 1" in data[0]
    m.logout()


def test_searchres_dollar_in_other_commands(imap):
    m = login(imap)
    for i in range(5):
        assert m.append("INBOX", None, None, b"Subject: m%d\r\n\r\nx\r\n" % i)[0] == "OK"
    assert m.create("Saved")[0] == "OK"
    m.logout()
    r = raw(imap)
    r.cmd(b"s", b"SELECT INBOX")
    lines = r.cmd(b"a", b"UID SEARCH RETURN (SAVE) UID 2,4")
    assert len(lines) == 1 and lines[0].startswith(b"a OK")
    lines = r.cmd(b"f", b"FETCH $ (UID)")
    assert [ln for ln in lines if b"FETCH" in ln] == [b"* 2 FETCH (UID 2)", b"* 4 FETCH (UID 4)"]
    lines = r.cmd(b"t", b"UID STORE $ +FLAGS (\\Flagged)")
    assert lines[-1].startswith(b"t OK")
    assert r.cmd(b"q", b"SEARCH FLAGGED")[0] == b"* SEARCH 2 4"
    assert r.cmd(b"c", b"UID COPY $ Saved")[-1].startswith(b"c OK [COPYUID")
    # SELECT empties "$": it matches nothing, not an error
    r.cmd(b"s2", b"SELECT INBOX")
    assert r.cmd(b"f2", b"FETCH $ (UID)") == [b"f2 OK Fetch completed"]
    r.close()
    m = login(imap)
    typ, data = m.status("Saved", "(MESSAGES)")
    assert b"MESSAGES 2" in data[0]
    m.logout()
