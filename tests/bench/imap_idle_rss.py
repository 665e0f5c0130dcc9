#!/usr/bin/python3
"""imap_idle_rss.py: resident memory of many IMAP connections in IDLE.

Opens COUNT connections to a running mailfleetd, each pipelining LOGIN,
SELECT INBOX and IDLE, waits until every one has its "+ idling", and reads
the daemon's VmRSS from /proc/<pid>/status before and after. Used by
tests/test_imap_idle.py (measure()) and from the command line, where it
starts its own node (optimized build by default):

    /usr/bin/python3 tests/bench/imap_idle_rss.py --count 10000 [--build build]

The client raises its RLIMIT_NOFILE; the node gets limits { connections_max;
connections_per_ip } high enough."""
import argparse
import os
import resource
import selectors
import socket
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need) if hard != resource.RLIM_INFINITY
                                                    else need, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Idler:
    __slots__ = ("sock", "buf", "idling")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.idling = False


def open_idlers(port, user, password, count, timeout=120.0, batch=500):
    """count sockets, each logged in and idling on INBOX; returns them."""
    script = ("a LOGIN %s %s\r\nb SELECT INBOX\r\nc IDLE\r\n" % (user, password)).encode()
    sel = selectors.DefaultSelector()
    idlers = []
    waiting = 0
    deadline = time.monotonic() + timeout

    def pump(max_wait):
        nonlocal waiting
        for key, _ in sel.select(max_wait):
            it = key.data
            try:
                chunk = it.sock.recv(4096)
            except BlockingIOError:
                continue
            if not chunk:
                raise RuntimeError("connection closed before IDLE: %r" % it.buf[-300:])
            it.buf += chunk
            if b"\r\n+ idling\r\n" in it.buf or it.buf.startswith(b"+ idling\r\n"):
                it.idling = True
                it.buf = b""
                sel.unregister(it.sock)
                waiting -= 1
            elif b"\r\nc BAD" in it.buf or b"\r\na NO" in it.buf or b"\r\nb NO" in it.buf:
                raise RuntimeError("refused: %r" % it.buf[-300:])

    while len(idlers) < count:
        for _ in range(min(batch, count - len(idlers))):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(script)
            s.setblocking(False)
            it = Idler(s)
            idlers.append(it)
            sel.register(s, selectors.EVENT_READ, it)
            waiting += 1
        # keep the number of half-done logins bounded (the accept queue too)
        while waiting > batch and time.monotonic() < deadline:
            pump(0.5)
        if time.monotonic() > deadline:
            raise RuntimeError("only %d of %d idling after %.0f s" % (
                len(idlers) - waiting, count, timeout))
    while waiting > 0:
        if time.monotonic() > deadline:
            raise RuntimeError("%d of %d not idling after %.0f s" % (waiting, count, timeout))
        pump(0.5)
    sel.close()
    return idlers


def wait_exists(idlers, timeout):
    """Seconds until every idler got an "* n EXISTS" line (or until timeout);
    returns (seconds to the first, to the median, to the last, how many)."""
    sel = selectors.DefaultSelector()
    for it in idlers:
        it.buf = b""
        sel.register(it.sock, selectors.EVENT_READ, it)
    t0 = time.monotonic()
    times = []
    while len(times) < len(idlers) and time.monotonic() - t0 < timeout:
        for key, _ in sel.select(0.5):
            it = key.data
            try:
                chunk = it.sock.recv(4096)
            except BlockingIOError:
                continue
            it.buf += chunk
            if not chunk or b" EXISTS\r\n" in it.buf:
                sel.unregister(it.sock)
                if chunk:
                    times.append(time.monotonic() - t0)
    sel.close()
    times.sort()
    if not times:
        return (None, None, None, 0)
    return (times[0], times[len(times) // 2], times[-1], len(times))


def measure(pid, port, user, password, count, timeout=120.0, deliver_to=None):
    """Returns a dict: baseline_kib, rss_kib, count, per_conn_bytes, secs;
    with deliver_to(), also how long one delivery takes to reach them all
    (spread: first, median, last, reached)."""
    raise_nofile(count + 256)
    time.sleep(0.5)
    base = rss_kib(pid)
    t0 = time.monotonic()
    idlers = open_idlers(port, user, password, count, timeout)
    secs = time.monotonic() - t0
    time.sleep(2.0)      # the registry's first poll and the IDLE-start syncs settle
    rss = rss_kib(pid)
    spread = None
    if deliver_to is not None:
        deliver_to()
        spread = wait_exists(idlers, 120)
    for it in idlers:
        it.sock.close()
    return {"baseline_kib": base, "rss_kib": rss, "count": count, "secs": secs,
            "per_conn_bytes": (rss - base) * 1024 / count, "spread": spread}


def fill_inbox(port, user, password, count):
    import imaplib
    if count == 0:
        return
    m = imaplib.IMAP4("127.0.0.1", port, timeout=60)
    m.login(user, password)
    for i in range(count):
        msg = ("From: s@remote.test\r\nTo: %s\r\nSubject: message %d\r\n"
               "Message-ID: <%d@idle.test>\r\n\r\nbody %d\r\n" % (user, i, i, i)).encode()
        m.append("INBOX", None, None, msg)
    m.logout()


def node_settings(count):
    return {"limits": {"connections_max": max(20000, count + 100), "connections_per_ip": 0},
            "threads": {"event": 2, "worker": 8}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--build", default="build", help="build dir with mailfleetd (default build)")
    ap.add_argument("--deliver", action="store_true",
                    help="then deliver one message and time its arrival at every idler")
    ap.add_argument("--messages", type=int, default=0,
                    help="messages in the INBOX every session selects (default 0)")
    args = ap.parse_args()
    os.environ["MF_BUILD"] = args.build
    import mf as harness
    harness.BUILD = os.path.join(harness.ROOT, args.build)
    harness.MAILFLEETD = os.path.join(harness.BUILD, "mailfleetd")
    harness.MAILFLEETCTL = os.path.join(harness.BUILD, "mailfleetctl")
    raise_nofile(args.count + 256)
    with tempfile.TemporaryDirectory() as tmp:
        env = harness.MfEnv(tmp)
        env.add_domain("example.test")
        env.add_user("a@example.test", password="secret")
        node = env.node(start=False, overrides=node_settings(args.count))
        port = harness.free_port()
        node.settings["listeners"].append({"protocol": "imap", "address": "127.0.0.1",
                                           "port": port})
        with open(node.config_path, "w") as f:
            f.write(harness.render_config(node.settings))
        node.start()
        fill_inbox(port, "a@example.test", "secret", args.messages)
        try:
            def deliver():
                harness.deliver(node, "s@remote.test", ["a@example.test"],
                                b"Subject: to all idlers\r\n\r\nbody\r\n")
            r = measure(node.pid, port, "a@example.test", "secret", args.count, timeout=600,
                        deliver_to=deliver if args.deliver else None)
        finally:
            problems = env.stop_all()
        print("%d idling connections (INBOX of %d messages) in %.1f s: RSS %.1f MiB "
              "(baseline %.1f MiB), %.0f bytes per connection" % (
                  r["count"], args.messages, r["secs"], r["rss_kib"] / 1024,
                  r["baseline_kib"] / 1024, r["per_conn_bytes"]))
        if r["spread"] is not None:
            first, median, last, reached = r["spread"]
            print("one delivery reached %d of %d idlers: first %.2f s, median %.2f s, "
                  "last %.2f s" % (reached, r["count"], first or 0, median or 0, last or 0))
        if problems:
            print("\n".join(problems), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
