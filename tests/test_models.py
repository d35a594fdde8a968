import pytest
import torch

from spikeport.models.data import load_dataset
from spikeport.models.train import accuracy
from spikeport.models.zoo import CHECKPOINT_DIR, load_checkpoint
from spikeport.toolchain.errors import SpikeportError


@pytest.mark.parametrize("name,dataset,flat,floor", [("cnn_mnist", "mnist5k", False, 0.97),
                                                      ("mlp_digits", "digits", True, 0.97),
                                                      ("resnet_digits", "digits", False, 0.85)])
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
