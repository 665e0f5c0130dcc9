"""test_daemon.py: mailfleetd as a process: --check-config, signals (SIGTERM,
SIGINT, SIGHUP certificate reload), the embedded default run, and the
privilege drop to the mail user."""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

import mf as h

SENDER = "sender@remote.test"
DEFAULT_PORTS = (1143, 1993, 1110, 1995, 2424, 8080)


def run_daemon(args, cwd=None, timeout=60):
    proc = subprocess.run([h.MAILFLEETD] + args, cwd=cwd, env=h.san_env(),
                          capture_output=True, text=True, timeout=timeout)
    for marker in h.SANITIZER_MARKERS:
        assert marker not in proc.stdout + proc.stderr, proc.stderr
    return proc


def write_config(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


# ------------------------------------------------------------ --check-config

def test_check_config_prints_effective_config(mf):
    node = mf.node({"limits": {"line_max": 2048, "bad_commands_max": 7},
                    "lmtp": {"quota_temporary": True}}, start=False)
    proc = run_daemon(["--config", node.config_path, "--check-config"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    # Our values...
    assert "line_max = 2048" in out, out
    assert "bad_commands_max = 7" in out, out
    assert "quota_temporary = true" in out, out
    assert str(node.lmtp_port) in out and node.sock_path in out, out
    assert mf.store in out and mf.directory in out, out
    # ...and the defaults for what the file leaves out.
    assert "connections_per_ip = 200" in out, out
    assert "idle_timeout = 300" in out, out
    # Nothing was started: the port stays closed.
    assert h.port_is_free(node.lmtp_port)


def test_packaged_example_config_is_valid():
    path = os.path.join(h.ROOT, "packaging", "mailfleet.conf")
    proc = run_daemon(["--config", path, "--check-config"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "mailfleet.conf" in proc.stdout and 'protocol = "lmtp"' in proc.stdout, proc.stdout


def test_check_config_output_is_a_valid_config(mf, tmp_path):
    node = mf.node({"limits": {"rcpt_max": 33}}, start=False)
    first = run_daemon(["--config", node.config_path, "--check-config"])
    assert first.returncode == 0, first.stderr
    again = write_config(str(tmp_path / "again.conf"), first.stdout)
    second = run_daemon(["--config", again, "--check-config"])
    assert second.returncode == 0, second.stdout + second.stderr
    strip = lambda text: [line for line in text.splitlines()  # noqa: E731
                          if line.strip() and not line.lstrip().startswith(("#", "//"))]
    assert strip(second.stdout) == strip(first.stdout)


@pytest.mark.parametrize("text,line", [
    ("log_level = \"info\";\nlimits = {\n  line_max = 4096;\n  rcpt_max = ;\n};\n", 4),
    ("log_level = \"info\";\n\nlimits = {\n  line_max = 10;\n};\n", 4),
    ("hostname = \"x\";\nstore = { location = \"/tmp/x\"; };\nbogus_setting = 1;\n", 3),
    ("listeners = (\n  { protocol = \"lmtp\"; address = \"127.0.0.1\"; port = 2; },\n"
     "  { protocol = \"smtp\"; address = \"127.0.0.1\"; port = 3; }\n);\n", 3),
], ids=["syntax", "range", "unknown", "protocol"])
def test_check_config_bad_file(tmp_path, text, line):
    path = write_config(str(tmp_path / "bad.conf"), text)
    proc = run_daemon(["--config", path, "--check-config"])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "%s:%d" % (path, line) in proc.stderr, proc.stderr


def test_missing_config_file(tmp_path):
    path = str(tmp_path / "nope.conf")
    proc = run_daemon(["--config", path, "--check-config"])
    assert proc.returncode == 1
    assert path in proc.stderr, proc.stderr


def test_bad_config_refuses_to_start(tmp_path):
    path = write_config(str(tmp_path / "bad.conf"), "limits = { line_max = 1; };\n")
    proc = run_daemon(["--config", path])
    assert proc.returncode != 0
    assert "%s:1" % path in proc.stderr, proc.stderr


# ------------------------------------------------------------ signals

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly(mf, domain, sig):
    node = mf.node()
    msg = h.make_message(marker="before-stop")
    assert h.deliver(node, SENDER, ["a@example.test"], msg)["a@example.test"][0] == 250
    idle = node.raw()  # an open connection must not hold the exit up
    idle.greet()
    node.signal(sig)
    node.proc.wait(30)
    idle.close()
    assert node.proc.returncode == 0, node.stderr()[-4000:]
    assert node.sanitizer_report() is None, node.stderr()[-8000:]
    assert not os.path.exists(node.sock_path), "unix socket left behind"
    h.assert_delivered(mf.maildir("a@example.test"), msg, "a@example.test", SENDER)


def peer_cert(node):
    """(serial, subject) of the certificate a new STARTTLS connection sees."""
    c = node.lmtp()
    try:
        code, _ = c.starttls(context=h.insecure_tls_context())
        assert code == 220
        return h.cert_info_der(c.sock.getpeercert(binary_form=True))
    finally:
        c.close()


def wait_for_cert(node, serial, timeout=15):
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = peer_cert(node)
        if seen[0] == serial:
            return seen
        time.sleep(0.2)
    raise AssertionError("still serving %r, expected serial %d" % (seen, serial))


def test_sighup_reloads_certificate(tmp_path, domain_free_env):
    env = domain_free_env
    node = env.node()
    serial, subject = peer_cert(node)
    assert serial == 1 and "first" in subject, (serial, subject)

    h.make_cert(env.tls_dir, name="cert", cn="second", serial=4242)
    node.signal(signal.SIGHUP)
    serial, subject = wait_for_cert(node, 4242)
    assert "second" in subject, subject

    # A broken certificate on reload: the node keeps serving the last good one.
    with open(env.cert, "w") as f:
        f.write("not a certificate\n")
    node.signal(signal.SIGHUP)
    time.sleep(1)
    assert node.running(), node.stderr()[-4000:]
    assert peer_cert(node)[0] == 4242


@pytest.fixture
def domain_free_env(tmp_path):
    """An env with its own certificate (CN first, serial 1) that the test may replace."""
    tls = str(tmp_path / "own-tls")
    h.make_cert(tls, name="cert", cn="first", serial=1)
    env = h.MfEnv(tmp_path, tls_dir=tls)
    yield env
    problems = env.stop_all()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# ------------------------------------------------------------ privilege drop

def proc_ids(pid):
    ids = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                ids[key] = [int(x) for x in value.split()]
    return ids


def test_privilege_drop_to_mail_user():
    mail = pwd.getpwnam("mail")
    work = tempfile.mkdtemp(prefix="mf-priv-", dir="/tmp")
    os.chmod(work, 0o755)
    env = None
    problems = []
    try:
        env = h.MfEnv(work)
        env.add_domain("example.test")
        env.add_user("a@example.test", quota="10M")
        for path in (env.store, env.directory):
            for root, dirs, files in os.walk(path):
                for name in dirs + files:
                    os.chown(os.path.join(root, name), mail.pw_uid, mail.pw_gid)
            os.chown(path, mail.pw_uid, mail.pw_gid)
        node = env.node({"run_user": "mail"})
        ids = proc_ids(node.pid)
        assert ids["Uid"] == [mail.pw_uid] * 4, ids
        assert ids["Gid"] == [mail.pw_gid] * 4, ids
        assert set(ids["Groups"]) <= {mail.pw_gid}, ids
        msg = h.make_message(marker="as-mail")
        res = h.deliver(node, SENDER, ["a@example.test"], msg)
        assert res["a@example.test"][0] == 250, res
        path = h.assert_delivered(env.maildir("a@example.test"), msg, "a@example.test", SENDER)
        assert os.stat(path).st_uid == mail.pw_uid
    finally:
        if env is not None:
            problems = env.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    assert not problems, "\n".join(problems)


def test_unknown_run_user_fails(mf):
    node = mf.node({"run_user": "no-such-user-x"}, start=False)
    proc = run_daemon(["--config", node.config_path], timeout=30)
    assert proc.returncode != 0
    assert "no-such-user-x" in proc.stderr, proc.stderr


# ------------------------------------------------------------ embedded default

def ports_free(ports):
    return all(h.port_is_free(p) for p in ports)


@pytest.mark.fixed_ports
@pytest.mark.skipif(not ports_free(DEFAULT_PORTS),
                    reason="one of the embedded default's ports %s is in use" % (DEFAULT_PORTS,))
def test_embedded_default_run():
    """`mailfleetd` with no arguments in an empty folder: creates ./var, the demo
    user and a self-signed certificate, and delivers on 127.0.0.1:2424. The only
    test that uses the fixed default ports."""
    cwd = tempfile.mkdtemp(prefix="mf-default-", dir="/tmp")
    os.chmod(cwd, 0o755)
    log_path = os.path.join(cwd, "stderr.log")
    stderr = lambda: open(log_path, errors="replace").read()  # noqa: E731
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([h.MAILFLEETD], cwd=cwd, env=h.san_env(),
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    except BaseException:
        shutil.rmtree(cwd, ignore_errors=True)
        raise
    try:
        assert h.wait_port(2424, h.START_TIMEOUT, proc), stderr()[-4000:]
        for p in ("var/mail", "var/directory", "var/tls/cert.pem", "var/tls/key.pem"):
            assert os.path.exists(os.path.join(cwd, p)), p
        key_mode = os.stat(os.path.join(cwd, "var/tls/key.pem")).st_mode & 0o777
        assert key_mode & 0o077 == 0, "private key readable by others: %o" % key_mode
        with socket.create_connection(("127.0.0.1", 2424), timeout=10):
            pass
        listed = h.ctl(os.path.join(cwd, "var/directory"), "user", "list")
        assert "demo@example.test" in listed.stdout, listed.stdout

        msg = h.make_message(marker="embedded-default")
        res = h.deliver(2424, SENDER, ["demo@example.test"], msg)
        assert res["demo@example.test"][0] == 250, res
        h.assert_delivered(os.path.join(cwd, "var/mail/example.test/demo/Maildir"), msg,
                           "demo@example.test", SENDER)
        mail_uid = pwd.getpwnam("mail").pw_uid
        assert proc_ids(proc.pid)["Uid"] == [mail_uid] * 4
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(h.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        text = stderr()
        shutil.rmtree(cwd, ignore_errors=True)
    assert proc.returncode == 0, text[-4000:]
    for marker in h.SANITIZER_MARKERS:
        assert marker not in text, text[-8000:]
