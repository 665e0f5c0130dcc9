#!/usr/bin/python3
"""bench_lmtp.py: the LMTP delivery benchmark behind `make bench-lmtp`.

In one run it delivers the same load (default 10,000 messages of ~10 KB to 200
users over 4 connections, build/tools/lmtpload) into

  * mailfleetd (build/mailfleetd, store.fsync = true),
  * Dovecot's LMTP (Debian dovecot-lmtpd, mail_fsync = always, lmtp processes
    reused: service_count = 0, process_min_avail = connections), with its own
    config, base_dir and state_dir in a temp dir,

and measures the physical limit of the store with no server at all
(build/tools/physlimit: create + write + fsync + rename from 4 threads, and the
same with an fsync of new/ afterwards, which is mailfleet's durability).

Backends: "posix" (everything in one temp dir on the same local filesystem)
and "nfs" (mailfleetd and physlimit through libnfs against a private
nfs-ganesha on loopback; Dovecot cannot use libnfs, so its local-disk figure is
shown for reference). Every measurement is repeated (--rounds, servers
alternating) and the median is reported, with the CPU time (user+sys from
/proc/PID/stat of the server's processes, before/after) per message.

After every run the delivered files are counted and their Message-IDs checked:
a lost or duplicated message makes the benchmark fail (exit status 1).
Ports: 127.0.0.1:23020-23060 only.
"""
import argparse
import json
import os
import pwd
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

from benchlib import (DOMAIN, MAIL_USER, BenchError, log, stop_proc,  # noqa: E402,F401
                      tree_cpu_seconds, wait_port)
import benchlib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "nfs"))

PORT_DOVECOT = 23024
PORT_MAILFLEET = 23025
PORT_SINK = 23026
PORT_NFS = 23049
PORT_MNT = 23048
RUN_TIMEOUT = 1800           # seconds, per load run


# ---------------------------------------------------------------- processes


# ---------------------------------------------------------------- checks

MSGID_RE = re.compile(rb"^Message-ID: <([^>]+)>", re.M | re.I)


def maildir_files(store_root):
    """Paths of all files in new/ and cur/ of every user's INBOX below store_root."""
    base = os.path.join(store_root, DOMAIN)
    out = []
    if not os.path.isdir(base):
        return out
    for user in os.listdir(base):
        for sub in ("new", "cur"):
            d = os.path.join(base, user, "Maildir", sub)
            if os.path.isdir(d):
                out.extend(os.path.join(d, n) for n in os.listdir(d))
    return out


def check_delivered(store_root, tag, messages, users, what):
    """Every message <tag.i@DOMAIN>, i < messages, is present exactly once and in
    the mailbox of u(i % users + 1). Raises BenchError otherwise."""
    seen = {}
    prefix = (tag + ".").encode()
    for path in maildir_files(store_root):
        with open(path, "rb") as f:
            head = f.read(8192)
        m = MSGID_RE.search(head)
        if m is None or not m.group(1).startswith(prefix):
            continue
        i = int(m.group(1)[len(prefix):].split(b"@")[0])
        user = path.split(os.sep)[-4]
        if user != "u%d" % (i % users + 1):
            raise BenchError("%s: message %s.%d found in the mailbox of %s" % (what, tag, i, user))
        seen[i] = seen.get(i, 0) + 1
    missing = [i for i in range(messages) if i not in seen]
    dups = [i for i, n in seen.items() if n > 1]
    if missing or dups:
        raise BenchError("%s: %d of %d messages missing (first %s), %d duplicated"
                         % (what, len(missing), messages, missing[:5], len(dups)))


# ---------------------------------------------------------------- load

def run_lmtpload(tools, port, messages, users, connections, size, tag):
    cmd = [os.path.join(tools, "lmtpload"), "--port", str(port), "--messages", str(messages),
           "--users", str(users), "--connections", str(connections), "--size", str(size),
           "--domain", DOMAIN, "--tag", tag]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    figures = dict(kv.split("=", 1) for kv in proc.stdout.split())
    if proc.returncode != 0:
        raise BenchError("lmtpload against port %d failed (%d): %s %s"
                         % (port, proc.returncode, proc.stdout.strip(), proc.stderr.strip()[-2000:]))
    return figures


