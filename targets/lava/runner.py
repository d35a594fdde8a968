"""Runs a :class:`ProcessNet` in real Lava through ``worker.py`` in the Lava environment.

The worker is a separate process tree (Lava forks one OS process per Lava process). It gets a
time limit; a worker that hangs is killed with its whole process group, one that crashes has its
error (and the exception raised inside Lava, if any) reported, and the toolchain never waits
forever.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from spikeport.targets import method_kernels
from spikeport.targets.lava import runtime
from spikeport.targets.lava.environment import lava_python
from spikeport.targets.lava.package import write_package, write_samples
from spikeport.toolchain.errors import TargetError
from spikeport.toolchain.hardware import prng
from spikeport.toolchain.ir.procnet import ProcessNet
from spikeport.toolchain.ir.trace import Trace, cut_frames

RUNTIME = Path(runtime.__file__).resolve().parent
WORKER = RUNTIME / "worker.py"
RUNTIME_FILES = (WORKER, RUNTIME / "spikeport_lava.py", RUNTIME / "neuron_procs.py", RUNTIME / "recorders.py",
                 RUNTIME / "netx_import.py", Path(method_kernels.__file__), Path(prng.__file__))


def stage_runtime(folder: Path) -> Path:
    """Copy the Lava-side files into ``folder`` (a folder of their own: Lava's compiler imports
    every module next to a process class); returns the worker's path there."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in RUNTIME_FILES:
        shutil.copyfile(f, folder / f.name)
    return folder / WORKER.name


def run_process(cmd: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; on timeout kill the whole group and raise.

    Output goes to files, not pipes: Lava's forked children inherit the worker's stdout, so a pipe
    would stay open after the worker itself has exited.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            err.seek(0)
            raise TargetError(f"{what} did not finish within {timeout:g} s and was stopped (its process "
                              f"group was killed); last output: {_tail(err.read())}") from None
        finally:
            _kill_group(proc.pid)  # Lava's forked children must not outlive the worker
            if proc.returncode is None:
                proc.wait()
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())


