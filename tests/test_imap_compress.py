"""test_imap_compress.py: COMPRESS=DEFLATE (RFC 4978) against the real
daemon, with Python's zlib (raw deflate, wbits -15) over a plain socket and
over TLS: the capability, the tagged OK uncompressed and everything after
it compressed both ways, a full session (LOGIN is done before COMPRESS, as
it must; SELECT, FETCH of a large message byte-exact, LOGOUT), commands
pipelined right behind COMPRESS, a second COMPRESS, unknown mechanisms,
the setting that turns it off, garbage compressed input, and a
decompression bomb that must hit the line limit, not memory."""
import imaplib
import re
import socket
import ssl
import zlib

import pytest

import mf as harness
from test_imap import imap_node, message

USER, PASSWORD = "a@example.test", "secret"


class ZClient:
    """An IMAP client on a socket (plain or TLS) that can switch to DEFLATE."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(20)
        self.raw = b""          # bytes from the socket, not yet inflated
        self.buf = b""          # plaintext
        self.inflater = None
        self.deflater = None

    def start_compress(self):
        self.deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflater = zlib.decompressobj(-15)
        # anything already read after the OK was compressed
        data, self.raw = self.buf, b""
        self.buf = b""
        self.buf = self.inflater.decompress(data)

    def send(self, data):
        if self.deflater is not None:
            data = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def send_raw(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        if self.inflater is not None:
            self.buf += self.inflater.decompress(chunk)
        else:
            self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def until_tag(self, tag):
        lines = []
        while True:
            line = self.line()
            m = re.search(rb"\{(\d+)\}$", line)
            if m:
                line += b"\r\n" + self.read_exact(int(m.group(1))) + self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def cmd(self, tag, text):
        self.send(tag + b" " + text + b"\r\n")
        return self.until_tag(tag)

    def closed(self, timeout=10):
        """True when the server closes the connection (reading and
        discarding whatever comes first)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
            return True
        except (ConnectionResetError, ssl.SSLError):
            return True
        except socket.timeout:
            return False


def node_with(mf, **settings):
    node, port = imap_node(mf, **settings)
    node.imap_port = port
    return node


@pytest.fixture
def imap(mf, domain):
    return node_with(mf)


def connect(node, tls=False, port=None):
    sock = socket.create_connection(("127.0.0.1", port or node.imap_port), timeout=20)
    if tls:
        sock = harness.insecure_tls_context().wrap_socket(sock)
    c = ZClient(sock)
    assert c.line().startswith(b"* OK")
    return c


def compressed_login(node, **kw):
    c = connect(node, **kw)
    lines = c.cmd(b"L", b"LOGIN a@example.test secret")
    assert lines[-1].startswith(b"L OK")
    c.send(b"Z COMPRESS DEFLATE\r\n")
    assert c.line() == b"Z OK DEFLATE active"
    c.start_compress()
    return c


def big_message():
    body = "".join("line %06d of a large message, %s\r\n" % (i, "x" * (i % 50))
                   for i in range(40000))
    return message("large one", body)


def full_session(node, tls=False, port=None):
    big = big_message()
    m = imaplib.IMAP4("127.0.0.1", node.imap_port, timeout=30)
    m.login(USER, PASSWORD)
    assert m.append("INBOX", None, None, big)[0] == "OK"
    m.logout()
    assert len(big) > 1_500_000

    c = compressed_login(node, tls=tls, port=port)
    caps = c.cmd(b"C", b"CAPABILITY")
    assert b"COMPRESS=DEFLATE" in caps[0]
    sel = c.cmd(b"S", b"SELECT INBOX")
    assert b"* 1 EXISTS" in sel and sel[-1].startswith(b"S OK")
    lines = c.cmd(b"F", b"FETCH 1 (UID BODY.PEEK[])")
    assert lines[-1].startswith(b"F OK")
    m = re.match(rb"\* 1 FETCH \(UID 1 BODY\[\] \{(\d+)\}\r\n", lines[0])
    assert m and int(m.group(1)) == len(big)
    start = lines[0].index(b"}\r\n") + 3
    assert lines[0][start:start + len(big)] == big
    # a second COMPRESS is refused, compressed, and the session goes on
    assert c.cmd(b"Y", b"COMPRESS DEFLATE")[-1].startswith(b"Y NO [COMPRESSIONACTIVE]")
    assert c.cmd(b"N", b"NOOP")[-1].startswith(b"N OK")
    out = c.cmd(b"O", b"LOGOUT")
    assert out[0].startswith(b"* BYE") and out[-1].startswith(b"O OK")
    assert c.closed()


