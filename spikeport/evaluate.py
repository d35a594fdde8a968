"""``spikeport eval``: one hardware-in-the-loop harness for every target.

The test set is streamed through the target a chunk of samples at a time (Lava receives them back
to back, as a chip would). For each sample the harness records the prediction, the latency in
steps, the messages (spikes sent, a graded spike once), their payloads and the synaptic operations
(counted by :mod:`spikeport.toolchain.costs.metrics`), and its share of the wall time. Every record is
appended to ``results.jsonl`` as soon as its chunk finishes. An interrupted evaluation resumes where
it stopped: the first line holds the configuration, done samples are skipped, and a line cut short
by the interruption is dropped. ``config.toml`` next to it reproduces the run exactly, and
``--verify-every N`` checks the target against the integer reference on every N-th sample, every
layer, step and neuron.

Data parallel: launched by ``torchrun`` (``WORLD_SIZE`` > 1), every rank takes every
world-size-th remaining sample and appends to its own ``results.part<rank>.jsonl``; at the end the
records are gathered to rank 0 with torch.distributed (gloo on CPU, nccl on CUDA), which merges
them into ``results.jsonl`` in sample order. Every per-sample result depends on the sample alone
(TPP's random numbers are keyed by the sample index), so the merged file equals a one-process run
apart from wall times. Part files left by an interrupted run are merged in when it resumes, with
any number of ranks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from spikeport.api import prepare, run
from spikeport.models.data import DATASETS
from spikeport.targets.lava.runner import lava_python
from spikeport.targets.registry import get_target
from spikeport.toolchain.costs.metrics import count_work, fan_outs
from spikeport.toolchain.errors import SpikeportError, TargetError
from spikeport.toolchain.files import write_atomic
from spikeport.toolchain.hardware.profiles import PROFILES
from spikeport.toolchain.ir.trace import Trace
from spikeport.toolchain.passes.methods import METHODS
from spikeport.toolchain.verification.compare import check_timing, compare
from spikeport.toolchain.verification.timing import graph_timing

# the target "loihi2_hw" is the chip (Lava's Loihi2HwCfg, where Intel's stack exists); the profile "loihi2"
# (EvalConfig.profile) is its description, which every target's integers are sized for
TARGETS = ("torch_int", "sim", "lava", "loihi2_hw")


@dataclass(frozen=True)
class EvalConfig:
    model: str
    target: str = "sim"
    T: int = 8
    method: str = "qcfs"
    rho: int = 4
    seed: int = 0
    data: str = ""
    samples: int = 0  # 0: the whole test split
    calib: int = 512
    verify_every: int = 0
    chunk: int = 16
    profile: str = "loihi2"

    def to_toml(self) -> str:
        lines = ["# spikeport eval configuration: `spikeport eval --config THIS_FILE` reproduces the run", "[eval]"]
        for f in fields(self):
            v = getattr(self, f.name)
            lines.append(f"{f.name} = {json.dumps(v)}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_toml(cls, path: Path) -> EvalConfig:
        try:
            raw = tomllib.loads(Path(path).read_bytes().decode("utf-8"))["eval"]
        except (OSError, KeyError, TypeError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SpikeportError(f"{path}: not a spikeport eval configuration ({exc})") from exc
        if not isinstance(raw, dict):
            raise SpikeportError(f"{path}: [eval] is not a table")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise SpikeportError(f"{path}: unknown keys {unknown}")
        for key, value in raw.items():
            want = type(known[key].default) if key != "model" else str
            if type(value) is not want:
                raise SpikeportError(f"{path}: {key} = {value!r} should be of type {want.__name__}")
        if "model" not in raw:
            raise SpikeportError(f"{path}: the configuration names no model")
        cfg = cls(**raw)
        try:
            cfg.validate()
        except SpikeportError as exc:
            raise SpikeportError(f"{path}: {exc}") from None
        return cfg

    def validate(self) -> None:
        """Every value in its range, or one error naming the key and the value (a run checks this
        before it starts)."""
        at_least = {"T": 1, "rho": 1, "seed": 0, "samples": 0, "calib": 1, "verify_every": 0, "chunk": 1}
        for key, low in at_least.items():
            if getattr(self, key) < low:
                raise SpikeportError(f"{key} = {getattr(self, key)} must be {low} or more")
        choices = {"target": TARGETS, "method": METHODS, "profile": tuple(PROFILES)}
        if self.data not in ("", *DATASETS) and not self.data.endswith(".npz"):
            raise SpikeportError(f"data = {self.data!r} is not one of {['', *DATASETS]} or an .npz file")
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise SpikeportError(f"{key} = {getattr(self, key)!r} is not one of {list(allowed)}")
        if not self.model:
            raise SpikeportError("model is empty")


def loihi2_missing() -> str | None:
    """Why ``Loihi2HwCfg`` cannot run here, in one line, or None when Intel's Loihi stack is present."""

    probe = "import lava.magma.core.model.nc.model, nxcore"
    res = subprocess.run([lava_python(), "-c", probe], capture_output=True, text=True)
    if res.returncode == 0:
        return None
    return ("target loihi2_hw needs Intel's Loihi 2 stack in the Lava environment: lava-loihi (NeuroCore process "
            "models for Loihi2HwCfg) and nxcore, available to INRC members; not installed here "
            f"({(res.stderr.strip().splitlines() or ['import failed'])[-1]})")


