"""test_imap_stress.py: several sessions change one mailbox at once (STORE,
EXPUNGE, APPEND, COPY, FETCH, SEARCH, NOOP in a seeded random order, a
bounded number of commands each) while a checker follows every untagged
response of every session and complains about what a client could not
make sense of:

- EXISTS that goes backwards, EXPUNGE or FETCH of a sequence number the
  session does not have, EXPUNGE during a non-UID FETCH/STORE/SEARCH;
- a UID that changes for a sequence number, UIDs out of order, a FETCH for
  a message the session was told is expunged;
- a FETCH with a flag the session's last FLAGS response lacks;
- \\Recent for one message in two sessions, or (at the end) in none;
- UIDVALIDITY changes, UIDNEXT going backwards;
- at the end (after a NOOP in every session): the flags each session was
  told (by its own STOREs and by untagged FETCHes of others' changes) are
  what a fresh FETCH returns, every session sees the same UIDs, and ENVELOPE
  and BODYSTRUCTURE of a message are the same in every session.

Runs against the real daemon (one node, harness ports) in well under a
minute with the sanitizer build. MF_STRESS_SEED and MF_STRESS_COMMANDS vary
the run; MF_STRESS_LOG=<prefix> writes each session's exchanges to
<prefix><n> for a failure's post-mortem."""
import os
import random
import re
import threading
import time

from test_imap import imap, imap_node, raw_login  # noqa: F401 (fixture)

SESSIONS = 4
COMMANDS = int(os.environ.get("MF_STRESS_COMMANDS", "120"))
SEED = int(os.environ.get("MF_STRESS_SEED", "1000"))
FLAGS = [b"\\Seen", b"\\Flagged", b"\\Answered", b"\\Draft", b"$Work", b"$Later", b"todo"]


def message(i):
    return (b"From: Sender %d <s%d@remote.test>\r\nTo: a@example.test\r\nSubject: stress %d\r\n"
            b"Message-ID: <stress.%d@mf.test>\r\n\r\nbody of %d\r\n" % (i, i, i, i, i))


