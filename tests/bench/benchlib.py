"""benchlib.py: process and timing helpers shared by the benchmarks."""
import os
import pwd
import re
import resource
import signal
import socket
import subprocess
import time

START_TIMEOUT = 30
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port, proc, what):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError("%s exited with status %d during start-up" % (what, proc.returncode))
        if port_open(port):
            return
        time.sleep(0.05)
    raise BenchError("%s did not accept on port %d within %ds" % (what, port, START_TIMEOUT))


def stop_proc(proc, timeout=20):
    """SIGTERM the process we started (SIGKILL after timeout) and reap it."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _stat_fields(pid):
    with open("/proc/%d/stat" % pid) as f:
        text = f.read()
    # comm may contain spaces and parentheses: split after the last ")"
    return text[text.rindex(")") + 2:].split()


def tree_cpu_seconds(root_pid):
    """user+sys of root_pid and all its live descendants, plus what root_pid's
    reaped children used (cutime/cstime), in seconds."""
    total = 0
    for pid in tree_pids(root_pid):
        try:
            f = _stat_fields(pid)
        except OSError:
            continue
        # fields after comm: state=0 ppid=1 ... utime=11 stime=12 cutime=13 cstime=14
        total += int(f[11]) + int(f[12])
        if pid == root_pid:
            total += int(f[13]) + int(f[14])
    return total / CLK_TCK


def cfg_str(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


# ---------------------------------------------------------------- mailboxes and users

DOMAIN = "bench.test"
PASSWORD = "benchpw"
MAIL_USER = "mail"            # owner of the stores; Dovecot's mail processes run as it
NOFILE = 65536                # RLIMIT_NOFILE given to the servers


def mail_ids():
    pw = pwd.getpwnam(MAIL_USER)
    return pw.pw_uid, pw.pw_gid


def chown_tree(path, uid=None, gid=None):
    if uid is None:
        uid, gid = mail_ids()
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, uid, gid)
        for n in filenames:
            os.chown(os.path.join(dirpath, n), uid, gid)


def sha512_crypt(password=PASSWORD):
    """The {SHA512-CRYPT} hash both servers get (the scheme mailfleetctl uses
    by default), with a fixed salt so that runs are comparable."""
    return "{SHA512-CRYPT}" + subprocess.run(
        ["openssl", "passwd", "-6", "-salt", "benchsalt", password],
        check=True, capture_output=True, text=True).stdout.strip()


def raise_nofile():
    """preexec_fn for servers and load generators: a high open-file limit
    (NOFILE when allowed to raise the hard limit, else the hard limit)."""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    except (ValueError, OSError):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def tree_pids(root_pid):
    """root_pid and all its live descendants."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(name))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def tree_memory(root_pid):
    """(sum of VmRSS, sum of Pss, number of processes) in bytes over root_pid
    and its descendants, from /proc/PID/status and /proc/PID/smaps_rollup."""
    rss = pss = n = 0
    for pid in tree_pids(root_pid):
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) * 1024
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
            n += 1
        except OSError:
            continue
    return rss, pss, n


