"""test_imap_ext.py: IMAP extensions against the real daemon (imaplib and a raw
socket client, as in test_imap.py): ESEARCH (RFC 4731), the complete SEARCH
key set, LIST-STATUS (RFC 5819), CREATE-SPECIAL-USE (RFC 6154), DELETE of a
folder with children, LITERAL- (RFC 7888), LOGINDISABLED, QUOTA (RFC 9208)
and ENABLE IMAP4rev2 / UTF8=ACCEPT.

Each test gets its own node (directory with example.test users a..d, store,
IMAP listener on harness ports)."""
import imaplib
import re

import pytest

from test_imap import Raw, imap_node, login, message, raw_login  # noqa: F401

USER, PASSWORD = "a@example.test", "secret"


@pytest.fixture
def imap(mf, domain):
    node, port = imap_node(mf)
    node.imap_port = port
    return node


def caps_of(r, tag=b"C"):
    lines = r.cmd(tag, b"CAPABILITY")
    assert lines[-1].startswith(tag + b" OK")
    return lines[0].split()[2:]


def fill_inbox(m, count):
    for i in range(count):
        assert m.append("INBOX", None, None, message("msg%d" % i))[0] == "OK"


# ---------------------------------------------------------------- ESEARCH

def test_esearch_return_options(imap):
    m = login(imap)
    fill_inbox(m, 6)
    m.logout()
    r = raw_login(imap)
    assert b"ESEARCH" in caps_of(r)
    r.cmd(b"s", b"SELECT INBOX")
    r.cmd(b"f", b"STORE 2,3,5 +FLAGS (\\Seen)")
    # RFC 4731 3.1: MIN MAX ALL COUNT, ALL as a compact sequence set
    lines = r.cmd(b"e1", b"SEARCH RETURN (MIN MAX ALL COUNT) NOT SEEN")
    assert lines == [b'* ESEARCH (TAG "e1") MIN 1 MAX 6 ALL 1,4,6 COUNT 3',
                     b"e1 OK SEARCH completed"]
    lines = r.cmd(b"e2", b"SEARCH RETURN (ALL) 1:6")
    assert lines[0] == b'* ESEARCH (TAG "e2") ALL 1:6'
    # RETURN () means ALL
    lines = r.cmd(b"e3", b"SEARCH RETURN () SEEN")
    assert lines[0] == b'* ESEARCH (TAG "e3") ALL 2:3,5'
    lines = r.cmd(b"e4", b"UID SEARCH RETURN (COUNT) ALL")
    assert lines == [b'* ESEARCH (TAG "e4") UID COUNT 6', b"e4 OK UID SEARCH completed"]
    lines = r.cmd(b"e5", b"UID SEARCH RETURN (MIN MAX) SEEN")
    assert lines[0] == b'* ESEARCH (TAG "e5") UID MIN 2 MAX 5'
    # no match: only COUNT, MIN/MAX/ALL are left out
    lines = r.cmd(b"e6", b"SEARCH RETURN (MIN MAX ALL COUNT) DELETED")
    assert lines[0] == b'* ESEARCH (TAG "e6") COUNT 0'
    lines = r.cmd(b"e7", b"SEARCH RETURN (MIN) DELETED")
    assert lines[0] == b'* ESEARCH (TAG "e7")'
    # classic SEARCH is unchanged
    assert r.cmd(b"e8", b"SEARCH SEEN")[0] == b"* SEARCH 2 3 5"
    assert r.cmd(b"e9", b"SEARCH RETURN (BOGUS) ALL")[-1].startswith(b"e9 BAD")
    assert r.cmd(b"e10", b"SEARCH RETURN ALL")[-1].startswith(b"e10 BAD")
    # UID ranges of a sparse result
    r.cmd(b"x", b"STORE 3 +FLAGS (\\Deleted)")
    r.cmd(b"x2", b"EXPUNGE")
    lines = r.cmd(b"e11", b"UID SEARCH RETURN (ALL) 1:*")
    assert lines[0] == b'* ESEARCH (TAG "e11") UID ALL 1:2,4:6'
    r.close()


# ---------------------------------------------------------------- SEARCH keys

SENT = [
    ("Mon, 3 Mar 2025 23:30:00 -0800", "first"),      # the date part counts, not UTC
    ("4 Mar 2025 01:00:00 +0200 (CEST, summer)", "second"),
    (None, "nodate"),                                # internal date instead
]


