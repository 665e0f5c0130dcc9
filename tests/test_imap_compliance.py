"""test_imap_compliance.py: protocol details that IMAP compliance checkers
look at, each against the real daemon with a byte-exact client (Raw from
test_imap.py): \\Recent for copied, moved and flagged appended messages, the
HIGHESTMODSEQ report of the first CONDSTORE enabling command (FETCH, SEARCH,
STORE, ENABLE), BINARY[] with HEADER/TEXT/MIME sections, nz-number part
numbers, LSUB and LIST (SUBSCRIBED RECURSIVEMATCH) for unsubscribed parents,
SEARCH FROM on addresses with comments and groups, FLAGS announcing a new
keyword before a FETCH names it, COPY/FETCH of messages another session
expunged, UID in every FETCH under QRESYNC, and no NUL in a BODY[] literal.

Each test gets its own node (directory with example.test users a..d, store,
IMAP listener on harness ports)."""
import re

from test_imap import imap, raw_login  # noqa: F401 (fixture)


def append(r, tag, box, data, flags=b""):
    """APPEND with a LITERAL+ literal; returns the tagged line."""
    r.send(b"%s APPEND %s %s{%d+}\r\n" % (tag, box, flags + b" " if flags else b"", len(data)) + data + b"\r\n")
    lines = r.until_tag(tag)
    assert lines[-1].startswith(tag + b" OK"), lines
    return lines[-1]


def msg(subject, body=b"text\r\n", headers=b""):
    return (b"From: Someone <someone@remote.test>\r\nTo: a@example.test\r\n" + headers +
            b"Subject: " + subject + b"\r\n\r\n" + body)


def untagged(lines):
    return [x for x in lines[:-1] if x.startswith(b"* ")]


# ---------------------------------------------------------------- \Recent

def test_copy_gives_recent_to_the_session_that_sees_it(imap):
    r1, r2 = raw_login(imap), raw_login(imap)
    assert r1.cmd(b"c", b"CREATE dest")[-1].startswith(b"c OK")
    for i in range(3):
        append(r1, b"a%d" % i, b"INBOX", msg(b"m%d" % i))
    r1.cmd(b"s", b"SELECT INBOX")
    r1.cmd(b"f", b"STORE 1 FLAGS (\\Seen)")
    r1.cmd(b"f2", b"STORE 2 FLAGS (\\Flagged $Label1)")
    lines = r2.cmd(b"s", b"SELECT dest")
    assert b"* 0 EXISTS" in lines and b"* 0 RECENT" in lines
    assert r1.cmd(b"cp", b"COPY 1:2 dest")[-1].startswith(b"cp OK [COPYUID ")
    lines = r2.cmd(b"n", b"NOOP")
    assert b"* 2 EXISTS" in lines and b"* 2 RECENT" in lines
    lines = r2.cmd(b"f", b"FETCH 1:2 FLAGS")
    assert lines[0] == b"* 1 FETCH (FLAGS (\\Seen \\Recent))"
    assert re.match(rb"\* 2 FETCH \(FLAGS \((\\Flagged \$Label1|\$Label1 \\Flagged) \\Recent\)\)$", lines[1]), lines
    # a session that selects the folder later does not get \Recent again
    r3 = raw_login(imap)
    lines = r3.cmd(b"s", b"SELECT dest")
    assert b"* 2 EXISTS" in lines and b"* 0 RECENT" in lines
    assert r3.cmd(b"f", b"FETCH 1 FLAGS")[0] == b"* 1 FETCH (FLAGS (\\Seen))"
    for r in (r1, r2, r3):
        r.close()


def test_move_gives_recent_in_the_destination(imap):
    r1, r2 = raw_login(imap), raw_login(imap)
    r1.cmd(b"c", b"CREATE dest")
    append(r1, b"a", b"INBOX", msg(b"moved"))
    r1.cmd(b"s", b"SELECT INBOX")
    r2.cmd(b"s", b"SELECT dest")
    lines = r1.cmd(b"m", b"MOVE 1 dest")
    assert lines[-1] == b"m OK Move completed" or lines[-1].startswith(b"m OK")
    assert b"* 1 EXPUNGE" in lines
    lines = r2.cmd(b"n", b"NOOP")
    assert b"* 1 EXISTS" in lines and b"* 1 RECENT" in lines
    r1.close()
    r2.close()


