"""mf.py: the harness the integration tests use to drive a real mailfleet node.

It writes a libconfig file with free loopback ports (22000-22999 only), manages
the directory through mailfleetctl, starts build/<dir>/mailfleetd under
AddressSanitizer/UBSan, waits until its LMTP port accepts, and on stop checks
that the daemon exited 0 and that its stderr holds no sanitizer report. It
also has a raw LMTP client (for byte-exact protocol tests) and helpers that
read and check delivered maildir files.

Used by tests/conftest.py (fixtures) and the test_*.py files; not a test itself.
"""
import hashlib
import os
import random
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("MF_BUILD", "build/asan"))
MAILFLEETD = os.path.join(BUILD, "mailfleetd")
MAILFLEETCTL = os.path.join(BUILD, "mailfleetctl")

SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    "LSAN_OPTIONS": "exitcode=23",
}
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error")

# MF_PORT_MIN/MF_PORT_MAX narrow the range, so that two suites run side by side
# on one machine never hand out the same port.
PORT_MIN = int(os.environ.get("MF_PORT_MIN", "22000"))
PORT_MAX = int(os.environ.get("MF_PORT_MAX", "22999"))
START_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0

# Every message the tests build starts with this header line, so the part of a
# stored file that the client sent is found exactly, whatever LMTP prepends.
FIRST_LINE = b"X-Mf-Test: begin"

_ports_handed_out = set()


class HarnessError(Exception):
    """Raised when the harness itself cannot do its job (daemon failed to start...)."""


def san_env(extra=None):
    env = dict(os.environ)
    env.update(SAN_ENV)
    if extra:
        env.update(extra)
    return env


# ---------------------------------------------------------------- ports

