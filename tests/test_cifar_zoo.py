"""The CIFAR networks of the zoo and their training recipe, on tiny synthetic data (the real data set and
the full training runs are benchmarks, not tests)."""

import numpy as np
import pytest
import torch
from PIL import Image

from spikeport.api import import_model, verify
from spikeport.models.train import _crop_flip, recipe, train, train_and_save
from spikeport.models.zoo import CHECKPOINT_DIR, build_model, load_checkpoint
from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.passes.convert import convert
from spikeport.toolchain.passes.lowering import deploy
from spikeport.toolchain.passes.quantize import quantize


@pytest.fixture
def tiny_folder(tmp_path, monkeypatch):
    """A 32x32 RGB image folder of two classes (bright and dark images, so that one epoch learns something)."""
    monkeypatch.setenv("SPIKEPORT_DATA", str(tmp_path / "home"))
    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 8)):
        for label, c in enumerate(("bright", "dark")):
            (tmp_path / "tiny" / split / c).mkdir(parents=True)
            for i in range(n):
                base = 200 if label == 0 else 40
                px = np.clip(rng.normal(base, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(px).save(tmp_path / "tiny" / split / c / f"{i}.png")
    return str(tmp_path / "tiny")


def test_crop_flip_is_a_shifted_window_of_the_padded_image_mirrored_or_not():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    gen = torch.Generator().manual_seed(3)
    out = _crop_flip(x, 2, gen)
    gen = torch.Generator().manual_seed(3)
    off = torch.randint(0, 5, (2, 2), generator=gen)
    flip = torch.rand(2, generator=gen) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for n in range(2):
        want = padded[n, :, off[0, n]:off[0, n] + 6, off[1, n]:off[1, n] + 6]
        assert torch.equal(out[n], want.flip(-1) if flip[n] else want)


@pytest.mark.parametrize("arch, params", [("resnet20_cifar10", 272_474), ("vgg16_cifar10", 15_253_578)])
def test_cifar_architectures_are_the_qcfs_authors_shapes(arch, params):
    m = build_model(arch, levels=4)
    n = sum(p.numel() for p in m.parameters() if p.dim() > 0)  # QCFS's lambdas are 0-d
    assert n == params
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_small_resnet20_converts_and_sim_equals_torch_int_spike_for_spike():
    torch.manual_seed(0)
    module = build_model("resnet20_cifar10", levels=4, width=4).eval()
    graph = import_model(module, (3, 32, 32))
    x = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    snn = convert(graph, x)
    q = quantize(snn, x, 3)
    (row,), _ = verify(deploy(q), x, targets=("sim",))
    assert row.exact, row.line()


def test_cifar_recipe_trains_within_a_budget_and_continues_from_its_checkpoint(tiny_folder, tmp_path):
    cfg = recipe("resnet20_cifar10", 4, data=tiny_folder, epochs=3, batch_size=16, budget_seconds=8.0,
                 arch_kwargs={"width": 4})
    assert cfg.augment == "crop_flip" and cfg.schedule == "onecycle" and not cfg.bf16  # no bf16 on the CPU
    out = tmp_path / "r.pt"
    meta = train_and_save(cfg, out, progress=False)
    assert meta["dataset"] == "folder:tiny" and meta["n_test"] == 16
    assert 1 <= meta["epochs_trained"] <= meta["budget"]["epochs"] <= 3
    assert meta["train_seconds"] < 8.0
    _, ckpt = load_checkpoint(out)
    assert ckpt["arch"] == "resnet20_cifar10" and ckpt["arch_kwargs"] == {"levels": 4, "width": 4}
    more = recipe("resnet20_cifar10", 4, data=tiny_folder, epochs=1, batch_size=16, init=str(out), lr=0.01,
                  arch_kwargs={"width": 4})
    _, meta2 = train(more, progress=False)
    assert meta2["train_config"]["init"] == str(out) and meta2["epochs_trained"] == 1
    with pytest.raises(SpikeportError, match="not the resnet20_cifar10 with L=8"):
        train(recipe("resnet20_cifar10", 8, data=tiny_folder, epochs=1, init=str(out), arch_kwargs={"width": 4}),
              progress=False)


def test_float16_storage_halves_the_checkpoint_and_loads_as_float32(tiny_folder, tmp_path):
    cfg = recipe("vgg16_cifar10", 4, data=tiny_folder, epochs=1, batch_size=16, arch_kwargs={"hidden": 16})
    assert cfg.float16_storage
    meta = train_and_save(cfg, tmp_path / "v.pt", progress=False)
    model, ckpt = load_checkpoint(tmp_path / "v.pt")
    assert ckpt["state_dict"]["conv1.weight"].dtype == torch.float16 and meta["storage"] == "float16"
    assert model.conv1.weight.dtype == torch.float32


@pytest.mark.parametrize("name", ["resnet20_cifar10_l4", "resnet20_cifar10_l8", "resnet20_cifar10_nq_l4",
                                  "resnet20_cifar10_nq_l8"])
def test_bundled_cifar_checkpoints_say_what_they_were_trained_on_and_how(name):
    model, ckpt = load_checkpoint(CHECKPOINT_DIR / f"{name}.pt")
    meta = ckpt["meta"]
    assert meta["dataset"] == "cifar10" and "JPEG" in meta["data_source"] and meta["n_test"] == 10_000
    assert 0.8 < meta["ann_test_acc"] < 1.0 and len(meta["stages"]) == 2
    assert all("spikeport train resnet20_cifar10" in s["command"] for s in meta["stages"])
    assert (meta["nq_sigmas"] is not None) == ("_nq_" in name)
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 10)