def test_append_with_flags_is_recent_in_exactly_one_session(imap):
    r1, r2, r3 = raw_login(imap), raw_login(imap), raw_login(imap)
    r1.cmd(b"s", b"SELECT INBOX")
    r2.cmd(b"s", b"SELECT INBOX")
    append(r3, b"a", b"INBOX", msg(b"flagged"), b"(\\Seen \\Flagged)")
    lines = r3.cmd(b"st", b"STATUS INBOX (MESSAGES UNSEEN RECENT)")
    # not selected in r3, so STATUS may count it as recent; both
    # selecting sessions then race for it
    assert re.match(rb'\* STATUS "?INBOX"? \(MESSAGES 1 UNSEEN 0 RECENT [01]\)$', lines[0]), lines
    recent = 0
    for r in (r1, r2):
        lines = r.cmd(b"n", b"NOOP")
        assert b"* 1 EXISTS" in lines
        lines = r.cmd(b"f", b"FETCH 1 FLAGS")
        flags = re.match(rb"\* 1 FETCH \(FLAGS \((.*)\)\)$", lines[0]).group(1).split()
        assert b"\\Seen" in flags and b"\\Flagged" in flags
        recent += b"\\Recent" in flags
    assert recent == 1
    for r in (r1, r2, r3):
        r.close()


# ---------------------------------------------------------------- CONDSTORE

def test_first_condstore_enabling_command_reports_highestmodseq(imap):
    r = raw_login(imap)
    for i in range(2):
        append(r, b"a%d" % i, b"INBOX", msg(b"m%d" % i))
    lines = r.cmd(b"s", b"SELECT INBOX")
    highest = int(re.search(rb"\[HIGHESTMODSEQ (\d+)\]", b"\r\n".join(lines)).group(1))
    lines = r.cmd(b"f", b"FETCH 1 (UID MODSEQ)")
    assert lines[0] == b"* OK [HIGHESTMODSEQ %d] Highest" % highest
    assert re.match(rb"\* 1 FETCH \(UID 1 MODSEQ \(\d+\)\)$", lines[1]), lines
    assert lines[2] == b"f OK Fetch completed"
    # once CONDSTORE is on, no further report
    lines = r.cmd(b"f2", b"FETCH 2 (MODSEQ)")
    assert len(lines) == 2 and lines[0].startswith(b"* 2 FETCH (MODSEQ (")
    # STORE now carries MODSEQ in its FETCH
    lines = r.cmd(b"st", b"STORE 1 +FLAGS (\\Seen)")
    assert re.match(rb"\* 1 FETCH \(FLAGS \(\\Seen \\Recent\) MODSEQ \(\d+\)\)$", lines[0]), lines
    r.close()


def test_condstore_enabling_by_search_and_store(imap):
    r = raw_login(imap)
    append(r, b"a", b"INBOX", msg(b"one"))
    r.cmd(b"s", b"SELECT INBOX")
    lines = r.cmd(b"e", b"SEARCH RETURN (COUNT) MODSEQ 1")
    assert lines[0].startswith(b"* OK [HIGHESTMODSEQ ")
    assert re.match(rb'\* ESEARCH \(TAG "e"\) COUNT 1 MODSEQ \d+$', lines[1]), lines
    r2 = raw_login(imap)
    r2.cmd(b"s", b"SELECT INBOX")
    lines = r2.cmd(b"u", b"STORE 1 (UNCHANGEDSINCE 99999999999999999999) +FLAGS (\\Answered)")
    assert lines[-1].startswith(b"u BAD")     # beyond 2^63-1: no enabling, no report
    lines = r2.cmd(b"u2", b"STORE 1 (UNCHANGEDSINCE 9000000000000000000) +FLAGS (\\Answered)")
    assert lines[0].startswith(b"* OK [HIGHESTMODSEQ ")
    assert re.match(rb"\* 1 FETCH \(FLAGS \(\\Answered\) MODSEQ \(\d+\)\)$", lines[1]), lines
    # not selected: nothing to report
    r3 = raw_login(imap)
    lines = r3.cmd(b"x", b"ENABLE CONDSTORE")
    assert lines == [b"* ENABLED CONDSTORE", b"x OK Enabled"]
    for c in (r, r2, r3):
        c.close()