def test_search_sent_dates_header_sizes(imap):
    m = login(imap)
    for date, subject in SENT:
        extra = "Date: %s\r\n" % date if date else ""
        m.append("INBOX", None, '"10-Oct-2024 10:00:00 +0000"', message(subject, extra=extra))
    m.select("INBOX")

    def search(*keys):
        typ, data = m.search(None, *keys)
        assert typ == "OK", (keys, data)
        return data[0].decode().split()

    assert search("SENTON", "3-Mar-2025") == ["1"]
    assert search("SENTON", "4-Mar-2025") == ["2"]
    assert search("SENTBEFORE", "4-Mar-2025") == ["1", "3"]
    assert search("SENTSINCE", "4-Mar-2025") == ["2"]
    assert search("SENTON", "10-Oct-2024") == ["3"]
    # HEADER with an empty string: has the field
    assert search("HEADER", "Date", '""') == ["1", "2"]
    assert search("NOT", "HEADER", "Date", '""') == ["3"]
    assert search("HEADER", "X-None", '""') == []
    sizes = [len(message(s, extra="Date: %s\r\n" % d if d else "")) for d, s in SENT]
    assert search("LARGER", str(min(sizes))) == [str(i + 1) for i, s in enumerate(sizes) if s > min(sizes)]
    assert search("SMALLER", str(max(sizes))) == [str(i + 1) for i, s in enumerate(sizes) if s < max(sizes)]
    with pytest.raises(imaplib.IMAP4.error):
        m.search(None, "SENTON", "3-Foo-2025")
    m.logout()


def test_search_keywords_recent_uid_nested(imap):
    m = login(imap)
    fill_inbox(m, 5)
    m.select("INBOX")
    assert m.store("2,4", "+FLAGS", "($Label1)")[0] == "OK"
    assert m.store("4", "+FLAGS", "(\\Seen)")[0] == "OK"

    def search(*keys):
        typ, data = m.search(None, *keys)
        assert typ == "OK", (keys, data)
        return data[0].decode().split()

    assert search("KEYWORD", "$Label1") == ["2", "4"]
    assert search("KEYWORD", "$label1") == ["2", "4"]        # case-insensitive names
    assert search("UNKEYWORD", "$Label1") == ["1", "3", "5"]
    assert search("KEYWORD", "$NeverUsed") == []
    assert search("UNKEYWORD", "$NeverUsed") == ["1", "2", "3", "4", "5"]
    # appended before the SELECT: recent in this session
    assert search("RECENT") == ["1", "2", "3", "4", "5"]
    assert search("NEW") == ["1", "2", "3", "5"]
    assert search("OLD") == []
    assert search("UID", "2:3,5") == ["2", "3", "5"]
    assert search("UID", "4:*") == ["4", "5"]
    assert search("OR", "(KEYWORD $Label1 SEEN)", "NOT", "OR", "1:3", "5") == ["4"]
    assert search("NOT", "(OR 1 2)") == ["3", "4", "5"]
    assert search("(((1:4)))", "NOT", "NOT", "3") == ["3"]
    m.close()
    # a second session: nothing is recent any more
    m.select("INBOX")
    assert search("RECENT") == [] and search("OLD") == ["1", "2", "3", "4", "5"]
    m.logout()


