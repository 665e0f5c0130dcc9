"""test_imap_concurrency.py: two mailfleetd processes (two nodes) on one
store, several IMAP sessions per node on the same mailboxes of one user,
doing APPEND / STORE / COPY / MOVE / EXPUNGE at the same time; on the POSIX
backend and on libnfs against nfs-ganesha (every test is parametrized over
both).

The sessions speak through a raw-socket client (Session) that keeps its own
view of the selected mailbox from the untagged EXISTS / EXPUNGE / FETCH
responses, as a real client does, and a Ledger that every session reports to:
which UID names which message (by Message-ID), which UIDs were expunged and
when, which UIDs each APPEND / COPY / MOVE was given and when, and what flags
each owner expects on its messages. The checks:

- UIDs: a (mailbox, UID) never names two messages, a message never changes
  its UID, a UID confirmed expunged never appears in a view taken later,
  UIDs assigned by operations that did not overlap in time ascend, every
  view is strictly ascending, UIDVALIDITY never changes.
- Flags: each worker owns its messages and one keyword (and one system
  flag) on shared messages; at the end every message carries exactly what
  its owners set and did not remove; concurrent +FLAGS from both nodes on
  one message all survive.
- Views: after the run every long-lived session's tracked view (after a
  NOOP) equals a fresh SELECT on either node, both nodes agree on UIDs,
  flags, sizes and body digests, and so do the files on disk and the
  uidlist; nothing is left in tmp/, no lock or temp files remain.
- MOVE race: two nodes move one message to two folders at once.
- Renames vs. listings: in a 3,000-message mailbox whose files another
  node keeps renaming, no message changes its UID.
- Small sequential reproducers of the bugs found by the above (MOVE race,
  APPEND with flags during a sync, STORE over another session's rename,
  keywords created after SELECT, EXPUNGE of a message undeleted meanwhile,
  a failed COPY), all fixed and kept as regression tests.

Ports come from the harness (MF_PORT_MIN/MF_PORT_MAX); ganesha gets two of
them. Every run is bounded: fixed rounds per worker, socket timeouts, joins
with a deadline.
"""
import hashlib
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import mf as h
from nfs import ganesha

USER, PASSWORD = "a@example.test", "secret"
SYSTEM_FLAGS = (b"\\Flagged", b"\\Answered", b"\\Seen", b"\\Draft", b"$Forwarded")
ROUNDS = 40                 # rounds per worker in the mixed run
RUN_DEADLINE = 120.0        # seconds; the run normally takes a fraction
WORK = "Work"
APPEND_WITH_FLAGS = True    # exercised since the append race is fixed
STORE_SILENT = True         # exercised since silent stores report foreign flags


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def nfs_server():
    export = tempfile.mkdtemp(prefix="mf-nfs-export-", dir="/tmp")
    work = tempfile.mkdtemp(prefix="mf-nfs-work-", dir="/tmp")
    server, error = None, None
    try:
        server = ganesha.start(export, h.free_port(), h.free_port(), work)
    except Exception as e:  # the tests fail with this, they are not skipped
        error = "nfs-ganesha did not start: %s" % e
    yield server, error, export
    if server is not None:
        server.stop()
    shutil.rmtree(export, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(params=["posix", "nfs"])
def backend(request, mf, domain):
    """Points mf at a local store or at a fresh folder of the ganesha export."""
    if request.param == "nfs":
        server, error, export = request.getfixturevalue("nfs_server")
        if server is None:
            pytest.fail(error, pytrace=False)
        assert server.alive(), "ganesha died:\n" + server.log_tail()
        sub = re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)
        os.makedirs(os.path.join(export, sub))
        mf.use_store(server.url(sub, version=3), os.path.join(export, sub))
    return request.param


def imap_node(mf):
    node = mf.node(start=False)
    node.imap_port = h.free_port()
    node.settings["listeners"].append({"protocol": "imap", "address": "127.0.0.1",
                                       "port": node.imap_port})
    with open(node.config_path, "w") as f:
        f.write(h.render_config(node.settings))
    node.start()
    assert h.wait_port(node.imap_port, 10, node.proc)
    return node


@pytest.fixture
def nodes(mf, backend):
    return [imap_node(mf), imap_node(mf)]


# ---------------------------------------------------------------- parsing

def tokenize(data):
    """IMAP data -> nested lists of bytes (atoms, strings and literals alike)."""
    out = []
    stack = [out]
    i, n = 0, len(data)
    while i < n:
        c = data[i:i + 1]
        if c == b" ":
            i += 1
        elif c == b"(":
            new = []
            stack[-1].append(new)
            stack.append(new)
            i += 1
        elif c == b")":
            stack.pop()
            i += 1
        elif c == b'"':
            j, s = i + 1, bytearray()
            while data[j:j + 1] != b'"':
                if data[j:j + 1] == b"\\":
                    j += 1
                s += data[j:j + 1]
                j += 1
            stack[-1].append(bytes(s))
            i = j + 1
        elif c == b"{":
            j = data.index(b"}", i)
            size = int(data[i + 1:j].rstrip(b"+"))
            start = j + 3            # "}\r\n"
            stack[-1].append(data[start:start + size])
            i = start + size
        else:
            j, depth = i, 0
            while j < n:
                ch = data[j:j + 1]
                if ch == b"[":
                    depth += 1
                elif ch == b"]":
                    depth -= 1
                elif depth == 0 and ch in (b" ", b"(", b")"):
                    break
                j += 1
            stack[-1].append(data[i:j])
            i = j
    return out