# ---------------------------------------------------------------- BINARY

NESTED = (b"From: outer@remote.test\r\nSubject: nest\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n"
          b"preamble\r\n--zz\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
          b"aGVsbG8gdGhlcmU=\r\n"
          b"--zz\r\nContent-Type: message/rfc822\r\n\r\n"
          b"From: inner@remote.test\r\nSubject: inside\r\nX-Note: kept\r\n\r\ninner body\r\n"
          b"--zz--\r\n")


def literal(line):
    m = re.search(rb"(~?)\{(\d+)\}\r\n", line)
    return line[m.end():m.end() + int(m.group(2))]


def test_binary_sections_other_than_parts(imap):
    r = raw_login(imap)
    append(r, b"a", b"INBOX", NESTED)
    r.cmd(b"s", b"SELECT INBOX")
    # a part number decodes, as before
    assert literal(r.cmd(b"b1", b"FETCH 1 (BINARY.PEEK[1])")[0]) == b"hello there"
    assert b"BINARY.SIZE[1] 11" in r.cmd(b"b2", b"FETCH 1 (BINARY.SIZE[1])")[0]
    # TEXT, HEADER, MIME and HEADER.FIELDS as BODY[] gives them
    for sec in (b"TEXT", b"HEADER", b"1.MIME", b"2.HEADER", b"2.TEXT", b"2.MIME",
                b"2.HEADER.FIELDS (Subject X-Note)", b"2.HEADER.FIELDS.NOT (Subject)"):
        body = literal(r.cmd(b"x", b"FETCH 1 (BODY.PEEK[%s])" % sec)[0])
        lines = r.cmd(b"y", b"FETCH 1 (BINARY.PEEK[%s] BINARY.SIZE[%s])" % (sec, sec))
        assert lines[-1] == b"y OK Fetch completed", (sec, lines)
        assert literal(lines[0]) == body, sec
        assert b"BINARY.SIZE[%s] %d" % (sec, len(body)) in lines[0], sec
    assert literal(r.cmd(b"z", b"FETCH 1 (BINARY.PEEK[2.HEADER.FIELDS (X-Note)])")[0]) == \
        b"X-Note: kept\r\n\r\n"
    # a partial of a TEXT section
    lines = r.cmd(b"p", b"FETCH 1 (BINARY.PEEK[2.TEXT]<2.3>)")
    assert b"BINARY[2.TEXT]<2> {3}\r\nner)" in lines[0]
    # not PEEK sets \Seen
    lines = r.cmd(b"s2", b"FETCH 1 (BINARY[TEXT])")
    assert b"\\Seen" in lines[0]
    for bad in (b"BINARY[TEXT.1]", b"BINARY[1.BOGUS]", b"BINARY.SIZE[TEXT]<0.1>"):
        assert r.cmd(b"bad", b"FETCH 1 (%s)" % bad)[-1].startswith(b"bad BAD"), bad
    r.close()


# ---------------------------------------------------------------- LSUB / LIST

def test_lsub_percent_gives_unsubscribed_parent_noselect(imap):
    r = raw_login(imap)
    for name in (b"top/sub", b"top/other/deep", b"plain", b"par/kid"):
        assert r.cmd(b"c", b"CREATE %s" % name)[-1].startswith(b"c OK")
    for name in (b"top/sub", b"top/other/deep", b"plain", b"par", b"par/kid"):
        assert r.cmd(b"u", b"SUBSCRIBE %s" % name)[-1].startswith(b"u OK")
    lines = r.cmd(b"l", b'LSUB "" "top/%"')
    assert sorted(untagged(lines)) == [b'* LSUB () "/" "top/sub"',
                                       b'* LSUB (\\Noselect) "/" "top/other"']
    lines = r.cmd(b"l2", b'LSUB "" "p%"')
    assert sorted(untagged(lines)) == [b'* LSUB () "/" "par"', b'* LSUB () "/" "plain"']
    lines = r.cmd(b"l2b", b'LSUB "" "t%"')
    assert untagged(lines) == [b'* LSUB (\\Noselect) "/" "top"']
    # "*" matches the subscriptions themselves: no extra parent lines
    lines = r.cmd(b"l3", b'LSUB "" "top/*"')
    assert sorted(untagged(lines)) == [b'* LSUB () "/" "top/other/deep"', b'* LSUB () "/" "top/sub"']
    r.close()


