#!/usr/bin/python3
"""bench_imap.py: the IMAP benchmark behind `make bench-imap`.

In one run, against mailfleetd (BUILD/mailfleetd, store.fsync = true) and
Dovecot (Debian dovecot-imapd, mail_fsync = always for the same durability,
in its documented high-performance mode: login
processes reused and started in advance, `service imap-login { service_count
= 0 }`, imap processes reused, `service imap { service_count = 0 }`, process
and client limits raised; its own config, base_dir and state_dir in a temp
dir; maildir store; passwords as SHA512-CRYPT on both):

  1. the mixed workload of tests/tools/imapload.c (LOGIN, SELECT, FETCH
     headers, FETCH a body, STORE flags, SEARCH UNSEEN and FROM, APPEND, STORE
     \\Deleted + UID EXPUNGE, LOGOUT; every answer checked) with 10 and 50
     concurrent clients, each its own user and mailbox of --messages
     pre-filled messages, --duration seconds per run, --rounds rounds with the
     servers alternating; median operations/s and the ratio mailfleet/Dovecot;
  2. on a --big-message mailbox: the time of SELECT INBOX and of
     FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE), the first time (nothing
     indexed yet) and repeated (new sessions, median);
  3. resident memory (sum of VmRSS of all the server's processes, and of Pss)
     with --idle connections logged in, INBOX selected, in IDLE on mailfleet
     and --idle-dovecot on Dovecot (one imap process per connection there).

Both stores get the same messages, written as maildir files in cur/ (names
with S= and W=), with no UID list: each server builds its own. Any error
reported by the load generator (NO, BAD, wrong or malformed answer) makes the
benchmark fail (exit 1). Ports: mailfleet 127.0.0.1:23100, Dovecot
127.0.0.1:23510.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import (DOMAIN, PASSWORD, BenchError, Dovecot, Mailfleet, chown_tree, log,
                      raise_nofile)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORT_MAILFLEET = 23100
PORT_DOVECOT = 23510
SENDERS = 50
RUN_TIMEOUT = 1800
FETCH_ALL = "FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)"


# ---------------------------------------------------------------- mailboxes

FILLER = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghij\n"


def message(i):
    """Message i (LF line ends, as maildir files usually are). Its Message-ID
    carries its RFC822.SIZE (CRLF octets), so that imapload can check sizes,
    and it ends in a line naming it, so that a truncated body is noticed."""
    size = 1000 + (i * 7919) % 9000
    head = (b"Return-Path: <s%02d@remote.test>\nFrom: Sender %02d <s%02d@remote.test>\n"
            b"To: <user@bench.test>\nSubject: bench message %d\n"
            b"Date: Mon, 1 Jan 2024 %02d:%02d:00 +0000\nMessage-ID: <bench.%d.%%07d@bench.test>\n\n"
            % (i % SENDERS, i % SENDERS, i % SENDERS, i, (i // 60) % 24, i % 60, i))
    body = bytearray()
    while len(head) + len(body) < size:
        body += FILLER
    body += b"-- end of bench message %d --\n" % i
    text = head + bytes(body)
    crlf = len(text) + 3 + text.count(b"\n")   # "%07d" becomes 7 digits
    data = text.replace(b"%07d", b"%07d" % crlf)
    assert len(data) + data.count(b"\n") == crlf
    return data


def fill(stores, user, count):
    """Writes messages 0..count-1 into user's Maildir/cur in every store."""
    base = 1700000000
    dirs = []
    for root in stores:
        md = os.path.join(root, DOMAIN, user, "Maildir")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(md, sub), exist_ok=True)
        dirs.append(os.path.join(md, "cur"))
    for i in range(count):
        data = message(i)
        name = "%d.M%dP4242.benchhost,S=%d,W=%d:2," % (base + i, i, len(data),
                                                       len(data) + data.count(b"\n"))
        for d in dirs:
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


def prepare(workdir, args):
    stores = [os.path.join(workdir, "store-mailfleet"), os.path.join(workdir, "store-dovecot")]
    users = ["u%d" % n for n in range(1, max(args.clients) + 1)]
    t0 = time.monotonic()
    log("preparing mailboxes: %d users x %d messages, 1 user x %d messages, in both stores ..."
        % (len(users), args.messages, args.big))
    for u in users:
        fill(stores, u, args.messages)
    fill(stores, "big", args.big)
    for s in stores:
        chown_tree(s)
    log("  done in %.1f s" % (time.monotonic() - t0))
    return stores, users + ["big"]


# ---------------------------------------------------------------- servers