def port_is_free(port, host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port():
    """A port in PORT_MIN-PORT_MAX (22000-22999 unless set) that nothing listens on and this process has not
    handed out before (the daemon binds it a moment later)."""
    candidates = list(range(PORT_MIN, PORT_MAX + 1))
    random.shuffle(candidates)
    for port in candidates:
        if port in _ports_handed_out:
            continue
        if port_is_free(port):
            _ports_handed_out.add(port)
            return port
    raise HarnessError("no free port left in %d-%d" % (PORT_MIN, PORT_MAX))


def wait_port(port, timeout, proc=None, host="127.0.0.1"):
    """Waits until host:port accepts a connection. Returns False on timeout or
    when proc has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# ---------------------------------------------------------------- config

def _cfg_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v) if -2**31 <= v < 2**31 else "%dL" % v
    if isinstance(v, str):
        return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')
    raise TypeError("unsupported config value %r" % (v,))


def render_config(settings):
    """settings: {group: {key: value}} or {key: scalar}; "listeners" is a list of
    dicts. Returns libconfig text."""
    out = ["# written by tests/mf.py"]
    for key, value in settings.items():
        if value is None:
            continue
        if key == "listeners":
            items = []
            for lst in value:
                body = " ".join("%s = %s;" % (k, _cfg_value(v)) for k, v in lst.items())
                items.append("  { %s }" % body)
            out.append("listeners = (\n%s\n);" % ",\n".join(items))
        elif isinstance(value, dict):
            out.append("%s = {" % key)
            for k, v in value.items():
                if v is not None:
                    out.append("  %s = %s;" % (k, _cfg_value(v)))
            out.append("};")
        else:
            out.append("%s = %s;" % (key, _cfg_value(value)))
    return "\n".join(out) + "\n"


def merge_settings(base, overrides):
    """Deep-merges overrides into a copy of base (group dicts merge, rest replaces;
    a value None removes the key)."""
    result = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in (overrides or {}).items():
        if isinstance(v, dict) and isinstance(result.get(k), dict):
            result[k].update(v)
        else:
            result[k] = v
    return result


# ---------------------------------------------------------------- TLS

def make_cert(directory, name="cert", cn="mailfleet-test", serial=1):
    """Writes <name>.pem and <name>.key (EC P-256, self-signed) into directory;
    returns (cert_path, key_path)."""
    os.makedirs(directory, exist_ok=True)
    cert = os.path.join(directory, name + ".pem")
    key = os.path.join(directory, name + ".key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=%s" % cn,
         "-set_serial", str(serial)],
        check=True, capture_output=True)
    return cert, key


def cert_info_der(der):
    """(serial as int, subject text) of a DER certificate, through openssl."""
    proc = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial", "-subject"],
                          input=der, capture_output=True, check=True)
    text = proc.stdout.decode()
    serial = int(re.search(r"serial=([0-9A-Fa-f]+)", text).group(1), 16)
    subject = re.search(r"subject=(.*)", text).group(1).strip()
    return serial, subject


def insecure_tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ---------------------------------------------------------------- mailfleetctl

def ctl(directory, *args, stdin=None, check=True):
    """Runs mailfleetctl --directory DIR args...; returns CompletedProcess (text)."""
    cmd = [MAILFLEETCTL, "--directory", str(directory)] + [str(a) for a in args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                          env=san_env(), timeout=60)
    out = proc.stdout + proc.stderr
    for marker in SANITIZER_MARKERS:
        if marker in out:
            raise HarnessError("sanitizer report from %s:\n%s" % (" ".join(cmd), out))
    if check and proc.returncode != 0:
        raise HarnessError("%s failed (%d):\n%s" % (" ".join(cmd), proc.returncode, out))
    return proc


# ---------------------------------------------------------------- the daemon

class Node:
    """One mailfleetd process with its config file and stderr log."""

    def __init__(self, workdir, name, settings, lmtp_port, sock_path, extra_env=None):
        self.workdir = str(workdir)
        self.name = name
        self.settings = settings
        self.lmtp_port = lmtp_port
        self.sock_path = sock_path
        self.config_path = os.path.join(self.workdir, name + ".conf")
        self.log_path = os.path.join(self.workdir, name + ".stderr")
        self.ready_path = os.path.join(self.workdir, name + ".ready")
        self.extra_env = extra_env or {}
        self.proc = None
        self.killed = False
        with open(self.config_path, "w") as f:
            f.write(render_config(settings))

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=START_TIMEOUT):
        if not os.path.exists(MAILFLEETD):
            raise HarnessError("%s is not built (make BUILD=build/asan SAN=1 all)" % MAILFLEETD)
        log = open(self.log_path, "ab")
        self.killed = False
        if os.path.exists(self.ready_path):
            os.unlink(self.ready_path)
        self.proc = subprocess.Popen([MAILFLEETD, "--config", self.config_path,
                                      "--ready-file", self.ready_path],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     cwd=self.workdir, env=san_env(self.extra_env))
        log.close()
        # Ready means: the daemon wrote its pid into the ready file (all ports
        # listen, privileges dropped) and the LMTP port accepts.
        if not (self._wait_ready_file(timeout) and wait_port(self.lmtp_port, timeout, self.proc)):
            rc = self.proc.poll()
            if rc is None:
                self.proc.kill()
                self.proc.wait()
                why = "not ready (ready file %s, LMTP port %d) within %.0f s" % (
                    self.ready_path, self.lmtp_port, timeout)
            else:
                why = "mailfleetd exited with status %d before accepting" % rc
            raise HarnessError("%s (%s)\nconfig %s:\n%s\nstderr:\n%s" % (
                why, self.name, self.config_path, render_config(self.settings), self.stderr()[-6000:]))
        return self

    def _wait_ready_file(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with open(self.ready_path) as f:
                    if f.read().strip() == str(self.proc.pid):
                        return True
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        return False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def sanitizer_report(self):
        text = self.stderr()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                return text
        return None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill(self):
        """SIGKILL, as a crash would; the test expects it (no exit-status check)."""
        self.killed = True
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM and wait; returns a list of problems (empty when clean)."""
        problems = []
        if self.proc is None:
            return problems
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append("%s did not exit within %.0f s of SIGTERM" % (self.name, timeout))
        rc = self.proc.returncode
        if not self.killed and rc != 0 and not problems:
            problems.append("%s exited with status %d (expected 0)" % (self.name, rc))
        report = self.sanitizer_report()
        if report is not None:
            problems.append("%s: sanitizer report in stderr" % self.name)
        if problems:
            problems.append("stderr of %s:\n%s" % (self.name, self.stderr()[-12000:]))
        return problems

    # -- clients
    def lmtp(self, timeout=30):
        return lmtp_connect(self.lmtp_port, timeout)

    def raw(self, timeout=30):
        return RawLMTP.tcp(self.lmtp_port, timeout)


class MfEnv:
    """A test's world: one directory, one store, any number of nodes on it."""

    def __init__(self, workdir, tls_dir=None):
        self.workdir = str(workdir)
        self.directory = os.path.join(self.workdir, "directory")
        # store: where the tests look at the files; location: what the daemon
        # is given (the same path, or an nfs:// URL exporting that folder).
        self.store = os.path.join(self.workdir, "mail")
        self.location = self.store
        os.makedirs(self.directory, exist_ok=True)
        os.makedirs(self.store, exist_ok=True)
        self.tls_dir = tls_dir or os.path.join(self.workdir, "tls")
        self.cert = os.path.join(self.tls_dir, "cert.pem")
        self.key = os.path.join(self.tls_dir, "cert.key")
        if not os.path.exists(self.cert):
            make_cert(self.tls_dir)
        self.nodes = []

    # -- directory
    def ctl(self, *args, stdin=None, check=True):
        return ctl(self.directory, *args, stdin=stdin, check=check)

    def add_domain(self, domain, quota=None):
        self.ctl("domain", "add", domain)
        if quota is not None:
            self.ctl("domain", "quota", domain, quota)

    def add_user(self, address, quota=None, password="secret"):
        args = ["user", "add", address]
        if quota is not None:
            args += ["--quota", quota]
        self.ctl(*args, stdin=password + "\n")

    def add_alias(self, alias, *members):
        for m in members:
            self.ctl("alias", "add", alias, m)

    # -- nodes
    def settings(self, lmtp_port, sock_path, store_location=None):
        return {
            "log_level": "info",
            "hostname": "mf-test",
            "run_user": "",  # tests run as root; "" keeps root (privilege drop: test_daemon.py)
            "store": {"location": store_location or self.location, "fsync": True,
                      "compress_lz4": False},
            "directory": {"path": self.directory, "create_demo_user": False},
            "tls": {"cert": self.cert, "key": self.key, "self_signed": False},
            "threads": {"event": 2, "worker": 4},
            "listeners": [
                {"protocol": "lmtp", "address": "127.0.0.1", "port": lmtp_port},
                {"protocol": "lmtp", "path": sock_path},
            ],
        }

    def node(self, overrides=None, store_location=None, start=True, extra_env=None):
        """Creates (and starts) a node; overrides merge into the default settings."""
        name = "node%d" % (len(self.nodes) + 1)
        port = free_port()
        sock = os.path.join(self.workdir, name + ".sock")
        settings = merge_settings(self.settings(port, sock, store_location), overrides)
        n = Node(self.workdir, name, settings, port, sock, extra_env)
        self.nodes.append(n)
        if start:
            n.start()
        return n

    def restart(self, node):
        """Starts a node again with the same config (after stop() or kill())."""
        if node.running():
            problems = node.stop()
            if problems:
                raise HarnessError("\n".join(problems))
        return node.start()

    def stop_all(self):
        problems = []
        for n in self.nodes:
            problems += n.stop()
        return problems

    # -- store
    def use_store(self, location, local_path):
        """Nodes started from now on use location; files are checked in local_path."""
        self.location = location
        self.store = local_path

    def maildir(self, address, folder=None):
        local, domain = address.lower().split("@", 1)
        path = os.path.join(self.store, domain, local, "Maildir")
        if folder:
            path = os.path.join(path, "." + folder)
        return path


# ---------------------------------------------------------------- raw LMTP

class RawLMTP:
    """A byte-exact LMTP client: send what the test says, read replies."""

    def __init__(self, sock, timeout):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""

    @classmethod
    def tcp(cls, port, timeout=30):
        return cls(socket.create_connection(("127.0.0.1", port), timeout=timeout), timeout)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by server")
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        """One (possibly multi-line) reply: (code, [texts])."""
        texts = []
        while True:
            line = self.line()
            m = re.match(r"^(\d{3})([ -])(.*)$", line)
            if m is None:
                raise AssertionError("malformed reply line %r" % line)
            texts.append(m.group(3))
            if m.group(2) == " ":
                return int(m.group(1)), texts

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.reply()

    def greet(self):
        code, texts = self.reply()
        assert code == 220, (code, texts)
        code, texts = self.cmd("LHLO client.test")
        assert code == 250, (code, texts)
        return texts

    def read_until_close(self, timeout=10):
        """Reads everything until the server closes; returns (data, closed)."""
        self.sock.settimeout(timeout)
        data = self.buf
        self.buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return data, True
                data += chunk
        except socket.timeout:
            return data, False
        except ConnectionResetError:
            return data, True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------- messages

def make_message(marker="", size=0, sender="sender@remote.test", subject="test",
                 msgid=None, extra_headers=()):
    """A CRLF message starting with FIRST_LINE; body padded to about size bytes."""
    msgid = msgid or "<%s@mf.test>" % os.urandom(8).hex()
    lines = [FIRST_LINE.decode(), "From: <%s>" % sender, "To: <rcpt@example.test>",
             "Subject: %s" % subject, "Message-ID: %s" % msgid]
    lines += list(extra_headers)
    lines += ["", "Body %s" % marker, ".leading dot line", "..two dots", ""]
    text = "\r\n".join(lines)
    pad_line = "abcdefghijklmnopqrstuvwxyz0123456789" * 2
    while len(text) < size:
        text += pad_line + "\r\n"
    if not text.endswith("\r\n"):
        text += "\r\n"
    return text.encode()


def dot_stuff(message):
    """The DATA payload for message (CRLF), with the final dot line."""
    return re.sub(rb"(?m)^\.", b"..", message) + b".\r\n"


def lf(data):
    return data.replace(b"\r\n", b"\n")


def sent_part(stored):
    """The part of a stored file that the client sent (from FIRST_LINE on), LF."""
    idx = stored.find(FIRST_LINE)
    assert idx >= 0, "stored file lacks the test's first line: %r" % stored[:300]
    return lf(stored[idx:])


def prepended_headers(stored):
    idx = stored.find(FIRST_LINE)
    assert idx >= 0, "stored file lacks the test's first line: %r" % stored[:300]
    return lf(stored[:idx]).decode("utf-8", "replace")


LZ4_MAGIC = b"\x04\x22\x4d\x18"


def lz4_decompress(data):
    """Decodes an lz4 frame with liblz4 (ctypes; the lz4 CLI is not a dependency)."""
    import ctypes
    lib = ctypes.CDLL("liblz4.so.1")
    lib.LZ4F_createDecompressionContext.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_uint]
    lib.LZ4F_freeDecompressionContext.argtypes = [ctypes.c_void_p]
    lib.LZ4F_decompress.restype = ctypes.c_size_t
    lib.LZ4F_decompress.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                    ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p]
    lib.LZ4F_isError.argtypes = [ctypes.c_size_t]
    dctx = ctypes.c_void_p()
    assert lib.LZ4F_createDecompressionContext(ctypes.byref(dctx), 100) == 0
    out, pos = [], 0
    src = ctypes.create_string_buffer(data, len(data))
    dst = ctypes.create_string_buffer(1 << 16)
    try:
        while True:
            src_size = ctypes.c_size_t(len(data) - pos)
            dst_size = ctypes.c_size_t(len(dst))
            ret = lib.LZ4F_decompress(dctx, dst, ctypes.byref(dst_size),
                                      ctypes.byref(src, pos), ctypes.byref(src_size), None)
            assert not lib.LZ4F_isError(ret), "corrupt lz4 frame"
            out.append(dst.raw[:dst_size.value])
            pos += src_size.value
            if ret == 0:
                assert pos == len(data), "data after the lz4 frame"
                return b"".join(out)
            assert src_size.value or dst_size.value, "truncated lz4 frame"
    finally:
        lib.LZ4F_freeDecompressionContext(dctx)