def test_list_subscribed_recursivematch_childinfo(imap):
    r = raw_login(imap)
    for name in (b"box/a", b"box/b/c", b"box/d/e", b"box/d/f"):
        assert r.cmd(b"c", b"CREATE %s" % name)[-1].startswith(b"c OK")
    for name in (b"box/a", b"box/b/c", b"box/d/e", b"box/d/f", b"gone/x"):
        r.cmd(b"u", b"SUBSCRIBE %s" % name)
    lines = r.cmd(b"l", b'LIST (SUBSCRIBED RECURSIVEMATCH) "" "box/%"')
    got = sorted(untagged(lines))
    assert got == [b'* LIST (\\HasChildren) "/" "box/b" (CHILDINFO ("SUBSCRIBED"))',
                   b'* LIST (\\HasChildren) "/" "box/d" (CHILDINFO ("SUBSCRIBED"))',
                   b'* LIST (\\HasNoChildren \\Subscribed) "/" "box/a"'], got
    # a parent that does not exist is \NonExistent
    lines = r.cmd(b"l2", b'LIST (SUBSCRIBED RECURSIVEMATCH) "" "gone"')
    assert untagged(lines) == [b'* LIST (\\NonExistent) "/" "gone" (CHILDINFO ("SUBSCRIBED"))']
    # a child that matches the pattern itself does not make CHILDINFO
    lines = r.cmd(b"l3", b'LIST (SUBSCRIBED RECURSIVEMATCH) "" "box/d/e"')
    assert untagged(lines) == [b'* LIST (\\HasNoChildren \\Subscribed) "/" "box/d/e"']
    # without RECURSIVEMATCH: only the subscriptions
    lines = r.cmd(b"l4", b'LIST (SUBSCRIBED) "" "box/%"')
    assert untagged(lines) == [b'* LIST (\\HasNoChildren \\Subscribed) "/" "box/a"']
    r.close()


# ---------------------------------------------------------------- SEARCH

def test_search_address_with_comments_and_groups(imap):
    r = raw_login(imap)
    append(r, b"a1", b"INBOX", b"From: <jo.smith (the man) @ (at) example.org>\r\nSubject: x\r\n\r\nb\r\n")
    append(r, b"a2", b"INBOX", b"From: Jo Smith <jo.smith@example.org>\r\nSubject: y\r\n\r\nb\r\n")
    append(r, b"a3", b"INBOX", b"From: =?utf-8?q?J=C3=B6rg?= <jorg@example.net>\r\n"
                               b"To: crew: one@ship.test, two@ship.test;\r\nSubject: z\r\n\r\nb\r\n")
    r.cmd(b"s", b"SELECT INBOX")
    assert r.cmd(b"f1", b"SEARCH FROM jo.smith@example.org")[0] == b"* SEARCH 1 2"
    assert r.cmd(b"f2", b"SEARCH FROM h@exam")[0] == b"* SEARCH 1 2"
    assert r.cmd(b"f3", b"SEARCH FROM \"jo smith\"")[0] == b"* SEARCH 2"
    assert r.cmd(b"f4", b"SEARCH CHARSET UTF-8 FROM {5+}\r\nJ\xc3\xb6rg")[0] == b"* SEARCH 3"
    assert r.cmd(b"f5", b"SEARCH TO two@ship.test")[0] == b"* SEARCH 3"
    assert r.cmd(b"f6", b"SEARCH TO crew")[0] == b"* SEARCH 3"
    assert r.cmd(b"f7", b"SEARCH FROM nobody@example.org")[0] == b"* SEARCH"
    assert r.cmd(b"f8", b"SEARCH NOT FROM example.org")[0] == b"* SEARCH 3"
    r.close()