DOVECOT_IMAP_CONF = """
# The documented high-performance mode: login processes serve many
# connections and are started in advance; imap processes are reused.
# mail_fsync = always: the durability mailfleet's store.fsync = true gives
# (a message APPENDed or flag change answered OK survives a crash), as in
# bench-lmtp. (--dovecot-fsync optimized: Dovecot's default, for comparison.)
mail_fsync = {fsync}
default_process_limit = {procs}
default_client_limit = {clients}
default_vsz_limit = 1G
protocol imap {{
  mail_max_userip_connections = {clients}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  service_count = 0
  process_min_avail = {cores}
  client_limit = {clients}
}}
service imap {{
  service_count = 0
  process_min_avail = {min_avail}
  process_limit = {procs}
  client_limit = 1
}}
"""


def make_servers(args, workdir, stores, users):
    mf = Mailfleet(workdir, args.build, stores[0], users, [("imap", PORT_MAILFLEET)],
                   extra_conf=["limits = { connections_max = %d; connections_per_ip = %d; };"
                               % (args.idle + 1000, args.idle + 1000)],
                   log_level="warn", script="bench_imap.py")
    procs = max(args.idle_dovecot, max(args.clients)) + 200
    dc = Dovecot(workdir, stores[1], users, PORT_DOVECOT, "imap",
                 # auth and anvil serve imap, imap-login and imap-urlauth-login: 3 x procs
                 DOVECOT_IMAP_CONF.format(fsync=args.dovecot_fsync, port=PORT_DOVECOT,
                                          procs=procs, clients=4 * procs + 1000,
                                          cores=os.cpu_count() or 2,
                                          min_avail=max(args.clients)),
                 script="bench_imap.py", instance="mfbench-imap-dovecot")
    return [mf, dc]


# ---------------------------------------------------------------- runs

def figures(text):
    return dict(kv.split("=", 1) for kv in text.split() if "=" in kv)


def imapload(args, *extra, timeout=RUN_TIMEOUT):
    cmd = [os.path.join(args.build, "tools", "imapload")] + [str(x) for x in extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=raise_nofile)


def run_workload(args, server, clients, duration=None, iterations=None):
    extra = ["--port", server.port, "--messages", args.messages, "--clients", clients,
             "--seed", int(time.time()) % 100000]
    extra += ["--duration", duration] if duration else ["--iterations", iterations]
    cpu0 = server.cpu()
    proc = imapload(args, *extra)
    cpu = server.cpu() - cpu0
    fig = figures(proc.stdout)
    if proc.returncode != 0 or int(fig.get("errors", "1")) != 0:
        raise BenchError("imapload against %s (%d clients) FAILED (exit %d): %s\n%s\n%s log:\n%s"
                         % (server.name, clients, proc.returncode, proc.stdout.strip(),
                            proc.stderr.strip()[-3000:], server.name, server.log_tail()))
    ops = int(fig["ops"])
    return {"rate": float(fig["rate"]), "ops": ops, "cpu_us": cpu * 1e6 / ops,
            "client_cpu_s": float(fig["client_cpu_s"]),
            "latency": {k[3:]: float(v) for k, v in fig.items() if k.startswith("ms_")}}


def run_script(args, server, user, *commands):
    proc = imapload(args, "--script", "--port", server.port, "--user", "%s@%s" % (user, DOMAIN),
                    "--password", PASSWORD, "--", *commands)
    fig = figures(proc.stdout)
    if proc.returncode != 0:
        raise BenchError("imapload --script against %s failed: %s %s"
                         % (server.name, proc.stdout.strip(), proc.stderr.strip()[-2000:]))
    return fig


def time_big(args, server):
    """SELECT and FETCH 1:* timings on the big mailbox: the first session, then
    --rounds more (median). Checks that every message was returned."""
    rows = []
    for k in range(args.rounds + 1):
        fig = run_script(args, server, "big", "SELECT INBOX", FETCH_ALL)
        if int(fig["c1_exists"]) != args.big or int(fig["c2_fetch"]) != args.big:
            raise BenchError("%s: SELECT said %s EXISTS, FETCH 1:* returned %s responses; expected %d"
                             % (server.name, fig["c1_exists"], fig["c2_fetch"], args.big))
        rows.append((float(fig["c1_ms"]), float(fig["c2_ms"])))
    return {"first": rows[0], "repeated": (statistics.median(r[0] for r in rows[1:]),
                                           statistics.median(r[1] for r in rows[1:]))}


def finish(proc):
    """Closes imapload's stdin (it then ends the IDLEs) and collects its output."""
    proc.stdin.close()
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.wait(timeout=600)
    return out, err


