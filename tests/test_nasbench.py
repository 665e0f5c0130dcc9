"""Tests of mailfleet-nasbench, the NAS commissioning benchmark, against a
local temporary folder and against nfs-ganesha through libnfs: every check
runs and reports, --json matches the table, nothing is left behind (also
after SIGINT/SIGTERM), read-only / full / unreachable targets give a clear
error and exit 2, and a relay that holds each NFS reply for a few ms turns
the latency checks WARN/FAIL while the direct run passes.

Ports (this file's range is 24000-24999): ganesha 24049/24048, relay 24050,
nothing listening on 24099/24098."""
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("MF_BUILD", "build/asan"))
NASBENCH = os.path.join(BUILD, "mailfleet-nasbench")
sys.path.insert(0, os.path.join(ROOT, "tests", "nfs"))
sys.path.insert(0, os.path.join(ROOT, "tests", "tools"))

import ganesha  # noqa: E402
import nfsrelay  # noqa: E402

NFS_PORT, MNT_PORT, RELAY_PORT, DEAD_PORT = 24049, 24048, 24050, 24099
SAN_ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
SAN_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error")
VERDICTS = {"PASS", "WARN", "FAIL", "INFO", "SKIP"}
FUNC_CHECKS = ["func.files", "func.folders", "func.chmod", "func.chown", "func.setgid",
               "func.maildir-names", "func.link-count", "func.clock-skew",
               "func.rename-atomic", "func.exclusive-create", "func.fsync"]
MAIL_OPS = ["deliver", "flag", "read", "readdir", "unlink"]
# Latency thresholds for the slow-NAS comparison (WARN from half of each):
# far above what ganesha on loopback needs even under ASan on 2 busy cores
# (p99 < 80 ms seen for deliveries, which wait for ganesha's fsync, and
# < 30 ms for the rest), far below what a relay adding 40 ms to every reply
# gives (a delivery makes about 19 NFS calls, the other operations 6-9).
# Far apart on purpose: the fast run must PASS even when a p99 (the maximum
# of a few dozen samples) catches a scheduling hiccup of this 2-core machine.
RELAY_DELAY_MS = 80
# A 1 MiB fsync can take over the default 100 ms (a WARN) on a machine busy
# with other builds; the full runs assert every functional check PASSes.
FSYNC_RELAXED = "--threshold=fsync-ms=5000"
SLOW_THRESHOLDS = ["--threshold=deliver-p99-ms=1200"] + [
    "--threshold=%s-p99-ms=500" % op for op in ("flag", "read", "readdir", "unlink")]


def run(args, timeout=120, **kw):
    proc = subprocess.run([NASBENCH] + args, capture_output=True, text=True,
                          timeout=timeout, env=SAN_ENV, cwd=ROOT, **kw)
    for marker in SAN_MARKERS:
        assert marker not in proc.stderr, proc.stderr[-6000:]
    return proc


def parse_table(stdout):
    """CHECK -> RESULT from the table rows (notes are indented, skipped)."""
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"^([a-z][\w.-]*)\s+(PASS|WARN|FAIL|INFO|SKIP)\s", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def run_json_and_table(args, tmp_path, timeout=120):
    """One run: the table on stdout, the JSON into a file; both returned."""
    out = tmp_path / "report.json"
    proc = run(args + ["--json-out", str(out)], timeout=timeout)
    with open(out) as f:
        report = json.load(f)
    return proc, report, parse_table(proc.stdout)


def checks_by_name(report):
    return {c["name"]: c for c in report["checks"]}


def assert_consistent(proc, report, table):
    """The table, the JSON and the exit status tell the same story."""
    names = [c["name"] for c in report["checks"]]
    assert len(names) == len(set(names)), names
    assert {c["name"]: c["verdict"] for c in report["checks"]} == table
    for c in report["checks"]:
        assert c["verdict"] in VERDICTS
        assert c["figure"], c
    fails = sum(1 for c in report["checks"] if c["verdict"] == "FAIL")
    assert report["summary"]["fail"] == fails
    assert report["exit_status"] == proc.returncode
    if report["error"] is None:
        assert proc.returncode == (1 if fails else 0), proc.stdout + proc.stderr
    m = re.search(r"summary: (\d+) PASS, (\d+) WARN, (\d+) FAIL", proc.stdout)
    assert m and int(m.group(3)) == fails