class Server:
    """Mixin for the servers under test: deliver() a timed load run. The
    server classes (benchlib) give cpu(), store_root, log handling."""
    nas_pid = None   # the NFS server's pid, when the store is on NFS

    def deliver(self, args, tag, messages):
        """One timed load run; returns {'rate', 'cpu_ms', 'seconds'} after
        checking that every message arrived."""
        cpu0 = self.cpu()
        nas0 = tree_cpu_seconds(self.nas_pid) if self.nas_pid else 0.0
        fig = run_lmtpload(args.tools, self.port, messages, args.users, args.connections,
                           args.size, tag)
        used = self.cpu() - cpu0
        nas = tree_cpu_seconds(self.nas_pid) - nas0 if self.nas_pid else None
        check_delivered(self.store_root, tag, messages, args.users, self.name)
        res = {"rate": float(fig["rate"]), "seconds": float(fig["seconds"]),
               "cpu_ms": used * 1000.0 / messages, "p99_ms": float(fig["p99_ms"])}
        if nas is not None:
            res["nas_cpu_ms"] = nas * 1000.0 / messages
        return res


# ---------------------------------------------------------------- Dovecot

DOVECOT_LMTP_CONF = """mail_fsync = always
# The documented high-performance mode: processes are reused (service_count = 0)
# and started in advance (process_min_avail).
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
  service_count = 0
  process_min_avail = {procs}
  process_limit = {limit}
  client_limit = 1
}}
"""


class Dovecot(Server, benchlib.Dovecot):
    def __init__(self, workdir, args):
        benchlib.Dovecot.__init__(
            self, workdir, os.path.join(workdir, "dovecot-mail"),
            ["u%d" % u for u in range(1, args.users + 1)], PORT_DOVECOT, "lmtp",
            DOVECOT_LMTP_CONF.format(port=PORT_DOVECOT, procs=args.connections,
                                     limit=args.connections * 2),
            script="bench_lmtp.py", instance="mfbench-dovecot")


# ---------------------------------------------------------------- mailfleet


class Mailfleet(Server, benchlib.Mailfleet):
    def __init__(self, workdir, args, location, store_root, label):
        benchlib.Mailfleet.__init__(
            self, workdir, args.build, location, ["u%d" % u for u in range(1, args.users + 1)],
            [("lmtp", PORT_MAILFLEET)], extra_conf=["threads = { worker = %d; };" % args.mf_workers],
            dirname="mailfleet-" + label, script="bench_lmtp.py")
        self.store_root = store_root


# ---------------------------------------------------------------- physical limit

class PhysLimit:
    """build/tools/physlimit on a location; local_root is where its files are
    seen on this machine (for clean-up)."""

    def __init__(self, args, location, local_root, dir_fsync, server_pid=None):
        self.args = args
        self.location = location
        self.local_root = local_root
        self.dir_fsync = dir_fsync
        self.server_pid = server_pid   # ganesha, for its CPU
        self.name = "physical limit" + (" +fsync new/" if dir_fsync else "")

    def deliver(self, args, tag, messages):
        prefix = "phys-" + tag
        cmd = [os.path.join(args.tools, "physlimit"), "--location", self.location,
               "--messages", str(messages), "--users", str(args.users),
               "--threads", str(args.connections), "--size", str(args.size),
               "--prefix", prefix] + (["--dir-fsync"] if self.dir_fsync else [])
        cpu0 = tree_cpu_seconds(self.server_pid) if self.server_pid else 0.0
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT)
        server_cpu = (tree_cpu_seconds(self.server_pid) - cpu0) if self.server_pid else None
        shutil.rmtree(os.path.join(self.local_root, prefix), ignore_errors=True)
        if proc.returncode != 0:
            raise BenchError("physlimit failed (%d): %s %s" % (proc.returncode, proc.stdout.strip(),
                                                             proc.stderr.strip()[-2000:]))
        fig = dict(kv.split("=", 1) for kv in proc.stdout.split())
        res = {"rate": float(fig["rate"]), "seconds": float(fig["seconds"]),
               "cpu_ms": float(fig["cpu_s"]) * 1000.0 / messages}
        if server_cpu is not None:
            res["nas_cpu_ms"] = server_cpu * 1000.0 / messages
        return res


# ---------------------------------------------------------------- rounds

def median_of(results, key):
    vals = [r[key] for r in results if key in r]
    return statistics.median(vals) if vals else None