class Session:
    """One client connection and what the server has told it."""

    def __init__(self, node, idx, rng, errors, lock):
        self.r = raw_login(node)
        self.idx, self.rng, self.errors, self.lock = idx, rng, errors, lock
        self.uids = []          # by seq - 1; None where not yet known
        self.flags = {}         # uid -> set of flags as last told
        self.defined = set()    # FLAGS response, lowercased
        self.expunged = set()
        self.recent = set()
        self.uidvalidity = None
        self.uidnext = 0
        self.tagn = 0

    def error(self, text):
        with self.lock:
            self.errors.append("session %d: %s" % (self.idx, text))

    # -- responses
    def command(self, text, expunge_ok=True):
        self.tagn += 1
        tag = b"s%d_%d" % (self.idx, self.tagn)
        lines = self.r.cmd(tag, text)
        if os.environ.get("MF_STRESS_LOG"):
            with open(os.environ["MF_STRESS_LOG"] + str(self.idx), "ab") as f:
                f.write(b"C: " + text + b"\n" + b"\n".join(lines) + b"\n")
        for line in lines[:-1]:
            self.untagged(line, text, expunge_ok)
        # a message another session expunged meanwhile may fail the command
        if not lines[-1].startswith(tag + b" OK") and \
                not lines[-1].startswith(tag + b" NO [EXPUNGEISSUED]"):
            self.error("%r: %r" % (text, lines[-1]))
        return lines

    def untagged(self, line, cmd, expunge_ok):
        m = re.match(rb"\* (\d+) (EXISTS|EXPUNGE|RECENT|FETCH)( .*)?$", line, re.S)
        if m:
            n, what = int(m.group(1)), m.group(2)
            if what == b"EXISTS":
                self.exists(n)
            elif what == b"EXPUNGE":
                self.expunge(n, cmd, expunge_ok)
            elif what == b"FETCH":
                self.fetch(n, m.group(3), cmd)
            return
        m = re.match(rb"\* FLAGS \((.*)\)$", line)
        if m:
            self.defined = set(f.lower() for f in m.group(1).split())
            return
        m = re.match(rb"\* OK \[UIDVALIDITY (\d+)\]", line)
        if m:
            v = int(m.group(1))
            if self.uidvalidity not in (None, v):
                self.error("UIDVALIDITY changed %d -> %d" % (self.uidvalidity, v))
            self.uidvalidity = v
        m = re.match(rb"\* OK \[UIDNEXT (\d+)\]", line)
        if m:
            v = int(m.group(1))
            if v < self.uidnext:
                self.error("UIDNEXT went back %d -> %d" % (self.uidnext, v))
            self.uidnext = v

    def exists(self, n):
        if n < len(self.uids):
            self.error("EXISTS %d after %d messages" % (n, len(self.uids)))
            del self.uids[n:]
        self.uids.extend([None] * (n - len(self.uids)))

    def expunge(self, n, cmd, expunge_ok):
        if not expunge_ok:
            self.error("EXPUNGE during %r" % cmd)
        if not 1 <= n <= len(self.uids):
            self.error("EXPUNGE %d of %d messages" % (n, len(self.uids)))
            return
        uid = self.uids.pop(n - 1)
        if uid is not None:
            self.expunged.add(uid)
            self.flags.pop(uid, None)

    def fetch(self, n, rest, cmd):
        if not 1 <= n <= len(self.uids):
            self.error("FETCH %d of %d messages: %r" % (n, len(self.uids), rest[:80]))
            return
        m = re.search(rb"UID (\d+)", rest)
        uid = self.uids[n - 1]
        if m:
            got = int(m.group(1))
            if got in self.expunged:
                self.error("FETCH of expunged UID %d" % got)
            if uid is not None and uid != got:
                self.error("seq %d was UID %d, now %d" % (n, uid, got))
            prev = next((u for u in reversed(self.uids[:n - 1]) if u is not None), 0)
            nxt = next((u for u in self.uids[n:] if u is not None), None)
            if got <= prev or (nxt is not None and got >= nxt):
                self.error("UID %d at seq %d out of order" % (got, n))
            self.uids[n - 1] = uid = got
        m = re.search(rb"FLAGS \(([^)]*)\)", rest)
        if m:
            flags = set(m.group(1).split())
            for f in flags:
                if f.lower() not in self.defined and f.lower() != b"\\recent":
                    self.error("flag %r in FETCH not in FLAGS %r" % (f, sorted(self.defined)))
            if uid is None:
                return      # a STORE by sequence number of a message not yet FETCHed
            if b"\\Recent" in flags:
                self.recent.add(uid)
            self.flags[uid] = set(f for f in flags if f != b"\\Recent")

    def idle(self):
        """IDLE for a moment: the updates come from the idle view."""
        self.tagn += 1
        tag = b"s%d_%d" % (self.idx, self.tagn)
        self.r.send(tag + b" IDLE\r\n")
        line = self.r.line()
        while not line.startswith(b"+"):
            self.untagged(line, b"IDLE", True)
            line = self.r.line()
        time.sleep(0.05)
        self.r.send(b"DONE\r\n")
        lines = self.r.until_tag(tag)
        for line in lines[:-1]:
            self.untagged(line, b"IDLE", True)
        if not lines[-1].startswith(tag + b" OK"):
            self.error("IDLE: %r" % lines[-1])

    # -- commands
    def known_seq(self):
        return self.rng.randint(1, len(self.uids)) if self.uids else None

    def step(self):
        rng = self.rng
        op = rng.choice(["store", "store", "store", "fetch", "uidfetch", "expunge", "append",
                         "copy", "search", "noop", "idle"])
        seq = self.known_seq()
        if op == "store" and seq is not None:
            flags = b" ".join(rng.sample(FLAGS, rng.randint(1, 3)))
            kind = rng.choice([b"+FLAGS", b"-FLAGS", b"FLAGS"])
            hi = min(len(self.uids), seq + rng.randint(0, 3))
            # a STORE reports the flags of its messages, UID included when
            # the client asked by UID: ask for it, to learn unknown UIDs
            if rng.random() < 0.5:
                self.command(b"STORE %d:%d %s (%s)" % (seq, hi, kind, flags), expunge_ok=False)
            else:
                uid = self.uids[seq - 1]
                if uid is not None:
                    self.command(b"UID STORE %d %s (%s)" % (uid, kind, flags))
        elif op == "fetch" and seq is not None:
            hi = min(len(self.uids), seq + rng.randint(0, 5))
            self.command(b"FETCH %d:%d (UID FLAGS)" % (seq, hi), expunge_ok=False)
        elif op == "uidfetch":
            self.command(b"UID FETCH 1:* (FLAGS)")
        elif op == "expunge" and seq is not None:
            self.command(b"STORE %d +FLAGS.SILENT (\\Deleted)" % seq, expunge_ok=False)
            self.command(b"EXPUNGE")
        elif op == "append":
            i = rng.randint(1000, 9999)
            self.tagn += 1
            tag = b"s%d_%d" % (self.idx, self.tagn)
            data = message(i)
            flags = b"(%s) " % rng.choice(FLAGS) if rng.random() < 0.5 else b""
            self.r.send(b"%s APPEND INBOX %s{%d+}\r\n%s\r\n" % (tag, flags, len(data), data))
            for line in self.r.until_tag(tag)[:-1]:
                self.untagged(line, b"APPEND", True)
        elif op == "copy" and seq is not None:
            self.command(b"COPY %d INBOX" % seq)
        elif op == "idle":
            self.idle()
        elif op == "search":
            self.command(b"SEARCH FLAGGED", expunge_ok=False)
        else:
            self.command(b"NOOP")