def test_capability_only_after_login_and_setting(mf, domain):
    node = node_with(mf)
    c = connect(node)
    assert b"COMPRESS" not in c.cmd(b"C", b"CAPABILITY")[0]
    assert c.cmd(b"Z", b"COMPRESS DEFLATE")[-1].startswith(b"Z BAD")
    c.cmd(b"L", b"LOGIN a@example.test secret")
    assert b"COMPRESS=DEFLATE" in c.cmd(b"C", b"CAPABILITY")[0]
    assert c.cmd(b"Z", b"COMPRESS LZMA")[-1].startswith(b"Z BAD")
    assert c.cmd(b"Z", b"COMPRESS")[-1].startswith(b"Z BAD")
    assert c.cmd(b"Z", b"COMPRESS DEFLATE extra")[-1].startswith(b"Z BAD")
    # still uncompressed after the refusals
    assert c.cmd(b"N", b"NOOP")[-1].startswith(b"N OK")
    off = node_with(mf, imap={"compress": False})
    c2 = connect(off)
    c2.cmd(b"L", b"LOGIN a@example.test secret")
    assert b"COMPRESS" not in c2.cmd(b"C", b"CAPABILITY")[0]
    assert c2.cmd(b"Z", b"COMPRESS DEFLATE")[-1].startswith(b"Z BAD")
    assert c2.cmd(b"N", b"NOOP")[-1].startswith(b"N OK")


def test_full_session_plain(imap):
    full_session(imap)


def test_full_session_over_tls(mf, domain):
    node = mf.node(start=False)
    port = harness.free_port()
    tls_port = harness.free_port()
    node.settings["listeners"].append({"protocol": "imap", "address": "127.0.0.1", "port": port})
    node.settings["listeners"].append({"protocol": "imap", "address": "127.0.0.1",
                                       "port": tls_port, "tls": True})
    with open(node.config_path, "w") as f:
        f.write(harness.render_config(node.settings))
    node.start()
    assert harness.wait_port(tls_port, 10)
    node.imap_port = port
    full_session(node, tls=True, port=tls_port)


def test_command_pipelined_behind_compress(imap):
    """Bytes sent right behind the COMPRESS line are compressed data: the
    server must inflate what it had already buffered."""
    c = connect(imap)
    c.cmd(b"L", b"LOGIN a@example.test secret")
    d = zlib.compressobj(6, zlib.DEFLATED, -15)
    rest = d.compress(b"N NOOP\r\nS SELECT INBOX\r\n") + d.flush(zlib.Z_SYNC_FLUSH)
    c.send_raw(b"Z COMPRESS DEFLATE\r\n" + rest)
    assert c.line() == b"Z OK DEFLATE active"
    c.deflater = d
    c.inflater = zlib.decompressobj(-15)
    c.buf = c.inflater.decompress(c.buf)
    assert c.until_tag(b"N")[-1].startswith(b"N OK")
    assert c.until_tag(b"S")[-1].startswith(b"S OK")
    # a command split in two compressed pieces sent apart
    c.send(b"A NO")
    c.send(b"OP\r\n")
    assert c.until_tag(b"A")[-1].startswith(b"A OK")


def test_garbage_compressed_input_closes(imap):
    c = compressed_login(imap)
    assert c.cmd(b"N", b"NOOP")[-1].startswith(b"N OK")
    c.send_raw(b"\xff\xfe this is not deflate data \x00\x01\x02" * 4)
    assert c.closed()
    # the node is fine
    c2 = compressed_login(imap)
    assert c2.cmd(b"N", b"NOOP")[-1].startswith(b"N OK")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(f.read().split("VmRSS:")[1].split()[0])


def test_decompression_bomb_hits_the_line_limit(imap):
    """50 MB of one line compresses to ~50 KB: the server must stop at the
    line limit (BAD, or BYE and close), never inflate it into memory."""
    c = compressed_login(imap)
    assert c.cmd(b"T1", b"NOOP")[-1].startswith(b"T1 OK")
    before = rss_kib(imap.pid)
    chunk = b"A" * (1024 * 1024)
    try:
        c.send_raw(c.deflater.compress(b"T2 NOOP "))
        for _ in range(50):
            c.send_raw(c.deflater.compress(chunk))
        c.send(b"\r\nT3 NOOP\r\n")
        lines = c.until_tag(b"T3")
        assert any(l.startswith(b"T2 BAD") for l in lines), lines
        assert lines[-1].startswith(b"T3 OK")
    except (BrokenPipeError, ConnectionResetError, EOFError):
        pass    # closed at the limit: fine too
    grown = rss_kib(imap.pid) - before
    assert grown < 32 * 1024, "RSS grew by %d KiB" % grown
    c2 = compressed_login(imap)
    assert c2.cmd(b"N", b"NOOP")[-1].startswith(b"N OK")
