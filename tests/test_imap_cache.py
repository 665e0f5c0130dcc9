"""test_imap_cache.py: the per-mailbox cache (mailfleet-cache) behind FETCH
ENVELOPE / BODYSTRUCTURE / BODY / BODY.PEEK[HEADER.FIELDS (...)]: answers from
the cache are byte-identical to answers rendered from the message (over the
tricky-message corpus in tests/data/mime), a second FETCH opens no message
file (shown by changing a file under the server: cached items stay, the body
changes), and a damaged or deleted cache only costs a re-read."""
import glob
import os

import mf as harness
from test_imap import Raw, imap, login  # noqa: F401 (fixture)

USER = "a@example.test"
CORPUS = os.path.join(os.path.dirname(__file__), "data", "mime")
ITEMS = (b"(UID ENVELOPE BODYSTRUCTURE BODY "
         b"BODY.PEEK[HEADER.FIELDS (From To Cc Subject Date Message-ID References Content-Type)])")


def raw(node):
    r = Raw(node.imap_port)
    assert r.cmd(b"L", b"LOGIN a@example.test secret")[-1].startswith(b"L OK")
    return r


def corpus():
    return sorted(p for p in glob.glob(os.path.join(CORPUS, "*.eml")))


def fill(node, paths):
    m = login(node)
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        assert m.append("INBOX", None, None, data)[0] == "OK", p
    m.logout()


def cache_file(mf):
    return os.path.join(mf.maildir(USER), "mailfleet-cache")


def test_cached_answers_equal_rendered_ones(imap, mf):
    paths = corpus()
    assert len(paths) >= 15
    fill(imap, paths)
    r = raw(imap)
    r.cmd(b"s", b"SELECT INBOX")
    searches = [b"SEARCH FROM a", b"SEARCH SUBJECT test", b"SEARCH OR TO example HEADER Message-ID \"<\"",
                b"SEARCH SENTSINCE 1-Jan-2000", b"SEARCH HEADER Content-Type \"\""]
    uncached = [r.cmd(b"q%d" % i, q) for i, q in enumerate(searches)]
    first = r.cmd(b"f1", b"FETCH 1:* " + ITEMS)
    assert first[-1] == b"f1 OK Fetch completed"
    assert os.path.getsize(cache_file(mf)) > 16 + 100 * len(paths)
    second = r.cmd(b"f2", b"FETCH 1:* " + ITEMS)
    assert second[:-1] == first[:-1]
    # header searches answered from the cache find the same messages
    assert [r.cmd(b"q%d" % i, q) for i, q in enumerate(searches)] == uncached
    assert any(len(res[0].split()) > 3 for res in uncached)
    # a fresh session (reading the cache through the index) agrees too
    r2 = raw(imap)
    r2.cmd(b"s", b"EXAMINE INBOX")
    assert r2.cmd(b"f3", b"FETCH 1:* " + ITEMS)[:-1] == first[:-1]
    # fields outside the cached set are read from the message and still right
    a = r2.cmd(b"f4", b"FETCH 1:* (BODY.PEEK[HEADER.FIELDS (X-Unusual From)])")
    b = r2.cmd(b"f5", b"FETCH 1:* (BODY.PEEK[HEADER.FIELDS.NOT (Received)])")
    assert a[-1].startswith(b"f4 OK") and b[-1].startswith(b"f5 OK")
    r.close()
    r2.close()


def message_files(mf):
    cur = os.path.join(mf.maildir(USER), "cur")
    return sorted(os.path.join(cur, n) for n in os.listdir(cur))