def run_rounds(args, contestants, label):
    """contestants: list of objects with .name and .deliver(). Rounds alternate
    the order. Returns {name: [result per round]}."""
    results = {c.name: [] for c in contestants}
    for rnd in range(args.rounds):
        k = rnd % len(contestants)
        order = contestants[k:] + contestants[:k]
        for c in order:
            tag = "%s-r%d-%s" % (label, rnd + 1, re.sub(r"[^a-z]", "", c.name.lower()))
            res = c.deliver(args, tag, args.messages)
            results[c.name].append(res)
            log("  round %d %-30s %8.1f msg/s  %6.3f ms CPU/msg  (%.1f s)"
                % (rnd + 1, c.name, res["rate"], res["cpu_ms"], res["seconds"]))
    return results


def warm_up(args, servers, label):
    """One message per user, untimed, so that every mailbox exists and the
    servers' processes and caches are warm; checked like the real runs.
    A physlimit gets one untimed run of the same size."""
    for s in servers:
        if isinstance(s, PhysLimit):
            s.deliver(args, "%s-warm" % label, args.users)
            log("  warm-up %-28s %d files written" % (s.name, args.users))
            continue
        tag = "%s-warm-%s" % (label, s.name.lower())
        cpu0 = s.cpu()
        run_lmtpload(args.tools, s.port, args.users, args.users, args.connections, args.size, tag)
        check_delivered(s.store_root, tag, args.users, args.users, s.name + " warm-up")
        log("  warm-up %-28s %d messages delivered (%.3f ms CPU/msg)"
            % (s.name, args.users, (s.cpu() - cpu0) * 1000.0 / args.users))


def note_log_problems(servers):
    for s in servers:
        problems = s.log_problems()
        log("  %s log: %d error/warning line(s)%s" % (s.name, len(problems),
                                                     "" if not problems else ", first: " + problems[0]))


def client_check(args):
    """The load generator against a sink that stores nothing: the client's own
    ceiling, which must be far above the servers' rates."""
    sink = subprocess.Popen([os.path.join(args.tools, "lmtpload"), "--sink", str(PORT_SINK)],
                            stdin=subprocess.DEVNULL)
    try:
        wait_port(PORT_SINK, sink, "lmtpload --sink")
        cpu0 = tree_cpu_seconds(sink.pid)
        fig = run_lmtpload(args.tools, PORT_SINK, args.messages, args.users, args.connections,
                           args.size, "sink")
        sink_cpu = tree_cpu_seconds(sink.pid) - cpu0
    finally:
        stop_proc(sink)
    return {"rate": float(fig["rate"]),
            "client_cpu_us": float(fig["client_cpu_s"]) * 1e6 / args.messages,
            "sink_cpu_us": sink_cpu * 1e6 / args.messages}


# ---------------------------------------------------------------- report

def fmt_row(name, results, note=""):
    rates = ", ".join("%.0f" % r["rate"] for r in results)
    return "  %-44s %9.1f %11.3f    [%s]%s" % (name, median_of(results, "rate"),
                                            median_of(results, "cpu_ms"), rates, note)


def ratio(a, b):
    return a / b if a and b else float("nan")


def round_ratio(a, b, key="rate"):
    """Median over rounds of a[i][key] / b[i][key]: contestants of one round run
    close together, so this cancels slow drifts in the machine's load."""
    vals = [x[key] / y[key] for x, y in zip(a, b) if x.get(key) and y.get(key)]
    return statistics.median(vals) if vals else float("nan")


def report_posix(res):
    mf, dc = res.get("mailfleet"), res["Dovecot"]
    p0, p1 = res["physical limit"], res["physical limit +fsync new/"]
    log("")
    log("== POSIX backend (local disk; all three in one temp dir, same filesystem) ==")
    log("  %-44s %9s %11s    %s" % ("", "msg/s", "CPU ms/msg", "[msg/s per round]"))
    log(fmt_row("Dovecot LMTP (mail_fsync=always)", dc))
    if mf:
        log(fmt_row("mailfleet LMTP (fsync=true)", mf))
    log(fmt_row("physical limit: create+write+fsync+rename", p0, "  (no server; CPU = the writer itself)"))
    log(fmt_row("physical limit: ... + fsync of new/", p1, "  (no server; CPU = the writer itself)"))
    if mf:
        r_mf, r_dc = median_of(mf, "rate"), median_of(dc, "rate")
        log("  ratios                                      of medians   median of per-round")
        log("  mailfleet / Dovecot, messages/s:               %6.2f x     %6.2f x"
            % (ratio(r_mf, r_dc), round_ratio(mf, dc)))
        log("  Dovecot / mailfleet, CPU per message:          %6.2f x     %6.2f x"
            % (ratio(median_of(dc, "cpu_ms"), median_of(mf, "cpu_ms")), round_ratio(dc, mf, "cpu_ms")))
        log("  mailfleet / physical limit +fsync new/:        %6.2f       %6.2f     (same durability as mailfleet)"
            % (ratio(r_mf, median_of(p1, "rate")), round_ratio(mf, p1)))
        log("  mailfleet / physical limit (no dir fsync):     %6.2f       %6.2f"
            % (ratio(r_mf, median_of(p0, "rate")), round_ratio(mf, p0)))


