#!/usr/bin/python3
"""bench_pop3.py: the POP3 benchmark behind `make bench-pop3`.

In one run, against mailfleetd (build/mailfleetd) and Dovecot (Debian
dovecot-pop3d in its documented high-performance mode: login and pop3
processes reused, service_count = 0, process_min_avail; pop3_no_flag_updates;
its own config, base_dir and state_dir in a temp dir; passwords as
SHA512-CRYPT on both):

  1. log in to a 5,000-message mailbox (~10 KB each) and RETR every message
     (commands pipelined 16 deep): wall time, the server's CPU time
     (user+sys of all its processes from /proc) and CPU per RETR'd megabyte;
  2. log in + UIDL on a 50,000-message mailbox: wall time and server CPU.

Both servers get identical copies of the same maildirs, made with a
dovecot-uidlist (UIDVALIDITY and UIDs fixed), so the UIDL lists of the two
must be identical: mailfleet adopts the uidlist in place and uses Dovecot's
default format "%08Xu%08Xv". The benchmark fails (exit 1) when they differ
or when a RETR'd message is not byte-identical between the two.

Each server has one warm-up login first (Dovecot builds its index and cache,
mailfleet caches the CRLF sizes in its uidlist; the first login is reported
separately), then --rounds measured runs, servers alternating; medians are
printed with the ratios. Ports: 127.0.0.1:27900-27920 only.
"""
import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time

from benchlib import DOMAIN, PASSWORD, BenchError, chown_tree, log  # noqa: E402
import benchlib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORT_MAILFLEET = 27910
PORT_MAILFLEET_LMTP = 27911
PORT_DOVECOT = 27920


# ---------------------------------------------------------------- mailboxes

def make_maildir(path, count, size_for, uidvalidity):
    """A maildir with count messages in cur/ and a dovecot-uidlist naming them."""
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    names = []
    base = 1600000000
    filler = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghij\n"
    for i in range(count):
        size = size_for(i)
        head = (b"Return-Path: <sender@remote.test>\nFrom: Sender <sender@remote.test>\n"
                b"To: <u@bench.test>\nSubject: bench message %d\nMessage-ID: <%d@bench>\n"
                b"Date: Mon, 1 Jan 2024 00:00:00 +0000\n\n" % (i, i))
        body = bytearray(head)
        n = 0
        while len(body) < size:
            body += b".dot-stuffed line %d\n" % n if n % 40 == 7 else filler
            n += 1
        name = "%d.M%dP%d.benchhost,S=%d" % (base + i, i, 4242, len(body))
        with open(os.path.join(path, "cur", name + ":2,"), "wb") as f:
            f.write(body)
        names.append(name)
    with open(os.path.join(path, "dovecot-uidlist"), "w") as f:
        f.write("3 V%d N%d G0123456789abcdef0123456789abcdef\n" % (uidvalidity, count + 1))
        for i, name in enumerate(names):
            f.write("%d :%s:2,\n" % (i + 1, name))


# ---------------------------------------------------------------- client