def _kill_group(pgid: int, wait: float = 5.0) -> None:
    """SIGKILL the whole group, then wait (up to ``wait`` s) until none of it is still running:
    a killed process takes a moment to exit, and callers promise that nothing is left behind."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + wait
    while _group_running(pgid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _group_running(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still alive (zombies, already dead, do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():  # no procfs: ask the kernel whether the group still exists
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _tail(text: str, n: int = 3) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) if lines else "(none)"


class LavaRunner:
    """Streams samples through one compiled Lava network per chunk of ``chunk`` samples."""

    def __init__(self, python: str | None = None, timeout: float = 900.0, chunk: int = 64,
                 progress=None) -> None:
        self.python = python
        self.timeout = timeout
        self.chunk = chunk
        self.progress = progress

    def run(self, net: ProcessNet, currents: dict[str, np.ndarray], record: bool = False,
            sample_ids: np.ndarray | None = None, spikes_in: np.ndarray | None = None) -> Trace:
        """``spikes_in`` (steps, samples, N): spikes sent into the synapses whose source is ``"input"``,
        sample i's from the first step of its frame (networks read from netx, the fuzzer's)."""
        n = len(next(iter(currents.values()))) if currents else np.asarray(spikes_in).shape[1]
        ids = np.arange(n) if sample_ids is None else np.asarray(sample_ids)
        traces = []
        for i in range(0, n, self.chunk):
            part = {k: v[i:i + self.chunk] for k, v in currents.items()}
            ins = None if spikes_in is None else np.asarray(spikes_in)[:, i:i + self.chunk]
            traces.append(self._run_chunk(net, part, min(self.chunk, n - i), record, ids[i:i + self.chunk], ins))
            if self.progress is not None:
                self.progress(min(self.chunk, n - i))
        out = Trace.concat(traces)
        out.meta["wall_seconds"] = sum(t.meta["wall_seconds"] for t in traces)
        for key in ("lava_run_seconds", "lava_startup_seconds", "lava_run_steps"):
            out.meta[key] = sum(t.meta[key] for t in traces)
        return out

    def _run_chunk(self, net: ProcessNet, currents: dict[str, np.ndarray], n: int, record: bool,
                   sample_ids: np.ndarray, spikes_in: np.ndarray | None = None) -> Trace:
        python = self.python or lava_python()
        hidden = [p.name for p in net.lifs if p.name != net.readout]
        with tempfile.TemporaryDirectory(prefix="spikeport-lava-") as tmp:
            net_dir, out_dir = Path(tmp) / "net", Path(tmp) / "out"
            write_package(net_dir, net, loader=False)  # the worker loads it with the package's own loader
            spec = write_samples(net_dir, net, currents, n, record=hidden if record else [], sample_ids=sample_ids,
                                 spikes_in=spikes_in)
            worker = stage_runtime(Path(tmp) / "runtime")
            t0 = time.perf_counter()
            res = run_process([python, str(worker), str(net_dir), str(out_dir)], self.timeout, "the Lava worker")
            wall = time.perf_counter() - t0
            err_file = out_dir / "error.json"
            if res.returncode != 0:
                if err_file.is_file():
                    err = json.loads(err_file.read_text())
                    raise TargetError(f"the Lava worker failed: {err['type']}: {err['message']}")
                raise TargetError(f"the Lava worker exited with status {res.returncode}: {_tail(res.stderr)}")
            done = json.loads((out_dir / "done.json").read_text())
            u = np.load(out_dir / "readout_u.npy").astype(np.int64)
            spikes = {k: np.load(out_dir / f"spikes_{i}.npy") for i, k in enumerate(spec["record"])}
        trace = self._frames(net, spec, u, spikes, n, wall, done["run_seconds"])
        trace.meta["lava_startup_seconds"] = done.get("startup_seconds", 0.0)
        trace.meta["lava_run_steps"] = done["steps"] - (1 if "startup_seconds" in done else 0)
        return trace

    @staticmethod
    def _frames(net: ProcessNet, spec: dict, u: np.ndarray, spikes: dict[str, np.ndarray], n: int,
                wall: float, run_s: float) -> Trace:
        """Cut the streamed run into one frame per sample (steps i*P + 1 .. i*P + frame)."""
        P, F = net.period, net.frame
        readout = cut_frames(u, n, P, F) >> net.profile.act_shift  # (F, n, n_out)
        sp = {k: cut_frames(v, n, P, F).astype(np.uint8) for k, v in spikes.items()}
        start = net.timing.output_start
        counts = {k: v[start[k] - 1:start[k] - 1 + net.T].sum(axis=(0, 2)).astype(np.int64) for k, v in sp.items()}
        end = start[net.readout] + net.T - 1
        return Trace(target="lava", T=net.T, final=readout[end - 1], readout=readout, spikes=sp,
                     spike_counts=counts, readout_start=start[net.readout] - 1,
                     window_start={k: s - 1 for k, s in start.items() if k != net.readout},
                     meta={"wall_seconds": wall, "lava_run_seconds": run_s, "streamed_steps": spec["steps"],
                           "period": P}, stream_position=np.arange(n))


def run_netx_file(path: Path, steps: int, reset_interval: int | None = None, num_layers: int | None = None,
                  input_bias: np.ndarray | None = None, spikes_in: np.ndarray | None = None,
                  record_state: bool = False, timeout: float = 900.0, python: str | None = None,
                  sample_steps: int | None = None) -> list[dict]:
    """Run a netx ``.net`` file with lava-dl's own ``netx.hdf5.Network`` in the Lava environment.

    ``input_bias`` (PyTorch-flat (N,), or (n, N) with ``sample_steps``: sample i's bias from step
    ``i * sample_steps + 1`` on, set between runs) sets the input layer's bias; ``spikes_in`` (N, steps) drives
    ``net.inp``. Returns one dict per block with ``spikes`` (steps, N) and, if asked, ``u``, ``v``,
    all in PyTorch flat order.
    """
    python = python or lava_python()
    with tempfile.TemporaryDirectory(prefix="spikeport-lava-") as tmp:
        net_dir, out_dir = Path(tmp) / "net", Path(tmp) / "out"
        net_dir.mkdir()
        arrays = {}
        spec = {"format": "spikeport-lava-netx/1", "path": str(Path(path).resolve()), "steps": steps,
                "reset_interval": reset_interval, "num_layers": num_layers, "record_state": record_state,
                "sample_steps": sample_steps}
        if input_bias is not None:
            arrays["input_bias"] = np.asarray(input_bias, dtype=np.int64)
            spec["input_bias"] = "input_bias"
        if spikes_in is not None:
            arrays["spikes_in"] = np.asarray(spikes_in, dtype=np.int64)
            spec["spikes_in"] = "spikes_in"
        (net_dir / "net.json").write_text(json.dumps(spec))
        np.savez(net_dir / "arrays.npz", **arrays)
        worker = stage_runtime(Path(tmp) / "runtime")
        res = run_process([python, str(worker), str(net_dir), str(out_dir)], timeout, "the Lava worker (netx)")
        if res.returncode != 0:
            err_file = out_dir / "error.json"
            if err_file.is_file():
                err = json.loads(err_file.read_text())
                raise TargetError(f"the Lava worker failed on {path}: {err['type']}: {err['message']}")
            raise TargetError(f"the Lava worker exited with status {res.returncode}: {_tail(res.stderr)}")
        done = json.loads((out_dir / "done.json").read_text())
        out = []
        for i in range(done["layers"]):
            entry = {"spikes": np.load(out_dir / f"spikes_{i}.npy")}
            for var in ("u", "v"):
                if (out_dir / f"{var}_{i}.npy").is_file():
                    entry[var] = np.load(out_dir / f"{var}_{i}.npy")
            out.append(entry)
        out[0]["run_seconds"] = done["run_seconds"]
        return out


def run_lava(net: ProcessNet, currents: dict[str, np.ndarray], record: bool = False,
             sample_ids: np.ndarray | None = None, spikes_in: np.ndarray | None = None, **kwargs) -> Trace:
    return LavaRunner(**kwargs).run(net, currents, record, sample_ids, spikes_in)

