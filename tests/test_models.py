import pytest
import torch

from spikeport.models.data import load_dataset
from spikeport.models.train import accuracy
from spikeport.models.zoo import CHECKPOINT_DIR, load_checkpoint
from spikeport.toolchain.errors import SpikeportError

TWINS = [(f"{base}{nq}_l{L}", dataset, flat, floor) for base, dataset, flat, floor in
         [("cnn_mnist", "mnist5k", False, 0.96), ("mlp_digits", "digits", True, 0.97)]
         for L in (2, 4) for nq in ("", "_nq")]  # issue 15: the same recipe at other QCFS levels


@pytest.mark.parametrize("name,dataset,flat,floor", [("cnn_mnist", "mnist5k", False, 0.97),
                                                      ("mlp_digits", "digits", True, 0.97),
                                                      ("resnet_digits", "digits", False, 0.85), *TWINS])
def test_bundled_checkpoints_load_safely_and_reproduce_their_accuracy(name, dataset, flat, floor):
    path = CHECKPOINT_DIR / f"{name}.pt"
    raw = torch.load(path, weights_only=True)  # plain tensors and builtins only
    assert raw["meta"]["dataset"] == dataset
    model, ckpt = load_checkpoint(path)
    data = load_dataset(dataset, flat=flat)
    acc = accuracy(model, data.x_test, data.y_test)
    assert acc == pytest.approx(ckpt["meta"]["ann_test_acc"], abs=1e-9)
    assert acc >= floor
    assert ckpt["meta"]["train_config"]["levels"] > 0


def test_checkpoint_with_code_is_refused(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"format": "spikeport-checkpoint/1", "obj": torch.nn.ReLU()}, bad)  # a pickled module
    with pytest.raises(SpikeportError, match="cannot be read safely"):
        load_checkpoint(bad)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    src = (CHECKPOINT_DIR / "mlp_digits.pt").read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(src[: len(src) // 2])
    with pytest.raises(SpikeportError, match=r"cut\.pt"):
        load_checkpoint(bad)


def test_the_wheel_builds_without_packaging_warnings_and_holds_the_checkpoints(tmp_path):
    """Issue 17: installing printed setuptools' "Package would be ignored" for the checkpoints."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "-w", str(tmp_path), "-v"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout + res.stderr
    assert "would be ignored" not in out and "BuildBackendWarning" not in out
    (wheel,) = tmp_path.glob("spikeport-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    checkpoints = (root / "models" / "checkpoints").glob("*.pt")
    assert {f"spikeport/models/checkpoints/{p.name}" for p in checkpoints} <= set(names)
    assert "spikeport/targets/lava/runtime/worker.py" in names and "spikeport/toolchain/hardware/prng.py" in names