def assert_full_run(report, backend):
    checks = checks_by_name(report)
    assert report["backend"] == backend
    for name in ["target.writable", "target.free-space", "mount.options", "seq.write",
                 "seq.read-back", "seq.read-cold", "capacity.mail-store-users",
                 "capacity.system-volume-users", "capacity.archive-users",
                 "target.cleanup"] + FUNC_CHECKS:
        assert name in checks, name
    for name in FUNC_CHECKS:
        assert checks[name]["verdict"] == "PASS", checks[name]
    assert checks["target.cleanup"]["verdict"] == "PASS"
    assert checks["seq.write"]["value"] > 0
    for level in (1, 4, 16):
        level_row = checks["mail.c%d" % level]
        assert level_row["concurrency"] == level and level_row["calls_per_s"] > 0
        for op in MAIL_OPS:
            row = checks["mail.c%d.%s" % (level, op)]
            assert row["count"] > 0 and row["ops_per_s"] > 0, row
            assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"], row
            assert row["verdict"] in ("PASS", "WARN", "FAIL")
    # reads are about twice the writes
    ops = {op: sum(checks["mail.c%d.%s" % (lv, op)]["count"] for lv in (1, 4, 16))
           for op in MAIL_OPS}
    writes = ops["deliver"] + ops["flag"] + ops["unlink"]
    reads = ops["read"] + ops["readdir"]
    assert 1.3 * writes < reads < 3.0 * writes, ops


def leftovers(path):
    return sorted(os.listdir(path))


# ------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def nfs(tmp_path_factory):
    base = tmp_path_factory.mktemp("nasbench-nfs")
    export = base / "export"
    export.mkdir()
    g = ganesha.start(str(export), NFS_PORT, MNT_PORT, str(base / "work"))
    try:
        yield g
    finally:
        g.stop()


@pytest.fixture
def nfs_url(nfs):
    assert leftovers(nfs.export_dir) == []
    yield nfs.url()
    assert leftovers(nfs.export_dir) == [], "nasbench left files in the export"


def in_private_mounts(script, timeout=120):
    """Runs a shell script in a private mount namespace (unshare -m)."""
    proc = subprocess.run(["unshare", "-m", "sh", "-ec", script], capture_output=True,
                          text=True, timeout=timeout, env=SAN_ENV, cwd=ROOT)
    for marker in SAN_MARKERS:
        assert marker not in proc.stderr, proc.stderr[-6000:]
    return proc


# ------------------------------------------------------------- local disk

