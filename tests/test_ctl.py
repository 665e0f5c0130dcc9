"""test_ctl.py: mailfleetctl, the directory admin CLI, driven as an operator
would, in a temporary directory: every command, bad input refused with exit
status 1 (usage errors 2) and nothing changed on disk, passwd-file import with
SHA512-CRYPT and BLF-CRYPT hashes, and passwords never taken from argv.
Uses build/asan/mailfleetctl (env MF_BUILD picks another build)."""
import os
import subprocess
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # libxcrypt underneath; only to make test hashes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("MF_BUILD", "build/asan")
CTL = os.path.join(ROOT, BUILD, "mailfleetctl")
ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
           UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1", LSAN_OPTIONS="exitcode=23")


def run(args, stdin=None, cwd=None):
    proc = subprocess.run([CTL] + [str(a) for a in args], input=stdin, capture_output=True,
                          text=True, env=ENV, timeout=120, cwd=cwd)
    out = proc.stdout + proc.stderr
    for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error"):
        assert marker not in out, out
    return proc


class Dir:
    """A directory folder and mailfleetctl bound to it."""

    def __init__(self, path):
        self.path = str(path)

    def __call__(self, *args, stdin=None, rc=0):
        proc = run(["--directory", self.path] + list(args), stdin=stdin)
        assert proc.returncode == rc, (args, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def lines(self, *args):
        return self(*args).stdout.split()

    def files(self):
        """The folder's persistent bytes, to prove a refused command changed nothing."""
        state = {}
        for name in ("journal", "snapshot"):
            p = os.path.join(self.path, name)
            if os.path.exists(p):
                with open(p, "rb") as f:
                    state[name] = f.read()
        return state

    def refused(self, *args, stdin=None, rc=1, expect=None):
        before = self.files()
        proc = self(*args, stdin=stdin, rc=rc)
        assert self.files() == before, args
        if expect is not None:
            assert expect in proc.stderr, (expect, proc.stderr)
        return proc

    def show(self, kind, name):
        out = self(kind, "show", name).stdout
        return dict(line.split(": ", 1) for line in out.splitlines())


@pytest.fixture
def d(tmp_path):
    ctl = Dir(tmp_path / "directory")
    ctl("domain", "add", "example.test")
    return ctl


def test_help_and_usage_errors(tmp_path):
    proc = run(["--help"])
    assert proc.returncode == 0
    for word in ("domain add", "user passwd", "alias show", "import-passwd-file"):
        assert word in proc.stdout
    assert run([]).returncode == 2
    ctl = Dir(tmp_path / "dir")
    ctl("frobnicate", rc=2)
    ctl("domain", rc=2)
    ctl("domain", "explode", "x.test", rc=2)
    ctl("domain", "add", rc=2)
    ctl("domain", "add", "a.test", "b.test", rc=2)
    ctl("domain", "add", "a.test", "--quota", "5", rc=2)   # option not for this command
    ctl("user", "add", "a@a.test", "--quota", rc=2)       # option without value
    ctl("user", "add", "a@a.test", "--bogus", rc=2)
    assert run(["--directory", str(tmp_path / "x"), "--config", "y", "domain", "list"]).returncode == 2
    assert not os.path.exists(os.path.join(tmp_path, "dir", "journal"))


def test_domain_commands(d):
    d("domain", "add", "Other.TEST")
    assert d.lines("domain", "list") == ["example.test", "other.test"]
    d("domain", "quota", "example.test", "2G")
    info = d.show("domain", "example.test")
    assert info == {"domain": "example.test", "quota": str(2 << 30), "users": "0", "aliases": "0"}
    d("domain", "quota", "example.test", "512k")
    assert d.show("domain", "example.test")["quota"] == "524288"
    d("domain", "quota", "example.test", "0")
    assert d.show("domain", "example.test")["quota"] == "unlimited"
    d.refused("domain", "quota", "example.test", "12X", expect="invalid size")
    d.refused("domain", "quota", "example.test", "99999999999999999999T", expect="invalid size")
    d.refused("domain", "quota", "nowhere.test", "1M", expect="unknown domain")
    d.refused("domain", "add", "example.test", expect="already exists")
    d.refused("domain", "add", "bad_domain.test", expect="invalid domain")
    d.refused("domain", "add", "-x.test", expect="invalid domain")
    d.refused("domain", "add", "../etc", expect="invalid domain")
    d.refused("domain", "show", "nowhere.test", expect="unknown domain")
    d.refused("domain", "del", "nowhere.test", expect="unknown domain")
    d("user", "add", "u@other.test", stdin="pw\n")
    d.refused("domain", "del", "other.test", expect="still has 1 users")
    d("user", "del", "u@other.test")
    d("domain", "del", "other.test")
    assert d.lines("domain", "list") == ["example.test"]


def test_user_commands(d):
    d("user", "add", "Alice@Example.test", "--quota", "10M", stdin="s3cret\n")
    d("user", "add", "bob@example.test", "--no-imap", stdin="pw\n")
    d("user", "add", "carol@example.test", "--no-pop3", "--scheme", "BLF-CRYPT", stdin="pw\n")
    info = d.show("user", "alice@example.test")
    assert info["address"] == "alice@example.test"
    assert info["quota"] == str(10 << 20)
    assert (info["imap"], info["pop3"], info["archive"]) == ("on", "on", "none")
    assert info["password-scheme"] == "SHA512-CRYPT"
    assert (d.show("user", "bob@example.test")["imap"], d.show("user", "bob@example.test")["pop3"]) == ("off", "on")
    carol = d.show("user", "carol@example.test")
    assert (carol["imap"], carol["pop3"], carol["password-scheme"]) == ("on", "off", "BLF-CRYPT")
    assert d.lines("user", "list") == ["alice@example.test", "bob@example.test", "carol@example.test"]
    assert d.lines("user", "list", "example.test") == d.lines("user", "list")
    d.refused("user", "list", "nowhere.test", expect="unknown domain")

    d("user", "auth", "alice@example.test", stdin="s3cret\n")
    d.refused("user", "auth", "alice@example.test", stdin="wrong\n", expect="authentication failed")
    d.refused("user", "auth", "nobody@example.test", stdin="s3cret\n", expect="authentication failed")
    d("user", "passwd", "alice@example.test", "--scheme", "YESCRYPT", stdin="n3w\n")
    assert d.show("user", "alice@example.test")["password-scheme"] == "YESCRYPT"
    d("user", "auth", "alice@example.test", stdin="n3w\n")
    d.refused("user", "auth", "alice@example.test", stdin="s3cret\n")
    hash_ = "{SHA512-CRYPT}" + crypt.crypt("hashed", crypt.mksalt(crypt.METHOD_SHA512))
    d("user", "passwd", "alice@example.test", "--hash", hash_)
    d("user", "auth", "alice@example.test", stdin="hashed\n")

    d("user", "quota", "alice@example.test", "1G")
    assert d.show("user", "alice@example.test")["quota"] == str(1 << 30)
    d("user", "access", "alice@example.test", "imap=off")
    info = d.show("user", "alice@example.test")
    assert (info["imap"], info["pop3"]) == ("off", "on")
    d("user", "access", "alice@example.test", "pop3=off", "imap=on")
    info = d.show("user", "alice@example.test")
    assert (info["imap"], info["pop3"]) == ("on", "off")
    d("user", "archive", "alice@example.test", "daily:365")
    assert d.show("user", "alice@example.test")["archive"] == "daily:365"
    d("user", "archive", "alice@example.test", "")
    assert d.show("user", "alice@example.test")["archive"] == "none"
    d("user", "del", "bob@example.test")
    assert d.lines("user", "list") == ["alice@example.test", "carol@example.test"]
    assert d.show("domain", "example.test")["users"] == "2"


def test_user_errors_change_nothing(d):
    d("user", "add", "alice@example.test", stdin="pw\n")
    d.refused("user", "add", "alice@example.test", stdin="pw\n", expect="already exists")
    d.refused("user", "add", "ALICE@example.test", stdin="pw\n", expect="already exists")
    d.refused("user", "add", "x@nowhere.test", stdin="pw\n", expect="unknown domain")
    d.refused("user", "add", "x+y@example.test", stdin="pw\n", expect="'+'")
    d.refused("user", "add", "x..y@example.test", stdin="pw\n", expect="invalid user address")
    d.refused("user", "add", "../x@example.test", stdin="pw\n", expect="invalid user address")
    d.refused("user", "add", "a/b@example.test", stdin="pw\n", expect="invalid user address")
    d.refused("user", "add", "example.test", stdin="pw\n", expect="local@domain")
    d.refused("user", "add", "x@example.test", stdin="", expect="no password")
    d.refused("user", "add", "x@example.test", stdin="\n", expect="no password")
    d.refused("user", "add", "x@example.test", "--quota", "lots", stdin="pw\n", expect="invalid --quota")
    d.refused("user", "add", "x@example.test", "--scheme", "PLAIN", stdin="pw\n", expect="cannot hash")
    for weak in ("{PLAIN}pw", "{CLEARTEXT}pw", "{MD5}$1$abcdefgh$abcdefghijklmnopqrstuv",
                 "{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69", "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="):
        scheme = weak[:weak.index("}") + 1]
        d.refused("user", "add", "x@example.test", "--hash", weak, expect=scheme)
    d.refused("user", "add", "x@example.test", "--hash", "{CRYPT}abJnggxhB/yWI", expect="DES")
    d.refused("user", "add", "x@example.test", "--hash", "{CRYPT}$1$abcdefgh$abcdefghijklmnopqrstuv",
              expect="MD5")
    d.refused("user", "add", "x@example.test", "--hash", "{SHA512-CRYPT}$6$x", "--scheme", "BLF-CRYPT", rc=2)
    for cmd in (["del"], ["show"], ["quota", "1M"], ["access", "imap=off"], ["archive", "x"]):
        d.refused("user", cmd[0], "ghost@example.test", *cmd[1:], expect="unknown user")
    d.refused("user", "passwd", "ghost@example.test", stdin="pw\n", expect="unknown user")
    d.refused("user", "access", "alice@example.test", "imap=maybe", expect="invalid switch")
    d.refused("user", "access", "alice@example.test", "smtp=on", expect="invalid switch")
    d.refused("user", "archive", "alice@example.test", "no spaces", expect="archive policy")
    d.refused("user", "quota", "alice@example.test", "-5", expect="invalid size")
    assert d.lines("user", "list") == ["alice@example.test"]


def test_password_never_in_argv(d):
    d.refused("user", "add", "alice@example.test", "hunter2", rc=2, expect="too many arguments")
    d.refused("user", "add", "alice@example.test", "--password", "hunter2", rc=2, expect="never")
    d.refused("user", "add", "alice@example.test", "--password=hunter2", rc=2, expect="never")
    d.refused("user", "add", "alice@example.test", "-p", "hunter2", rc=2, expect="never")
    d("user", "add", "alice@example.test", stdin="hunter2\nsecond line ignored\n")
    d.refused("user", "passwd", "alice@example.test", "hunter3", rc=2)
    d.refused("user", "auth", "alice@example.test", "hunter2", rc=2)
    d("user", "auth", "alice@example.test", stdin="hunter2\n")
    # only the hash is stored
    for blob in d.files().values():
        assert b"hunter2" not in blob
        assert b"{SHA512-CRYPT}$6$" in blob
    mode = os.stat(os.path.join(d.path, "journal")).st_mode & 0o777
    assert mode & 0o077 == 0


def test_alias_commands(d):
    d("domain", "add", "lists.test")
    for u in ("alice", "bob"):
        d("user", "add", "%s@example.test" % u, stdin="pw\n")
    d("alias", "add", "team@example.test", "alice@example.test")
    d("alias", "add", "team@example.test", "BOB@example.test")
    d("alias", "add", "all@lists.test", "team@example.test")
    assert d.lines("alias", "show", "team@example.test") == ["alice@example.test", "bob@example.test"]
    assert d.lines("alias", "list") == ["all@lists.test", "team@example.test"]
    assert d.lines("alias", "list", "lists.test") == ["all@lists.test"]
    d.refused("alias", "list", "nowhere.test", expect="unknown domain")
    d.refused("alias", "add", "team@example.test", "bob@example.test", expect="already a member")
    d.refused("alias", "add", "team@example.test", "ghost@example.test", expect="neither a user nor an alias")
    d.refused("alias", "add", "alice@example.test", "bob@example.test", expect="already exists as a user")
    d.refused("alias", "add", "x@nowhere.test", "bob@example.test", expect="unknown domain")
    d.refused("alias", "add", "team@example.test", "team@example.test", expect="own member")
    d.refused("alias", "del", "team@example.test", "carol@example.test", expect="not a member")
    d.refused("alias", "del", "ghost@example.test", "bob@example.test", expect="unknown alias")
    d.refused("alias", "show", "ghost@example.test", expect="unknown alias")
    d.refused("user", "add", "team@example.test", stdin="pw\n", expect="already exists as an alias")
    d.refused("domain", "del", "lists.test", expect="aliases")
    d("alias", "del", "team@example.test", "alice@example.test")
    assert d.lines("alias", "show", "team@example.test") == ["bob@example.test"]
    d("user", "del", "bob@example.test")   # leaves team empty: it goes, and so does all@
    assert d.lines("alias", "list") == []
    d("domain", "del", "lists.test")


def sha512(pw):
    return "{SHA512-CRYPT}" + crypt.crypt(pw, crypt.mksalt(crypt.METHOD_SHA512))


def blf(pw):
    # Dovecot writes $2y$; libxcrypt verifies $2y$ and $2b$ alike
    return "{BLF-CRYPT}" + crypt.crypt(pw, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=32)).replace("$2b$", "$2y$", 1)