def run_session(sess, count):
    try:
        for _ in range(count):
            sess.step()
    except Exception as e:    # noqa: BLE001 (reported as a finding)
        sess.error("exception %r" % (e,))


def test_concurrent_sessions_untagged_state(imap):
    check_concurrent_sessions([imap])


def test_concurrent_sessions_on_two_nodes(mf, domain):
    """The same, half of the sessions on a second node of the cluster."""
    nodes = []
    for _ in range(2):
        node, port = imap_node(mf)
        node.imap_port = port
        nodes.append(node)
    check_concurrent_sessions(nodes)


def check_concurrent_sessions(nodes):
    errors, lock = [], threading.Lock()
    r = raw_login(nodes[0])
    for i in range(12):
        data = message(i)
        r.send(b"a%d APPEND INBOX {%d+}\r\n%s\r\n" % (i, len(data), data))
        assert r.until_tag(b"a%d" % i)[-1].startswith(b"a%d OK" % i)
    r.close()
    sessions = [Session(nodes[i % len(nodes)], i, random.Random(SEED + i), errors, lock)
                for i in range(SESSIONS)]
    for s in sessions:
        s.command(b"SELECT INBOX")
        s.command(b"FETCH 1:* (UID FLAGS)", expunge_ok=False)
    threads = [threading.Thread(target=run_session, args=(s, COMMANDS)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    # quiesce: every session learns the others' last changes
    for s in sessions:
        s.command(b"NOOP")
    views = []
    recent_in = {}
    for s in sessions:
        told = {u: set(f) for u, f in s.flags.items()}
        lines = s.command(b"FETCH 1:* (UID FLAGS)", expunge_ok=False)
        fresh = {}
        for line in lines[:-1]:
            m = re.match(rb"\* \d+ FETCH \(UID (\d+) FLAGS \(([^)]*)\)\)$", line)
            if m:
                flags = m.group(2).split()
                fresh[int(m.group(1))] = set(f for f in flags if f != b"\\Recent")
                if b"\\Recent" in flags:
                    recent_in.setdefault(int(m.group(1)), []).append(s.idx)
        for uid, flags in fresh.items():
            if uid in told and told[uid] != flags:
                errors.append("session %d: UID %d told %r, is %r" % (s.idx, uid, sorted(told[uid]),
                                                                     sorted(flags)))
        if sorted(fresh) != [u for u in s.uids]:
            errors.append("session %d: UIDs %r vs view %r" % (s.idx, sorted(fresh), s.uids))
        views.append(sorted(fresh))
    assert all(v == views[0] for v in views), views
    # every session selected the mailbox before anything was added, so each
    # message is \Recent in exactly one of them (appends, copies included)
    for uid in views[0]:
        if len(recent_in.get(uid, [])) != 1:
            errors.append("UID %d \\Recent in sessions %r (during the run: %r)" % (
                uid, recent_in.get(uid, []), [x.idx for x in sessions if uid in x.recent]))
    # \Recent in one session at most
    for a in range(SESSIONS):
        for b in range(a + 1, SESSIONS):
            both = sessions[a].recent & sessions[b].recent
            if both:
                errors.append("\\Recent for UIDs %r in sessions %d and %d" % (sorted(both), a, b))
    # the same message looks the same everywhere, its size is its length
    for uid in views[0][:: max(1, len(views[0]) // 5)]:
        seen = set()
        for s in sessions:
            lines = s.command(b"UID FETCH %d (ENVELOPE BODYSTRUCTURE RFC822.SIZE "
                              b"BODY.PEEK[HEADER.FIELDS (From Subject)] BODY.PEEK[])" % uid)
            seen.add(re.sub(rb"^\* \d+ FETCH", b"", lines[0]))
            size = int(re.search(rb"RFC822\.SIZE (\d+)", lines[0]).group(1))
            body = re.search(rb"BODY\[\] \{(\d+)\}", lines[0])
            if body is None or int(body.group(1)) != size:
                errors.append("UID %d: RFC822.SIZE %d, BODY[] %r" % (uid, size, body))
        if len(seen) != 1:
            errors.append("UID %d differs between sessions: %r" % (uid, seen))
    for s in sessions:
        s.r.close()
    assert errors == []
