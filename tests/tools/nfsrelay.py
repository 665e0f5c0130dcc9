"""nfsrelay.py: a small userspace TCP relay that makes a fast NFS server look
slow. This kernel has no netem qdisc, so tests put this relay between a
client and nfs-ganesha: everything the client sends goes through at once,
every byte the server sends back is held for DELAY milliseconds first (order
kept, so RPC replies arrive whole and in sequence, each N ms late).

From a shell:

    python3 tests/tools/nfsrelay.py LISTEN_PORT TARGET_PORT DELAY_MS [TARGET_HOST]

It listens on 127.0.0.1:LISTEN_PORT, prints "ready" on stdout once it
accepts connections, and runs until SIGTERM/SIGINT. From Python:

    relay = nfsrelay.start(24050, 24049, 40)   # a subprocess, ready on return
    ...
    relay.stop()
"""
import collections
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

BUF_SIZE = 256 * 1024


class _Pipe:
    """One client connection and its upstream connection."""

    def __init__(self, client, upstream, delay):
        self.client = client
        self.upstream = upstream
        self.delay = delay
        self.queue = collections.deque()
        self.cond = threading.Condition()
        self.closed = False

    def run(self):
        threads = [threading.Thread(target=f, daemon=True)
                   for f in (self._client_to_server, self._server_to_queue,
                             self._queue_to_client)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in (self.client, self.upstream):
            try:
                s.close()
            except OSError:
                pass

    def _close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _client_to_server(self):
        try:
            while True:
                data = self.client.recv(BUF_SIZE)
                if not data:
                    break
                self.upstream.sendall(data)
        except OSError:
            pass
        self._close()

    def _server_to_queue(self):
        try:
            while True:
                data = self.upstream.recv(BUF_SIZE)
                if not data:
                    break
                with self.cond:
                    self.queue.append((time.monotonic() + self.delay, data))
                    self.cond.notify_all()
        except OSError:
            pass
        # let the queue drain before closing the client side
        with self.cond:
            self.queue.append((time.monotonic() + self.delay, None))
            self.cond.notify_all()

    def _queue_to_client(self):
        while True:
            with self.cond:
                while not self.queue and not self.closed:
                    self.cond.wait()
                if not self.queue:
                    return
                due, data = self.queue.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if data is None:
                self._close()
                return
            try:
                self.client.sendall(data)
            except OSError:
                self._close()
                return


def serve(listen_port, target_port, delay_ms, target_host="127.0.0.1", ready=None):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", listen_port))
    listener.listen(64)
    if ready is not None:
        ready()
    while True:
        r, _, _ = select.select([listener], [], [], 1.0)
        if not r:
            continue
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection((target_host, target_port), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipe = _Pipe(client, upstream, delay_ms / 1000.0)
        threading.Thread(target=pipe.run, daemon=True).start()


class Relay:
    def __init__(self, proc, port):
        self.proc = proc
        self.port = port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def start(listen_port, target_port, delay_ms, target_host="127.0.0.1"):
    """Runs the relay as a subprocess (Debian's python3); returns once it listens."""
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), str(listen_port), str(target_port),
         str(delay_ms), target_host],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        proc.wait()
        raise RuntimeError("nfsrelay did not start on port %d" % listen_port)
    return Relay(proc, listen_port)


def main(argv):
    if len(argv) not in (4, 5):
        sys.stderr.write(__doc__)
        return 2
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    signal.signal(signal.SIGINT, lambda *a: os._exit(0))

    def ready():
        print("ready", flush=True)

    serve(int(argv[1]), int(argv[2]), float(argv[3]),
          argv[4] if len(argv) == 5 else "127.0.0.1", ready)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
