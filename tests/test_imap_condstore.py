"""test_imap_condstore.py: CONDSTORE and QRESYNC (RFC 7162) against the real
daemon, and the per-mailbox index (mailfleet-index) they rest on: mod-sequences
that only grow (across sessions, a second node on the same store, a restart,
a damaged or deleted index, a change made to the maildir by another tool),
STORE UNCHANGEDSINCE with MODIFIED, FETCH CHANGEDSINCE, VANISHED, SELECT
QRESYNC and STATUS HIGHESTMODSEQ."""
import os
import re

import pytest

import mf as harness
from test_imap import Raw, imap, imap_node, login, message  # noqa: F401 (fixture)

USER = "a@example.test"


def raw(node):
    r = Raw(node.imap_port)
    assert r.cmd(b"L", b"LOGIN a@example.test secret")[-1].startswith(b"L OK")
    return r


def append_n(node, n, folder="INBOX"):
    m = login(node)
    for i in range(n):
        assert m.append(folder, None, None, message("msg %d" % i))[0] == "OK"
    m.logout()


def highest(lines):
    for line in lines:
        m = re.match(rb"\* OK \[HIGHESTMODSEQ (\d+)\]", line)
        if m:
            return int(m.group(1))
    raise AssertionError("no HIGHESTMODSEQ in %r" % lines)


def fetch_map(lines):
    """{uid: (flags bytes, modseq)} from untagged FETCH lines."""
    out = {}
    for line in lines:
        m = re.match(rb"\* \d+ FETCH \((.*)\)$", line)
        if not m:
            continue
        body = m.group(1)
        uid = int(re.search(rb"UID (\d+)", body).group(1))
        fl = re.search(rb"FLAGS \(([^)]*)\)", body)
        ms = re.search(rb"MODSEQ \((\d+)\)", body)
        flags = fl.group(1).replace(b"\\Recent", b"").strip() if fl else None
        out[uid] = (flags, int(ms.group(1)) if ms else None)
    return out


def test_select_reports_highestmodseq_and_store_raises_it(imap):
    append_n(imap, 3)
    r = raw(imap)
    lines = r.cmd(b"s1", b"SELECT INBOX (CONDSTORE)")
    assert lines[-1].startswith(b"s1 OK [READ-WRITE]")
    h0 = highest(lines)
    assert h0 >= 1
    f = fetch_map(r.cmd(b"f1", b"FETCH 1:* (UID MODSEQ)"))
    assert sorted(f) == [1, 2, 3] and all(0 < ms <= h0 for _, ms in f.values())
    # STORE answers with the new MODSEQ; it is above the old highest
    lines = r.cmd(b"s2", b"STORE 2 +FLAGS (\\Flagged)")
    assert lines[-1] == b"s2 OK Store completed"
    got = fetch_map([ln.replace(b"* 2 FETCH (", b"* 2 FETCH (UID 2 ") for ln in lines])
    assert got[2][0] == b"\\Flagged" and got[2][1] > h0
    # the others keep theirs
    f2 = fetch_map(r.cmd(b"f2", b"FETCH 1:* (UID MODSEQ)"))
    assert f2[1][1] == f[1][1] and f2[3][1] == f[3][1] and f2[2][1] == got[2][1]
    # a no-op store changes nothing
    lines = r.cmd(b"s3", b"STORE 2 +FLAGS (\\Flagged)")
    f3 = fetch_map(r.cmd(b"f3", b"FETCH 2 (UID MODSEQ)"))
    assert f3[2][1] == got[2][1]
    # STATUS of the selected mailbox from another session sees the new highest
    m = login(imap)
    typ, data = m.status("INBOX", "(HIGHESTMODSEQ MESSAGES)")
    assert typ == "OK"
    assert re.search(rb"HIGHESTMODSEQ (\d+)", data[0]).group(1) == str(got[2][1]).encode()
    # a fresh SELECT reports the same highest
    r3 = raw(imap)
    assert highest(r3.cmd(b"s", b"SELECT INBOX")) == got[2][1]
    r3.close()
    r.close()
    m.logout()