# ---------------------------------------------------------------- FLAGS

def test_new_keyword_is_announced_in_flags_before_fetch(imap):
    r1, r2 = raw_login(imap), raw_login(imap)
    append(r1, b"a", b"INBOX", msg(b"kw"))
    r1.cmd(b"s", b"SELECT INBOX")
    lines = r2.cmd(b"s", b"SELECT INBOX")
    assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)" in lines
    # the storing session: FLAGS and PERMANENTFLAGS first, then the FETCH
    lines = r1.cmd(b"st", b"STORE 1 +FLAGS (Project)")
    assert lines[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded Project)"
    assert lines[1] == (b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft "
                        b"$Forwarded Project \\*)] Flags permitted")
    assert lines[2] == b"* 1 FETCH (FLAGS (Project \\Recent))"
    # a second STORE of a known keyword repeats nothing
    lines = r1.cmd(b"st2", b"STORE 1 -FLAGS (Project)")
    assert lines == [b"* 1 FETCH (FLAGS (\\Recent))", b"st2 OK Store completed"]
    # the other session learns the keyword before a FETCH names it
    r1.cmd(b"st3", b"STORE 1 +FLAGS (Project)")
    lines = r2.cmd(b"n", b"NOOP")
    assert lines[0].startswith(b"* FLAGS (") and b" Project)" in lines[0], lines
    assert lines[1].startswith(b"* OK [PERMANENTFLAGS (")
    assert lines[2] == b"* 1 FETCH (UID 1 FLAGS (Project))"
    # once told, plain FETCHes carry no FLAGS response
    assert r2.cmd(b"f", b"FETCH 1 FLAGS") == [b"* 1 FETCH (FLAGS (Project))", b"f OK Fetch completed"]
    r1.close()
    r2.close()


def test_section_part_numbers_are_nonzero(imap):
    r = raw_login(imap)
    append(r, b"a", b"INBOX", NESTED)
    r.cmd(b"s", b"SELECT INBOX")
    for bad in (b"BODY[0]", b"BODY.PEEK[1.0]", b"BODY[01]", b"BODY[0.HEADER]", b"BINARY[0]",
                b"BINARY.PEEK[2.0]", b"BINARY.SIZE[02]"):
        assert r.cmd(b"b", b"FETCH 1 (%s)" % bad)[-1].startswith(b"b BAD"), bad
    # a number that only contains a zero is fine; a part that is not there is empty
    lines = r.cmd(b"g", b"FETCH 1 (BODY.PEEK[10] BODY.PEEK[2.1])")
    # the CRLF before the boundary belongs to the boundary (RFC 2046 5.1.1)
    assert b"\r\n".join(lines[:-1]) == b"* 1 FETCH (BODY[10] {0}\r\n BODY[2.1] {10}\r\ninner body)", lines
    r.close()


# ---------------------------------------------------------------- expunged meanwhile

