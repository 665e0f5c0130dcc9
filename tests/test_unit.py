"""Runs every C unit-test binary (tests/unit/test-*.c) built by `make test`
under AddressSanitizer and UndefinedBehaviorSanitizer."""
import glob
import os
import subprocess

import pytest

BUILD = os.environ.get("MF_BUILD", "build/asan")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = sorted(glob.glob(os.path.join(ROOT, "tests/unit/test-*.c")))


@pytest.mark.parametrize("name", [os.path.basename(s)[:-2] for s in SOURCES])
def test_unit_binary(name, tmp_path):
    binary = os.path.join(ROOT, BUILD, "tests", name)
    assert os.path.exists(binary), f"{binary} not built (run make test)"
    env = dict(os.environ, TMPDIR=str(tmp_path),
               ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    proc = subprocess.run([binary], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]
    assert "AddressSanitizer" not in output and "runtime error" not in output, output[-8000:]