def test_import_passwd_file(d, tmp_path):
    path = tmp_path / "users.passwd"
    path.write_text(
        "# Dovecot passwd-file\n"
        "\n"
        "ann@example.test:%s:1000:1000::/home/ann::userdb_quota_rule=*:storage=2M\n"
        "ben@new.test:%s:::::\n"
        "Cy@new.test:%s\n"
        "dee@example.test:%s::::::userdb_quota_rule=*:bytes=12345 nodelay\n"
        % (sha512("ann-pw"), blf("ben-pw"), sha512("cy-pw"), blf("dee-pw")))
    d.refused("import-passwd-file", path, expect="unknown domain 'new.test'")
    assert d.lines("user", "list") == []
    proc = d("import-passwd-file", path, "--domain-create")
    assert "imported 4 users, created 1 domains" in proc.stdout
    assert d.lines("domain", "list") == ["example.test", "new.test"]
    assert d.lines("user", "list") == ["ann@example.test", "ben@new.test", "cy@new.test", "dee@example.test"]
    assert d.show("user", "ann@example.test")["quota"] == str(2 << 20)
    assert d.show("user", "dee@example.test")["quota"] == "12345"
    assert d.show("user", "ben@new.test")["password-scheme"] == "BLF-CRYPT"
    for user, pw in (("ann@example.test", "ann-pw"), ("ben@new.test", "ben-pw"),
                     ("cy@new.test", "cy-pw"), ("dee@example.test", "dee-pw")):
        d("user", "auth", user, stdin=pw + "\n")
        d.refused("user", "auth", user, stdin="not-" + pw + "\n")
    # importing again: every user exists already, nothing changes
    proc = d.refused("import-passwd-file", path, "--domain-create")
    assert proc.stderr.count("already exists") == 4