def idle_memory(args, server, count):
    """Memory of the server with count connections in IDLE (and before)."""
    rss0, pss0, n0 = server.memory()
    cmd = [os.path.join(args.build, "tools", "imapload"), "--idle", str(count), "--port",
           str(server.port), "--users", str(max(args.clients)), "--messages", str(args.messages)]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=raise_nofile)
    try:
        ready = proc.stdout.readline()
        fig = figures(ready)
        if not ready.startswith("ready") or int(fig["errors"]) != 0 or int(fig["idling"]) != count:
            out, err = finish(proc)
            raise BenchError("%s: %d IDLE connections not established: %s%s\n%s"
                             % (server.name, count, ready, out, err[-2000:]))
        setup = time.monotonic() - t0
        time.sleep(3)   # let the server settle (idle timers, freed login state)
        rss, pss, nproc = server.memory()
        out, err = finish(proc)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        raise BenchError("%s: closing the IDLE connections failed: %s %s"
                         % (server.name, out.strip(), err.strip()[-2000:]))
    return {"count": count, "rss": rss, "pss": pss, "procs": nproc, "rss0": rss0, "pss0": pss0,
            "procs0": n0, "setup_s": setup}


# ---------------------------------------------------------------- report

MB = 1024.0 * 1024.0


def report(args, res):
    log("")
    log("== IMAP benchmark, %s, load average %s, %d CPUs =="
        % (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           " ".join("%.2f" % x for x in os.getloadavg()), os.cpu_count() or 0))
    log("")
    log("Mixed workload (%d ops per session: LOGIN SELECT FETCH-headers FETCH-body STORE SEARCH x2"
        % 12)
    log("  STORE APPEND STORE UID-EXPUNGE LOGOUT), mailbox of %d messages per user, %d s runs,"
        % (args.messages, args.duration))
    log("  median of %d round(s); server CPU = user+sys of all its processes per operation" % args.rounds)
    log("  mailfleet store.fsync = true; Dovecot mail_fsync = %s" % args.dovecot_fsync)
    log("  %-8s %-10s %10s %12s    %s" % ("clients", "server", "ops/s", "CPU us/op", "[ops/s per round]"))
    for clients in args.clients:
        meds = {}
        for name in ("mailfleet", "Dovecot"):
            rows = res["load"][(name, clients)]
            meds[name] = statistics.median(r["rate"] for r in rows)
            log("  %-8d %-10s %10.1f %12.1f    [%s]" % (
                clients, name, meds[name], statistics.median(r["cpu_us"] for r in rows),
                ", ".join("%.0f" % r["rate"] for r in rows)))
        ratios = [a["rate"] / b["rate"] for a, b in zip(res["load"][("mailfleet", clients)],
                                                        res["load"][("Dovecot", clients)])]
        log("  %-8d ratio mailfleet/Dovecot: %.2fx (of medians), %.2fx (median of per-round)"
            % (clients, meds["mailfleet"] / meds["Dovecot"], statistics.median(ratios)))
    log("")
    log("Big mailbox, %d messages: SELECT INBOX and %s (ms, client side)" % (args.big, FETCH_ALL))
    log("  %-10s %14s %14s %18s %18s" % ("server", "SELECT first", "FETCH first", "SELECT repeated",
                                         "FETCH repeated"))
    for name in ("mailfleet", "Dovecot"):
        b = res["big"][name]
        log("  %-10s %14.1f %14.1f %18.1f %18.1f" % (name, b["first"][0], b["first"][1],
                                                     b["repeated"][0], b["repeated"][1]))
    log("")
    log("IDLE: connections logged in, INBOX (%d messages) selected, in IDLE; sum over the server's"
        % args.messages)
    log("  processes from /proc (RSS = VmRSS, PSS = proportional share of shared pages)")
    log("  %-10s %7s %6s %10s %10s %10s %14s %14s" % ("server", "conns", "procs", "RSS MB", "PSS MB",
                                                       "idle RSS MB", "RSS KB/conn", "PSS KB/conn"))
    for name in ("mailfleet", "Dovecot"):
        m = res["idle"][name]
        n = m["count"]
        log("  %-10s %7d %6d %10.1f %10.1f %10.1f %14.1f %14.1f" % (
            name, n, m["procs"], m["rss"] / MB, m["pss"] / MB, m["rss0"] / MB,
            (m["rss"] - m["rss0"]) / 1024.0 / n, (m["pss"] - m["pss0"]) / 1024.0 / n))
    log("  (per-connection figures: growth over the server with no connection, divided by conns)")
    log("")
    worst = min(statistics.median(r["rate"] for r in res["load"][("mailfleet", c)]) /
                statistics.median(r["rate"] for r in res["load"][("Dovecot", c)]) for c in args.clients)
    m = res["idle"]["mailfleet"]
    log("targets: throughput >= 2x Dovecot's: %s (worst ratio %.2fx); %d IDLE connections in "
        "< 256 MB RSS: %s (%.1f MB)" % ("met" if worst >= 2 else "NOT met", worst, m["count"],
                                         "met" if m["rss"] < 256 * MB else "NOT met", m["rss"] / MB))


# ---------------------------------------------------------------- main

