"""Short libFuzzer runs of every fuzz target (tests/fuzz/fuzz-*.c, built by
`make fuzz` into build/fuzz/): each starts from its seed corpus and must find
no crash, leak or undefined behaviour within a bounded number of runs.
Long fuzzing campaigns are run by hand: build/fuzz/fuzz-NAME CORPUS_DIR."""
import glob
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = sorted(os.path.basename(p)[:-2] for p in glob.glob(os.path.join(ROOT, "tests/fuzz/fuzz-*.c")))
RUNS = os.environ.get("MF_FUZZ_RUNS", "20000")
# A fixed seed makes `make test` repeatable: a failure here is the same failure on
# every run. Exploring is for campaigns (MF_FUZZ_SEED=0 picks a random seed).
SEED = os.environ.get("MF_FUZZ_SEED", "1")


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target(target, tmp_path):
    binary = os.path.join(ROOT, "build/fuzz", target)
    assert os.path.exists(binary), f"{binary} not built (make fuzz)"
    name = target[len("fuzz-"):]
    args = [binary, f"-runs={RUNS}", f"-seed={SEED}", "-max_total_time=60", "-max_len=65536",
            f"-artifact_prefix={tmp_path}/"]
    dictionary = os.path.join(ROOT, "tests/fuzz", name + ".dict")
    if os.path.exists(dictionary):
        args.append(f"-dict={dictionary}")
    work = tmp_path / "corpus"
    work.mkdir()
    args.append(str(work))
    seeds = os.path.join(ROOT, "tests/fuzz/corpus", name)
    if os.path.isdir(seeds):
        args.append(seeds)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
    tail = proc.stderr[-6000:]
    for artifact in list(tmp_path.glob("crash-*")) + list(tmp_path.glob("leak-*")):
        # keep the input where a later look can find it, and show it here
        keep = os.path.join(ROOT, "build/fuzz-artifacts", target)
        os.makedirs(keep, exist_ok=True)
        data = artifact.read_bytes()
        open(os.path.join(keep, artifact.name), "wb").write(data)
        tail += f"\n{artifact.name} ({len(data)} bytes, kept in {keep}): {data[:4096].hex()}"
    assert proc.returncode == 0, tail
    assert "Done" in proc.stderr, tail
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("leak-*")), tail
