"""Shared fixtures. Models come from the bundled checkpoints; data from the packages that ship it."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n 2` on 2 cores: one thread per worker (and for what
    os.environ["OMP_NUM_THREADS"] = "1"  # it starts), else the workers' OpenMP threads spin against
    torch.set_num_threads(1)  # each other and every tensor operation slows down several times

from spikeport.api import dataset_for, load_model
from spikeport.toolchain.passes.convert import convert
from spikeport.toolchain.passes.quantize import quantize


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


class Bundle:
    """A bundled model taken through convert and quantize (cached per T)."""

    def __init__(self, name: str) -> None:
        self.model = load_model(name)
        self.data = dataset_for(self.model)
        self.calib = self.data.x_train[:256]
        self.snn = convert(self.model.graph, self.calib)
        self._q: dict[int, object] = {}

    def q(self, T: int):
        if T not in self._q:
            self._q[T] = quantize(self.snn, self.calib, T)
        return self._q[T]


@pytest.fixture(scope="session")
def mlp() -> Bundle:
    return Bundle("mlp_digits")


@pytest.fixture(scope="session")
def cnn() -> Bundle:
    return Bundle("cnn_mnist")


@pytest.fixture(scope="session")
def resnet() -> Bundle:
    return Bundle("resnet_digits")


class LavaRunProcesses:
    """Records the staging folder of each Lava worker a test starts (``runner.subprocess.Popen``
    wrapped; ``kill_after`` seconds, if given, SIGKILLs the worker's process group) and lists the
    processes still alive from them. Other tests' Lava runs may be alive beside them (pytest-xdist),
    so a leak check must look at its own run's processes only."""

    def __init__(self, monkeypatch, kill_after: float | None = None) -> None:
        import signal
        import subprocess
        import threading

        from spikeport.targets.lava import runner

        self.folders: list[str] = []
        popen = subprocess.Popen

        def recording(*args, **kwargs):
            self.folders.extend(a.split("/runtime/")[0] for a in args[0] if "spikeport-lava-" in str(a))
            proc = popen(*args, **kwargs)
            if kill_after is not None:
                threading.Timer(kill_after, lambda: os.killpg(proc.pid, signal.SIGKILL)).start()
            return proc

        monkeypatch.setattr(runner.subprocess, "Popen", recording)

    def leftovers(self) -> list[str]:
        import subprocess

        assert self.folders, "the worker was started from a staged spikeport-lava- folder"
        found = subprocess.run(["pgrep", "-f", self.folders[0]], capture_output=True, text=True).stdout.split()
        return [p for p in found if int(p) != os.getpid()]


@pytest.fixture
def lava_processes(monkeypatch):
    """``lava_processes(kill_after=None)``: a :class:`LavaRunProcesses` for this test."""
    return lambda kill_after=None: LavaRunProcesses(monkeypatch, kill_after)