def digest(data):
    return hashlib.sha256(lf(data)).hexdigest()


def maildir_files(maildir, subdirs=("new", "cur")):
    """Paths of regular files in the given maildir subdirectories."""
    out = []
    for sub in subdirs:
        d = os.path.join(maildir, sub)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        for n in sorted(names):
            p = os.path.join(d, n)
            if os.path.isfile(p):
                out.append(p)
    return out


def read(path):
    with open(path, "rb") as f:
        return f.read()


def assert_delivered(maildir, message, rcpt, sender):
    """Exactly one file in new/ carries message; its prepended headers have
    Return-Path <sender> and Delivered-To rcpt (a string, or a tuple of the
    acceptable addresses). Returns the file's path."""
    want = lf(message)
    hits = []
    for p in maildir_files(maildir, ("new",)):
        data = read(p)
        if FIRST_LINE in data and sent_part(data) == want:
            hits.append((p, data))
    assert len(hits) == 1, "expected 1 copy of the message in %s/new, found %d (files: %s)" % (
        maildir, len(hits), os.listdir(os.path.join(maildir, "new")) if os.path.isdir(
            os.path.join(maildir, "new")) else "no new/")
    path, data = hits[0]
    crlf = data.count(b"\r\n")
    assert crlf == 0 or crlf == data.count(b"\n"), "mixed line endings in %s" % path
    head = prepended_headers(data)
    assert re.search(r"(?mi)^Return-Path: <%s>$" % re.escape(sender), head), head
    rcpts = (rcpt,) if isinstance(rcpt, str) else tuple(rcpt)
    assert any(re.search(r"(?mi)^Delivered-To: <?%s>?$" % re.escape(r), head) for r in rcpts), \
        "no Delivered-To for %s in prepended headers:\n%s" % (rcpts, head)
    return path


