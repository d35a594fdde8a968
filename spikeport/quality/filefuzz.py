"""Fuzzing every kind of file spikeport reads (``spikeport fuzz --files N``).

Kinds: ONNX models, spikeport checkpoints (.pt), lava-dl netx networks (.net, HDF5), NIR graphs
(.nir, HDF5), eval configurations (config.toml) and eval results (results.jsonl, read when a run
resumes). Each starts from a valid file that spikeport writes or ships with, and is mutated:
truncated at several lengths (empty included), bit-flipped (1 to 64 random bits), replaced by
zeros or random bytes of the same length, and cut to its first bytes plus garbage.

Every mutated file goes to the reader a user's command would call. The reader must either
accept the file (a flipped bit in a weight still makes a valid file) or raise ``SpikeportError``
with a message that names the file. Anything else counts as a failure: another exception type, a
message without the file's name, a hang past the time limit, or a crash of the interpreter. The
readers run in a worker process, so that a crash can be seen and the run continue after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from spikeport.api import dataset_for, load_model
from spikeport.evaluate import EvalConfig, summarize
from spikeport.interop.netx import read_netx
from spikeport.interop.nir import export_nir, read_nir
from spikeport.models.zoo import CHECKPOINT_DIR, load_checkpoint
from spikeport.quality.conformance import data_dir
from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.passes.convert import convert

KINDS = ("onnx", "checkpoint", "netx", "nir", "config", "results")
SUFFIX = {"onnx": ".onnx", "checkpoint": ".pt", "netx": ".net", "nir": ".nir", "config": ".toml",
          "results": ".jsonl"}
TIME_LIMIT = 60  # seconds per file (above the HDF5 readers' own 30 s guard, see h5guard)


# -- the valid starting points ---------------------------------------------------------------------
def sample_file(kind: str, folder: Path) -> Path:
    """A valid file of ``kind`` in ``folder``."""
    path = folder / f"valid{SUFFIX[kind]}"
    if kind == "checkpoint":
        path.write_bytes((CHECKPOINT_DIR / "mlp_digits.pt").read_bytes())
    elif kind == "onnx":
        module, _ = load_checkpoint(CHECKPOINT_DIR / "mlp_digits.pt")
        torch.onnx.export(module, (torch.zeros(1, 64),), str(path), dynamo=False)
    elif kind == "netx":
        path.write_bytes((data_dir() / "tiny.net").read_bytes())
    elif kind == "nir":
        model = load_model("mlp_digits")
        export_nir(convert(model.graph, dataset_for(model).x_train[:64]), path)
    elif kind == "config":
        path.write_text(EvalConfig(model="mlp_digits", samples=8).to_toml())
    elif kind == "results":
        head = json.dumps({"config": asdict(EvalConfig(model="mlp_digits", samples=2))})
        recs = [{"index": i, "label": i, "prediction": i, "correct": True, "latency_steps": 5, "spikes": 10,
                 "payload": 10, "synops": 100, "wall_s": 0.01} for i in range(2)]
        path.write_text("\n".join([head, *map(json.dumps, recs)]) + "\n")
    return path


# -- the readers a user's command calls -------------------------------------------------------------
def _read_config(path: Path) -> None:
    """What ``spikeport eval --config`` does with the file before it runs: parse it and check every
    value's type and range (``EvalConfig.from_toml`` validates as a run does)."""
    EvalConfig.from_toml(path)


def _read_results(path: Path) -> None:
    summarize(path.parent)  # each case is a results.jsonl in a folder of its own


def reader(kind: str) -> Callable[[Path], object]:
    if kind in ("onnx", "checkpoint"):
        return load_model
    if kind == "netx":
        return read_netx
    if kind == "nir":
        return read_nir
    if kind == "config":
        return _read_config
    return _read_results