def bench(args, workdir):
    stores, users = prepare(workdir, args)
    servers = make_servers(args, workdir, stores, users)
    res = {"load": {}, "big": {}, "idle": {}}
    try:
        servers[0].start()
        servers[1].start(settle=1.0)
        log("servers: mailfleetd pid %d on :%d, dovecot pid %d on :%d"
            % (servers[0].proc.pid, servers[0].port, servers[1].proc.pid, servers[1].port))
        for s in servers:
            res["big"][s.name] = time_big(args, s)
            b = res["big"][s.name]
            log("  big mailbox %-9s SELECT %.1f ms, FETCH 1:* %.1f ms (first); %.1f / %.1f ms (repeated)"
                % (s.name, b["first"][0], b["first"][1], b["repeated"][0], b["repeated"][1]))
        for s in servers:   # every mailbox indexed, processes warm
            run_workload(args, s, max(args.clients), iterations=2)
        log("  warm-up done (%d sessions per server)" % (2 * max(args.clients)))
        for rnd in range(args.rounds):
            for clients in args.clients:
                order = servers if rnd % 2 == 0 else servers[::-1]
                for s in order:
                    r = run_workload(args, s, clients, duration=args.duration)
                    res["load"].setdefault((s.name, clients), []).append(r)
                    log("  round %d %2d clients %-9s %9.1f ops/s  %7.1f us CPU/op  (%d ops)"
                        % (rnd + 1, clients, s.name, r["rate"], r["cpu_us"], r["ops"]))
                    log("      mean ms per command: " + " ".join(
                        "%s %.1f" % (k, v) for k, v in r["latency"].items()))
        for s, count in ((servers[0], args.idle), (servers[1], args.idle_dovecot)):
            m = res["idle"][s.name] = idle_memory(args, s, count)
            log("  IDLE %-9s %d connections (set up in %.1f s): RSS %.1f MB over %d process(es)"
                % (s.name, count, m["setup_s"], m["rss"] / MB, m["procs"]))
    except BenchError:
        for s in servers:
            log("--- %s log tail:\n%s" % (s.name, s.log_tail()))
        raise
    finally:
        for s in servers:
            s.stop()
    for s in servers:
        problems = s.log_problems()
        log("  %s log: %d error/warning line(s)%s" % (s.name, len(problems),
                                                     "" if not problems else ", first: " + problems[0]))
    return res


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--messages", type=int, default=1000, help="messages per workload mailbox")
    ap.add_argument("--big", type=int, default=50000, help="messages in the big mailbox")
    ap.add_argument("--clients", default="10,50", help="comma-separated client counts")
    ap.add_argument("--duration", type=int, default=10, help="seconds per workload run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=int, default=10000, help="IDLE connections on mailfleet")
    ap.add_argument("--idle-dovecot", type=int, default=1000, help="IDLE connections on Dovecot")
    ap.add_argument("--workdir", default=None, help="keep data here (default: a temp dir, removed)")
    ap.add_argument("--dovecot-fsync", choices=("always", "optimized"), default="always",
                    help="Dovecot's mail_fsync (default always: mailfleet's durability)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 200 / 5,000 messages, 3 s runs, 1 round, 500 / 200 IDLE")
    args = ap.parse_args(argv)
    args.build = os.path.abspath(args.build)
    args.clients = [int(x) for x in args.clients.split(",")]
    if args.quick:
        args.messages, args.big, args.duration, args.rounds = 200, 5000, 3, 1
        args.idle, args.idle_dovecot = 500, 200
    if args.messages < 2 * SENDERS or min(args.clients) < 1 or args.rounds < 1:
        ap.error("--messages must be at least %d, --clients and --rounds at least 1" % (2 * SENDERS))
    return args


def main(argv):
    args = parse_args(argv)
    if os.geteuid() != 0:
        log("bench_imap: must run as root (Dovecot drops to the mail user)")
        return 2
    for path in ("mailfleetd", "mailfleetctl", "tools/imapload"):
        if not os.access(os.path.join(args.build, path), os.X_OK):
            log("bench_imap: %s/%s is not built (make BUILD=%s all %s/tools/imapload)"
                % (args.build, path, args.build, args.build))
            return 2
    if shutil.which("dovecot") is None:
        log("bench_imap: dovecot not installed (make deps)")
        return 2
    if args.workdir and os.path.isdir(args.workdir) and os.listdir(args.workdir):
        log("bench_imap: --workdir %s is not empty" % args.workdir)
        return 2
    workdir = args.workdir or tempfile.mkdtemp(prefix="mf-bench-imap-", dir="/var/tmp")
    os.makedirs(workdir, exist_ok=True)
    os.chmod(workdir, 0o755)
    try:
        res = bench(args, workdir)
        report(args, res)
        ok = True
    except BenchError as e:
        log("bench_imap: FAILED: %s" % e)
        ok = False
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