class Evaluation:
    """Streams the test split through one target and keeps a resumable results file."""

    def __init__(self, cfg: EvalConfig, out: Path, progress: bool = True, device: str = "cpu",
                 announce: Callable[[Path], None] | None = None) -> None:
        """``announce(config_path)`` is called once the run's configuration is written, before the work."""
        self.cfg, self.out, self.progress, self.device, self.announce = cfg, Path(out), progress, device, announce
        cfg.validate()
        if device != "cpu" and cfg.target not in ("torch_int", "sim"):
            raise SpikeportError(f"--device {device} applies to the torch and sim targets, not {cfg.target}")

    def _prepare(self):
        cfg = self.cfg
        p = prepare(cfg.model, cfg.data or None, cfg.calib, device=self.device)
        return p.data, p.compile(cfg.T, cfg.method, cfg.profile, cfg.rho, cfg.seed)

    def _load_done(self, path: Path) -> dict[int, dict]:
        done: dict[int, dict] = {}
        if not path.is_file():
            return done
        return self._read(path)

    def _read(self, path: Path) -> dict[int, dict]:
        """The records of a results (or part) file by sample index, after checking its header."""
        head, records = read_results(path)
        if (head is not None or records) and (head is None or head.get("config") != asdict(self.cfg)):
            raise SpikeportError(f"{path} was written by a different configuration; use another --out or "
                                 "delete it")
        return records

    def _merge(self, records: list[dict]) -> None:
        """Rank 0: fold records and leftover part files into results.jsonl, in sample order."""
        path = self.out / "results.jsonl"
        merged = self._load_done(path)
        for part in sorted(self.out.glob("results.part*.jsonl")):
            merged.update(self._read(part))
        merged.update({r["index"]: r for r in records})
        write_atomic(path, json.dumps({"config": asdict(self.cfg)}) + "\n"
                     + "".join(json.dumps(merged[i]) + "\n" for i in sorted(merged)))
        for part in self.out.glob("results.part*.jsonl"):
            part.unlink()

    def run(self) -> dict:
        rank, world = _dist_init(self.device)
        try:
            if world > 1:
                return self._run_ranks(rank, world)
            return self._run_shard(self.out / "results.jsonl", 0, 1)
        finally:
            if world > 1:
                import torch.distributed as dist

                dist.destroy_process_group()

    def _run_ranks(self, rank: int, world: int) -> dict:
        import torch.distributed as dist

        self.out.mkdir(parents=True, exist_ok=True)
        if rank == 0 and any(self.out.glob("results.part*.jsonl")):
            self._merge([])  # an interrupted run's part files first, so that every rank sees the same work
        dist.barrier()
        part = self.out / f"results.part{rank}.jsonl"
        self._run_shard(part, rank, world, summary=False)
        mine = list(self._read(part).values())
        gathered: list | None = [None] * world if rank == 0 else None
        dist.gather_object(mine, gathered, dst=0)
        if rank == 0:
            self._merge([r for recs in gathered for r in recs])
        dist.barrier()
        return summarize(self.out)

    def _run_shard(self, path: Path, rank: int, world: int, summary: bool = True) -> dict | None:
        from tqdm import tqdm

        cfg = self.cfg
        if cfg.target == "loihi2_hw":
            why = loihi2_missing()
            if why:
                raise TargetError(why)
        self.out.mkdir(parents=True, exist_ok=True)
        if rank == 0:
            write_atomic(self.out / "config.toml", cfg.to_toml())
            if self.announce is not None:
                self.announce(self.out / "config.toml")
        finished = self._load_done(self.out / "results.jsonl")
        data, dep = self._prepare()
        q = dep.snn
        n = len(data.x_test) if not cfg.samples else min(cfg.samples, len(data.x_test))
        share = [i for i in range(n) if i not in finished][rank::world]  # every rank computes the same split
        own = self._load_done(path) if path.name != "results.jsonl" else {}
        todo = [i for i in share if i not in own]
        # the header and every whole record, nothing else: a line cut short by an interruption or
        # damaged goes, so that appends start on a fresh line (written aside, then renamed)
        _, kept = read_results(path) if path.is_file() else (None, {})
        write_atomic(path, json.dumps({"config": asdict(cfg)}) + "\n"
                     + "".join(json.dumps(kept[i]) + "\n" for i in kept))
        target = cfg.target
        timing = dep.timing if target in ("sim", "lava", "loihi2_hw") else None
        timing_checks = [check_timing(graph_timing(q), timing)] if timing else []
        latency = timing.latency if timing else cfg.T
        S = q.steps(dep.T)
        total = n if world == 1 else len(share)
        bar = tqdm(total=total, initial=total - len(todo), desc=f"eval {cfg.model} on {cfg.target}"
                   + (f" (rank {rank}/{world})" if world > 1 else ""), unit="sample",
                   disable=not self.progress or rank > 0, file=sys.stderr)
        options = {"device": self.device} if target in ("torch_int", "sim") else {}
        runner = get_target("lava" if target == "loihi2_hw" else target, **options)  # one target: sim builds once
        fans = fan_outs(q)  # synaptic fan-outs, once per run rather than per chunk
        with path.open("a") as f:
            for c0 in range(0, len(todo), cfg.chunk):
                idx = todo[c0:c0 + cfg.chunk]
                x = data.x_test[idx]
                t0 = time.perf_counter()
                tr = runner.run(dep, x, record=True, sample_ids=np.asarray(idx))
                wall = time.perf_counter() - t0
                work = count_work(q, tr, fans)
                checks = {}
                if cfg.verify_every:
                    pick = [j for j, i in enumerate(idx) if i % cfg.verify_every == 0]
                    if pick:
                        ref = run(dep, x[pick], "torch_int", record=True, sample_ids=np.asarray(idx)[pick],
                                  device=self.device)
                        # the counts this file reports (each layer's output window: its payloads, counted once
                        # by count_work) against the reference's
                        counts = {k: c[pick].sum(1) for k, c in work.counts.items()}
                        sub = replace(_subset(tr, pick), spike_counts=counts)
                        ref.spike_counts = {k: ref.spikes[k][:S].sum((0, 2), dtype=np.int64) for k in work.counts}
                        v = compare(ref, sub, timing)
                        v = replace(v, checks=v.checks + timing_checks)
                        for j in pick:
                            checks[idx[j]] = v.exact
                for j, i in enumerate(idx):
                    rec = {"index": i, "label": int(data.y_test[i]), "prediction": int(tr.predictions[j]),
                           "correct": bool(tr.predictions[j] == data.y_test[i]), "latency_steps": int(latency),
                           "spikes": int(work.messages[j]), "payload": int(work.payloads[j]),
                           "synops": int(work.synops[j]), "wall_s": wall / len(idx)}
                    if i in checks:
                        rec["verified_exact"] = checks[i]
                    f.write(json.dumps(rec) + "\n")
                f.flush()
                bar.update(len(idx))
        bar.close()
        return summarize(self.out) if summary else None