class _LogMixin:
    def log_problems(self):
        """Lines of the server's log that report errors or warnings."""
        try:
            with open(self.log_path(), errors="replace") as f:
                return [l.rstrip() for l in f if self.PROBLEM_RE.search(l)]
        except OSError:
            return []

    def log_tail(self, lines=10):
        try:
            with open(self.log_path(), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def cpu(self):
        return tree_cpu_seconds(self.proc.pid)

    def memory(self):
        return tree_memory(self.proc.pid)

    def stop(self):
        stop_proc(self.proc)


# ---------------------------------------------------------------- Dovecot

DOVECOT_BASE_CONF = """# written by tests/bench/{script}: Dovecot as benchmark peer
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = {instance}
protocols = {protocols}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
log_path = {dir}/dovecot.log
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{mail}/%d/%n/Maildir
passdb {{
  driver = passwd-file
  args = {dir}/users
}}
userdb {{
  driver = passwd-file
  args = {dir}/users
}}
service auth {{
  service_count = 0
}}
"""


class Dovecot(_LogMixin):
    """Dovecot with its own config, base_dir and state_dir below workdir/name:
    passwd-file users (SHA512-CRYPT, uid/gid of MAIL_USER) whose maildirs are
    store_root/DOMAIN/<user>/Maildir. extra_conf is the protocol part (services,
    settings), appended to the common part."""
    name = "Dovecot"
    # "Killed with signal 15" is our own SIGTERM at the end
    PROBLEM_RE = re.compile(r"(Error|Fatal|Panic|Warning): (?!Killed with signal 15)")

    def __init__(self, workdir, store_root, users, port, protocols, extra_conf,
                 script="bench", instance="mfbench-dovecot", dirname="dovecot"):
        self.dir = os.path.join(workdir, dirname)
        self.store_root = store_root
        self.port = port
        self.proc = None
        uid, gid = mail_ids()
        for d in (self.dir, os.path.join(self.dir, "run"), os.path.join(self.dir, "state")):
            os.makedirs(d, exist_ok=True)
        os.makedirs(store_root, exist_ok=True)
        os.chown(store_root, uid, gid)
        crypt = sha512_crypt()
        with open(os.path.join(self.dir, "users"), "w") as f:
            for u in users:
                f.write("%s@%s:%s:%d:%d::%s/%s/%s::\n" % (u, DOMAIN, crypt, uid, gid, store_root,
                                                          DOMAIN, u))
        self.conf = os.path.join(self.dir, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(DOVECOT_BASE_CONF.format(script=script, dir=self.dir, instance=instance,
                                             protocols=protocols, mail=store_root, uid=uid,
                                             gid=gid))
            f.write(extra_conf)

    def start(self, settle=0.0):
        if port_open(self.port):
            raise BenchError("port %d is already in use" % self.port)
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=open(os.path.join(self.dir, "stdout"), "ab"),
                                     stderr=subprocess.STDOUT, preexec_fn=raise_nofile)
        wait_port(self.port, self.proc, "dovecot")
        time.sleep(settle)   # let process_min_avail processes come up
        return self

    def log_path(self):
        return os.path.join(self.dir, "dovecot.log")


# ---------------------------------------------------------------- mailfleet

class Mailfleet(_LogMixin):
    """mailfleetd (BUILD/mailfleetd) with its own directory below workdir/name,
    the given users (SHA512-CRYPT of PASSWORD, imported in one go), store at
    location, a self-made TLS certificate and the given listeners
    ((protocol, port) pairs on 127.0.0.1); port is the first listener's.
    extra_conf: further libconfig lines (groups threads, limits, imap...)."""
    name = "mailfleet"
    PROBLEM_RE = re.compile(r" (error|warn|fatal): |Sanitizer")

    def __init__(self, workdir, build, location, users, listeners, extra_conf=(),
                 dirname="mailfleet", run_user=MAIL_USER, log_level="info", script="bench"):
        self.dir = os.path.join(workdir, dirname)
        self.location = location
        self.store_root = location
        self.build = build
        self.port = listeners[0][1]
        self.proc = None
        self.directory = os.path.join(self.dir, "directory")
        os.makedirs(self.directory, exist_ok=True)
        self._make_tls()
        self._make_users(users)
        if run_user:
            chown_tree(self.directory)
        self.conf = os.path.join(self.dir, "mailfleet.conf")
        lst = ", ".join('{ protocol = "%s"; address = "127.0.0.1"; port = %d; }' % (p, n)
                        for p, n in listeners)
        with open(self.conf, "w") as f:
            f.write("\n".join([
                "# written by tests/bench/%s" % script,
                'hostname = "bench";',
                "run_user = %s;" % cfg_str(run_user or ""),
                "log_level = %s;" % cfg_str(log_level),
                "store = { location = %s; fsync = true; compress_lz4 = false; };" % cfg_str(location),
                "directory = { path = %s; create_demo_user = false; };" % cfg_str(self.directory),
                "tls = { cert = %s; key = %s; self_signed = false; };" % (cfg_str(self.cert),
                                                                          cfg_str(self.key)),
                "listeners = ( %s );" % lst] + list(extra_conf) + [""]))

    def _make_tls(self):
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "cert.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", self.key,
                        "-out", self.cert, "-days", "2", "-subj", "/CN=mailfleet-bench"],
                       check=True, capture_output=True)
        uid, gid = mail_ids()
        for p in (self.cert, self.key):
            os.chown(p, uid, gid)

    def ctl(self, *args, stdin=None):
        cmd = [os.path.join(self.build, "mailfleetctl"), "--directory", self.directory] + list(args)
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise BenchError("%s failed: %s%s" % (" ".join(cmd), proc.stdout, proc.stderr))
        return proc.stdout

    def _make_users(self, users):
        self.ctl("domain", "add", DOMAIN)
        # One import instead of a process per user; the hash is Dovecot's too.
        pwfile = os.path.join(self.dir, "users.passwd")
        crypt = sha512_crypt()
        with open(pwfile, "w") as f:
            for u in users:
                f.write("%s@%s:%s::::::\n" % (u, DOMAIN, crypt))
        try:
            self.ctl("import-passwd-file", pwfile)
        except BenchError:
            for u in users:
                self.ctl("user", "add", "%s@%s" % (u, DOMAIN), stdin=PASSWORD + "\n")

    def start(self):
        if port_open(self.port):
            raise BenchError("port %d is already in use" % self.port)
        self.proc = subprocess.Popen([os.path.join(self.build, "mailfleetd"), "--config", self.conf],
                                     stdin=subprocess.DEVNULL, cwd=self.dir,
                                     stdout=open(os.path.join(self.dir, "stderr"), "ab"),
                                     stderr=subprocess.STDOUT, preexec_fn=raise_nofile)
        try:
            wait_port(self.port, self.proc, "mailfleetd")
        except BenchError as e:
            raise BenchError("%s\n%s" % (e, self.log_tail()))
        return self

    def log_path(self):
        return os.path.join(self.dir, "stderr")
