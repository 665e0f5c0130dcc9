"""test_lmtp.py: LMTP delivery against the real mailfleetd (POSIX store), with
Python's smtplib.LMTP and a raw socket client: recipients, aliases, folders,
quotas, concurrency, crashes, limits, pipelining, STARTTLS, the unix socket,
logging, and store fault injection."""
import os
import re
import smtplib
import ssl
import threading
import time
import warnings

import pytest

import mf as h

SENDER = "sender@remote.test"


def assert_nothing_visible(maildir):
    files = h.maildir_files(maildir, ("new", "cur"))
    assert files == [], "unexpected files in %s: %s" % (maildir, files)


# ------------------------------------------------------------ recipients

def check_multi_recipient(mf, node, temporary=False):
    """a, b, c get 250 and the message; nobody is 550 5.1.1 at RCPT; d (2K quota)
    is over quota: 552 5.2.2, or 452 4.2.2 when temporary."""
    msg = h.make_message(marker="multi", size=4000)
    rcpts = ["a@example.test", "nobody@example.test", "b@example.test",
             "d@example.test", "c@example.test"]
    res = h.deliver(node, SENDER, rcpts, msg)

    code, text, stage = res["nobody@example.test"]
    assert (code, stage) == (550, "rcpt") and text.startswith("5.1.1"), res
    code, text, stage = res["d@example.test"]
    if temporary:
        assert code == 452 and text.startswith("4.2.2"), res
    else:
        assert code == 552 and text.startswith("5.2.2"), res
    for r in ("a@example.test", "b@example.test", "c@example.test"):
        assert res[r][0] == 250, res
        h.assert_delivered(mf.maildir(r), msg, r, SENDER)
    assert_nothing_visible(mf.maildir("d@example.test"))
    assert not os.path.exists(os.path.join(mf.store, "example.test", "nobody"))


@pytest.mark.parametrize("temporary", [False, True], ids=["permanent", "temporary"])
def test_multi_recipient_unknown_and_over_quota(mf, domain, temporary):
    node = mf.node({"lmtp": {"quota_temporary": True}} if temporary else None)
    check_multi_recipient(mf, node, temporary)


def test_alias_expands_to_members(mf, domain):
    mf.add_alias("list@example.test", "a@example.test", "b@example.test", "c@example.test")
    node = mf.node()
    msg = h.make_message(marker="alias")
    res = h.deliver(node, SENDER, ["list@example.test"], msg)
    assert res["list@example.test"][0] == 250, res
    for r in ("a@example.test", "b@example.test", "c@example.test"):
        h.assert_delivered(mf.maildir(r), msg, (r, "list@example.test"), SENDER)
    assert not os.path.exists(os.path.join(mf.store, "example.test", "list"))


def test_plus_folder_delivery(mf, domain):
    node = mf.node()
    first = h.make_message(marker="first")
    assert h.deliver(node, SENDER, ["a@example.test"], first)["a@example.test"][0] == 250
    inbox = mf.maildir("a@example.test")
    work = mf.maildir("a@example.test", "Work")
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(work, sub))

    to_work = h.make_message(marker="to-work")
    res = h.deliver(node, SENDER, ["a+Work@example.test"], to_work)
    assert res["a+Work@example.test"][0] == 250, res
    h.assert_delivered(work, to_work, ("a@example.test", "a+Work@example.test"), SENDER)

    to_missing = h.make_message(marker="to-missing-folder")
    res = h.deliver(node, SENDER, ["a+Nowhere@example.test"], to_missing)
    assert res["a+Nowhere@example.test"][0] == 250, res
    h.assert_delivered(inbox, to_missing, ("a@example.test", "a+Nowhere@example.test"), SENDER)
    assert not os.path.exists(mf.maildir("a@example.test", "Nowhere"))
    # Each message went exactly where it should, nowhere else.
    assert len(h.maildir_files(inbox)) == 2
    assert len(h.maildir_files(work)) == 1