def _dist_init(device: str) -> tuple[int, int]:
    """(rank, world size); under torchrun (WORLD_SIZE > 1) joins the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def _json_line(line: str) -> object | None:
    """The JSON value on ``line``, or None where the line is not JSON (cut short or damaged)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _subset(trace: Trace, pick: list[int]) -> Trace:
    return Trace(trace.target, trace.T, trace.final[pick], trace.readout[:, pick],
                 {k: v[:, pick] for k, v in trace.spikes.items()}, {}, {}, trace.window_start, trace.readout_start,
                 trace.meta, None if trace.stream_position is None else trace.stream_position[pick])


# "spikes" are messages (a graded spike once) and "synops" messages x fan-out (toolchain.costs.metrics); records
# without "payload" were written before synops counted messages (graded spikes: payloads) and run again
RECORD = {"index": int, "label": int, "prediction": int, "correct": bool, "latency_steps": int, "spikes": int,
          "payload": int, "synops": int, "wall_s": (int, float)}


def _is_record(r: object) -> bool:
    return isinstance(r, dict) and all(isinstance(r.get(k), t) and (t is bool or not isinstance(r.get(k), bool))
                                       for k, t in RECORD.items())


def read_results(path: Path) -> tuple[dict | None, dict[int, dict]]:
    """(header, records by sample index) of a results file. A line that is not a whole, well-formed
    record (cut short by an interruption, or damaged) is left out: its sample runs again."""
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise SpikeportError(f"{path}: cannot be read ({exc})") from exc
    lines = text.splitlines()
    head = None
    if lines:
        obj = _json_line(lines[0])
        head = obj if isinstance(obj, dict) and isinstance(obj.get("config"), dict) else None
    records: dict[int, dict] = {}
    for ln in lines[1:]:
        rec = _json_line(ln)
        if _is_record(rec):
            records[rec["index"]] = rec
    return head, records


def summarize(out: Path) -> dict:
    """Accuracy, latency, spikes, synaptic ops and wall time over the results file."""
    path = Path(out, "results.jsonl")
    head, by_index = read_results(path)
    if head is None:
        raise SpikeportError(f"{path} has no configuration header: not a spikeport results file")
    recs = [by_index[i] for i in sorted(by_index)]
    if not recs:
        raise SpikeportError(f"{path} holds no results")
    verified = [r["verified_exact"] for r in recs if "verified_exact" in r]
    return {
        "config": head["config"], "samples": len(recs),
        "accuracy": float(np.mean([r["correct"] for r in recs])),
        "latency_steps": int(recs[0]["latency_steps"]),
        "spikes_per_sample": float(np.mean([r["spikes"] for r in recs])),
        "payload_per_sample": float(np.mean([r["payload"] for r in recs])),
        "synops_per_sample": float(np.mean([r["synops"] for r in recs])),
        "wall_s_per_sample": float(np.mean([r["wall_s"] for r in recs])),
        "verified": len(verified), "verified_exact": all(verified) if verified else None,
    }
