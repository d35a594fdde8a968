"""Faults a user meets: a Lava worker killed mid-run, a full disk, an interrupted job. Each is
reported in one line, leaves no half-written artifact, and the next run picks up cleanly."""

import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

from spikeport.targets.lava.runner import run_lava
from spikeport.toolchain.errors import SpikeportError, TargetError
from spikeport.toolchain.files import atomic_path, write_atomic
from spikeport.toolchain.host.encoding import encode
from spikeport.toolchain.passes.lowering import lower


@pytest.mark.lava
def test_a_lava_worker_killed_mid_run_is_reported_and_the_next_run_is_clean(mlp, monkeypatch, lava_processes):
    q = mlp.q(16)
    x = np.repeat(mlp.data.x_test[:1], 150, axis=0)  # about 2,500 streamed steps
    processes = lava_processes(kill_after=4.0)
    with pytest.raises(TargetError, match=r"the Lava worker exited with status -9"):
        run_lava(lower(q), encode(q, x), chunk=150)
    monkeypatch.undo()
    assert processes.leftovers() == []
    again = run_lava(lower(q), encode(q, x[:2]))  # the next run works
    assert again.final.shape == (2, 10)


def _limited(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_leaves_no_half_written_report_and_the_next_run_succeeds(tmp_path):
    """The report's HTML (plots inline) does not fit in 64 KiB: the write fails with one line, no
    partial file stays, and a run with room writes both files."""
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "spikeport.cli", "report", "mlp_digits", "--T", "2", "--samples", "32",
           "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=_limited(64 << 10), timeout=600)
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spikeport: error: cannot write") and "quantization.html" in err[0]
    assert not (out / "quantization.html").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]  # nothing half-written
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert (out / "quantization.html").read_text().rstrip().endswith("</html>")


def test_an_interrupted_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "model.nir"
    write_atomic(path, b"previous")
    with pytest.raises(KeyboardInterrupt), atomic_path(path) as tmp:
        tmp.write_bytes(b"half of the new")
        raise KeyboardInterrupt
    assert path.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["model.nir"]
    with pytest.raises(SpikeportError, match="cannot write"):
        write_atomic(tmp_path / "model.nir" / "inside-a-file", "x")


def test_written_files_get_the_permissions_of_an_ordinary_write(tmp_path):
    """The temporary file is private (0600); the artifact must not stay so (a shared report or
    checkpoint unreadable by the rest of the team)."""
    umask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "report.json", "{}")
    finally:
        os.umask(umask)
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o644


def test_archive_members_outside_their_folder_are_refused(tmp_path):
    """``make lava-env`` unpacks lava-dl's traces from its wheel; a member that climbs out of the
    folder (or is absolute) stops the unpacking before anything is written."""
    import zipfile

    from spikeport import lava_env as unpack_wheel

    good = tmp_path / "good.whl"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("pkg/data/a.net", b"a")
        z.writestr("pkg/data/sub/b.npy", b"b")
        z.writestr("pkg/other.py", b"c")
    assert unpack_wheel.unpack(str(good), "pkg/data/", str(tmp_path / "out")) == 2
    assert (tmp_path / "out" / "sub" / "b.npy").read_bytes() == b"b"
    for evil in ("pkg/data/../../escape.txt", "pkg/data//etc/passwd"):
        bad = tmp_path / "bad.whl"
        with zipfile.ZipFile(bad, "w") as z:
            z.writestr("pkg/data/a.net", b"a")
            z.writestr(evil, b"x")
        with pytest.raises(ValueError, match="unsafe path"):
            unpack_wheel.unpack(str(bad), "pkg/data/", str(tmp_path / "out2"))
        assert not (tmp_path / "out2").exists() and not (tmp_path.parent / "escape.txt").exists()