def test_second_fetch_reads_no_message_file(imap, mf):
    m = login(imap)
    for i in range(3):
        msg = ("From: Sender %d <s%d@remote.test>\r\nTo: a@example.test\r\nSubject: cached %d\r\n"
               "Message-ID: <c%d@mf.test>\r\n\r\nbody %d\r\n" % (i, i, i, i, i)).encode()
        assert m.append("INBOX", None, None, msg)[0] == "OK"
    m.logout()
    r = raw(imap)
    r.cmd(b"s", b"SELECT INBOX")
    before = r.cmd(b"f1", b"FETCH 1:3 (ENVELOPE BODY.PEEK[HEADER.FIELDS (Subject)])")
    assert b"cached 1" in before[1]
    # rewrite message 2's file behind the server's back (same name)
    path = message_files(mf)[1]
    with open(path, "wb") as f:
        f.write(b"From: other@remote.test\nSubject: replaced\n\nnew body\n")
    after = r.cmd(b"f2", b"FETCH 1:3 (ENVELOPE BODY.PEEK[HEADER.FIELDS (Subject)])")
    assert after[:-1] == before[:-1]          # served from the cache
    body = r.cmd(b"f3", b"FETCH 2 (BODY.PEEK[TEXT])")
    assert b"new body" in body[0]             # the file itself is read for bodies
    # header keys search the cached fields, body keys the file
    assert r.cmd(b"q1", b"SEARCH SUBJECT \"cached 1\"")[0] == b"* SEARCH 2"
    assert r.cmd(b"q2", b"SEARCH SUBJECT replaced")[0] == b"* SEARCH"
    assert r.cmd(b"q3", b"SEARCH BODY \"new body\"")[0] == b"* SEARCH 2"
    r.close()


def test_damaged_or_deleted_cache_is_rebuilt(imap, mf):
    fill(imap, corpus()[:6])
    r = raw(imap)
    r.cmd(b"s", b"SELECT INBOX")
    good = r.cmd(b"f1", b"FETCH 1:* " + ITEMS)
    size = os.path.getsize(cache_file(mf))
    # flip bytes in the middle of every entry region
    with open(cache_file(mf), "r+b") as f:
        data = bytearray(f.read())
        for off in range(40, len(data), 97):
            data[off] ^= 0xFF
        f.seek(0)
        f.write(data)
    r2 = raw(imap)
    r2.cmd(b"s", b"SELECT INBOX")
    assert r2.cmd(b"f2", b"FETCH 1:* " + ITEMS)[:-1] == good[:-1]
    assert os.path.getsize(cache_file(mf)) > size   # re-read entries appended
    os.unlink(cache_file(mf))
    r3 = raw(imap)
    r3.cmd(b"s", b"SELECT INBOX")
    assert r3.cmd(b"f3", b"FETCH 1:* " + ITEMS)[:-1] == good[:-1]
    assert r3.cmd(b"f4", b"FETCH 1:* " + ITEMS)[:-1] == good[:-1]
    assert os.path.exists(cache_file(mf))
    for c in (r, r2, r3):
        c.close()


def test_cache_read_in_growing_windows(imap, mf):
    """A cache of several read windows (the first is 32 KB, later ones grow):
    entries across window edges, a few messages from the middle, and every
    message at once all answer as when rendered."""
    paths = corpus()
    m = login(imap)
    for i in range(12):
        for p in paths:
            with open(p, "rb") as f:
                assert m.append("INBOX", None, None, f.read())[0] == "OK", p
    m.logout()
    r = raw(imap)
    r.cmd(b"s", b"SELECT INBOX")
    first = r.cmd(b"f1", b"FETCH 1:* " + ITEMS)
    assert first[-1] == b"f1 OK Fetch completed"
    assert os.path.getsize(cache_file(mf)) > 3 * 32 * 1024
    r.close()
    for part in (b"100:110", b"3,150,40,200,7", b"1:*"):
        r = raw(imap)
        r.cmd(b"s", b"EXAMINE INBOX")
        got = r.cmd(b"f", b"FETCH " + part + b" " + ITEMS)
        assert got[-1] == b"f OK Fetch completed"
        want = {line.split(b" ", 2)[1]: line for line in first[:-1] if line.startswith(b"* ")}
        for line in got[:-1]:
            if line.startswith(b"* "):
                assert line == want[line.split(b" ", 2)[1]]
        r.close()