def test_domain_pool_quota(mf):
    mf.add_domain("pool.test", quota="30K")
    mf.add_user("a@pool.test", quota="100K")
    mf.add_user("b@pool.test", quota="100K")
    node = mf.node()
    size = 5000
    accepted, refused = [], None
    for i in range(12):
        rcpt = "a@pool.test" if i % 2 == 0 else "b@pool.test"
        msg = h.make_message(marker="pool-%d" % i, size=size)
        code, text, _ = h.deliver(node, SENDER, [rcpt], msg)[rcpt]
        if code == 250:
            accepted.append(msg)
            continue
        refused = (code, text, i)
        break
    assert refused is not None, "domain pool of 30K never refused after %d x %d bytes" % (
        len(accepted), size)
    code, text, i = refused
    assert code == 552 and text.startswith("5.2.2"), refused
    stored = sum(os.path.getsize(p) for u in ("a@pool.test", "b@pool.test")
                 for p in h.maildir_files(mf.maildir(u)))
    # Refused because the pool is full, not because of a user's 100K quota.
    assert 30 * 1024 - 2 * (size + 500) <= stored <= 30 * 1024 + size + 500, (stored, i)
    assert len(accepted) == i


# ------------------------------------------------------------ volume

def bulk_deliver(nodes, rcpts, per_conn, conns_per_node):
    """conns_per_node connections to each node, each delivering per_conn distinct
    messages round-robin to rcpts. Returns {rcpt: set of digests} acknowledged."""
    sent = {r: set() for r in rcpts}
    errors = []
    lock = threading.Lock()

    def worker(node, n):
        try:
            c = node.lmtp(timeout=120)
            for i in range(per_conn):
                rcpt = rcpts[(n + i) % len(rcpts)]
                msg = h.make_message(marker="bulk-%s-%d-%d-%s" % (
                    node.name, n, i, os.urandom(6).hex()), size=800 + (i * 37) % 3000)
                res = h.lmtp_transaction(c, SENDER, [rcpt], msg)
                if res[rcpt][0] != 250:
                    with lock:
                        errors.append((node.name, n, i, res))
                    return
                with lock:
                    sent[rcpt].add(h.digest(msg))
            c.quit()
        except Exception as e:  # reported below with the connection number
            with lock:
                errors.append((node.name, n, repr(e)))

    threads = [threading.Thread(target=worker, args=(node, n))
               for node in nodes for n in range(conns_per_node)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    assert not any(t.is_alive() for t in threads), "delivery threads hung"
    assert not errors, errors[:5]
    return sent


def check_stored_exactly(mf, rcpt, digests):
    """The mailbox holds exactly the messages with these digests, once each,
    intact, and nothing is left in tmp/."""
    files = h.maildir_files(mf.maildir(rcpt))
    stored = [h.digest(h.sent_part(h.read(p))) for p in files]
    assert len(stored) == len(digests), (rcpt, len(stored), len(digests))
    assert set(stored) == digests, rcpt
    assert os.listdir(os.path.join(mf.maildir(rcpt), "tmp")) == []


def test_2000_messages_4_connections(mf, domain):
    node = mf.node()
    sent = bulk_deliver([node], ["a@example.test"], 500, 4)
    assert len(sent["a@example.test"]) == 2000
    check_stored_exactly(mf, "a@example.test", sent["a@example.test"])


# ------------------------------------------------------------ crashes

def raw_open_transaction(node, rcpt):
    c = node.raw()
    c.greet()
    assert c.cmd("MAIL FROM:<%s>" % SENDER)[0] == 250
    assert c.cmd("RCPT TO:<%s>" % rcpt)[0] == 250
    assert c.cmd("DATA")[0] == 354
    return c


def read_after_kill(c):
    data, closed = c.read_until_close(timeout=5)
    c.close()
    return data


def check_sigkill_during_data(mf, node):
    maildir = mf.maildir("a@example.test")
    msg = h.make_message(marker="killed-mid-body", size=200000)
    c = raw_open_transaction(node, "a@example.test")
    c.send(msg[:len(msg) // 2])
    time.sleep(0.5)  # let the daemon read and buffer it
    node.kill()
    after = read_after_kill(c)
    assert b"250" not in after, after
    assert_nothing_visible(maildir)

    # The node comes back on the same store; the interrupted message never shows.
    mf.restart(node)
    ok = h.make_message(marker="after-restart")
    assert h.deliver(node, SENDER, ["a@example.test"], ok)["a@example.test"][0] == 250
    files = h.maildir_files(maildir)
    assert len(files) == 1 and h.sent_part(h.read(files[0])) == h.lf(ok)


def check_sigkill_after_final_dot(mf, node, rounds=4):
    maildir = mf.maildir("a@example.test")
    sent, acked = [], []
    for i in range(rounds):
        msg = h.make_message(marker="killed-at-dot-%d" % i, size=50000 + 9000 * i)
        c = raw_open_transaction(node, "a@example.test")
        c.send(h.dot_stuff(msg))
        if i % 2:
            time.sleep(0.005 * i)
        node.kill()
        after = read_after_kill(c)
        sent.append(h.lf(msg))
        if re.search(rb"(?m)^250", after):
            acked.append(h.lf(msg))
        # Whatever is visible is complete: one of the messages, byte for byte.
        for p in h.maildir_files(maildir):
            assert h.sent_part(h.read(p)) in sent, "partial file %s visible" % p
        mf.restart(node)
    visible = [h.sent_part(h.read(p)) for p in h.maildir_files(maildir)]
    for m in acked:
        assert m in visible, "a message acknowledged with 250 was lost"
    assert len(visible) == len(set(visible)), "duplicate delivery"


def test_sigkill_during_data(mf, domain):
    check_sigkill_during_data(mf, mf.node())


def test_sigkill_after_final_dot(mf, domain):
    check_sigkill_after_final_dot(mf, mf.node())


# ------------------------------------------------------------ limits and garbage

def test_line_over_limit(mf, domain):
    node = mf.node({"limits": {"line_max": 1024}})
    c = node.raw()
    c.greet()
    code, texts = c.cmd("NOOP " + "x" * 5000)
    assert code == 500, (code, texts)
    code, texts = c.cmd("RCPT TO:<" + "a" * 3000 + "@example.test>")
    assert code == 500, (code, texts)
    assert c.cmd("NOOP")[0] == 250
    assert c.cmd("MAIL FROM:<%s>" % SENDER)[0] == 250
    assert c.cmd("RCPT TO:<a@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    msg = h.make_message(marker="after-long-line")
    c.send(h.dot_stuff(msg))
    assert c.reply()[0] == 250
    c.close()
    h.assert_delivered(mf.maildir("a@example.test"), msg, "a@example.test", SENDER)


def test_message_over_size(mf, domain):
    node = mf.node({"limits": {"message_size_max": 20000}})
    c = node.raw()
    texts = c.greet()
    assert any(re.match(r"(?i)SIZE 20000$", t) for t in texts), texts
    # Announced size too big: refused at MAIL.
    code, texts = c.cmd("MAIL FROM:<%s> SIZE=50000" % SENDER)
    assert code == 552, (code, texts)
    # Not announced, but sent: refused after the data, for every recipient.
    assert c.cmd("MAIL FROM:<%s>" % SENDER)[0] == 250
    assert c.cmd("RCPT TO:<a@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<b@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    big = h.make_message(marker="too-big", size=60000)
    c.send(h.dot_stuff(big))
    for _ in range(2):
        code, texts = c.reply()
        assert code == 552, (code, texts)
    # The session goes on, and a message under the limit is accepted.
    assert c.cmd("NOOP")[0] == 250
    assert c.cmd("MAIL FROM:<%s> SIZE=3000" % SENDER)[0] == 250
    assert c.cmd("RCPT TO:<a@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    small = h.make_message(marker="small", size=2000)
    c.send(h.dot_stuff(small))
    assert c.reply()[0] == 250
    c.close()
    files = h.maildir_files(mf.maildir("a@example.test"))
    assert [h.sent_part(h.read(p)) for p in files] == [h.lf(small)]
    assert_nothing_visible(mf.maildir("b@example.test"))


def test_garbage_and_nul_bytes(mf, domain):
    node = mf.node()
    c = node.raw()
    c.greet()
    for junk in (b"HELLO WORLD\r\n", b"\x00\x00\x00\r\n", b"\xff\xfe\x80 junk\r\n",
                 b"MAIL FROM:<a\x00b@remote.test>\r\n"):
        c.send(junk)
        code, texts = c.reply()
        assert 500 <= code < 600, (junk, code, texts)
    code, texts = c.cmd("RCPT TO:<a@example.test>")  # before MAIL
    assert code == 503, (code, texts)
    assert c.cmd("MAIL FROM:<%s>" % SENDER)[0] == 250
    assert c.cmd("RCPT TO:<a@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    msg = h.make_message(marker="after-garbage")
    c.send(h.dot_stuff(msg))
    assert c.reply()[0] == 250
    assert c.cmd("QUIT")[0] == 221
    c.close()
    h.assert_delivered(mf.maildir("a@example.test"), msg, "a@example.test", SENDER)


def test_too_many_bad_commands(mf, domain):
    limit = 5
    node = mf.node({"limits": {"bad_commands_max": limit}})
    c = node.raw()
    c.greet()
    c.send(b"".join(b"BOGUS%d\r\n" % i for i in range(limit + 3)))
    data, closed = c.read_until_close(timeout=10)
    c.close()
    assert closed, "connection still open after %d bad commands: %r" % (limit + 3, data)
    codes = [int(line[:3]) for line in data.decode().split("\r\n") if line[:3].isdigit()
             and line[3:4] == " "]
    assert codes and codes[-1] == 421, data
    errors = [x for x in codes[:-1] if 500 <= x < 600]
    assert limit - 1 <= len(errors) <= limit and len(errors) == len(codes) - 1, data
    # The node still serves others.
    ok = h.make_message(marker="after-bad")
    assert h.deliver(node, SENDER, ["a@example.test"], ok)["a@example.test"][0] == 250


def test_pipelining_several_transactions(mf, domain):
    node = mf.node()
    c = node.raw()
    texts = c.greet()
    upper = [t.upper() for t in texts]
    for ext in ("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME"):
        assert ext in upper, texts
    msgs = [h.make_message(marker="pipe-%d" % i, size=300 * i) for i in range(3)]
    batch = b""
    for i, m in enumerate(msgs):
        rcpt = "a@example.test" if i != 1 else "b@example.test"
        batch += b"MAIL FROM:<%s> BODY=8BITMIME\r\nRCPT TO:<%s>\r\nDATA\r\n" % (
            SENDER.encode(), rcpt.encode())
        batch += h.dot_stuff(m)
    batch += b"QUIT\r\n"
    c.send(batch)
    for _ in msgs:
        assert [c.reply()[0] for _ in range(4)] == [250, 250, 354, 250]
    assert c.reply()[0] == 221
    c.close()
    h.assert_delivered(mf.maildir("a@example.test"), msgs[0], "a@example.test", SENDER)
    h.assert_delivered(mf.maildir("b@example.test"), msgs[1], "b@example.test", SENDER)
    h.assert_delivered(mf.maildir("a@example.test"), msgs[2], "a@example.test", SENDER)


def test_dot_unstuffing_and_8bit(mf, domain):
    node = mf.node()
    body = ("\u00e4\u00f6\u00fc 8bit\r\n.\r\n..\r\n.x\r\n").encode()
    msg = h.make_message(marker="dots") + body
    c = node.lmtp()
    res = h.lmtp_transaction(c, SENDER, ["a@example.test"], msg, ["BODY=8BITMIME"])
    c.quit()
    assert res["a@example.test"][0] == 250, res
    path = h.assert_delivered(mf.maildir("a@example.test"), msg, "a@example.test", SENDER)
    assert h.read(path).endswith(h.lf(body))


# ------------------------------------------------------------ transports

def test_starttls_then_delivery(mf, domain):
    node = mf.node()
    c = node.lmtp()
    assert c.has_extn("starttls"), c.esmtp_features
    code, _ = c.starttls(context=h.insecure_tls_context())
    assert code == 220
    assert isinstance(c.sock, ssl.SSLSocket)
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    c.ehlo("client.test")
    assert not c.has_extn("starttls")
    msg = h.make_message(marker="over-tls")
    res = h.lmtp_transaction(c, SENDER, ["a@example.test"], msg)
    c.quit()
    assert res["a@example.test"][0] == 250, res
    h.assert_delivered(mf.maildir("a@example.test"), msg, "a@example.test", SENDER)


def starttls_raw(node, ctx):
    c = node.raw()
    c.greet()
    code, texts = c.cmd("STARTTLS")
    assert code == 220, (code, texts)
    try:
        return ctx.wrap_socket(c.sock).version()
    finally:
        c.close()


def test_tls_below_1_2_refused(mf, domain):
    # Without the system OpenSSL policy, only the daemon's own minimum applies.
    node = mf.node(extra_env={"OPENSSL_CONF": "/dev/null"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = h.insecure_tls_context()
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL"):
        starttls_raw(node, old)
    assert starttls_raw(node, h.insecure_tls_context()) in ("TLSv1.2", "TLSv1.3")


def test_unix_socket_listener(mf, domain):
    node = mf.node()
    c = smtplib.LMTP(node.sock_path, timeout=30)
    assert c.ehlo("client.test")[0] == 250
    msg = h.make_message(marker="via-unix")
    res = h.lmtp_transaction(c, SENDER, ["b@example.test"], msg)
    c.quit()
    assert res["b@example.test"][0] == 250, res
    h.assert_delivered(mf.maildir("b@example.test"), msg, "b@example.test", SENDER)


# ------------------------------------------------------------ logging

def test_delivery_log_has_ids_but_no_body(mf, domain):
    node = mf.node()
    marker = "SECRET-BODY-%s" % os.urandom(8).hex()
    msgid = "<log-%s@mf.test>" % os.urandom(6).hex()
    msg = h.make_message(marker=marker, msgid=msgid)
    res = h.deliver(node, SENDER, ["a@example.test", "b@example.test"], msg)
    assert all(r[0] == 250 for r in res.values()), res
    assert node.stop() == []
    log = node.stderr()
    lines = [line for line in log.splitlines() if msgid in line]
    assert lines, "no log line with the Message-ID %s:\n%s" % (msgid, log[-3000:])
    for rcpt in ("a@example.test", "b@example.test"):
        assert any(rcpt in line and SENDER in line for line in lines), (rcpt, lines)
    assert marker not in log


# ------------------------------------------------------------ fault injection

FAULTS = [
    ("write:1:EIO", True),
    ("write:2:EIO", True),
    ("fsync:1:EIO", True),
    ("fsync:1:ENOSPC", True),
    ("rename:1:EIO", True),
    # ESTALE on rename may be retried by the store: then 250 is fine, but only
    # with exactly one intact copy.
    ("rename:1:ESTALE", False),
]


@pytest.mark.parametrize("spec,must_fail", FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_injection(mf, domain, spec, must_fail):
    node = mf.node({"store": {"fault_inject": spec}})
    maildir = mf.maildir("a@example.test")
    outcomes = []
    for i in range(4):
        msg = h.make_message(marker="fault-%d" % i, size=3000)
        code, text, _ = h.deliver(node, SENDER, ["a@example.test"], msg)["a@example.test"]
        outcomes.append((code, text, msg))
    codes = [o[0] for o in outcomes]
    assert all(x == 250 or 400 <= x < 500 for x in codes), codes
    failed = [i for i, x in enumerate(codes) if x != 250]
    if must_fail:
        assert len(failed) == 1, "fault %s: replies %s" % (spec, codes)
    assert not failed or failed[-1] < len(codes) - 1, "no delivery after the fault: %s" % codes
    visible = [h.sent_part(h.read(p)) for p in h.maildir_files(maildir)]
    for code, text, msg in outcomes:
        n = visible.count(h.lf(msg))
        assert n == (1 if code == 250 else 0), (spec, code, text, n)
    assert len(visible) == codes.count(250)
    tmp = os.path.join(maildir, "tmp")
    assert os.listdir(tmp) == [], "left in tmp/: %s" % os.listdir(tmp)


def test_fault_injection_one_of_several_recipients(mf, domain):
    """The second rename fails: one recipient of three gets a 4xx and has
    nothing, the other two get 250 and the message; a retry to the failed one
    then succeeds."""
    node = mf.node({"store": {"fault_inject": "rename:2:EIO"}})
    rcpts = ["a@example.test", "b@example.test", "c@example.test"]
    msg = h.make_message(marker="fault-multi", size=5000)
    res = h.deliver(node, SENDER, rcpts, msg)
    failed = [r for r in rcpts if res[r][0] != 250]
    assert len(failed) == 1 and 400 <= res[failed[0]][0] < 500, res
    for r in rcpts:
        if r in failed:
            assert_nothing_visible(mf.maildir(r))
        else:
            h.assert_delivered(mf.maildir(r), msg, r, SENDER)
        tmp = os.path.join(mf.maildir(r), "tmp")
        assert not os.path.isdir(tmp) or os.listdir(tmp) == [], (r, os.listdir(tmp))
    retry = h.deliver(node, SENDER, failed, msg)
    assert retry[failed[0]][0] == 250, retry
    h.assert_delivered(mf.maildir(failed[0]), msg, failed[0], SENDER)


# ------------------------------------------------------------ timeouts and connection limits

def test_idle_timeout_closes(mf, domain):
    node = mf.node({"limits": {"idle_timeout": 2}})
    c = node.raw()
    c.greet()
    start = time.monotonic()
    data, closed = c.read_until_close(timeout=15)
    c.close()
    assert closed, "idle connection still open after 15 s"
    assert 1.5 <= time.monotonic() - start <= 10, time.monotonic() - start


def test_data_timeout_leaves_nothing(mf, domain):
    node = mf.node({"limits": {"data_timeout": 2}})
    c = raw_open_transaction(node, "a@example.test")
    c.send(h.make_message(marker="stalled-in-data", size=5000)[:3000])
    data, closed = c.read_until_close(timeout=15)
    c.close()
    assert closed, "stalled DATA still open after 15 s"
    assert b"250" not in data, data
    assert_nothing_visible(mf.maildir("a@example.test"))
    ok = h.make_message(marker="after-data-timeout")
    assert h.deliver(node, SENDER, ["a@example.test"], ok)["a@example.test"][0] == 250


def test_connections_per_ip(mf, domain):
    node = mf.node({"limits": {"connections_per_ip": 3}})
    held = []
    for _ in range(3):
        c = node.raw()
        c.greet()
        held.append(c)
    extra = node.raw(timeout=10)
    data, closed = extra.read_until_close(timeout=10)
    extra.close()
    assert closed and not data.startswith(b"220"), data
    held.pop().close()
    deadline = time.monotonic() + 10
    while True:  # the slot comes free once the node has seen the close
        c = node.raw(timeout=10)
        try:
            c.greet()
            break
        except (EOFError, ConnectionResetError, AssertionError):
            c.close()
            assert time.monotonic() < deadline, "slot never freed"
            time.sleep(0.1)
    msg = h.make_message(marker="per-ip")
    assert c.cmd("MAIL FROM:<%s>" % SENDER)[0] == 250
    assert c.cmd("RCPT TO:<a@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(h.dot_stuff(msg))
    assert c.reply()[0] == 250
    for x in held + [c]:
        x.close()


def test_lz4_at_rest(mf, domain):
    """With store.compress_lz4 the file in new/ is an lz4 frame that decodes to
    the delivered message; its S= size is the uncompressed one, so quota counts
    what the user sees."""
    node = mf.node({"store": {"compress_lz4": True}})
    msg = h.make_message(marker="compressible", size=60000)
    assert h.deliver(node, SENDER, ["a@example.test"], msg)["a@example.test"][0] == 250
    files = h.maildir_files(mf.maildir("a@example.test"))
    assert len(files) == 1
    raw = h.read(files[0])
    assert raw.startswith(h.LZ4_MAGIC), raw[:16]
    plain = h.lz4_decompress(raw)
    assert h.sent_part(plain) == h.lf(msg)
    assert "Delivered-To: a@example.test" in h.prepended_headers(plain)
    assert len(raw) < len(plain) // 3
    size = re.search(r",S=(\d+)", os.path.basename(files[0]))
    assert size and int(size.group(1)) == len(plain), (files[0], len(plain))
    # W= is the size IMAP and POP3 report: every bare LF counted as CRLF
    vsize = re.search(r",W=(\d+)", os.path.basename(files[0]))
    bare_lf = plain.count(b"\n") - plain.count(b"\r\n")
    assert vsize and int(vsize.group(1)) == len(plain) + bare_lf, (files[0], bare_lf)