def fetch_items(tokens):
    """The (name, value) list of a FETCH response as a dict (names upper-case)."""
    return {tokens[k].upper(): tokens[k + 1] for k in range(0, len(tokens) - 1, 2)}


def msgid_of(header):
    m = re.search(rb"(?i)message-id:\s*(<[^>]*>)", header)
    return m.group(1).decode() if m else None


def lf(data):
    return data.replace(b"\r\n", b"\n")


def digest(data):
    return hashlib.sha256(lf(data)).hexdigest()


def clean_flags(flags):
    return frozenset(f for f in flags if f.lower() != b"\\recent")


# ---------------------------------------------------------------- ledger

class Ledger:
    """What every session saw and did, shared by all threads; checks the
    UID rules as facts arrive and keeps what the final checks need."""

    def __init__(self):
        self.lock = threading.Lock()
        self.errors = []
        self.uid_msg = {}        # (mbox, uid) -> msgid
        self.msg_uid = {}        # (mbox, msgid) -> uid
        self.expunged = {}       # (mbox, uid) -> time the expunge was confirmed
        self.validity = {}       # mbox -> UIDVALIDITY
        self.assigned = []       # (mbox, start, end, [uids], what)
        self.expected = {}       # (mbox, uid) -> (msgid, frozenset flags), owned messages
        self.shared = {}         # (mbox, uid) -> {owner: set of flags}

    def error(self, text):
        with self.lock:
            self.errors.append(text)

    def see(self, mbox, uid, msgid, since, who):
        """uid names msgid in mbox, as learnt from a view taken after since."""
        with self.lock:
            old = self.uid_msg.setdefault((mbox, uid), msgid)
            if msgid is not None and old is None:
                self.uid_msg[(mbox, uid)] = old = msgid
            if msgid is not None and old != msgid:
                self.errors.append("%s: %s UID %d names %s and %s" % (who, mbox, uid, old, msgid))
            if msgid is not None:
                prev = self.msg_uid.setdefault((mbox, msgid), uid)
                if prev != uid:
                    self.errors.append("%s: message %s in %s had UID %d, now %d"
                                       % (who, msgid, mbox, prev, uid))
            t = self.expunged.get((mbox, uid))
            if since is not None and t is not None and t < since:
                self.errors.append("%s: %s UID %d was expunged at %.3f and appeared in a view "
                                   "taken after %.3f" % (who, mbox, uid, t, since))

    def saw_validity(self, mbox, value, who):
        with self.lock:
            old = self.validity.setdefault(mbox, value)
            if old != value:
                self.errors.append("%s: UIDVALIDITY of %s changed from %d to %d"
                                   % (who, mbox, old, value))

    def gone(self, mbox, uid):
        with self.lock:
            self.expunged.setdefault((mbox, uid), time.monotonic())
            self.expected.pop((mbox, uid), None)

    def assign(self, mbox, start, end, uids, what):
        with self.lock:
            self.assigned.append((mbox, start, end, list(uids), what))

    def expect(self, mbox, uid, msgid, flags):
        with self.lock:
            self.expected[(mbox, uid)] = (msgid, frozenset(flags))

    def check_assignment_order(self):
        """UIDs of operations that did not overlap in time ascend."""
        ops = sorted(self.assigned, key=lambda o: o[1])
        for i, a in enumerate(ops):
            for b in ops[i + 1:]:
                if a[0] == b[0] and a[2] < b[1] and max(a[3]) >= min(b[3]):
                    self.errors.append("%s in %s got UIDs %s, yet the later %s got %s"
                                       % (a[4], a[0], a[3], b[4], b[3]))
            for x, y in zip(a[3], a[3][1:]):
                if y <= x:
                    self.errors.append("%s in %s got UIDs out of order: %s" % (a[4], a[0], a[3]))


# ---------------------------------------------------------------- client

class ImapError(Exception):
    pass


class Entry:
    __slots__ = ("uid", "flags", "since")

    def __init__(self, since):
        self.uid = None
        self.flags = None
        self.since = since       # when the command that revealed it was sent


