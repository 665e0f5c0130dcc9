"""benchlib.py: process and timing helpers shared by the benchmarks."""
import os
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
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(name))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    total, todo, first = 0, [root_pid], True
    while todo:
        pid = todo.pop()
        try:
            f = _stat_fields(pid)
        except OSError:
            continue
        # fields after comm: state=0 ppid=1 ... utime=11 stime=12 cutime=13 cstime=14
        total += int(f[11]) + int(f[12])
        if first:
            total += int(f[13]) + int(f[14])
            first = False
        todo.extend(children.get(pid, []))
    return total / CLK_TCK


def cfg_str(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')
