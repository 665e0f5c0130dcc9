"""ganesha.py: starts and stops a private userspace NFS server (nfs-ganesha,
VFS backend) on 127.0.0.1 for mailfleet tests and benchmarks.

Usage from Python:

    import sys; sys.path.insert(0, "tests/nfs"); import ganesha
    with ganesha.start("/tmp/x/export", 25049, 25048, "/tmp/x/work") as g:
        url = g.url("mail", version=3)
        # nfs://127.0.0.1/tmp/x/export/mail?nfsport=25049&mountport=25048&version=3

From a shell:

    python3 tests/nfs/ganesha.py start EXPORT_DIR NFS_PORT MNT_PORT WORKDIR
        (prints the pid and the NFSv3 URL of the export root, then returns;
         the server keeps running in the background)
    python3 tests/nfs/ganesha.py stop WORKDIR

start() makes sure an rpcbind answers on 127.0.0.1:111 (starting `rpcbind -w`
if none does; that rpcbind is shared and left running), writes WORKDIR/ganesha.conf,
runs `ganesha.nfsd -F -f CONF -L LOG -p PIDFILE`, and waits until the NFS port
accepts TCP connections and a libnfs client (ctypes over libnfs.so.13) can
mount the export. Failure raises GaneshaError with the tail of the log.
stop() sends SIGTERM to the pid it started (SIGKILL after 10 s); nothing else.

The export directory must not be on overlayfs (ganesha's VFS backend fails
there): use /tmp (tmpfs or ext4). start() refuses an overlayfs directory.

Several instances at once (investigated on Debian 12, ganesha 4.3, one rpcbind):
  * Two or more ganesha.nfsd processes on different NFS/MNT ports run side by
    side and each serves its own export correctly; tested with three at once,
    each mounted and written through libnfs, including while another instance
    was started and stopped.
  * Each start re-registers the NFS and MOUNT programs with rpcbind, so rpcbind
    only knows the ports of the instance that started last, and an instance
    that stops unregisters them. That does not matter to mailfleet's clients:
    libnfs URLs here always carry nfsport= and mountport=, so the portmapper is
    never consulted after start-up. Do not rely on `rpcinfo -p` with several
    instances.
  * rpcbind must answer while an instance starts (it exits with "Cannot
    register NFS V3 on TCP" otherwise). Starts are serialised with an flock on
    /tmp/mailfleet-ganesha.lock so that two concurrent start() calls cannot
    interleave their unregister/register steps.
  * Per-instance state (config, log, pid file, NFSv4 recovery directory) lives
    in WORKDIR, so instances need distinct WORKDIRs and distinct ports.
  * ganesha logs D-Bus and Kerberos errors at start-up; they are harmless.
"""
import atexit
import ctypes
import ctypes.util
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time

START_LOCK = "/tmp/mailfleet-ganesha.lock"
START_TIMEOUT_SECS = 20.0
STOP_TIMEOUT_SECS = 10.0


# Instances started without detach=True; stopped at interpreter exit so an
# aborted test run does not leave servers behind.
_RUNNING = set()


class GaneshaError(RuntimeError):
    pass


def _stop_all():
    for g in list(_RUNNING):
        g.stop()


atexit.register(_stop_all)


