"""The store over libnfs against a real NFS server: nfs-ganesha (VFS backend)
started on loopback by tests/nfs/ganesha.py. Drives tests/tools/store-tool
(built by `make test` into $MF_BUILD/tools/) with NFSv3 and NFSv4 URLs and
checks the result both through the store and directly in the exported
directory (what another maildir reader would see)."""
import os
import re
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("MF_BUILD", "build/asan")
TOOL = os.path.join(ROOT, BUILD, "tools", "store-tool")
sys.path.insert(0, os.path.join(ROOT, "tests", "nfs"))
import ganesha  # noqa: E402

NFS_PORT = 25410
MNT_PORT = 25411


@pytest.fixture(scope="module")
def nfs():
    assert os.path.exists(TOOL), f"{TOOL} not built (run make test)"
    base = tempfile.mkdtemp(prefix="mf-nfs-", dir="/tmp")
    with ganesha.start(os.path.join(base, "export"), NFS_PORT, MNT_PORT,
                       os.path.join(base, "work")) as g:
        yield g
    subprocess.run(["rm", "-rf", base], check=False)


def run_tool(*args, timeout=300, binary=False):
    # libnfs 4.0.0 leaks its default NFSv4 client name when io-nfs sets a
    # unique one (see store/io-nfs.c); nothing else is suppressed.
    supp = os.path.join(tempfile.gettempdir(), "mf-lsan-libnfs.supp")
    with open(supp, "w") as f:
        f.write("leak:nfs4_set_client_name\n")
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               LSAN_OPTIONS="suppressions=" + supp,
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    proc = subprocess.run([TOOL, *args], capture_output=True, text=not binary,
                          timeout=timeout, env=env)
    stderr = proc.stderr.decode(errors="replace") if binary else proc.stderr
    out = stderr if binary else proc.stdout + stderr
    assert "AddressSanitizer" not in stderr and "runtime error" not in stderr, out
    return proc.returncode, proc.stdout, out


def maildir(g, domain, user):
    return os.path.join(g.export_dir, domain, user, "Maildir")


@pytest.mark.parametrize("version", [3, 4])
def test_io_conformance(nfs, version):
    rc, _, out = run_tool(nfs.url(version=version), "conformance", f"conf-v{version}")
    assert rc == 0, out
    assert re.search(r"\d+ checks, 0 failed", out), out


@pytest.mark.parametrize("version,size", [(3, 12000), (3, 1_000_000), (4, 9000)])
def test_deliver_and_read_back(nfs, version, size):
    user = f"user-v{version}-{size}"
    rc, stdout, out = run_tool("--threads", "4", nfs.url(version=version),
                               "deliver", "example.com", user, "40", str(size))
    assert rc == 0, out
    assert stdout.strip() == "delivered 40 failed 0"
    md = maildir(nfs, "example.com", user)
    names = os.listdir(os.path.join(md, "new"))
    assert len(names) == 40
    assert os.listdir(os.path.join(md, "tmp")) == []
    for name in names:
        assert re.search(rf",S={size}(,W=\d+)?$", name), name
        assert os.path.getsize(os.path.join(md, "new", name)) == size
    rc, stdout, out = run_tool(nfs.url(version=version), "usage", "example.com", user)
    assert rc == 0, out
    assert stdout.split() == [str(40 * size), "40"]
    rc, stdout, out = run_tool(nfs.url(version=version), "sync", "example.com", user)
    assert rc == 0, out
    assert stdout.split()[1:] == ["41", "40"]
    with open(os.path.join(md, "mailfleet-uidlist")) as f:
        lines = f.read().splitlines()
    assert sorted(line.split(" :", 1)[1] for line in lines[1:]) == sorted(names)


def test_lz4_over_nfs_read_locally(nfs):
    rc, stdout, out = run_tool("--lz4", nfs.url(), "deliver", "example.com", "zed", "5", "30000")
    assert rc == 0, out
    new = os.path.join(maildir(nfs, "example.com", "zed"), "new")
    for name in os.listdir(new):
        path = os.path.join(new, name)
        with open(path, "rb") as f:
            head = f.read(4)
        assert head == b"\x04\x22\x4d\x18"
        assert os.path.getsize(path) < 30000
        # the POSIX backend on the exported directory reads it back whole
        rel = os.path.relpath(path, nfs.export_dir)
        rc, body, out = run_tool(nfs.export_dir, "read", rel, binary=True)
        assert rc == 0, out
        assert len(body) == 30000 and body.startswith(b"Subject: store-tool ")


def test_concurrent_processes_and_uids(nfs):
    """Two processes (two NFS clients) deliver at once; nothing is lost, usage
    and UIDs agree with the files on the server."""
    url = nfs.url(version=3)
    procs = [subprocess.Popen([TOOL, "--threads", "2", url, "deliver", "example.com",
                               "shared", "60", "3000"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    syncs = []
    for _ in range(3):
        rc, stdout, out = run_tool(url, "sync", "example.com", "shared")
        if rc == 0:
            syncs.append([int(x) for x in stdout.split()])
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stdout + stderr
        assert stdout.strip() == "delivered 60 failed 0"
    md = maildir(nfs, "example.com", "shared")
    assert len(os.listdir(os.path.join(md, "new"))) == 120
    rc, stdout, out = run_tool(url, "usage", "example.com", "shared")
    assert stdout.split() == [str(120 * 3000), "120"], out
    rc, stdout, out = run_tool(url, "sync", "example.com", "shared")
    assert rc == 0, out
    validity, next_uid, count = [int(x) for x in stdout.split()]
    assert count == 120 and next_uid == 121
    for v, n, c in syncs:
        assert v == validity and n <= next_uid and c <= 120
    with open(os.path.join(md, "mailfleet-uidlist")) as f:
        lines = f.read().splitlines()
    assert lines[0].startswith(f"3 V{validity} N121 G")
    uids = [int(line.split()[0]) for line in lines[1:]]
    assert uids == list(range(1, 121))
    assert not os.path.exists(os.path.join(md, "mailfleet-uidlist.lock"))


def test_bad_url_fails_cleanly(nfs):
    bad = f"nfs://127.0.0.1/no/such/export?nfsport={NFS_PORT}&mountport={MNT_PORT}&version=3"
    rc, _, out = run_tool(bad, "usage", "example.com", "x", timeout=60)
    assert rc == 1
    assert "mount failed" in out.lower()