# -- mutations ----------------------------------------------------------------------------------------
def mutations(data: bytes, rng: np.random.Generator, count: int) -> Iterator[tuple[str, bytes]]:
    n = len(data)
    fixed = [("empty", b""), ("zeros", bytes(n)), ("random", rng.bytes(n)),
             ("head+garbage", data[: min(n, 64)] + rng.bytes(max(0, n - 64)))]
    for cut in np.unique(np.linspace(1, n - 1, num=8).astype(int)):
        fixed.append((f"truncated to {cut} of {n} bytes", data[:cut]))
    for i in range(count):
        if i < len(fixed):
            yield fixed[i]
            continue
        flips = int(rng.choice([1, 2, 8, 64]))
        buf = bytearray(data)
        for pos in rng.integers(0, n, size=flips):
            buf[pos] ^= 1 << int(rng.integers(8))
        yield f"{flips} bit(s) flipped (case {i})", bytes(buf)


# -- running --------------------------------------------------------------------------------------
@dataclass
class FileOutcome:
    kind: str
    mutation: str
    result: str  # "accepted", "clear error", "FAILED"
    detail: str = ""


def _worker(kind: str, folder: str) -> None:
    """Read every file listed in ``folder/todo.json`` and print one JSON line per file."""
    import signal

    read = reader(kind)

    def timeout(signum, frame):
        raise TimeoutError(f"no answer within {TIME_LIMIT} s")

    signal.signal(signal.SIGALRM, timeout)
    for name in json.loads(Path(folder, "todo.json").read_text()):
        path = Path(folder, name)
        signal.alarm(TIME_LIMIT)
        try:
            read(path)
            res = {"file": name, "result": "accepted"}
        except SpikeportError as exc:
            named = path.name in str(exc) or str(path) in str(exc)
            res = {"file": name, "result": "clear error" if named else "FAILED",
                   "detail": str(exc) if named else f"the message does not name the file: {exc}"}
        except BaseException as exc:
            res = {"file": name, "result": "FAILED", "detail": f"{type(exc).__name__}: {exc}"}
        finally:
            signal.alarm(0)
        print(json.dumps(res), flush=True)


def _run_worker(kind: str, folder: Path) -> tuple[list[dict], str]:
    """Run the worker over ``folder/todo.json``; stop it when one file takes longer than the time
    limit (a loop inside C code does not see the worker's own alarm). Returns the answers and,
    if it stopped early, why."""
    import queue
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "spikeport.quality.filefuzz", kind, str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout] + [lines.put(None)], daemon=True).start()
    done: list[dict] = []
    while True:
        try:
            ln = lines.get(timeout=TIME_LIMIT + 30)
        except queue.Empty:
            proc.kill()
            proc.wait()
            return done, f"hang: no answer within {TIME_LIMIT + 30} s (killed)"
        if ln is None:
            break
        if ln.startswith("{"):
            done.append(json.loads(ln))
    proc.wait()
    return done, "" if proc.returncode == 0 else f"the interpreter died (status {proc.returncode}): " \
        f"{proc.stderr.read()[-300:]}"


def fuzz_files(per_kind: int, seed: int = 0, kinds: tuple[str, ...] = KINDS,
               log: Callable[[FileOutcome], None] | None = None) -> list[FileOutcome]:
    """``per_kind`` mutated files of each kind through their readers, in worker processes."""
    rng = np.random.default_rng(seed)
    out: list[FileOutcome] = []

    def emit(o: FileOutcome) -> None:
        out.append(o)
        if log is not None:
            log(o)
    with tempfile.TemporaryDirectory(prefix="spikeport-fuzz-") as tmp:
        for kind in kinds:
            folder = Path(tmp, kind)
            folder.mkdir()
            data = sample_file(kind, folder).read_bytes()
            labels = {}
            for i, (label, blob) in enumerate(mutations(data, rng, per_kind)):
                name = f"case{i:05d}/results.jsonl" if kind == "results" else f"case{i:05d}{SUFFIX[kind]}"
                Path(folder, name).parent.mkdir(exist_ok=True)
                Path(folder, name).write_bytes(blob)
                labels[name] = label
            todo = list(labels)
            while todo:
                Path(folder, "todo.json").write_text(json.dumps(todo))
                done, problem = _run_worker(kind, folder)
                for res in done:
                    emit(FileOutcome(kind, labels[res["file"]], res["result"], res.get("detail", "")))
                todo = todo[len(done):]
                if todo and problem:  # the worker hung or died on the next file
                    emit(FileOutcome(kind, labels[todo[0]], "FAILED", problem))
                    todo = todo[1:]
    return out


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
