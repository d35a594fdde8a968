"""The whole flow as a few functions: load a model, convert, apply a method, quantize, run on a
target, verify. :func:`prepare` and :meth:`Prepared.compile` are the one recipe every command uses."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spikeport.models.data import Dataset, input_shape, load_dataset
from spikeport.models.zoo import ARCHITECTURES, bundled_checkpoint, load_checkpoint
from spikeport.targets.base import Target
from spikeport.targets.registry import get_target
from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.frontends.import_onnx import import_onnx
from spikeport.toolchain.frontends.import_torch import import_torch
from spikeport.toolchain.hardware.profiles import TargetProfile
from spikeport.toolchain.ir import ann
from spikeport.toolchain.ir.deployment import Deployment
from spikeport.toolchain.ir.interpret import forward
from spikeport.toolchain.ir.snn import SNNGraph
from spikeport.toolchain.ir.trace import Trace
from spikeport.toolchain.oracle.reference import run_reference
from spikeport.toolchain.passes.convert import convert
from spikeport.toolchain.passes.lowering import deploy
from spikeport.toolchain.passes.methods import apply_method
from spikeport.toolchain.passes.normalize import fold_batchnorm, infer_shapes, normalize, prepend_normalization
from spikeport.toolchain.passes.quantize import quantize
from spikeport.toolchain.verification.compare import (
    Check,
    Verification,
    as_check,
    check_timing,
    compare,
    compare_frames,
    merge_verifications,
)
from spikeport.toolchain.verification.timing import graph_timing


@dataclass
class LoadedModel:
    """A normalised float graph plus what is known about where it came from."""

    graph: ann.Graph
    name: str
    dataset: str | None = None  # the bundled data set it was trained on, if known
    meta: dict = field(default_factory=dict)  # checkpoint metadata (training recipe, ANN accuracy)


def import_model(model: nn.Module | str | Path, input_shape: tuple[int, ...] | None = None,
                 maxpool: str = "error") -> ann.Graph:
    """A torch module (needs ``input_shape``) or an ONNX file -> normalised float graph. ``maxpool``:
    ``"error"`` (refuse MaxPool2d), ``"average"`` (replace it by average pooling) or ``"spiking"``
    (spikeport's spiking max-pool, exact on sim and Lava)."""
    if isinstance(model, nn.Module):
        if input_shape is None:
            raise SpikeportError("importing a torch module needs input_shape (without the batch axis)")
        graph = import_torch(model, tuple(input_shape))
    else:
        graph = import_onnx(model)
    return normalize(graph, maxpool=maxpool)


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Errors about a model's content name the file it came from."""
    try:
        yield
    except SpikeportError as exc:
        if str(path) in str(exc):
            raise
        raise type(exc)(f"{path}: {exc}") from exc


def load_model(spec: str | Path, maxpool: str = "error") -> LoadedModel:
    """``spec``: a bundled model name (``cnn_mnist``), a spikeport checkpoint (.pt) or an ONNX file."""
    path = Path(spec)
    if path.suffix == ".onnx":
        with _naming(path):
            return LoadedModel(import_model(path, maxpool=maxpool), path.stem)
    if path.suffix != ".pt":
        path = bundled_checkpoint(str(spec))
    module, ckpt = load_checkpoint(path)
    _, dataset, flat = ARCHITECTURES[ckpt["arch"]]
    shape = input_shape(dataset, flat=flat)
    with _naming(path):
        graph = import_model(module, shape, maxpool)
    graph.name = path.stem
    return LoadedModel(graph, path.stem, dataset, dict(ckpt.get("meta", {}), arch=ckpt["arch"]))


@dataclass
class Prepared:
    """A model taken through import and conversion, with the data it is calibrated and tested on."""

    model: LoadedModel
    data: Dataset
    calib: np.ndarray  # the training samples that set thresholds and integer ranges
    snn: SNNGraph  # the converted float SNN (QCFS baseline)
    device: str = "cpu"

    def method(self, name: str, T: int, rho: int = 4, seed: int = 0) -> SNNGraph:
        """The float SNN running ``name`` (qcfs, ftbc, cos, tpp); FTBC calibrates on the training split."""
        return apply_method(self.snn, name, T, graph=self.model.graph, calib_x=self.data.x_train,
                            calib_y=self.data.y_train, rho=rho, seed=seed, device=self.device)

    def quantize(self, snn: SNNGraph, T: int, profile: str | TargetProfile = "loihi2") -> SNNGraph:
        return quantize(snn, self.calib, T, profile, device=self.device)

    def compile(self, T: int, method: str = "qcfs", profile: str | TargetProfile = "loihi2", rho: int = 4,
                seed: int = 0) -> Deployment:
        """The model compiled for ``profile`` at ``T`` running ``method``: the float SNN, the integer SNN
        and its process network, lowered once (what every runner, check and report takes)."""
        return self.deploy(self.method(method, T, rho, seed), T, profile)

    def deploy(self, snn: SNNGraph, T: int, profile: str | TargetProfile = "loihi2") -> Deployment:
        """The float SNN ``snn`` quantized for ``profile`` at ``T`` and lowered, once."""
        return deploy(self.quantize(snn, T, profile), snn)


def prepare(spec: str | Path | LoadedModel, data: str | None = None, calib: int = 512, maxpool: str = "error",
            device: str = "cpu", mean: list[float] | None = None, std: list[float] | None = None,
            percentile: float = 99.9) -> Prepared:
    """Load ``spec`` (see :func:`load_model`), pick its data set (a name or a path, see
    :func:`~spikeport.models.data.load_dataset`) and convert it with the first ``calib`` training samples.
    ``mean`` and ``std`` (per input channel) are the model's input normalisation, folded into its first
    layer; ``percentile``: the threshold of a plain ReLU layer is this percentile of its activations."""
    model = spec if isinstance(spec, LoadedModel) else load_model(spec, maxpool=maxpool)
    if mean is not None or std is not None:
        graph = prepend_normalization(model.graph, mean if mean is not None else [0.0],
                                      std if std is not None else [1.0])
        model = dataclasses.replace(model, graph=infer_shapes(fold_batchnorm(graph)))
    ds = dataset_for(model, data)
    x = ds.x_train[:calib]
    return Prepared(model, ds, x, convert(model.graph, x, percentile=percentile, device=device), device)


def dataset_for(model: LoadedModel, name: str | None = None) -> Dataset:
    """The data set to evaluate on, shaped like the model's input."""
    name = name or model.dataset
    if name is None:
        raise SpikeportError(f"model {model.name!r} does not say which data set it was trained on; pass one "
                             "(CLI: --data digits|mnist5k|PATH.npz)")
    shape = tuple(model.graph.input.op.shape)
    data = load_dataset(name, flat=len(shape) == 1)
    if data.input_shape != shape:
        raise SpikeportError(f"shape mismatch: model {model.name!r} takes inputs of shape {shape}, data set "
                             f"{name!r} has {data.input_shape}")
    return data


def ann_accuracy(graph: ann.Graph, x: np.ndarray, y: np.ndarray, clip: bool = False) -> float:
    with torch.no_grad():
        return float((forward(graph, x, clip_qcfs=clip).argmax(1) == y).mean())


def accuracy(trace: Trace, y: np.ndarray) -> float:
    return float((trace.predictions == y).mean())


def run(deployment: Deployment, x: np.ndarray, target: str = "sim", record: bool = False,
        sample_ids: np.ndarray | None = None, **options) -> Trace:
    """Run a compiled model on a target (``torch_float``, ``torch_int``, ``sim``, ``lava``)."""
    return get_target(target, **options).run(deployment, x, record=record, sample_ids=sample_ids)


def run_float(snn: SNNGraph, x: np.ndarray, T: int, record: bool = False, device: str = "cpu") -> Trace:
    """A float SNN (before quantization) for ``T`` steps on the zero-delay reference: the accuracy a
    method reaches in float, at any T, without compiling for a target."""
    if snn.integer:
        raise SpikeportError("run_float takes the float SNN; run a compiled deployment with run()")
    return run_reference(snn, x, T, record=record, device=device)


PASS_SAMPLES = 8  # the unrecorded and streamed passes run at least this many samples (a stream of 8)


def verify(deployment: Deployment, x: np.ndarray, targets: tuple[str, ...] = ("sim", "lava"),
           chunk: int = 200, progress: Callable[[int], None] | None = None,
           target_options: dict[str, dict] | None = None,
           device: str = "cpu") -> tuple[list[Verification], dict[str, Trace]]:
    """Run the integer reference and each target on ``x``; compare every layer, step and neuron, the
    answer (``final``, predictions) and the spike counts. ``device`` runs the reference (and ``sim``
    unless ``target_options`` say otherwise).

    Each target also runs the first :data:`PASS_SAMPLES` samples (repeated where ``x`` has fewer)
    without recording, as ``run``, ``eval`` and the benchmarks do, and a pipelined target that runs
    samples side by side runs them once more as one stream; both are compared with the reference.
    A pipelined target's timing is the lowering's, and that is held to the graph's
    (``timing.graph_timing``), never to the runner's bookkeeping.

    Returns one row per (target, reference) pair: each target against ``torch_int`` and every later
    target against the first (e.g. ``lava`` against ``sim``), plus the traces (without spikes).
    """
    dep = deployment
    target_options = {"sim": {"device": device}, **(target_options or {})}
    runners = {name: get_target(name, **target_options.get(name, {})) for name in targets}
    oracle = get_target("torch_int", device=device)
    timing = dep.timing
    timing_check = check_timing(graph_timing(dep.snn), timing)
    rows: dict[tuple[str, str], list[Verification]] = {}
    offsets: list[int] = []
    kept: dict[str, list[Trace]] = {}
    for i in range(0, len(x), chunk):
        xb = x[i:i + chunk]
        ids = np.arange(i, i + len(xb))
        offsets.append(i)
        ref = oracle.run(dep, xb, record=True, sample_ids=ids)
        kept.setdefault("torch_int", []).append(_strip(ref))
        first = None
        for name, runner in runners.items():
            tr = runner.run(dep, xb, record=True, sample_ids=ids)
            rows.setdefault((name, "torch_int"), []).append(compare(ref, tr, timing if runner.pipelined else None))
            if first is None:
                first = tr
            else:
                rows.setdefault((name, first.target), []).append(compare_frames(first, tr, timing))
            kept.setdefault(name, []).append(_strip(tr))
        if progress is not None:
            progress(len(xb))
    merged = {key: merge_verifications(v, offsets) for key, v in rows.items()}
    idx = np.arange(PASS_SAMPLES) % len(x)  # repeated where x has fewer samples
    ref = oracle.run(dep, x[idx], record=True, sample_ids=idx)
    for name, runner in runners.items():
        extra = [timing_check] if runner.pipelined else []
        extra += _passes(dep, x[idx], idx, ref, runner, target_options.get(name, {}))
        key = (name, "torch_int")
        merged[key] = dataclasses.replace(merged[key], checks=merged[key].checks + extra)
    return list(merged.values()), {k: Trace.concat(v) for k, v in kept.items()}


def _passes(dep: Deployment, x: np.ndarray, ids: np.ndarray, ref: Trace, runner: Target,
            options: dict) -> list[Check]:
    """The unrecorded pass (readout, answer, counts) and, for a pipelined target that runs samples
    side by side, a recorded stream of the same samples, each against the reference ``ref``."""
    timing = dep.timing if runner.pipelined else None
    got = runner.run(dep, x, record=False, sample_ids=ids)
    out = [as_check("unrecorded pass" + (" (streamed)" if runner.streams else ""),
                    compare(ref, got, timing, layers=[]))]
    if runner.pipelined and not runner.streams:
        got = get_target(runner.name, **{**options, "stream": True}).run(dep, x, record=True, sample_ids=ids)
        out.append(as_check(f"streamed pass ({len(x)} samples)", compare(ref, got, dep.timing)))
    return out


def _strip(trace: Trace) -> Trace:
    """Drop the recorded spikes (large) and keep what accuracy and reports need."""
    return dataclasses.replace(trace, spikes={})