def report_nfs(res, dovecot_local, url):
    mf = res.get("mailfleet")
    p0, p1 = res["physical limit"], res["physical limit +fsync new/"]
    log("")
    log("== libnfs backend (nfs-ganesha VFS on 127.0.0.1, NFSv3: %s) ==" % url)
    log("  %-44s %9s %11s    %s" % ("", "msg/s", "CPU ms/msg", "[msg/s per round]"))
    if mf:
        log(fmt_row("mailfleet LMTP over libnfs", mf))
    log(fmt_row("physical limit over libnfs (store io layer)", p0, "  (no server; CPU = the writer itself)"))
    log(fmt_row("physical limit over libnfs + fsync_dir(new/)", p1,
                "  (a no-op on NFS: directory ops are synchronous)"))
    for name, r in (("mailfleet", mf), ("physical limit", p0)):
        if r and median_of(r, "nas_cpu_ms") is not None:
            log("  NAS (ganesha) CPU per message during %-16s %6.3f ms" % (name + ":",
                                                                        median_of(r, "nas_cpu_ms")))
    if dovecot_local:
        log(fmt_row("reference: Dovecot LMTP on LOCAL disk", dovecot_local))
    if mf:
        r_mf = median_of(mf, "rate")
        log("  ratios                                      of medians   median of per-round")
        log("  mailfleet over NFS / physical limit over NFS:  %6.2f       %6.2f"
            % (ratio(r_mf, median_of(p0, "rate")), round_ratio(mf, p0)))
        if dovecot_local:
            log("  mailfleet over NFS / Dovecot on local disk:    %6.2f x     (different runs)" %
                ratio(r_mf, median_of(dovecot_local, "rate")))
            log("  Dovecot (local) / mailfleet (NFS), CPU/msg:    %6.2f x     (different runs)"
                % ratio(median_of(dovecot_local, "cpu_ms"), median_of(mf, "cpu_ms")))


# ---------------------------------------------------------------- main

def mailfleet_available(args):
    return all(os.access(os.path.join(args.build, b), os.X_OK) for b in ("mailfleetd", "mailfleetctl"))


def bench_posix(args, workdir, with_mf):
    dc = Dovecot(workdir, args).start()
    servers = [dc]
    mf = None
    try:
        if with_mf:
            store = os.path.join(workdir, "mailfleet-mail")
            os.makedirs(store, exist_ok=True)
            pw = pwd.getpwnam(MAIL_USER)
            os.chown(store, pw.pw_uid, pw.pw_gid)
            mf = Mailfleet(workdir, args, store, store, "posix").start()
            servers.append(mf)
        phys = os.path.join(workdir, "phys")
        contestants = servers + [PhysLimit(args, phys, phys, False), PhysLimit(args, phys, phys, True)]
        log("")
        log("POSIX backend: %s" % workdir)
        warm_up(args, contestants, "posix")
        res = run_rounds(args, contestants, "posix")
    except BenchError:
        for s in servers:
            log("--- %s log tail:\n%s" % (s.name, s.log_tail()))
        raise
    finally:
        for s in servers:
            s.stop()
    note_log_problems(servers)
    return res


def bench_nfs(args, workdir, with_mf):
    import ganesha
    export = os.path.join(workdir, "nfs-export")
    pw = pwd.getpwnam(MAIL_USER)
    for d in ("mailfleet", "phys"):
        os.makedirs(os.path.join(export, d), exist_ok=True)
        os.chown(os.path.join(export, d), pw.pw_uid, pw.pw_gid)
    g = ganesha.start(export, PORT_NFS, PORT_MNT, os.path.join(workdir, "ganesha"))
    mf = None
    try:
        url = g.url("mailfleet", version=3)
        contestants = []
        if with_mf:
            mf = Mailfleet(workdir, args, url, os.path.join(export, "mailfleet"), "nfs").start()
            contestants.append(mf)
            mf.nas_pid = g.pid
        phys_url = g.url("phys", version=3)
        phys_local = os.path.join(export, "phys")
        contestants += [PhysLimit(args, phys_url, phys_local, False, g.pid),
                        PhysLimit(args, phys_url, phys_local, True, g.pid)]
        log("")
        log("libnfs backend: ganesha pid %d exporting %s" % (g.pid, export))
        warm_up(args, contestants, "nfs")
        res = run_rounds(args, contestants, "nfs")
    except BenchError:
        if mf:
            log("--- mailfleet log tail:\n%s" % mf.log_tail())
        log("--- ganesha log tail:\n%s" % g.log_tail())
        raise
    finally:
        if mf:
            mf.stop()
        g.stop()
    if mf:
        note_log_problems([mf])
    return res, g.url("", version=3)