def test_copy_and_fetch_of_messages_another_session_expunged(imap):
    r1, r2 = raw_login(imap), raw_login(imap)
    r1.cmd(b"c", b"CREATE dest")
    for i in range(3):
        append(r1, b"a%d" % i, b"INBOX", msg(b"m%d" % i))
    r1.cmd(b"s", b"SELECT INBOX")
    r2.cmd(b"s", b"SELECT INBOX")
    r2.cmd(b"d", b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert r2.cmd(b"e", b"EXPUNGE")[0] == b"* 2 EXPUNGE"
    # r1 still has 3 messages; the gone one is skipped, the rest copied
    lines = r1.cmd(b"cp", b"COPY 1:3 dest")
    assert lines[-1] == b"cp OK [COPYUID %s 1,3 1,2] Copy completed, some messages were expunged meanwhile" % \
        re.search(rb"COPYUID (\d+)", lines[-1]).group(1), lines
    assert not any(b"EXPUNGE" in x for x in lines)       # not during COPY by sequence number
    lines = r1.cmd(b"cp2", b"COPY 2 dest")
    assert lines[-1] == b"cp2 OK [EXPUNGEISSUED] Nothing copied, the messages were expunged"
    lines = r1.cmd(b"f", b"FETCH 2 (BODY.PEEK[])")
    assert lines[-1] == b"f NO [EXPUNGEISSUED] Some of the requested messages no longer exist"
    assert r1.cmd(b"n", b"NOOP")[0] == b"* 2 EXPUNGE"
    lines = r2.cmd(b"st", b"STATUS dest (MESSAGES)")
    assert lines[0] == b'* STATUS "dest" (MESSAGES 2)'
    r1.close()
    r2.close()


def test_qresync_fetch_responses_carry_uid(imap):
    r = raw_login(imap)
    for i in range(2):
        append(r, b"a%d" % i, b"INBOX", msg(b"m%d" % i))
    assert r.cmd(b"e", b"ENABLE QRESYNC")[0] == b"* ENABLED QRESYNC"
    r.cmd(b"s", b"SELECT INBOX")
    assert r.cmd(b"f", b"FETCH 2 (RFC822.SIZE)")[0].startswith(b"* 2 FETCH (UID 2 RFC822.SIZE ")
    assert r.cmd(b"f2", b"FETCH 1 (UID FLAGS)")[0].startswith(b"* 1 FETCH (UID 1 FLAGS (")
    lines = r.cmd(b"st", b"STORE 1 +FLAGS (\\Seen)")
    assert re.match(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Seen \\Recent\) MODSEQ \(\d+\)\)$", lines[0]), lines
    lines = r.cmd(b"st2", b"STORE 2 +FLAGS.SILENT (\\Seen)")
    assert re.match(rb"\* 2 FETCH \(UID 2 MODSEQ \(\d+\)\)$", lines[0]), lines
    # without QRESYNC a FETCH by sequence number has no UID it did not ask for
    r2 = raw_login(imap)
    r2.cmd(b"s", b"SELECT INBOX")
    assert r2.cmd(b"f", b"FETCH 2 (RFC822.SIZE)")[0].startswith(b"* 2 FETCH (RFC822.SIZE ")
    r.close()
    r2.close()


def test_body_literal_never_carries_nul(imap):
    r = raw_login(imap)
    data = (b"From: a@remote.test\r\nSubject: nul\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"q\"\r\n\r\n--q\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            b"\x00\x01ab\x00\r\n--q--\r\n")
    # APPEND takes a literal8 (RFC 3516)
    r.send(b"a APPEND INBOX ~{%d+}\r\n%s\r\n" % (len(data), data))
    assert r.until_tag(b"a")[-1].startswith(b"a OK [APPENDUID ")
    r.cmd(b"s", b"SELECT INBOX")
    # BINARY[] gives the octets in a literal8
    lines = r.cmd(b"b", b"FETCH 1 (BINARY.PEEK[1])")
    assert lines[0] == b"* 1 FETCH (BINARY[1] ~{5}\r\n\x00\x01ab\x00)"
    # BODY[] in a plain literal: NUL becomes 0x80, the size stays
    lines = r.cmd(b"f", b"FETCH 1 (BODY.PEEK[1] RFC822.SIZE)")
    assert lines[0] == b"* 1 FETCH (BODY[1] {5}\r\n\x80\x01ab\x80 RFC822.SIZE %d)" % len(data)
    body = b"\r\n".join(r.cmd(b"g", b"FETCH 1 (BODY.PEEK[])")[:-1])
    assert b"\x00" not in body and body.endswith(b"\x80\x01ab\x80\r\n--q--\r\n)")
    r.close()


def test_enable_condstore_while_selected_reports_highestmodseq(imap):
    r = raw_login(imap)
    append(r, b"a", b"INBOX", msg(b"one"))
    lines = r.cmd(b"s", b"SELECT INBOX")
    highest = re.search(rb"\[HIGHESTMODSEQ (\d+)\]", b"\r\n".join(lines)).group(1)
    lines = r.cmd(b"e", b"ENABLE CONDSTORE")
    assert lines == [b"* OK [HIGHESTMODSEQ %s] Highest" % highest, b"* ENABLED CONDSTORE", b"e OK Enabled"]
    assert r.cmd(b"e2", b"ENABLE QRESYNC") == [b"* ENABLED QRESYNC", b"e2 OK Enabled"]
    r.close()