def test_import_reports_every_bad_line(d, tmp_path):
    path = tmp_path / "bad.passwd"
    path.write_text(
        "ok1@example.test:%s\n"                          # 1 fine
        "weak@example.test:{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69\n"  # 2
        "no-hash-field-at-all@example.test\n"            # 3
        "empty@example.test::1000:1000\n"                # 4
        "bad..addr@example.test:%s\n"                    # 5
        "OK1@example.test:%s\n"                          # 6 duplicate of 1
        "# comment\n"                                    # 7
        "noquota@example.test:%s::::::userdb_quota_rule=*:storage=lots\n"  # 8
        "bare:%s\n"                                      # 9 no domain
        "des@example.test:{CRYPT}abJnggxhB/yWI\n"        # 10
        % (sha512("a"), sha512("b"), sha512("c"), sha512("d"), sha512("e")))
    proc = d.refused("import-passwd-file", path)
    err = proc.stderr
    for line, text in ((2, "{PLAIN-MD5}"), (3, "expected user@domain"), (4, "no password hash"),
                       (5, "invalid address"), (6, "duplicate user ok1@example.test (first on line 1)"),
                       (8, "invalid quota"), (9, "no @domain"), (10, "DES")):
        assert any("bad.passwd:%d: " % line in row and text in row
                   for row in err.splitlines()), (line, text, err)
    assert "bad.passwd:1:" not in err and "bad.passwd:7:" not in err
    assert "nothing imported" in err
    assert d.lines("user", "list") == []
    d.refused("import-passwd-file", tmp_path / "missing.passwd", expect="cannot open")
    # --domain gives bare names their domain
    ok = tmp_path / "bare.passwd"
    ok.write_text("bare:%s\n" % sha512("e"))
    d("import-passwd-file", ok, "--domain", "example.test")
    d("user", "auth", "bare@example.test", stdin="e\n")