def lmtp_transaction(client, sender, rcpts, message, mail_options=()):
    """One LMTP transaction over smtplib.LMTP. Returns {rcpt: (code, text, stage)}
    with stage "mail", "rcpt" (refused there) or "data" (the per-recipient reply
    after the final dot; smtplib reads only the first one, the rest are read here)."""
    results = {}
    code, text = client.mail(sender, list(mail_options))
    if code != 250:
        client.rset()
        return {r: (code, text.decode(), "mail") for r in rcpts}
    accepted = []
    for r in rcpts:
        code, text = client.rcpt(r)
        if code in (250, 251):
            accepted.append(r)
        else:
            results[r] = (code, text.decode(), "rcpt")
    if not accepted:
        client.rset()
        return results
    code, text = client.data(message)
    results[accepted[0]] = (code, text.decode(), "data")
    for r in accepted[1:]:
        code, text = client.getreply()
        results[r] = (code, text.decode(), "data")
    return results


def lmtp_connect(port, timeout=30):
    c = smtplib.LMTP("127.0.0.1", port, timeout=timeout)
    code, _ = c.ehlo("client.test")
    assert code == 250, "LHLO refused: %d" % code
    return c


def deliver(target, sender, rcpts, message, mail_options=()):
    """One transaction on a new connection to target (a Node or a TCP port)."""
    c = target.lmtp() if isinstance(target, Node) else lmtp_connect(target)
    try:
        return lmtp_transaction(c, sender, rcpts, message, mail_options)
    finally:
        try:
            c.quit()
        except (smtplib.SMTPException, OSError):
            pass