def test_local_every_check_runs(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    proc, report, table = run_json_and_table(["--quick", FSYNC_RELAXED, str(target)], tmp_path)
    assert_consistent(proc, report, table)
    assert_full_run(report, "posix")
    checks = checks_by_name(report)
    # a local disk: the mount options do not apply, reported as such
    assert checks["mount.options"]["verdict"] == "INFO"
    assert "not applicable" in checks["mount.options"]["note"]
    assert "page cache dropped" in checks["seq.read-cold"]["note"]
    assert "cached" in checks["seq.read-back"]["note"]
    assert leftovers(target) == []
    assert proc.stderr == ""     # no progress bar without a terminal


def test_json_on_stdout(tmp_path):
    proc = run(["--quick", "--only", "func", "--json", str(tmp_path)])
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stdout
    names = [c["name"] for c in report["checks"]]
    assert all(n in names for n in FUNC_CHECKS)
    assert not any(n.startswith(("seq.", "mail.")) for n in names)
    assert leftovers(tmp_path) == []


def test_threshold_override_turns_fail(tmp_path):
    proc, report, table = run_json_and_table(
        ["--quick", "--only", "seq", "--threshold", "seq-write-s=0.001", str(tmp_path)], tmp_path)
    assert_consistent(proc, report, table)
    assert table["seq.write"] == "FAIL"
    assert proc.returncode == 1
    assert "0.001 s per 256 MiB" in checks_by_name(report)["seq.write"]["threshold"]


def test_bad_arguments_exit_2(tmp_path):
    for args in (["--threshold", "no-such=1", str(tmp_path)],
                 ["--threshold", "seq-write-s=-1", str(tmp_path)],
                 ["--levels", "0", str(tmp_path)], ["--scratch-name", "../x", str(tmp_path)], []):
        proc = run(args)
        assert proc.returncode == 2, args
        assert proc.stderr.startswith("mailfleet-nasbench: ") and proc.stderr.count("\n") == 1
    assert leftovers(tmp_path) == []


def test_size_option(tmp_path):
    proc, report, _ = run_json_and_table(["--only", "seq", "--size", "4M", str(tmp_path)], tmp_path)
    assert "4 MiB in" in checks_by_name(report)["seq.write"]["figure"]


def test_refuses_non_empty_scratch(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "precious").write_text("keep me")
    proc = run(["--quick", "--scratch-name", "busy", str(tmp_path)])
    assert proc.returncode == 2
    assert "not empty" in proc.stderr
    assert (busy / "precious").read_text() == "keep me"


def test_missing_target(tmp_path):
    proc = run(["--quick", str(tmp_path / "nope")])
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def scratch_has_deliveries(root):
    for name in os.listdir(root):
        new = os.path.join(root, name, "mail", "Maildir", "new")
        if os.path.isdir(new) and os.listdir(new):
            return True
    return False


def test_sigint_mid_run_cleans_up(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    proc = subprocess.Popen([NASBENCH, "--quick", "--level-time", "30", "--json", str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=SAN_ENV)
    try:
        wait_for(lambda: scratch_has_deliveries(str(target)), 60, "the mail workload")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not any(m in err for m in SAN_MARKERS), err
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "interrupted" in err
    report = json.loads(out)
    assert report["interrupted"] is True
    assert checks_by_name(report)["target.cleanup"]["verdict"] == "PASS"
    assert leftovers(target) == []


def test_mount_options_checked_against_recommended_set(tmp_path):
    target = tmp_path / "mnt"
    target.mkdir()
    mountinfo = tmp_path / "mountinfo"
    bad = ("rw,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,soft,proto=tcp,timeo=100,"
           "retrans=2,sec=sys,local_lock=none,addr=10.0.0.2")
    mountinfo.write_text("26 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
                         "40 26 0:50 / %s rw,relatime shared:1 - nfs4 nas:/mail %s\n" % (target, bad))
    proc, report, table = run_json_and_table(
        ["--only", "mount", "--mountinfo", str(mountinfo), str(target)], tmp_path)
    assert_consistent(proc, report, table)
    checks = checks_by_name(report)
    assert checks["mount.soft"]["verdict"] == "FAIL" and "silently" in checks["mount.soft"]["note"]
    assert checks["mount.hard"]["verdict"] == "FAIL"
    assert checks["mount.timeo"]["verdict"] == "WARN"
    assert checks["mount.noatime"]["verdict"] == "WARN"
    assert checks["mount.lookupcache"]["verdict"] == "WARN"
    assert checks["mount.vers"]["verdict"] == "PASS"
    assert proc.returncode == 1

    # the fstab example in packaging/ passes every rule
    with open(os.path.join(ROOT, "packaging", "nas-mail.fstab")) as f:
        line = [l for l in f if l.strip() and not l.startswith("#")][0]
    opts = line.split()[3]
    good = opts.replace("actimeo=3", "acregmin=3,acregmax=3,acdirmin=3,acdirmax=3")
    good = good.replace("lookupcache=positive", "lookupcache=pos")
    mountinfo.write_text("40 26 0:50 / %s rw,noatime,nodiratime - nfs4 nas:/mail rw,%s\n"
                         % (target, good))
    proc, report, table = run_json_and_table(
        ["--only", "mount", "--mountinfo", str(mountinfo), str(target)], tmp_path)
    mount_rows = [c for c in report["checks"] if c["name"].startswith("mount.")
                  and c["name"] != "mount.options"]
    assert len(mount_rows) >= 10
    assert all(c["verdict"] == "PASS" for c in mount_rows), mount_rows
    assert proc.returncode == 0


def test_progress_bar_only_on_a_terminal(tmp_path):
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([NASBENCH, "--quick", "--only", "seq", str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=slave, env=SAN_ENV, timeout=60)
        os.close(slave)
        slave = None
        seen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    assert b"\r" in seen and b"%" in seen and b"sequential write" in seen
    assert b"\r" not in proc.stdout and b"sequential write" not in proc.stdout


def test_provisioning_calculator():
    proc = run(["--users", "1000", "--quota", "2G", "--daily-mails", "40", "--avg-size", "75K",
                "--archive-years", "3", "--json"])
    assert proc.returncode == 0, proc.stderr
    checks = checks_by_name(json.loads(proc.stdout))
    store = checks["provision.mail-store"]["value"]
    year = checks["provision.archive-per-year"]["value"]
    assert store == pytest.approx(1000 * 2 * 2**30 * 1.2, rel=1e-4)
    assert year == pytest.approx(1000 * 40 * 75 * 1024 * 365 * 0.5, rel=1e-4)
    assert checks["provision.archive-total"]["value"] == pytest.approx(3 * year, rel=1e-4)
    assert checks["provision.iops"]["value"] == pytest.approx(200, rel=1e-4)
    assert "system volume 390" in checks["provision.iops"]["figure"]
    table = run(["--users", "1000", "--quota", "2G", "--daily-mails", "40", "--avg-size", "75K"])
    assert "2.3 TiB" in table.stdout


# ------------------------------------------------------------- private mounts

def test_read_only_target(tmp_path):
    target = tmp_path / "ro"
    target.mkdir()
    out = tmp_path / "report.json"
    proc = in_private_mounts("mount --bind -o ro {t} {t}\n{nb} --quick --json-out {o} {t}"
                             .format(t=target, nb=NASBENCH, o=out))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("mailfleet-nasbench: ") and "read-only" in last
    with open(out) as f:
        report = json.load(f)
    assert checks_by_name(report)["target.writable"]["verdict"] == "FAIL"
    assert parse_table(proc.stdout)["target.writable"] == "FAIL"
    assert leftovers(target) == []


def test_full_target(tmp_path):
    target = tmp_path / "full"
    target.mkdir()
    proc = in_private_mounts(
        "mount -t tmpfs -o size=2m tmpfs {t}\n"
        "dd if=/dev/zero of={t}/fill bs=64k 2>/dev/null || true\n"
        "rc=0; {nb} --quick {t} || rc=$?\n"
        "ls -A {t}; exit $rc".format(t=target, nb=NASBENCH))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    table = parse_table(proc.stdout)
    assert table["target.free-space"] == "FAIL"
    assert "not enough free space" in proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "fill"     # nothing else left


def test_target_running_out_of_inodes_mid_run(tmp_path):
    """Free bytes pass the pre-check; the file creates then hit ENOSPC."""
    target = tmp_path / "inodes"
    target.mkdir()
    proc = in_private_mounts(
        "mount -t tmpfs -o size=200m,nr_inodes=60 tmpfs {t}\n"
        "rc=0; {nb} --quick {t} || rc=$?\n"
        "echo left:$(ls -A {t}); exit $rc".format(t=target, nb=NASBENCH))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "No space left on device" in proc.stderr
    table = parse_table(proc.stdout)
    assert "FAIL" in table.values()
    assert table["target.cleanup"] == "PASS"
    assert proc.stdout.strip().splitlines()[-1] == "left:"


# ------------------------------------------------------------- NFS (libnfs + ganesha)

def test_nfs_every_check_runs(nfs_url, tmp_path):
    proc, report, table = run_json_and_table(["--quick", FSYNC_RELAXED, nfs_url], tmp_path)
    assert_consistent(proc, report, table)
    assert_full_run(report, "nfs")
    checks = checks_by_name(report)
    assert checks["mount.options"]["verdict"] == "INFO"
    assert "libnfs" in checks["mount.options"]["figure"]
    assert "no client cache" in checks["seq.read-cold"]["note"]


def test_nfs_unreachable_server():
    url = "nfs://127.0.0.1/tmp?nfsport=%d&mountport=%d&version=3" % (DEAD_PORT, DEAD_PORT - 1)
    proc = run(["--quick", url], timeout=60)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("mailfleet-nasbench: nfs://127.0.0.1/")
    assert parse_table(proc.stdout) == {"target.reachable": "FAIL"}


def test_nfs_sigterm_cleans_up(nfs_url, nfs):
    proc = subprocess.Popen([NASBENCH, "--quick", "--level-time", "30", nfs_url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=SAN_ENV)
    try:
        wait_for(lambda: scratch_has_deliveries(nfs.export_dir), 60, "the mail workload")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not any(m in err for m in SAN_MARKERS), err
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "INTERRUPTED" in out
    # nfs_url's teardown asserts the export is empty


def mail_rows(report):
    return {c["name"]: c for c in report["checks"] if re.match(r"mail\.c\d+\.", c["name"])}


def test_slow_nas_is_told_from_a_fast_one(nfs, tmp_path):
    args = ["--quick", "--only", "mail", "--levels", "1,2", "--level-time", "1",
            "--readdir-entries", "20", "--messages", "8"] + SLOW_THRESHOLDS
    # the direct run must pass every latency check; one scheduling hiccup
    # on a loaded machine can push a p99 over its threshold, so it gets
    # three tries (a NAS that is really slow fails all three)
    for attempt in range(3):
        proc, fast, table = run_json_and_table(args + [nfs.url()], tmp_path)
        assert_consistent(proc, fast, table)
        fast_rows = mail_rows(fast)
        assert len(fast_rows) == 10
        if all(c["verdict"] == "PASS" for c in fast_rows.values()):
            break
    assert all(c["verdict"] == "PASS" for c in fast_rows.values()), fast_rows
    assert proc.returncode == 0

    slow_url = nfs.url().replace("nfsport=%d" % NFS_PORT, "nfsport=%d" % RELAY_PORT)
    with nfsrelay.start(RELAY_PORT, NFS_PORT, RELAY_DELAY_MS):
        proc, slow, table = run_json_and_table(args + [slow_url], tmp_path, timeout=180)
    assert_consistent(proc, slow, table)
    slow_rows = mail_rows(slow)
    assert slow_rows["mail.c1.deliver"]["verdict"] == "FAIL"
    assert sum(c["verdict"] in ("WARN", "FAIL") for c in slow_rows.values()) >= 8, slow_rows
    for name, row in slow_rows.items():
        assert row["count"] > 0, row
        assert row["p50_ms"] > fast_rows[name]["p50_ms"] + RELAY_DELAY_MS, (row, fast_rows[name])
    assert checks_by_name(slow)["capacity.mail-store-users"]["verdict"] == "FAIL"
    assert proc.returncode == 1
    assert leftovers(nfs.export_dir) == []


def test_man_page_and_help_list_every_threshold():
    helptext = run(["--help"]).stdout
    names = re.findall(r"^  ([a-z0-9-]+-(?:s|ms))\s", helptext, re.M)
    assert len(names) == 10, helptext
    with open(os.path.join(ROOT, "packaging", "mailfleet-nasbench.1")) as f:
        man = f.read()
    for name in names:
        assert "\n%s\t" % name in man, name
    for opt in re.findall(r"^  (--[a-z-]+)", helptext, re.M):
        assert "\\-\\-" + opt[2:] in man, opt