def test_config_file_and_default_directory(tmp_path):
    folder = tmp_path / "from-config"
    conf = tmp_path / "mailfleet.conf"
    conf.write_text('directory: { path = "%s"; };\n' % folder)
    assert run(["--config", conf, "domain", "add", "c.test"]).returncode == 0
    assert os.path.exists(folder / "journal")
    assert run(["--directory", folder, "domain", "list"]).stdout.split() == ["c.test"]
    bad = tmp_path / "bad.conf"
    bad.write_text("directory: { path = 5; };\n")
    proc = run(["--config", bad, "domain", "list"])
    assert proc.returncode == 1 and "bad.conf:1" in proc.stderr
    assert run(["--config", tmp_path / "none.conf", "domain", "list"]).returncode == 1
    # without options: ./var/directory, the daemon's embedded default
    assert run(["domain", "add", "d.test"], cwd=tmp_path).returncode == 0
    assert os.path.exists(tmp_path / "var" / "directory" / "journal")


def test_concurrent_writers(d):
    """Two mailfleetctl processes adding users at once: the folder lock keeps
    every change; each process catches up before it writes."""
    procs = []
    for p in range(2):
        script = " && ".join(
            "echo pw | %s --directory %s user add u%d-%d@example.test" % (CTL, d.path, p, i)
            for i in range(10))
        procs.append(subprocess.Popen(["sh", "-c", script], env=ENV,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    users = d.lines("user", "list")
    assert len(users) == 20
    assert d.show("domain", "example.test")["users"] == "20"