def test_store_unchangedsince_modified_and_silent(imap):
    append_n(imap, 3)
    r = raw(imap)
    h0 = highest(r.cmd(b"s1", b"SELECT INBOX"))
    other = raw(imap)
    other.cmd(b"o1", b"SELECT INBOX")
    assert other.cmd(b"o2", b"STORE 1 +FLAGS.SILENT (\\Seen)")[-1].startswith(b"o2 OK")
    # message 1 changed after h0: conditional store must not touch it
    lines = r.cmd(b"s2", b"STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Answered)" % h0)
    assert lines[-1].startswith(b"s2 OK [MODIFIED 1]")
    # with CONDSTORE on (the modifier enables it) .SILENT still reports MODSEQ
    changed = [ln for ln in lines if b"FETCH" in ln and not ln.startswith(b"* 1 ")]
    assert len(changed) == 2 and all(b"MODSEQ (" in ln and b"FLAGS" not in ln for ln in changed)
    # the STORE told the client message 1's current state
    assert any(ln.startswith(b"* 1 FETCH (UID 1 FLAGS (\\Seen") and b"MODSEQ" in ln for ln in lines)
    f = r.cmd(b"f1", b"FETCH 1:3 (FLAGS)")
    assert b"\\Answered" not in f[0] and b"\\Seen" in f[0]
    assert b"\\Answered" in f[1] and b"\\Answered" in f[2]
    # UID STORE reports UIDs; UNCHANGEDSINCE 0 fails for every message
    lines = r.cmd(b"s3", b"UID STORE 2,3 (UNCHANGEDSINCE 0) +FLAGS (\\Draft)")
    assert lines[-1].startswith(b"s3 OK [MODIFIED 2,3]")
    assert b"\\Draft" not in b"".join(r.cmd(b"f2", b"FETCH 1:3 (FLAGS)"))
    # malformed modifiers are BAD
    assert r.cmd(b"s4", b"STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)")[-1].startswith(b"s4 BAD")
    assert r.cmd(b"s5", b"STORE 1 (FOO 1) +FLAGS (\\Seen)")[-1].startswith(b"s5 BAD")
    r.close()
    other.close()