class Session:
    """A raw IMAP client that tracks its selected mailbox from untagged
    responses (sequence numbers, UIDs, flags)."""

    def __init__(self, node, name, ledger, timeout=60):
        self.sock = socket.create_connection(("127.0.0.1", node.imap_port), timeout=timeout)
        self.buf = b""
        self.tagn = 0
        self.name = name
        self.ledger = ledger
        self.mailbox = None
        self.view = []
        self.sent_at = 0.0
        self.copyuid = None
        greeting = self._line()
        if not greeting.startswith(b"* OK"):
            raise ImapError("%s: greeting %r" % (name, greeting))
        self.ok(b"LOGIN %s %s" % (USER.encode(), PASSWORD.encode()))

    # -- wire
    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ImapError("%s: connection closed" % self.name)
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _response(self):
        line = self._line()
        while True:
            m = re.search(rb"\{(\d+)\}$", line)
            if m is None:
                return line
            line += b"\r\n" + self._exact(int(m.group(1))) + self._line()

    def cmd(self, text, literal=None):
        """Sends one command; returns (status, tagged line, untagged lines)."""
        self.tagn += 1
        tag = b"t%d" % self.tagn
        self.sent_at = time.monotonic()
        if literal is not None:
            self.sock.sendall(tag + b" " + text + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        else:
            self.sock.sendall(tag + b" " + text + b"\r\n")
        untagged = []
        while True:
            line = self._response()
            if line.startswith(tag + b" "):
                status = line[len(tag) + 1:].split(b" ", 1)[0]
                return status, line, untagged
            if not line.startswith(b"* "):
                raise ImapError("%s: unexpected %r" % (self.name, line[:200]))
            self._untagged(line)
            untagged.append(line)

    def ok(self, text, literal=None):
        status, line, untagged = self.cmd(text, literal)
        if status != b"OK":
            raise ImapError("%s: %s -> %r" % (self.name, text[:100], line[:300]))
        return line, untagged

    # -- view tracking
    def _bad(self, text):
        self.ledger.error("%s (%s): %s" % (self.name, self.mailbox, text))

    def _untagged(self, line):
        m = re.match(rb"\* (\d+) (EXISTS|EXPUNGE|FETCH|RECENT)(?: (.*))?$", line, re.S)
        if m is not None and self.mailbox is not None:
            n, kind = int(m.group(1)), m.group(2)
            if kind == b"EXISTS":
                if n < len(self.view):
                    self._bad("EXISTS %d with %d messages known" % (n, len(self.view)))
                self.view.extend(Entry(self.sent_at) for _ in range(n - len(self.view)))
            elif kind == b"EXPUNGE":
                if not 1 <= n <= len(self.view):
                    self._bad("EXPUNGE %d with %d messages" % (n, len(self.view)))
                    return
                self.view.pop(n - 1)
            elif kind == b"FETCH":
                self._fetch(n, fetch_items(tokenize(m.group(3))[0]))
            return
        m = re.match(rb"\* OK \[UIDVALIDITY (\d+)\]", line)
        if m is not None:
            self.ledger.saw_validity(self.mailbox, int(m.group(1)), self.name)
        m = re.match(rb"\* OK \[COPYUID (\d+) (\S+) (\S+)\]", line)
        if m is not None:
            self.copyuid = m.groups()

    def _fetch(self, n, items):
        if not 1 <= n <= len(self.view):
            self._bad("FETCH for %d with %d messages" % (n, len(self.view)))
            return
        e = self.view[n - 1]
        if b"UID" in items:
            uid = int(items[b"UID"])
            if e.uid is not None and e.uid != uid:
                self._bad("message %d is UID %d here, the server says %d" % (n, e.uid, uid))
            e.uid = uid
        if b"FLAGS" in items:
            e.flags = clean_flags(items[b"FLAGS"])
        header = [v for k, v in items.items() if k.startswith(b"BODY[HEADER.FIELDS")]
        if e.uid is not None:
            self.ledger.see(self.mailbox, e.uid, msgid_of(header[0]) if header else None,
                            e.since, self.name)

    def complete(self):
        """Learns UID, flags and Message-ID of messages only known by EXISTS."""
        for _ in range(20):
            unknown = [i for i, e in enumerate(self.view) if e.uid is None or e.flags is None]
            if not unknown:
                break
            span = b"%d:%d" % (unknown[0] + 1, unknown[-1] + 1)
            status, line, _ = self.cmd(
                b"FETCH " + span + b" (UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            if status != b"OK":    # a file expunged meanwhile: the UID is enough
                self.ok(b"FETCH " + span + b" (UID FLAGS)")
        else:
            self._bad("could not learn the UIDs of new messages")
        uids = [e.uid for e in self.view]
        if any(b <= a for a, b in zip(uids, uids[1:])):
            self._bad("UIDs not strictly ascending: %s" % uids)

    def select(self, mbox):
        self.mailbox = mbox
        self.view = []
        self.ok(b"SELECT " + mbox.encode())
        self.complete()

    def noop(self):
        self.ok(b"NOOP")
        self.complete()

    def store_silent(self, uid, add, flag):
        """UID STORE +/-FLAGS.SILENT: the client applies the change to its view
        itself, as the server does not repeat it."""
        self.ok(b"UID STORE %d %s (%s)" % (uid, b"+FLAGS.SILENT" if add else b"-FLAGS.SILENT", flag))
        seq = self.seq_of(uid)
        if seq is not None and self.view[seq - 1].flags is not None:
            e = self.view[seq - 1]
            e.flags = e.flags | {flag} if add else e.flags - {flag}

    def seq_of(self, uid):
        for i, e in enumerate(self.view):
            if e.uid == uid:
                return i + 1
        return None

    def snapshot(self):
        return [(e.uid, e.flags) for e in self.view]

    def logout(self):
        try:
            self.cmd(b"LOGOUT")
        except (OSError, ImapError):
            pass
        self.sock.close()


def make_msg(msgid, size=0):
    body = "body of %s\r\n" % msgid + "0123456789abcdef" * (size // 16) + "\r\n"
    return ("From: <s@remote.test>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: %s\r\n\r\n%s"
            % (USER, msgid, msgid, body)).encode()


def flag_list(flags):
    return b"(" + b" ".join(sorted(flags)) + b")"


def append(s, mbox, msgid, flags=(), size=0):
    """APPEND with UIDPLUS; returns the UID; records the assignment."""
    start = time.monotonic()
    line, _ = s.ok(b"APPEND " + mbox.encode() + b" " + flag_list(flags), make_msg(msgid, size))
    end = time.monotonic()
    m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", line)
    if m is None:
        raise ImapError("%s: no APPENDUID in %r" % (s.name, line))
    uid = int(m.group(2))
    s.ledger.saw_validity(mbox, int(m.group(1)), s.name)
    s.ledger.assign(mbox, start, end, [uid], "%s APPEND %s" % (s.name, msgid))
    s.ledger.see(mbox, uid, msgid, None, s.name)
    return uid


def copy_or_move(s, verb, uid, dest, msgid):
    """UID COPY / UID MOVE of one message; returns the new UID in dest."""
    s.copyuid = None
    start = time.monotonic()
    line, _ = s.ok(b"UID " + verb + b" %d " % uid + dest.encode())
    end = time.monotonic()
    m = re.search(rb"\[COPYUID (\d+) (\S+) (\S+)\]", line)
    groups = m.groups() if m else s.copyuid
    if groups is None:
        raise ImapError("%s: no COPYUID for %s: %r" % (s.name, verb, line))
    if int(groups[1]) != uid:
        s.ledger.error("%s: COPYUID source %r for UID %d" % (s.name, groups[1], uid))
    new = int(groups[2])
    s.ledger.saw_validity(dest, int(groups[0]), s.name)
    s.ledger.assign(dest, start, end, [new], "%s %s %s" % (s.name, verb.decode(), msgid))
    s.ledger.see(dest, new, msgid, None, s.name)
    if verb == b"MOVE":
        s.ledger.gone(s.mailbox, uid)
    s.complete()
    return new


# ---------------------------------------------------------------- the mixed run

class Worker:
    """One session on one mailbox doing a seeded random mix of operations on
    its own messages and on its own keyword / system flag of the shared ones."""

    def __init__(self, node, wid, mbox, other, sys_flag, ledger, shared, barrier):
        self.node, self.wid, self.mbox, self.other = node, wid, mbox, other
        self.kw = b"$W%d" % wid
        self.sys_flag = sys_flag
        self.ledger = ledger
        self.shared = shared            # uids of the shared messages in mbox
        self.barrier = barrier
        self.rng = random.Random(1000 + wid)
        self.own = {}                   # uid -> [msgid, set of flags, copied]
        self.mine_on_shared = {u: set() for u in shared}
        self.session = None
        self.n = 0

    def flags_choice(self):
        # APPEND with flags races with other sessions' new/ -> cur/ moves
        # (test_append_with_flags_while_another_session_syncs): off here
        if not APPEND_WITH_FLAGS:
            return []
        return [f for f in (b"\\Flagged", b"\\Answered", b"$Forwarded", self.kw) if self.rng.random() < 0.3]

    def do_append(self):
        self.n += 1
        msgid = "<w%d-%d@mf.test>" % (self.wid, self.n)
        flags = set(self.flags_choice())
        if self.rng.random() < 0.2:
            uid = append(self.session, self.other, msgid, flags, size=self.rng.randrange(4000))
            self.ledger.expect(self.other, uid, msgid, flags)
            return
        uid = append(self.session, self.mbox, msgid, flags, size=self.rng.randrange(4000))
        self.own[uid] = [msgid, flags, False]
        self.ledger.expect(self.mbox, uid, msgid, flags)
        self.session.complete()

    def do_store_own(self):
        if not self.own:
            return self.do_append()
        uid = self.rng.choice(sorted(self.own))
        msgid, flags, _ = self.own[uid]
        flag = self.rng.choice(SYSTEM_FLAGS + (self.kw,))
        add = flag not in flags
        op = b"+FLAGS" if add else b"-FLAGS"
        seq = self.session.seq_of(uid)
        if self.rng.random() < 0.5 and seq is not None:
            self.session.ok(b"STORE %d %s (%s)" % (seq, op, flag))
        else:
            self.session.ok(b"UID STORE %d %s (%s)" % (uid, op, flag))
        (flags.add if add else flags.discard)(flag)
        self.ledger.expect(self.mbox, uid, msgid, flags)
        self.session.complete()

    def do_store_shared(self):
        uid = self.rng.choice(self.shared[1:])
        mine = self.mine_on_shared[uid]
        choices = [self.kw] + ([self.sys_flag] if self.sys_flag else [])
        flag = self.rng.choice(choices)
        add = flag not in mine
        if STORE_SILENT:
            self.session.store_silent(uid, add, flag)
        else:
            self.session.ok(b"UID STORE %d %s (%s)" % (uid, b"+FLAGS" if add else b"-FLAGS", flag))
        (mine.add if add else mine.discard)(flag)
        self.session.complete()

    def do_copy(self, verb):
        free = [u for u, v in self.own.items() if not v[2]]
        if not free:
            return self.do_append()
        uid = self.rng.choice(sorted(free))
        msgid, flags, _ = self.own[uid]
        new = copy_or_move(self.session, verb, uid, self.other, msgid)
        self.ledger.expect(self.other, new, msgid, flags)
        if verb == b"MOVE":
            del self.own[uid]
        else:
            self.own[uid][2] = True

    def do_expunge(self):
        if not self.own:
            return self.do_append()
        uid = self.rng.choice(sorted(self.own))
        self.session.ok(b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
        self.session.ok(b"UID EXPUNGE %d" % uid)
        del self.own[uid]
        self.ledger.gone(self.mbox, uid)
        self.session.complete()
        if self.session.seq_of(uid) is not None:
            self.ledger.error("%s: UID %d still in the view after UID EXPUNGE" % (self.name(), uid))

    def name(self):
        return self.session.name

    def run(self):
        self.session = Session(self.node, "w%d@%s" % (self.wid, self.node.name), self.ledger)
        self.session.select(self.mbox)
        # every worker on both nodes adds its flags to the first shared
        # message at the same moment
        self.barrier.wait(timeout=60)
        add = [self.kw] + ([self.sys_flag] if self.sys_flag else [])
        self.session.ok(b"UID STORE %d +FLAGS (%s)" % (self.shared[0], b" ".join(add)))
        self.mine_on_shared.pop(self.shared[0])
        self.session.complete()
        ops = [(self.do_append, 3), (self.do_store_own, 3), (self.do_store_shared, 3),
               (lambda: self.do_copy(b"COPY"), 1), (lambda: self.do_copy(b"MOVE"), 1),
               (self.do_expunge, 1), (self.session.noop, 1)]
        for _ in range(ROUNDS):
            op = self.rng.choices([o for o, _ in ops], [w for _, w in ops])[0]
            op()


class Observer:
    """A session that stays selected and only listens: NOOP polls or IDLE."""

    def __init__(self, node, name, mbox, ledger, idle):
        self.node, self.name, self.mbox, self.ledger, self.idle = node, name, mbox, ledger, idle
        self.stop = threading.Event()
        self.session = None

    def idle_once(self, s):
        s.tagn += 1
        tag = b"t%d" % s.tagn
        s.sent_at = time.monotonic()
        s.sock.sendall(tag + b" IDLE\r\n")
        if not s._line().startswith(b"+"):
            raise ImapError("%s: IDLE refused" % self.name)
        s.sock.settimeout(0.2)
        deadline = time.monotonic() + 1.5
        try:
            while time.monotonic() < deadline and not self.stop.is_set():
                try:
                    line = s._response()
                except socket.timeout:
                    continue
                s._untagged(line)
        finally:
            s.sock.settimeout(60)
        s.sock.sendall(b"DONE\r\n")
        while True:
            line = s._response()
            if line.startswith(tag + b" "):
                break
            s._untagged(line)
        s.complete()

    def run(self):
        self.session = Session(self.node, self.name, self.ledger)
        self.session.select(self.mbox)
        while not self.stop.is_set():
            if self.idle:
                self.idle_once(self.session)
            else:
                self.session.noop()
                time.sleep(0.02)


def run_threads(targets):
    """Starts one thread per (name, function); returns (threads, errors)."""
    errors = []

    def wrap(fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append("%s: %r" % (threading.current_thread().name, e))

    threads = [threading.Thread(target=wrap, args=(t,), name=n, daemon=True) for n, t in targets]
    for t in threads:
        t.start()
    return threads, errors


def join_all(threads, deadline):
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, "threads still running at the deadline: %s" % stuck


# ---------------------------------------------------------------- final state

def fresh_state(node, mbox, ledger, name):
    """{uid: (flags, size, digest, msgid)} from a new session on node."""
    s = Session(node, name, ledger)
    try:
        s.select(mbox)
        out = {}
        if s.view:
            _, untagged = s.ok(b"FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[])")
            for line in untagged:
                m = re.match(rb"\* (\d+) FETCH (.*)$", line, re.S)
                items = fetch_items(tokenize(m.group(2))[0])
                body = items[b"BODY[]"]
                if int(items[b"RFC822.SIZE"]) != len(body):
                    ledger.error("%s: %s UID %s: RFC822.SIZE %s but BODY[] has %d bytes"
                                 % (name, mbox, items[b"UID"], items[b"RFC822.SIZE"], len(body)))
                uid = int(items[b"UID"])
                out[uid] = (clean_flags(items[b"FLAGS"]), len(body), digest(body), msgid_of(body))
                ledger.see(mbox, uid, msgid_of(body), s.sent_at, name)
        return out, s.snapshot()
    finally:
        s.logout()


def keyword_names(maildir):
    names = {}
    try:
        with open(os.path.join(maildir, "mailfleet-keywords"), "rb") as f:
            for line in f.read().splitlines():
                idx, name = line.split(b" ", 1)
                names[chr(ord("a") + int(idx))] = name
    except FileNotFoundError:
        pass
    return names


LETTERS = {"D": b"\\Draft", "F": b"\\Flagged", "P": b"$Forwarded", "R": b"\\Answered",
           "S": b"\\Seen", "T": b"\\Deleted"}


def disk_state(maildir):
    """{uid: (flags, crlf size, digest, msgid)} from the files and the uidlist;
    asserts that the uidlist and the files match one to one."""
    with open(os.path.join(maildir, "mailfleet-uidlist"), "rb") as f:
        lines = f.read().decode().splitlines()
    assert lines[0].startswith("3 "), lines[0]
    recs = {}
    for line in lines[1:]:
        fields, name = line.split(" :", 1)
        recs[name.split(":2,")[0]] = int(fields.split()[0])
    kw = keyword_names(maildir)
    out, bases = {}, set()
    for path in h.maildir_files(maildir):
        name = os.path.basename(path)
        base, _, info = name.partition(":2,")
        assert base not in bases, "two files for %s in %s" % (base, maildir)
        bases.add(base)
        assert base in recs, "file %s has no uidlist record" % name
        data = h.read(path)
        if data.startswith(h.LZ4_MAGIC):
            data = h.lz4_decompress(data)
        flags = frozenset(LETTERS[c] if c in LETTERS else kw[c] for c in info)
        size = len(data) + data.count(b"\n") - data.count(b"\r\n")
        out[recs[base]] = (flags, size, digest(data), msgid_of(data))
    missing = set(recs) - bases
    assert not missing, "uidlist records without files in %s: %s" % (maildir, sorted(missing))
    return out


def assert_nothing_half_done(maildir):
    leftovers = []
    for root, dirs, files in os.walk(maildir):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), maildir)
            if (rel.split(os.sep)[-2:-1] == ["tmp"] or f.endswith(".lock") or ".tmp" in f
                    or f.startswith(".mailfleet-now")):
                leftovers.append(rel)
    assert not leftovers, "left behind in %s: %s" % (maildir, leftovers)


# ---------------------------------------------------------------- tests

def test_two_nodes_mixed_operations(mf, nodes, backend):
    t0 = time.monotonic()
    ledger = Ledger()
    mboxes = ("INBOX", WORK)
    setup = Session(nodes[0], "setup", ledger)
    setup.ok(b"CREATE " + WORK.encode())
    shared = {}
    for mbox in mboxes:
        shared[mbox] = [append(setup, mbox, "<shared-%s-%d@mf.test>" % (mbox, i)) for i in range(3)]
        for uid in shared[mbox]:
            ledger.expect(mbox, uid, "<shared-%s-%d@mf.test>" % (mbox, shared[mbox].index(uid)), ())
        # the keywords exist before the run: a new keyword replaces the
        # keywords file, and once a sync over NFS failed reading it
        # ("cannot read the keywords file"); not reproduced on its own yet
        setup.select(mbox)
        kws = b" ".join(b"$W%d" % w for w in range(6))
        setup.ok(b"UID STORE %d +FLAGS.SILENT (%s)" % (shared[mbox][0], kws))
        setup.ok(b"UID STORE %d -FLAGS.SILENT (%s)" % (shared[mbox][0], kws))
    setup.logout()

    # per node: two workers on INBOX and one on Work
    layout = [(0, "INBOX"), (0, "INBOX"), (0, WORK), (1, "INBOX"), (1, "INBOX"), (1, WORK)]
    barrier = threading.Barrier(len(layout))
    workers, per_mbox = [], {m: 0 for m in mboxes}
    for wid, (k, mbox) in enumerate(layout):
        other = WORK if mbox == "INBOX" else "INBOX"
        sys_flag = SYSTEM_FLAGS[per_mbox[mbox]]
        per_mbox[mbox] += 1
        workers.append(Worker(nodes[k], wid, mbox, other, sys_flag, ledger, shared[mbox], barrier))
    observers = [Observer(nodes[0], "obs-noop@node1", "INBOX", ledger, False),
                 Observer(nodes[1], "obs-idle@node2", "INBOX", ledger, True),
                 Observer(nodes[1], "obs-noop@node2", WORK, ledger, False)]
    deadline = time.monotonic() + RUN_DEADLINE
    obs_threads, obs_errors = run_threads([(o.name, o.run) for o in observers])
    time.sleep(0.5)
    threads, errors = run_threads([("w%d" % w.wid, w.run) for w in workers])
    join_all(threads, deadline)
    for o in observers:
        o.stop.set()
    join_all(obs_threads, deadline + 10)
    run_secs = time.monotonic() - t0
    assert not errors + obs_errors, errors + obs_errors

    # every long-lived session catches up with a NOOP
    sessions = [w.session for w in workers] + [o.session for o in observers]
    for s in sessions:
        s.noop()
    fresh = {}
    for mbox in mboxes:
        states = [fresh_state(n, mbox, ledger, "fresh@%s" % n.name) for n in nodes]
        assert states[0][0] == states[1][0], "the two nodes disagree on %s" % mbox
        fresh[mbox] = states[0][0]
        want_view = [(uid, v[0]) for uid, v in sorted(fresh[mbox].items())]
        assert states[0][1] == want_view
        for s in sessions:
            if s.mailbox == mbox:
                assert s.snapshot() == want_view, "%s tracked a different view of %s" % (s.name, mbox)
        maildir = mf.maildir(USER, None if mbox == "INBOX" else mbox)
        assert disk_state(maildir) == fresh[mbox], "files of %s differ from what IMAP shows" % mbox
        assert_nothing_half_done(maildir)
    for s in sessions:
        s.logout()

    # flags: owned messages exactly as their owners left them, shared ones
    # the union of what each worker set and did not remove
    want = {}
    for (mbox, uid), (msgid, flags) in ledger.expected.items():
        want[(mbox, uid)] = (msgid, set(flags))
    for w in workers:
        for uid, mine in w.mine_on_shared.items():
            want[(w.mbox, uid)][1].update(mine)
        want[(w.mbox, w.shared[0])][1].update([w.kw] + ([w.sys_flag] if w.sys_flag else []))
    got = {(mbox, uid): (v[3], set(v[0])) for mbox in mboxes for uid, v in fresh[mbox].items()}
    assert sorted(got) == sorted(want), "messages: missing %s, unexpected %s" % (
        sorted(set(want) - set(got)), sorted(set(got) - set(want)))
    wrong = {k: (want[k], got[k]) for k in want if want[k] != got[k]}
    assert not wrong, "flags or message differ (want, got): %s" % wrong
    everyone = {w.kw for w in workers if w.mbox == "INBOX"} | {w.sys_flag for w in workers if w.mbox == "INBOX"}
    assert everyone <= got[("INBOX", shared["INBOX"][0])][1]

    ledger.check_assignment_order()
    assert not ledger.errors, "\n".join(ledger.errors[:40])
    assert len(ledger.assigned) >= 40
    assert run_secs < 60, "the run took %.1f s" % run_secs


# ---------------------------------------------------------------- MOVE race

def message_copies(nodes, ledger, mboxes):
    """{msgid: [(mbox, uid), ...]} over mboxes, from a fresh session."""
    copies = {}
    for mbox in mboxes:
        state, _ = fresh_state(nodes[0], mbox, ledger, "count@" + mbox)
        for uid, v in state.items():
            copies.setdefault(v[3], []).append((mbox, uid))
    return copies


MOVE_RACE_ROUNDS = 8


def test_move_race_leaves_one_copy(mf, nodes, backend):
    ledger = Ledger()
    setup = Session(nodes[0], "setup", ledger)
    uids = [append(setup, "INBOX", "<race-%d@mf.test>" % i) for i in range(MOVE_RACE_ROUNDS)]
    setup.logout()
    a, b = Session(nodes[0], "a@node1", ledger), Session(nodes[1], "b@node2", ledger)
    a.select("INBOX")
    b.select("INBOX")
    barrier = threading.Barrier(2)
    results = {"a": [], "b": []}

    def mover(s, key, dest):
        for uid in uids:
            barrier.wait(timeout=30)
            status, line, _ = s.cmd(b"UID MOVE %d %s" % (uid, dest))
            results[key].append((uid, status, line))

    threads, errors = run_threads([("a", lambda: mover(a, "a", b"Archive")),
                                   ("b", lambda: mover(b, "b", b"Trash"))])
    join_all(threads, time.monotonic() + 60)
    assert not errors, errors
    a.noop()
    b.noop()
    assert a.view == [] and b.view == []
    copies = message_copies(nodes, ledger, ("INBOX", "Archive", "Trash"))
    both_ok = [u for (u, sa, _), (_, sb, _) in zip(results["a"], results["b"]) if sa == sb == b"OK"]
    doubled = {k: v for k, v in copies.items() if len(v) != 1}
    assert len(copies) == MOVE_RACE_ROUNDS
    assert not doubled and not both_ok, "both MOVEs succeeded for UIDs %s; copies: %s" % (
        both_ok, doubled)
    for mbox in ("INBOX", "Archive", "Trash"):
        assert_nothing_half_done(mf.maildir(USER, None if mbox == "INBOX" else mbox))


# ---------------------------------------------------------------- reproducers

APPEND_RACE_ROUNDS = 24      # a new keyword each (26 at most); stops at the first failure


def test_append_with_flags_while_another_session_syncs(mf, nodes, backend):
    ledger = Ledger()
    s = Session(nodes[1], "appender", ledger)
    syncers = [Session(n, "syncer%d" % i, ledger) for i, n in enumerate(nodes + nodes)]
    stop = threading.Event()

    def sync_loop(watcher):
        watcher.select("INBOX")
        while not stop.is_set():
            watcher.noop()

    threads, errors = run_threads([(w.name, lambda w=w: sync_loop(w)) for w in syncers])
    failed, sent = [], 0
    try:
        time.sleep(0.3)
        while sent < APPEND_RACE_ROUNDS and not failed:
            # a new keyword takes the mailbox lock between the delivery into
            # new/ and the rename into cur/: the syncers get their turn there
            status, line, _ = s.cmd(b"APPEND INBOX (\\Flagged $K%d)" % sent,
                                    make_msg("<af-%d@mf.test>" % sent))
            sent += 1
            if status != b"OK":
                failed.append(line)
    finally:
        stop.set()
        join_all(threads, time.monotonic() + 30)
    assert not errors, errors
    state, _ = fresh_state(nodes[0], "INBOX", ledger, "check")
    unflagged = sorted(v[3] for v in state.values()
                       if v[0] != {b"\\Flagged", b"$K" + v[3][4:-9].encode()})
    assert not failed and not unflagged, "%d of %d APPENDs failed (%s); stored without flags: %s" % (
        len(failed), sent, failed[:1], unflagged)
    assert len(state) == sent


def two_sessions(nodes, ledger, count=1, flags=()):
    """count messages in INBOX, then a (node 1) and b (node 2) with INBOX selected."""
    setup = Session(nodes[0], "setup", ledger)
    uids = [append(setup, "INBOX", "<m%d@mf.test>" % i, flags) for i in range(count)]
    setup.logout()
    a, b = Session(nodes[0], "a@node1", ledger), Session(nodes[1], "b@node2", ledger)
    a.select("INBOX")
    b.select("INBOX")
    return a, b, uids


def test_silent_store_hides_other_sessions_flags(mf, nodes, backend):
    """A STORE .SILENT that renames a file another node renamed must not
    swallow the other node's flags: the next NOOP reports them (this failed
    before the mailbox index rewrite: the session's view took the file
    name's flags without telling the client)."""
    ledger = Ledger()
    a, b, _ = two_sessions(nodes, ledger)
    b.ok(b"STORE 1 +FLAGS ($FromB)")
    a.ok(b"STORE 1 +FLAGS.SILENT ($FromA)")     # renames the file b renamed
    a.view[0].flags = a.view[0].flags | {b"$FromA"}
    a.noop()
    truth, _ = fresh_state(nodes[1], "INBOX", ledger, "check")
    assert truth[a.view[0].uid][0] == {b"$FromA", b"$FromB"}
    assert a.view[0].flags == {b"$FromA", b"$FromB"}, "a never heard of $FromB"


def test_store_of_flag_another_session_removed(mf, nodes, backend):
    ledger = Ledger()
    a, b, uids = two_sessions(nodes, ledger, flags=(b"\\Flagged",))
    b.ok(b"STORE 1 -FLAGS (\\Flagged)")
    a.ok(b"STORE 1 +FLAGS (\\Flagged)")                # later in time: it must win
    truth, _ = fresh_state(nodes[1], "INBOX", ledger, "check")
    assert truth[uids[0]][0] == {b"\\Flagged"}


def test_remove_keyword_created_after_select(mf, nodes, backend):
    ledger = Ledger()
    a, b, uids = two_sessions(nodes, ledger)
    b.ok(b"STORE 1 +FLAGS ($Brandnew)")
    a.ok(b"STORE 1 -FLAGS ($Brandnew)")
    truth, _ = fresh_state(nodes[1], "INBOX", ledger, "check")
    assert truth[uids[0]][0] == frozenset()


def test_expunge_honours_deleted_flag_removed_by_other_node(mf, nodes, backend):
    ledger = Ledger()
    a, b, uids = two_sessions(nodes, ledger, count=2)
    a.ok(b"STORE 1:2 +FLAGS (\\Deleted)")
    b.noop()
    b.ok(b"STORE 1 -FLAGS (\\Deleted)")              # b keeps message 1
    a.ok(b"EXPUNGE")
    truth, _ = fresh_state(nodes[1], "INBOX", ledger, "check")
    assert sorted(truth) == [uids[0]], "message 1 lost its \\Deleted on node 2, yet was expunged"


def test_failed_copy_leaves_destination_unchanged(mf, nodes, backend):
    ledger = Ledger()
    a, b, uids = two_sessions(nodes, ledger, count=2)
    b.ok(b"UID STORE %d +FLAGS (\\Deleted)" % uids[1])
    b.ok(b"UID EXPUNGE %d" % uids[1])
    status, line, _ = a.cmd(b"COPY 1:2 Archive")      # a still sees both
    archive, _ = fresh_state(nodes[1], "Archive", ledger, "check")
    if status == b"OK":
        m = re.search(rb"\[COPYUID \d+ (\S+) (\S+)\]", line)
        assert m and len(archive) == len(m.group(2).split(b",")), (line, archive)
    else:
        assert b"TRYCREATE" not in line, "Archive exists: %r" % line
        assert archive == {}, "COPY said %r but Archive got %s" % (line, archive)


# ---------------------------------------------------------------- renames vs. listing

BIG_MAILBOX = 3000          # cur/ needs many getdents calls (or READDIR replies)
CHURN_FILES = 20
CHURN_SECS = 4.0
CHURN_SCRIPT = """
import os, sys, time
cur, secs, bases = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
end, k = time.monotonic() + secs, 0
while time.monotonic() < end:
    for b in bases:
        new, old = (":2,FS", ":2,S") if k % 2 == 0 else (":2,S", ":2,FS")
        os.rename(os.path.join(cur, b + old), os.path.join(cur, b + new))
    k += 1
print(k * len(bases))
"""


def test_uids_stable_while_another_node_renames(mf, nodes, backend):
    """Another node changing a message's flags renames its file all the
    time; a listing of a large cur/ can then miss the file (it has left its
    old place in the directory order and not yet reached the new one). The
    uidlist must not take that for an expunge: the message keeps its UID."""
    ledger = Ledger()
    # the files are made before any node looks at the mailbox (over NFS,
    # files made behind ganesha's back later would meet its caches)
    cur = os.path.join(mf.maildir(USER), "cur")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(mf.maildir(USER), sub))
    base = "1700000000.M%dP1.churn,S=%d,W=%d"
    for i in range(BIG_MAILBOX):
        data = make_msg("<big-%d@mf.test>" % i).replace(b"\r\n", b"\n")
        size = len(data)
        with open(os.path.join(cur, (base % (i, size, size + data.count(b"\n"))) + ":2,S"), "wb") as f:
            f.write(data)
    s = Session(nodes[0], "lister", ledger)
    s.select("INBOX")
    assert len(s.view) == BIG_MAILBOX
    # another node flips the \\Flagged flag of CHURN_FILES messages spread
    # over the directory, round robin: on POSIX a process renaming the files
    # (as fast as a node could), over NFS two IMAP sessions on node 2 (a
    # rename behind ganesha's back would not be seen by its caches)
    targets = ["1700000000.M%dP1." % (i * BIG_MAILBOX // CHURN_FILES) for i in range(CHURN_FILES)]
    names = sorted(n.split(":2,")[0] for n in os.listdir(cur) if n.startswith(tuple(targets)))
    assert len(names) == CHURN_FILES
    stop = threading.Event()
    flips = [0]

    # sequence numbers (nothing is expunged here): a plain STORE renames
    # without the full sync of 3,000 messages that a UID STORE starts with
    seqs = list(range(1, BIG_MAILBOX + 1))[::BIG_MAILBOX // CHURN_FILES]
    ready = threading.Barrier(3)

    def imap_churn(k):
        c = Session(nodes[1], "churn%d" % k, ledger)
        c.ok(b"SELECT INBOX")          # untracked: this session only writes
        ready.wait(timeout=60)
        n = 0
        while not stop.is_set():
            for seq in seqs[k::2]:
                c.ok(b"STORE %d %sFLAGS.SILENT (\\Flagged)" % (seq, b"-+"[n % 2:n % 2 + 1]))
                flips[0] += 1
            n += 1
        c.logout()

    if backend == "posix":
        churn = subprocess.Popen([sys.executable, "-c", CHURN_SCRIPT, cur, str(CHURN_SECS)] + names,
                                 stdout=subprocess.PIPE, text=True)
    else:
        threads, errors = run_threads([("churn%d" % k, lambda k=k: imap_churn(k)) for k in range(2)])
        ready.wait(timeout=60)
    syncs = 0
    try:
        # CHURN_SECS, and at least 4 syncs (a sync of this mailbox over
        # NFS under ASan can take a second while the files churn)
        end, hard_end = time.monotonic() + CHURN_SECS, time.monotonic() + 30
        while (time.monotonic() < end or syncs < 4) and time.monotonic() < hard_end:
            s.noop()
            syncs += 1
    finally:
        stop.set()
        if backend == "posix":
            flips[0] = int(churn.communicate(timeout=CHURN_SECS + 30)[0])
        else:
            join_all(threads, time.monotonic() + 30)
            assert not errors, errors
    s.noop()
    assert len(s.view) == BIG_MAILBOX
    assert not ledger.errors, "\n".join(ledger.errors[:10])
    # over NFS (ASan) a STORE in this mailbox took about 0.4 s while the lister synced
    assert syncs >= 4 and flips[0] >= (1000 if backend == "posix" else 10), (syncs, flips)
    assert disk_state(mf.maildir(USER)).keys() == {e.uid for e in s.view}