def test_search_text_decoded_and_case_folded(imap):
    m = login(imap)
    qp = ("MIME-Version: 1.0\r\nSubject: =?utf-8?b?w5xiZXJ3ZWlzdW5n?=\r\n"
          "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
          "\r\nGr=C3=BC=C3=9Fe aus M=C3=9CNCHEN und =D0=9C=D0=9E=D0=A1=D0=9A=D0=92=D0=90\r\n").encode()
    latin = ("MIME-Version: 1.0\r\nSubject: latin\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
             "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + "Ein \xc4pfelchen\r\n".encode("latin-1")
    b64 = ("MIME-Version: 1.0\r\nSubject: b64\r\nContent-Type: text/plain\r\n"
           "Content-Transfer-Encoding: base64\r\n\r\nU2VjcmV0IFBBU1NQSFJBU0UgaW5zaWRl\r\n").encode()
    for data in (qp, latin, b64):
        assert m.append("INBOX", None, None, data)[0] == "OK"
    m.select("INBOX")

    def usearch(*keys):
        typ, data = m.search("UTF-8", *[k.encode() if isinstance(k, str) else k for k in keys])
        assert typ == "OK", (keys, data)
        return data[0].decode().split()

    assert usearch("BODY", '"münchen"') == ["1"]           # non-ASCII case folding
    assert usearch("BODY", '"москва"') == ["1"]            # Cyrillic folding
    assert usearch("TEXT", '"überweisung"') == ["1"]       # encoded-word subject via TEXT
    assert usearch("SUBJECT", '"ÜBERWEISUNG"') == ["1"]
    assert usearch("BODY", '"äpfelchen"') == ["2"]         # 8bit latin-1 converted
    assert usearch("BODY", "passphrase") == ["3"]          # base64 decoded, case-insensitive
    assert usearch("BODY", "U2VjcmV0") == []
    assert usearch("TEXT", "Content-Transfer") == ["1", "2", "3"]   # TEXT covers the header
    assert usearch("BODY", "Content-Transfer") == []
    typ, data = m.search("US-ASCII", "BODY", "passphrase")
    assert typ == "OK" and data == [b"3"]
    typ, data = m.search("ISO-8859-1", "ALL")
    assert typ == "NO" and b"[BADCHARSET (UTF-8 US-ASCII)]" in data[0]
    m.logout()


def test_search_errors_are_bad(imap):
    m = login(imap)
    fill_inbox(m, 1)
    m.logout()
    r = raw_login(imap)
    r.cmd(b"s", b"SELECT INBOX")
    line = r.cmd(b"b1", b"SEARCH FROBNICATE")[-1]
    assert line.startswith(b"b1 BAD") and b"FROBNICATE" in line
    for i, bad in enumerate([b"SEARCH", b"SEARCH NOT", b"SEARCH OR SEEN", b"SEARCH LARGER x",
                             b"SEARCH SINCE 32-Foo-2020", b"SEARCH UID x:y", b"SEARCH ()",
                             b"SEARCH HEADER", b"SEARCH MODSEQ", b"SEARCH MODSEQ \"/flags/\\\\seen\" bad 4",
                             b"SEARCH LARGER 99999999999"]):
        if i == 6:      # a fresh session before bad_commands_max (10) ends this one
            r.close()
            r = raw_login(imap)
            r.cmd(b"s", b"SELECT INBOX")
        tag = b"c%d" % i
        assert r.cmd(tag, bad)[-1].startswith(tag + b" BAD"), bad
    # still usable afterwards
    assert r.cmd(b"ok", b"SEARCH ALL")[0] == b"* SEARCH 1"
    r.close()


def test_search_modseq(imap):
    m = login(imap)
    fill_inbox(m, 4)
    m.logout()
    r = raw_login(imap)
    if b"CONDSTORE" not in caps_of(r):
        pytest.skip("the store keeps per-message modseqs once CONDSTORE is in")
    r.cmd(b"s", b"SELECT INBOX")
    lines = r.cmd(b"m0", b"SEARCH MODSEQ 0")
    # the first CONDSTORE enabling command reports HIGHESTMODSEQ (RFC 7162 3.1)
    assert lines[0].startswith(b"* OK [HIGHESTMODSEQ ")
    m0 = re.match(rb"\* SEARCH 1 2 3 4 \(MODSEQ (\d+)\)$", lines[1])
    assert m0, lines
    highest = int(m0.group(1))
    assert highest >= 1
    r.cmd(b"f", b"STORE 3 +FLAGS (\\Flagged)")
    lines = r.cmd(b"m1", b"SEARCH MODSEQ %d" % (highest + 1))
    m1 = re.match(rb"\* SEARCH 3 \(MODSEQ (\d+)\)$", lines[0])
    assert m1, lines
    assert int(m1.group(1)) > highest
    lines = r.cmd(b"m2", b'SEARCH MODSEQ "/flags/\\\\flagged" all %d' % (highest + 1))
    assert lines[0] == b"* SEARCH 3 (MODSEQ %s)" % m1.group(1)
    # no match: no MODSEQ suffix
    lines = r.cmd(b"m3", b"SEARCH MODSEQ %d" % (int(m1.group(1)) + 1))
    assert lines[0] == b"* SEARCH"
    lines = r.cmd(b"m4", b"UID SEARCH RETURN (ALL COUNT) MODSEQ 0")
    assert lines[0] == b'* ESEARCH (TAG "m4") UID ALL 1:4 COUNT 4 MODSEQ %s' % m1.group(1)
    r.close()


# ---------------------------------------------------------------- LIST-STATUS

def list_lines(r, tag, text):
    lines = r.cmd(tag, text)
    assert lines[-1].startswith(tag + b" OK"), lines
    return lines[:-1]


def test_list_status(imap):
    m = login(imap)
    m.append("Drafts", r"(\Seen)", None, message("d1"))
    m.append("Drafts", None, None, message("d2"))
    assert m.create("Top/Sub")[0] == "OK"
    assert m.delete("Top")[0] == "OK"                    # Top stays as \Noselect
    m.logout()
    r = raw_login(imap)
    assert b"LIST-STATUS" in caps_of(r)
    lines = list_lines(r, b"l1", b'LIST "" (Drafts Top Top/Sub) RETURN (STATUS (MESSAGES UNSEEN SIZE))')
    size = len(message("d1")) + len(message("d2"))
    assert lines == [
        b'* LIST (\\HasNoChildren \\Drafts) "/" "Drafts"',
        b'* STATUS "Drafts" (MESSAGES 2 UNSEEN 1 SIZE %d)' % size,
        b'* LIST (\\Noselect \\HasChildren) "/" "Top"',
        b'* LIST (\\HasNoChildren) "/" "Top/Sub"',
        b'* STATUS "Top/Sub" (MESSAGES 0 UNSEEN 0 SIZE 0)',
    ]
    lines = list_lines(r, b"l2", b'LIST "" INBOX RETURN (CHILDREN STATUS (UIDNEXT UIDVALIDITY))')
    assert lines[0] == b'* LIST (\\HasNoChildren) "/" "INBOX"'
    assert re.match(rb'\* STATUS "INBOX" \(UIDNEXT 1 UIDVALIDITY \d+\)$', lines[1])
    assert len(lines) == 2
    # with a selection option too; a subscribed name that does not exist gets no STATUS
    r.cmd(b"sb", b"SUBSCRIBE Gone")
    lines = list_lines(r, b"l3", b'LIST (SUBSCRIBED) "" "*" RETURN (STATUS (MESSAGES))')
    assert b'* LIST (\\NonExistent \\Subscribed) "/" "Gone"' in lines
    assert not any(l.startswith(b'* STATUS "Gone"') for l in lines)
    assert b'* STATUS "Drafts" (MESSAGES 2)' in lines
    for i, bad in enumerate([b'LIST "" * RETURN (STATUS)', b'LIST "" * RETURN (STATUS ())',
                             b'LIST "" * RETURN (STATUS (BOGUS))']):
        tag = b"b%d" % i
        assert r.cmd(tag, bad)[-1].startswith(tag + b" BAD")
    r.close()


# ---------------------------------------------------------------- CREATE-SPECIAL-USE

def test_create_special_use(imap):
    r = raw_login(imap)
    assert b"CREATE-SPECIAL-USE" in caps_of(r)
    assert r.cmd(b"c1", b"CREATE MyArchive (USE (\\Archive))")[-1] == b"c1 OK Create completed"
    assert r.cmd(b"c2", b"CREATE Old/Sent (USE (\\Sent \\Trash))")[-1].startswith(b"c2 OK")
    line = r.cmd(b"c3", b"CREATE Everything (USE (\\All))")[-1]
    assert line.startswith(b"c3 NO [USEATTR]")
    assert r.cmd(b"c4", b"CREATE Odd (USE (\\Frobnicated))")[-1].startswith(b"c4 NO [USEATTR]")
    assert r.cmd(b"c5", b"CREATE Odd (USE \\Archive)")[-1].startswith(b"c5 BAD")
    assert r.cmd(b"c6", b"CREATE Odd (COLOR (red))")[-1].startswith(b"c6 BAD")
    # none of the refused ones was created
    lines = list_lines(r, b"l1", b'LIST "" *')
    joined = b"\n".join(lines)
    assert b'"Everything"' not in joined and b'"Odd"' not in joined
    assert b'* LIST (\\HasNoChildren \\Archive) "/" "MyArchive"' in lines
    assert b'* LIST (\\HasNoChildren \\Sent \\Trash) "/" "Old/Sent"' in lines
    lines = list_lines(r, b"l2", b'LIST (SPECIAL-USE) "" *')
    names = [l.rsplit(b" ", 1)[1] for l in lines]
    assert names == [b'"Archive"', b'"Drafts"', b'"Junk"', b'"MyArchive"', b'"Old/Sent"',
                     b'"Sent"', b'"Trash"']
    # the use follows a rename and goes with a delete
    assert r.cmd(b"r1", b"RENAME Old Older")[-1].startswith(b"r1 OK")
    lines = list_lines(r, b"l3", b'LIST "" Older/*')
    assert lines == [b'* LIST (\\HasNoChildren \\Sent \\Trash) "/" "Older/Sent"']
    assert r.cmd(b"d1", b"DELETE MyArchive")[-1].startswith(b"d1 OK")
    assert r.cmd(b"c7", b"CREATE MyArchive")[-1].startswith(b"c7 OK")
    assert list_lines(r, b"l4", b'LIST "" MyArchive') == [b'* LIST (\\HasNoChildren) "/" "MyArchive"']
    # a second session (another node would do the same) sees the stored uses
    r2 = raw_login(imap)
    assert b'* LIST (\\HasNoChildren \\Sent \\Trash) "/" "Older/Sent"' in list_lines(r2, b"l", b'LIST "" *')
    r2.close()
    r.close()


# ---------------------------------------------------------------- DELETE with children

def test_delete_folder_with_children(imap):
    m = login(imap)
    assert m.create("P/C1")[0] == "OK" and m.create("P/C2/G")[0] == "OK"
    assert m.append("P", None, None, message("in parent"))[0] == "OK"
    assert m.append("P/C1", None, None, message("in child"))[0] == "OK"
    assert m.delete("P")[0] == "OK"                       # RFC 3501 6.3.4
    typ, data = m.list('""', "P*")
    assert data == [b'(\\Noselect \\HasChildren) "/" "P"', b'(\\HasNoChildren) "/" "P/C1"',
                    b'(\\HasChildren) "/" "P/C2"', b'(\\HasNoChildren) "/" "P/C2/G"']
    typ, data = m.list('""', "%")
    assert b'(\\Noselect \\HasChildren) "/" "P"' in data
    assert m.select("P")[0] == "NO"                       # its messages are gone
    assert m.status("P", "(MESSAGES)")[0] == "NO"
    assert m.append("P", None, None, message("x"))[0] == "NO"
    typ, data = m.delete("P")                             # \Noselect with children
    assert typ == "NO" and b"[CANNOT]" in data[0]
    assert m.select("P/C1")[0] == "OK" and m.search(None, "ALL")[1] == [b"1"]
    m.close()
    assert m.delete("P/C2")[0] == "OK"                    # P/C2 now \Noselect too
    assert m.delete("P/C2/G")[0] == "OK"                  # its last child: P/C2 goes
    assert m.list('""', "P*")[1] == [b'(\\Noselect \\HasChildren) "/" "P"',
                                     b'(\\HasNoChildren) "/" "P/C1"']
    assert m.delete("P/C1")[0] == "OK"                    # the last child: P goes as well
    assert m.list('""', "P*")[1] == [None]
    assert m.delete("P")[0] == "NO"                       # nothing left
    # the name can be created again, empty
    assert m.create("P")[0] == "OK"
    assert m.select("P")[1] == [b"0"]
    m.close()
    # a \Noselect name is renamed with its children
    assert m.create("N/K")[0] == "OK" and m.delete("N")[0] == "OK"
    assert m.rename("N", "M")[0] == "OK"
    assert m.list('""', "M*")[1] == [b'(\\Noselect \\HasChildren) "/" "M"',
                                     b'(\\HasNoChildren) "/" "M/K"']
    assert m.list('""', "N*")[1] == [None]
    assert m.rename("Nothing", "X")[0] == "NO"
    m.logout()


# ---------------------------------------------------------------- LOGINDISABLED, literals

def test_logindisabled_before_tls(mf, domain):
    import base64
    import mf as harness
    node, port = imap_node(mf, imap={"require_tls": True})
    r = Raw(port)
    assert b"LOGINDISABLED" in r.greeting and b"AUTH=PLAIN" not in r.greeting
    caps = caps_of(r)
    assert b"LOGINDISABLED" in caps and b"STARTTLS" in caps
    assert not any(c.startswith(b"AUTH=") for c in caps)
    line = r.cmd(b"l", b"LOGIN a@example.test secret")[-1]
    assert line.startswith(b"l NO [PRIVACYREQUIRED]")
    ir = base64.b64encode(b"\0a@example.test\0secret")
    assert r.cmd(b"a", b"AUTHENTICATE PLAIN " + ir)[-1].startswith(b"a NO [PRIVACYREQUIRED]")
    assert r.cmd(b"s", b"SELECT INBOX")[-1].startswith(b"s BAD")     # still not logged in
    r.close()
    # after STARTTLS: AUTH=PLAIN, no LOGINDISABLED, LOGIN works
    m = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    assert m.starttls(ssl_context=harness.insecure_tls_context())[0] == "OK"
    typ, data = m.capability()
    assert b"LOGINDISABLED" not in data[0] and b"AUTH=PLAIN" in data[0]
    assert m.login(USER, PASSWORD)[0] == "OK"
    m.logout()


def test_literal_plus_nonsync_sizes(imap):
    """LITERAL+ is what is advertised: a non-synchronizing literal of any size
    up to the limits is taken without a continuation (APPEND's streamed)."""
    r = Raw(imap.imap_port)
    caps = r.greeting.split()
    assert b"LITERAL+" in caps
    assert r.cmd(b"l", b"LOGIN {14+}\r\na@example.test {6+}\r\nsecret")[-1].startswith(b"l OK")
    body = message("big nonsync", "z" * 9000 + "\r\n")
    r.send(b"a APPEND INBOX {%d+}\r\n" % len(body) + body + b"\r\n")
    line = r.until_tag(b"a")[-1]
    assert line.startswith(b"a OK [APPENDUID ")
    # a synchronizing literal still gets its continuation
    assert r.cmd(b"s", b"SELECT INBOX")[-1].startswith(b"s OK")
    r.send(b"b SEARCH BODY {4}\r\n")
    assert r.line().startswith(b"+ ")
    r.send(b"zzzz\r\n")
    assert r.until_tag(b"b") == [b"* SEARCH 1", b"b OK SEARCH completed"]
    r.close()


# ---------------------------------------------------------------- QUOTA

def kib_up(n):
    return (n + 1023) // 1024


def stored(data):
    return len(data.replace(b"\r\n", b"\n"))     # the store keeps LF line ends


def test_quota_user_and_domain_roots(mf, imap):
    m = login(imap)
    msgs = [message("q1", "a" * 3000 + "\r\n"), message("q2")]
    for data in msgs:
        assert m.append("INBOX", None, None, data)[0] == "OK"
    used = kib_up(sum(stored(d) for d in msgs))
    # the RFC 2087 form Thunderbird sends, through imaplib
    typ, data = m.getquotaroot("INBOX")
    assert typ == "OK"
    assert data == [[b'"INBOX" "User quota"'], [b'"User quota" (STORAGE %d 10240)' % used]]
    m.logout()
    r = raw_login(imap)
    caps = caps_of(r)
    assert b"QUOTA" in caps and b"QUOTA=RES-STORAGE" in caps and b"QUOTA=RES-MESSAGE" not in caps
    assert r.cmd(b"g1", b"GETQUOTAROOT Drafts") == [
        b'* QUOTAROOT "Drafts" "User quota"',
        b'* QUOTA "User quota" (STORAGE %d 10240)' % used,
        b"g1 OK Getquotaroot completed"]
    assert r.cmd(b"g2", b'GETQUOTA "User quota"') == [
        b'* QUOTA "User quota" (STORAGE %d 10240)' % used, b"g2 OK Getquota completed"]
    assert r.cmd(b"g3", b'GETQUOTA "Domain quota"')[-1].startswith(b"g3 NO")
    assert r.cmd(b"g4", b"GETQUOTAROOT Nope")[-1].startswith(b"g4 NO [NONEXISTENT]")
    assert r.cmd(b"g5", b'SETQUOTA "User quota" (STORAGE 512)')[-1].startswith(b"g5 NO [NOPERM]")
    assert r.cmd(b"g6", b'SETQUOTA "User quota" STORAGE')[-1].startswith(b"g6 BAD")
    assert r.cmd(b"g7", b"GETQUOTAROOT")[-1].startswith(b"g7 BAD")
    r.close()
    # a pooled domain quota (set by the operator while the node runs) adds a root
    mf.ctl("domain", "quota", "example.test", "1M")
    m = login(imap, "b@example.test")
    other = message("from b", "b" * 5000 + "\r\n")
    assert m.append("INBOX", None, None, other)[0] == "OK"
    domain_used = kib_up(sum(stored(d) for d in msgs) + stored(other))
    typ, data = m.getquotaroot("INBOX")
    assert data == [[b'"INBOX" "User quota" "Domain quota"'],
                    [b'"User quota" (STORAGE %d 10240)' % kib_up(stored(other)),
                     b'"Domain quota" (STORAGE %d 1024)' % domain_used]]
    typ, data = m.getquota('"Domain quota"')
    assert typ == "OK" and data == [b'"Domain quota" (STORAGE %d 1024)' % domain_used]
    m.logout()


def test_quota_small_limit_and_not_logged_in(imap):
    r = Raw(imap.imap_port)
    assert r.cmd(b"n", b"GETQUOTAROOT INBOX")[-1].startswith(b"n BAD")
    r.close()
    m = login(imap, "d@example.test")                   # quota 2K
    data = message("tiny")
    assert m.append("INBOX", None, None, data)[0] == "OK"
    assert m.getquota('"User quota"')[1] == [b'"User quota" (STORAGE %d 2)' % kib_up(stored(data))]
    m.logout()


# ---------------------------------------------------------------- ENABLE IMAP4rev2 / UTF8=ACCEPT

def test_enable_utf8_names_and_rev2_esearch(mf, domain):
    imap, port = imap_node(mf, imap={"utf8_accept": True})
    imap.imap_port = port
    m = login(imap)
    assert m.create("R&AOk-sum&AOk-/Caf&AOk-")[0] == "OK"     # "Résumé/Café" in modified UTF-7
    assert m.create("A&-B")[0] == "OK"                        # "A&B"
    fill_inbox(m, 3)
    m.logout()
    r = raw_login(imap)
    # before ENABLE: modified UTF-7 on the wire
    assert b'* LIST (\\HasChildren) "/" "R&AOk-sum&AOk-"' in list_lines(r, b"l0", b'LIST "" R*')
    assert r.cmd(b"e", b"ENABLE UTF8=ACCEPT") == [b"* ENABLED UTF8=ACCEPT", b"e OK Enabled"]
    assert r.cmd(b"e2", b"ENABLE UTF8=ACCEPT")[0] == b"* ENABLED"          # already on
    lines = list_lines(r, b"l1", 'LIST "" "Résumé*"'.encode())
    assert lines == ['* LIST (\\HasChildren) "/" "Résumé"'.encode(),
                     '* LIST (\\HasNoChildren) "/" "Résumé/Café"'.encode()]
    assert list_lines(r, b"l2", b'LIST "" A&*') == [b'* LIST (\\HasNoChildren) "/" "A&B"']
    lines = list_lines(r, b"l3", 'STATUS "Résumé/Café" (MESSAGES)'.encode())
    assert lines == ['* STATUS "Résumé/Café" (MESSAGES 0)'.encode()]
    assert r.cmd(b"c", 'CREATE "Über"'.encode())[-1].startswith(b"c OK")
    assert r.cmd(b"c2", b"CREATE \"bad\xff\"")[-1].startswith(b"c2 BAD")  # not UTF-8
    r.close()
    m = login(imap)
    typ, data = m.list('""', "&ANw-ber")                       # stored as modified UTF-7
    assert data == [b'(\\HasNoChildren) "/" "&ANw-ber"']
    m.logout()
    # IMAP4rev2: SEARCH answers with ESEARCH, names in UTF-8 too
    r = raw_login(imap)
    assert r.cmd(b"e", b"ENABLE IMAP4rev2 CONDSTORE")[0].startswith(b"* ENABLED IMAP4rev2")
    r.cmd(b"s", b"SELECT INBOX")
    assert r.cmd(b"s1", b"SEARCH 2:3") == [b'* ESEARCH (TAG "s1") ALL 2:3', b"s1 OK SEARCH completed"]
    assert r.cmd(b"s2", b"UID SEARCH ALL")[0] == b'* ESEARCH (TAG "s2") UID ALL 1:3'
    assert r.cmd(b"s3", b"SEARCH DELETED")[0] == b'* ESEARCH (TAG "s3")'
    assert r.cmd(b"s4", b"SEARCH RETURN (COUNT) ALL")[0] == b'* ESEARCH (TAG "s4") COUNT 3'
    assert 'Café"'.encode() in b"\n".join(list_lines(r, b"l", b'LIST "" *'))
    r.close()


# ---------------------------------------------------------------- SEARCHRES within SEARCH

def test_search_save_and_dollar(imap):
    m = login(imap)
    fill_inbox(m, 6)
    m.logout()
    r = raw_login(imap)
    r.cmd(b"s", b"SELECT INBOX")
    r.cmd(b"f", b"STORE 2,4,5 +FLAGS (\\Flagged)")
    # SAVE alone: no untagged response (RFC 5182 2.1)
    assert r.cmd(b"a", b"SEARCH RETURN (SAVE) FLAGGED") == [b"a OK SEARCH completed"]
    assert r.cmd(b"b", b"SEARCH $")[0] == b"* SEARCH 2 4 5"
    assert r.cmd(b"c", b"UID SEARCH UID $ NOT 4")[0] == b"* SEARCH 2 5"
    assert r.cmd(b"d", b"SEARCH OR $ 1")[0] == b"* SEARCH 1 2 4 5"
    # SAVE with MIN MAX keeps only those two; "$" inside still means the old result
    lines = r.cmd(b"e", b"SEARCH RETURN (SAVE MIN MAX) NOT $")
    assert lines[0] == b'* ESEARCH (TAG "e") MIN 1 MAX 6'
    assert r.cmd(b"g", b"SEARCH $")[0] == b"* SEARCH 1 6"
    # expunged messages leave "$"
    r.cmd(b"x", b"STORE 1 +FLAGS (\\Deleted)")
    r.cmd(b"x2", b"EXPUNGE")
    assert r.cmd(b"h", b"UID SEARCH $")[0] == b"* SEARCH 6"
    # a failed SAVE empties it
    assert r.cmd(b"i", b"SEARCH RETURN (SAVE) FROBNICATE")[-1].startswith(b"i BAD")
    assert r.cmd(b"j", b"SEARCH $")[0] == b"* SEARCH"
    # saved in another mailbox: empty here
    r.cmd(b"k", b"SEARCH RETURN (SAVE) ALL")
    r.cmd(b"s2", b"SELECT Drafts")
    assert r.cmd(b"l", b"SEARCH $") == [b"* SEARCH", b"l OK SEARCH completed"]
    r.close()


def test_status_deleted_items(imap):
    m = login(imap)
    big = message("big", "d" * 5000 + "\r\n")
    m.append("Drafts", r"(\Deleted)", None, big)
    m.append("Drafts", None, None, message("keep"))
    m.append("Drafts", r"(\Deleted \Seen)", None, message("small"))
    typ, data = m.status("Drafts", "(MESSAGES DELETED DELETED-STORAGE)")
    assert typ == "OK"
    kib = kib_up(stored(big) + stored(message("small")))
    assert data == [b'"Drafts" (MESSAGES 3 DELETED 2 DELETED-STORAGE %d)' % kib]
    typ, data = m.status("Sent", "(DELETED)")
    assert data == [b'"Sent" (DELETED 0)']
    # through LIST-STATUS as well; nothing moved or changed by looking
    typ, data = m._simple_command("LIST", '""', "Drafts", "RETURN", "(STATUS (DELETED MESSAGES))")
    typ, data = m._untagged_response(typ, data, "STATUS")
    assert data == [b'"Drafts" (MESSAGES 3 DELETED 2)']
    m.logout()


# ---------------------------------------------------------------- APPEND into the selected mailbox

def test_append_to_selected_mailbox_reports_it(imap):
    """The sync that tells the session of its own APPEND also gives the
    APPENDUID; an APPEND elsewhere leaves the selected mailbox alone."""
    m = login(imap)
    fill_inbox(m, 2)
    assert m.create("Other")[0] == "OK"
    m.logout()
    r = raw_login(imap)
    lines = r.cmd(b"s", b"SELECT INBOX")
    uidvalidity = re.search(rb"UIDVALIDITY (\d+)", b" ".join(lines)).group(1)
    data = message("selected")
    r.send(b"a1 APPEND INBOX (\\Flagged) {%d+}\r\n%s\r\n" % (len(data), data))
    lines = r.until_tag(b"a1")
    assert b"* 3 EXISTS" in lines
    assert lines[-1] == b"a1 OK [APPENDUID %s 3] Append completed" % uidvalidity
    fetched = r.cmd(b"f", b"UID FETCH 3 (UID FLAGS RFC822.SIZE)")
    assert fetched[0] == b"* 3 FETCH (UID 3 FLAGS (\\Flagged \\Recent) RFC822.SIZE %d)" % len(data)
    r.send(b"a2 APPEND Other {%d+}\r\n%s\r\n" % (len(data), data))
    lines = r.until_tag(b"a2")
    assert re.fullmatch(rb"a2 OK \[APPENDUID \d+ 1\] Append completed", lines[-1])
    assert not any(b"EXISTS" in line for line in lines)
    r.close()