def parse_args(argv):
    p = argparse.ArgumentParser(description="LMTP delivery benchmark: mailfleet vs Dovecot vs the disk")
    p.add_argument("--messages", type=int, default=10000)
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--size", type=int, default=10240, help="bytes per message (about)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--backend", choices=("posix", "nfs", "both"), default="both")
    p.add_argument("--quick", action="store_true", help="small run: 1000 messages, 1 round")
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--no-mailfleet", action="store_true",
                   help="measure only Dovecot and the physical limit")
    p.add_argument("--tmpdir", default="/tmp", help="parent of the temp dir (not overlayfs)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.messages, args.rounds = min(args.messages, 1000), 1
    for name in ("messages", "users", "connections", "size", "rounds"):
        if getattr(args, name) < 1:
            p.error("--%s must be at least 1" % name)
    args.build = os.path.abspath(args.build)
    args.tools = os.path.join(args.build, "tools")
    args.mf_workers = max(8, args.connections * 2)
    return args


def main(argv):
    args = parse_args(argv)
    for tool in ("lmtpload", "physlimit"):
        if not os.access(os.path.join(args.tools, tool), os.X_OK):
            raise BenchError("%s/%s is not built (make %s/tools/%s)" % (args.tools, tool, args.build, tool))
    with_mf = not args.no_mailfleet
    if with_mf and not mailfleet_available(args):
        raise BenchError("build/mailfleetd or build/mailfleetctl missing (make all), "
                         "or run with --no-mailfleet")
    workdir = tempfile.mkdtemp(prefix="mailfleet-bench-", dir=args.tmpdir)
    os.chmod(workdir, 0o755)   # the mail user must reach the stores below it
    log("mailfleet LMTP benchmark: %d messages of ~%d bytes to %d users over %d connections, "
        "%d round(s), median reported" % (args.messages, args.size, args.users, args.connections,
                                          args.rounds))
    out = {"args": {k: getattr(args, k) for k in ("messages", "users", "connections", "size",
                                                  "rounds", "backend")}}
    try:
        cc = client_check(args)
        out["client"] = cc
        log("client check: lmtpload -> LMTP sink (stores nothing): %.0f msg/s, client CPU %.0f us/msg"
            % (cc["rate"], cc["client_cpu_us"]))
        posix = nfs = None
        if args.backend in ("posix", "both"):
            posix = out["posix"] = bench_posix(args, workdir, with_mf)
        if args.backend in ("nfs", "both"):
            dovecot_local = posix["Dovecot"] if posix else None
            if dovecot_local is None:
                dovecot_local = bench_posix_dovecot_only(args, workdir)
            nfs, url = bench_nfs(args, workdir, with_mf)
            out["nfs"] = nfs
        log("")
        log("Results (median of %d round(s); CPU = user+sys of the server's processes per message)"
            % args.rounds)
        if posix:
            report_posix(posix)
        if nfs:
            report_nfs(nfs, dovecot_local, url)
        fastest = max([median_of(r, "rate") for part in (posix, nfs) if part
                       for name, r in part.items() if not name.startswith("physical")] or [0])
        log("")
        log("client check: the load generator alone reaches %.0f msg/s against a sink, %.1f x the "
            "fastest server here (%.0f msg/s)" % (cc["rate"], ratio(cc["rate"], fastest), fastest))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
    finally:
        if args.keep:
            log("kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def bench_posix_dovecot_only(args, workdir):
    dc = Dovecot(workdir, args).start()
    try:
        log("")
        log("Dovecot on local disk (reference for the NFS figures): %s" % workdir)
        warm_up(args, [dc], "ref")
        return run_rounds(args, [dc], "ref")["Dovecot"]
    finally:
        dc.stop()
    note_log_problems([dc])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        print("bench-lmtp: FAILED: %s" % e, file=sys.stderr, flush=True)
        sys.exit(1)