def _port_open(port, host="127.0.0.1", timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_rpcbind():
    """Starts `rpcbind -w` unless something already answers on port 111."""
    if _port_open(111):
        return
    subprocess.run(["rpcbind", "-w"], check=True)
    deadline = time.monotonic() + 5
    while not _port_open(111):
        if time.monotonic() > deadline:
            raise GaneshaError("rpcbind did not come up on 127.0.0.1:111")
        time.sleep(0.05)


class _NfsUrl(ctypes.Structure):
    _fields_ = [("server", ctypes.c_char_p), ("path", ctypes.c_char_p),
                ("file", ctypes.c_char_p)]


def _libnfs():
    lib = ctypes.CDLL(ctypes.util.find_library("nfs") or "libnfs.so.13")
    lib.nfs_init_context.restype = ctypes.c_void_p
    lib.nfs_destroy_context.argtypes = [ctypes.c_void_p]
    lib.nfs_parse_url_dir.restype = ctypes.POINTER(_NfsUrl)
    lib.nfs_parse_url_dir.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nfs_destroy_url.argtypes = [ctypes.POINTER(_NfsUrl)]
    lib.nfs_mount.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.nfs_get_error.restype = ctypes.c_char_p
    lib.nfs_get_error.argtypes = [ctypes.c_void_p]
    lib.nfs_set_timeout.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def probe(url):
    """Mounts url with libnfs; returns None on success, else the error text."""
    lib = _libnfs()
    nfs = lib.nfs_init_context()
    if not nfs:
        return "nfs_init_context failed"
    try:
        lib.nfs_set_timeout(nfs, 3000)
        purl = lib.nfs_parse_url_dir(nfs, url.encode())
        if not purl:
            return "bad url: " + (lib.nfs_get_error(nfs) or b"").decode()
        try:
            if lib.nfs_mount(nfs, purl.contents.server, purl.contents.path) != 0:
                return "mount: " + (lib.nfs_get_error(nfs) or b"").decode()
        finally:
            lib.nfs_destroy_url(purl)
        return None
    finally:
        lib.nfs_destroy_context(nfs)


def _on_overlayfs(path):
    best, fstype = "", ""
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            mnt = fields[1]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fstype = mnt, fields[2]
    return fstype == "overlay"


CONF_TEMPLATE = """# written by tests/nfs/ganesha.py
NFS_CORE_PARAM {{
    NFS_Port = {nfs_port};
    MNT_Port = {mnt_port};
    Bind_addr = 127.0.0.1;
    Protocols = 3, 4;
    Enable_NLM = false;
    Enable_RQUOTA = false;
}}
NFSV4 {{
    Graceless = true;
    Only_Numeric_Owners = true;
    RecoveryRoot = "{workdir}/recovery";
}}
NFS_KRB5 {{ Active_krb5 = false; }}
EXPORT {{
    Export_Id = 1;
    Path = "{export}";
    Pseudo = "{export}";
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
    Protocols = 3, 4;
    FSAL {{ Name = VFS; }}
}}
"""


class Ganesha:
    """A running ganesha.nfsd; use start() to get one."""

    def __init__(self, export_dir, nfs_port, mnt_port, workdir, pid, proc=None):
        self.export_dir = export_dir
        self.nfs_port = nfs_port
        self.mnt_port = mnt_port
        self.workdir = workdir
        self.pid = pid
        self._proc = proc

    def url(self, path="", version=3):
        path = path.strip("/")
        full = self.export_dir + ("/" + path if path else "")
        return "nfs://127.0.0.1%s?nfsport=%d&mountport=%d&version=%d" % (
            full, self.nfs_port, self.mnt_port, version)

    def log_tail(self, lines=20):
        try:
            with open(os.path.join(self.workdir, "ganesha.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def alive(self):
        if self._proc is not None:
            return self._proc.poll() is None
        try:
            os.kill(self.pid, 0)
            return True
        except OSError:
            return False

    def stop(self):
        if self.pid is None:
            return
        _kill_and_wait(self.pid, self._proc)
        self.pid = None
        _RUNNING.discard(self)
        try:
            os.unlink(os.path.join(self.workdir, "ganesha.pid"))
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def _pid_gone(pid, proc):
    if proc is not None:
        return proc.poll() is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[-1].startswith("Z")
    except OSError:
        return True


def _kill_and_wait(pid, proc):
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_SECS), (signal.SIGKILL, 5)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not _pid_gone(pid, proc):
            time.sleep(0.05)
        if _pid_gone(pid, proc):
            break
    if proc is not None:
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass


def _wait_ready(g, deadline):
    while time.monotonic() < deadline:
        if not g.alive():
            raise GaneshaError("ganesha.nfsd exited during start-up:\n" + g.log_tail())
        if _port_open(g.nfs_port) and probe(g.url()) is None:
            return
        time.sleep(0.2)
    err = probe(g.url())
    raise GaneshaError("ganesha did not answer within %gs (%s):\n%s"
                       % (START_TIMEOUT_SECS, err, g.log_tail()))


def start(export_dir, nfs_port, mnt_port, workdir, detach=False):
    """Starts ganesha exporting export_dir (created if missing) and returns a
    Ganesha once a libnfs mount succeeds. detach=True puts the server in its
    own session so it outlives this process (the CLI uses that)."""
    export_dir = os.path.realpath(export_dir)
    workdir = os.path.realpath(workdir)
    os.makedirs(export_dir, exist_ok=True)
    os.makedirs(os.path.join(workdir, "recovery"), exist_ok=True)
    if _on_overlayfs(export_dir):
        raise GaneshaError("%s is on overlayfs, which ganesha cannot export; use /tmp" % export_dir)
    for port in (nfs_port, mnt_port):
        if _port_open(port):
            raise GaneshaError("port %d on 127.0.0.1 is already in use" % port)
    conf = os.path.join(workdir, "ganesha.conf")
    with open(conf, "w") as f:
        f.write(CONF_TEMPLATE.format(nfs_port=nfs_port, mnt_port=mnt_port,
                                     workdir=workdir, export=export_dir))
    log = os.path.join(workdir, "ganesha.log")
    pidfile = os.path.join(workdir, "ganesha.pid")
    with open(START_LOCK, "a") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        ensure_rpcbind()
        proc = subprocess.Popen(
            ["ganesha.nfsd", "-F", "-f", conf, "-L", log, "-p", pidfile],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=detach)
        g = Ganesha(export_dir, nfs_port, mnt_port, workdir, proc.pid,
                    None if detach else proc)
        try:
            _wait_ready(g, time.monotonic() + START_TIMEOUT_SECS)
        except BaseException:
            g.stop()
            raise
    with open(pidfile, "w") as f:
        f.write("%d\n" % proc.pid)
    if not detach:
        _RUNNING.add(g)
    return g


def stop_workdir(workdir):
    """Stops the instance whose pid file is in workdir (CLI helper)."""
    pidfile = os.path.join(os.path.realpath(workdir), "ganesha.pid")
    with open(pidfile) as f:
        pid = int(f.read().strip())
    _kill_and_wait(pid, None)
    try:
        os.unlink(pidfile)
    except FileNotFoundError:
        pass  # ganesha removes its own pid file on a clean exit


def main(argv):
    if len(argv) == 6 and argv[1] == "start":
        g = start(argv[2], int(argv[3]), int(argv[4]), argv[5], detach=True)
        print(g.pid)
        print(g.url())
        return 0
    if len(argv) == 3 and argv[1] == "stop":
        stop_workdir(argv[2])
        return 0
    if len(argv) == 3 and argv[1] == "probe":
        err = probe(argv[2])
        print(err or "ok")
        return 1 if err else 0
    sys.stderr.write("usage: ganesha.py start EXPORT_DIR NFS_PORT MNT_PORT WORKDIR\n"
                     "       ganesha.py stop WORKDIR\n"
                     "       ganesha.py probe NFS_URL\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