def test_fetch_changedsince_and_unsolicited_modseq(imap):
    append_n(imap, 4)
    r = raw(imap)
    assert r.cmd(b"e", b"ENABLE CONDSTORE")[0] == b"* ENABLED CONDSTORE"
    h0 = highest(r.cmd(b"s1", b"SELECT INBOX"))
    other = raw(imap)
    other.cmd(b"o1", b"SELECT INBOX")
    other.cmd(b"o2", b"STORE 2,4 +FLAGS (\\Flagged)")
    # the other session's change arrives with its MODSEQ (CONDSTORE is on)
    lines = r.cmd(b"n1", b"NOOP")
    upd = fetch_map(lines)
    assert sorted(upd) == [2, 4] and all(ms > h0 for _, ms in upd.values())
    lines = r.cmd(b"f1", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % h0)
    got = fetch_map(lines)
    assert sorted(got) == [2, 4]
    assert all(ms is not None for _, ms in got.values())      # MODSEQ implied
    assert r.cmd(b"f2", b"FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % max(ms for _, ms in got.values())) \
        == [b"f2 OK Fetch completed"]
    # VANISHED needs QRESYNC
    assert r.cmd(b"f3", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")[-1].startswith(b"f3 BAD")
    r.close()
    other.close()


def test_qresync_select_vanished_and_expunge_as_vanished(imap):
    append_n(imap, 6)
    r = raw(imap)
    assert r.cmd(b"e", b"ENABLE QRESYNC")[0] == b"* ENABLED QRESYNC"
    lines = r.cmd(b"s1", b"SELECT INBOX")
    h0 = highest(lines)
    v = int(re.search(rb"UIDVALIDITY (\d+)", b"".join(lines)).group(1))
    r.cmd(b"u", b"UNSELECT")
    # meanwhile another client expunges 2 and 5 and flags 3
    other = raw(imap)
    other.cmd(b"o1", b"SELECT INBOX")
    other.cmd(b"o2", b"STORE 2,5 +FLAGS.SILENT (\\Deleted)")
    other.cmd(b"o3", b"STORE 3 +FLAGS.SILENT (\\Flagged)")
    assert other.cmd(b"o4", b"EXPUNGE")[-1].startswith(b"o4 OK")
    lines = r.cmd(b"s2", b"SELECT INBOX (QRESYNC (%d %d 1:6))" % (v, h0))
    assert lines[-1].startswith(b"s2 OK")
    assert b"* VANISHED (EARLIER) 2,5" in lines
    got = fetch_map(lines)
    assert sorted(got) == [3] and got[3][0] == b"\\Flagged" and got[3][1] > h0
    # a known-uids set limits the report
    r.cmd(b"u2", b"UNSELECT")
    lines = r.cmd(b"s3", b"SELECT INBOX (QRESYNC (%d %d 1:4))" % (v, h0))
    assert b"* VANISHED (EARLIER) 2" in lines and sorted(fetch_map(lines)) == [3]
    # a stale UIDVALIDITY: plain SELECT, nothing replayed
    r.cmd(b"u3", b"UNSELECT")
    lines = r.cmd(b"s4", b"SELECT INBOX (QRESYNC (%d %d))" % (v + 1, h0))
    assert not any(ln.startswith(b"* VANISHED") for ln in lines) and not fetch_map(lines)
    # this session's own EXPUNGE is reported as VANISHED, not EXPUNGE
    r.cmd(b"x1", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    lines = r.cmd(b"x2", b"EXPUNGE")
    assert b"* VANISHED 1" in lines and not any(ln.endswith(b"EXPUNGE") for ln in lines)
    # UID FETCH ... VANISHED
    lines = r.cmd(b"f1", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h0)
    assert b"* VANISHED (EARLIER) 1:2,5" in lines
    # SELECT while selected: CLOSED first
    lines = r.cmd(b"s5", b"SELECT INBOX")
    assert lines[0] == b"* OK [CLOSED] Previous mailbox closed"
    # QRESYNC without ENABLE is refused
    r2 = raw(imap)
    assert r2.cmd(b"q", b"SELECT INBOX (QRESYNC (%d %d))" % (v, h0))[-1].startswith(b"q BAD")
    r.close()
    r2.close()
    other.close()


def index_path(mf):
    return os.path.join(mf.maildir(USER), "mailfleet-index")


def select_state(node):
    """(highest modseq, {uid: (flags, modseq)}) from a fresh session."""
    r = raw(node)
    h = highest(r.cmd(b"s", b"SELECT INBOX (CONDSTORE)"))
    f = fetch_map(r.cmd(b"f", b"FETCH 1:* (UID FLAGS MODSEQ)"))
    r.close()
    return h, f


def test_index_survives_restart_damage_and_outside_changes(mf, domain):
    node, port = imap_node(mf)
    node.imap_port = port
    append_n(node, 5)
    r = raw(node)
    r.cmd(b"s", b"SELECT INBOX")
    r.cmd(b"t", b"STORE 1 +FLAGS (\\Seen)")
    r.close()
    h1, f1 = select_state(node)
    assert os.path.getsize(index_path(mf)) >= 64 + 56 * 5
    # a restart changes nothing
    mf.restart(node)
    assert harness.wait_port(port, 10)
    assert select_state(node) == (h1, f1)
    # another tool renames a file (flag change outside mailfleet): a new,
    # higher modseq for that message only
    cur = os.path.join(mf.maildir(USER), "cur")
    name = sorted(os.listdir(cur))[2]
    base = name.split(":2,")[0]
    os.rename(os.path.join(cur, name), os.path.join(cur, base + ":2,F"))
    h2, f2 = select_state(node)
    assert h2 > h1
    changed = [u for u in f2 if f2[u] != f1[u]]
    assert len(changed) == 1 and f2[changed[0]][0] == b"\\Flagged" and f2[changed[0]][1] > h1
    # garbage appended (a torn write): still readable, nothing goes back
    with open(index_path(mf), "ab") as f:
        f.write(b"\x01garbage")
    h3, f3 = select_state(node)
    assert h3 >= h2 and {u: fl for u, (fl, _) in f3.items()} == {u: fl for u, (fl, _) in f2.items()}
    assert all(f3[u][1] >= f2[u][1] for u in f3)
    # a destroyed header: rebuilt from the maildir above every old modseq
    with open(index_path(mf), "r+b") as f:
        f.write(b"\0" * 64)
    h4, f4 = select_state(node)
    assert h4 > h3 and all(ms > h3 for _, ms in f4.values())
    assert {u: fl for u, (fl, _) in f4.items()} == {u: fl for u, (fl, _) in f3.items()}
    # deleted: the same
    os.unlink(index_path(mf))
    h5, f5 = select_state(node)
    assert h5 > h4 and sorted(f5) == sorted(f4)


def test_second_node_changes_get_modseqs(mf, domain):
    node1, port1 = imap_node(mf)
    node1.imap_port = port1
    node2, port2 = imap_node(mf)
    node2.imap_port = port2
    append_n(node1, 3)
    r1 = raw(node1)
    assert r1.cmd(b"e", b"ENABLE QRESYNC")[-1].startswith(b"e OK")
    h0 = highest(r1.cmd(b"s", b"SELECT INBOX"))
    r2 = raw(node2)
    r2.cmd(b"s", b"SELECT INBOX (CONDSTORE)")
    lines = r2.cmd(b"t", b"STORE 2 +FLAGS (\\Answered)")
    ms2 = fetch_map([ln.replace(b"FETCH (", b"FETCH (UID 2 ") for ln in lines])[2][1]
    assert ms2 > h0
    r2.cmd(b"d", b"STORE 3 +FLAGS.SILENT (\\Deleted)")
    r2.cmd(b"x", b"EXPUNGE")
    lines = r1.cmd(b"n", b"NOOP")
    assert b"* VANISHED 3" in lines
    upd = fetch_map(lines)
    assert upd[2] == (b"\\Answered", ms2)
    lines = r1.cmd(b"f", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h0)
    assert b"* VANISHED (EARLIER) 3" in lines and sorted(fetch_map(lines)) == [2]
    r1.close()
    r2.close()