class Client:
    """A minimal, fast POP3 client (the server's costs are what is measured)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=300)
        self.buf = b""
        self.pos = 0
        self.line()

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise BenchError("server closed the connection")
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0

    def line(self):
        while True:
            idx = self.buf.find(b"\r\n", self.pos)
            if idx >= 0:
                line = self.buf[self.pos:idx]
                self.pos = idx + 2
                return line
            self._fill()

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        line = self.line()
        if not line.startswith(b"+OK"):
            raise BenchError("%s: %r" % (text.split()[0], line))
        return line

    def multi_raw(self):
        """Everything up to the terminating ".\r\n" line (the last CRLF kept)."""
        while len(self.buf) - self.pos < 3:
            self._fill()
        if self.buf.startswith(b".\r\n", self.pos):
            self.pos += 3
            return b""
        start = self.pos
        while True:
            idx = self.buf.find(b"\r\n.\r\n", start)
            if idx >= 0:
                data = self.buf[self.pos:idx + 2]
                self.pos = idx + 5
                return data
            start = max(self.pos, len(self.buf) - 4) - self.pos
            self._fill()
            start += self.pos

    def login(self, user):
        self.cmd("USER " + user)
        self.cmd("PASS " + PASSWORD)

    def uidl(self):
        self.cmd("UIDL")
        return self.multi_raw().split(b"\r\n")[:-1]

    def retr_all(self, count, depth=16, keep=None):
        """RETR 1..count pipelined; returns bytes received (message octets)."""
        total = 0
        sent = 0
        done = 0
        while done < count:
            batch = []
            while sent < count and sent - done < depth:
                sent += 1
                batch.append(b"RETR %d\r\n" % sent)
            if batch:
                self.sock.sendall(b"".join(batch))
            line = self.line()
            if not line.startswith(b"+OK"):
                raise BenchError("RETR: %r" % line)
            data = self.multi_raw()
            total += len(data)
            done += 1
            if keep is not None and done in keep:
                keep[done] = data
        return total

    def quit(self):
        try:
            self.cmd("QUIT")
        finally:
            self.sock.close()


# ---------------------------------------------------------------- servers

DOVECOT_POP3_CONF = """pop3_uidl_format = %08Xu%08Xv
pop3_no_flag_updates = yes
# The documented high-performance mode: login and pop3 processes are reused
# (service_count = 0) and started in advance (process_min_avail).
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  service_count = 0
  process_min_avail = 1
}}
service pop3 {{
  service_count = 0
  process_min_avail = 1
}}
"""


class Dovecot(benchlib.Dovecot):
    def __init__(self, workdir, store_root, users):
        super().__init__(workdir, store_root, users, PORT_DOVECOT, "pop3",
                         DOVECOT_POP3_CONF.format(port=PORT_DOVECOT), script="bench_pop3.py",
                         instance="mfbench-pop3-dovecot")

    def start(self):
        return super().start(settle=1.0)   # let process_min_avail processes come up


class Mailfleet(benchlib.Mailfleet):
    def __init__(self, workdir, store_root, users, build):
        super().__init__(workdir, build, store_root, users,
                         [("pop3", PORT_MAILFLEET), ("lmtp", PORT_MAILFLEET_LMTP)],
                         run_user="", log_level="warn", script="bench_pop3.py")


# ---------------------------------------------------------------- runs

def measure(server, fn):
    cpu0, t0 = server.cpu(), time.monotonic()
    result = fn()
    wall = time.monotonic() - t0
    time.sleep(0.2)   # let the server finish its side (QUIT, logging)
    return wall, server.cpu() - cpu0, result


def run_retr(server, user, count, keep=None):
    def fn():
        c = Client(server.port)
        c.login("%s@%s" % (user, DOMAIN))
        total = c.retr_all(count, keep=keep)
        c.quit()
        return total
    return measure(server, fn)


def run_uidl(server, user):
    def fn():
        c = Client(server.port)
        c.login("%s@%s" % (user, DOMAIN))
        uidls = c.uidl()
        c.quit()
        return uidls
    return measure(server, fn)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--retr-messages", type=int, default=5000)
    ap.add_argument("--uidl-messages", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", default=None, help="keep data here (default: a temp dir, removed)")
    ap.add_argument("--quick", action="store_true", help="500 / 5,000 messages, 1 round")
    args = ap.parse_args(argv)
    args.build = os.path.abspath(args.build)
    if args.quick:
        args.retr_messages, args.uidl_messages, args.rounds = 500, 5000, 1
    return args


def prepare(workdir, args):
    src = os.path.join(workdir, "src")
    log("preparing mailboxes: %d messages of ~10 KB, %d messages of ~1.5 KB ..."
        % (args.retr_messages, args.uidl_messages))
    make_maildir(os.path.join(src, DOMAIN, "big", "Maildir"), args.retr_messages,
                 lambda i: 2000 + (i * 7919) % 16000, 1700000001)
    make_maildir(os.path.join(src, DOMAIN, "many", "Maildir"), args.uidl_messages,
                 lambda i: 1000 + (i * 31) % 1000, 1700000002)
    stores = {}
    for name in ("mailfleet", "dovecot"):
        dst = os.path.join(workdir, "store-" + name)
        shutil.copytree(src, dst)
        chown_tree(dst)
        stores[name] = dst
    shutil.rmtree(src)
    return stores


def bench(args, workdir):
    stores = prepare(workdir, args)
    users = ("big", "many")
    servers = [Mailfleet(workdir, stores["mailfleet"], users, args.build),
               Dovecot(workdir, stores["dovecot"], users)]
    for s in servers:
        s.start()
    res = {s.name: {"retr": [], "uidl": []} for s in servers}
    samples = {}
    uidls = {}
    try:
        for s in servers:
            keep = {1: None, args.retr_messages // 2: None, args.retr_messages: None}
            wall, cpu, octets = run_retr(s, "big", args.retr_messages, keep=keep)
            res[s.name]["retr_first"] = (wall, cpu, octets)
            samples[s.name] = keep
            wall, cpu, lst = run_uidl(s, "many")
            res[s.name]["uidl_first"] = (wall, cpu, len(lst))
            uidls[s.name] = lst
        for r in range(args.rounds):
            for s in (servers if r % 2 == 0 else list(reversed(servers))):
                res[s.name]["retr"].append(run_retr(s, "big", args.retr_messages))
                wall, cpu, lst = run_uidl(s, "many")
                res[s.name]["uidl"].append((wall, cpu, len(lst)))
    finally:
        for s in servers:
            s.stop()
    return res, samples, uidls


def med(rows, i):
    return statistics.median(r[i] for r in rows)


def report(args, res, samples, uidls):
    ok = True
    if uidls["mailfleet"] != uidls["Dovecot"]:
        ok = False
        diff = next(i for i, (a, b) in enumerate(zip(uidls["mailfleet"], uidls["Dovecot"])) if a != b) \
            if len(uidls["mailfleet"]) == len(uidls["Dovecot"]) else -1
        log("FAIL: UIDL lists differ (first difference at %d: %r vs %r)" % (
            diff, uidls["mailfleet"][diff] if diff >= 0 else len(uidls["mailfleet"]),
            uidls["Dovecot"][diff] if diff >= 0 else len(uidls["Dovecot"])))
    else:
        log("UIDL lists identical on both servers (%d entries, e.g. %s)"
            % (len(uidls["Dovecot"]), uidls["Dovecot"][0].decode()))
    for k in samples["Dovecot"]:
        if samples["mailfleet"][k] != samples["Dovecot"][k]:
            ok = False
            log("FAIL: RETR %d differs between the servers" % k)
    log("")
    log("RETR all: log in, RETR %d messages (%.1f MB on the wire), pipelined 16 deep; median of %d"
        % (args.retr_messages, res["Dovecot"]["retr"][0][2] / 1e6, args.rounds))
    fig = {}
    for name in ("mailfleet", "Dovecot"):
        rows = res[name]["retr"]
        mb = rows[0][2] / 1e6
        wall, cpu = med(rows, 0), med(rows, 1)
        fig[name] = (wall, cpu, cpu * 1000 / mb)
        first = res[name]["retr_first"]
        log("  %-9s wall %6.2f s  server CPU %6.2f s  = %6.2f ms CPU per MB   (first login: wall %.2f s, CPU %.2f s)"
            % (name, wall, cpu, cpu * 1000 / mb, first[0], first[1]))
    log("  ratio Dovecot/mailfleet: wall %.2fx, CPU per MB %.2fx"
        % (fig["Dovecot"][0] / max(fig["mailfleet"][0], 1e-9),
           fig["Dovecot"][2] / max(fig["mailfleet"][2], 1e-9)))
    log("")
    log("Login + UIDL: %d messages; median of %d" % (args.uidl_messages, args.rounds))
    fig2 = {}
    for name in ("mailfleet", "Dovecot"):
        rows = res[name]["uidl"]
        wall, cpu = med(rows, 0), med(rows, 1)
        fig2[name] = (wall, cpu)
        first = res[name]["uidl_first"]
        log("  %-9s wall %6.3f s  server CPU %6.3f s   (first login: wall %.2f s, CPU %.2f s)"
            % (name, wall, cpu, first[0], first[1]))
    log("  ratio Dovecot/mailfleet: wall %.2fx, CPU %.2fx"
        % (fig2["Dovecot"][0] / max(fig2["mailfleet"][0], 1e-9),
           fig2["Dovecot"][1] / max(fig2["mailfleet"][1], 1e-9)))
    log("")
    log("targets: CPU per MB and login+UIDL time at most half of Dovecot's: %s, %s"
        % ("met" if fig["mailfleet"][2] * 2 <= fig["Dovecot"][2] else "NOT met",
           "met" if fig2["mailfleet"][0] * 2 <= fig2["Dovecot"][0] else "NOT met"))
    return ok


def main(argv):
    args = parse_args(argv)
    if os.geteuid() != 0:
        log("bench_pop3: must run as root (Dovecot drops to the mail user)")
        return 2
    for tool in ("dovecot",):
        if shutil.which(tool) is None:
            log("bench_pop3: %s not installed (make deps)" % tool)
            return 2
    workdir = args.workdir or tempfile.mkdtemp(prefix="mf-bench-pop3-", dir="/var/tmp")
    os.makedirs(workdir, exist_ok=True)
    os.chmod(workdir, 0o755)
    try:
        res, samples, uidls = bench(args, workdir)
        ok = report(args, res, samples, uidls)
    except BenchError as e:
        log("bench_pop3: %s" % e)
        ok = False
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
