"""``spikeport finetune``: a model's max-pools replaced by average pools, then a few epochs more."""

from __future__ import annotations

from pathlib import Path

from spikeport.cli.args import add_command, data, nonnegative, positive, positive_float

EXAMPLE = "spikeport finetune maxpool_cnn_mnist --epochs 3 --out maxpool_ft.pt"


def register(sub) -> None:
    p = add_command(sub, "finetune", "replace a model's max-pools by average pools and train it a few epochs "
                    "more", EXAMPLE)
    p.add_argument("model", help="a bundled model or a spikeport checkpoint (.pt) with MaxPool2d layers")
    p.add_argument("--data", type=data, help="digits, mnist5k or an .npz file (default: the checkpoint's data set)")
    p.add_argument("--epochs", type=positive, default=3)
    p.add_argument("--lr", type=positive_float, default=0.01, help="initial learning rate (cosine schedule)")
    p.add_argument("--seed", type=nonnegative, default=0)
    p.add_argument("--out", type=Path, required=True, help="the fine-tuned checkpoint (.pt)")
    p.set_defaults(run=run)


def run(args) -> int:
    import torch

    from spikeport.models.data import load_dataset
    from spikeport.models.train import finetune
    from spikeport.models.zoo import ARCHITECTURES, bundled_checkpoint, load_checkpoint, save_checkpoint
    from spikeport.toolchain.errors import SpikeportError

    path = Path(args.model) if args.model.endswith(".pt") else bundled_checkpoint(args.model)
    module, ckpt = load_checkpoint(path)
    if not any(isinstance(m, torch.nn.MaxPool2d) for m in module.modules()):
        raise SpikeportError(f"{path} has no MaxPool2d layer to replace")
    _, dataset, flat = ARCHITECTURES[ckpt["arch"]]
    data = load_dataset(args.data or dataset, flat=flat)
    module, done = finetune(module, data, epochs=args.epochs, lr=args.lr, seed=args.seed)
    meta = {**ckpt.get("meta", {}), **done, "finetuned_from": str(path), "dataset": args.data or dataset}
    save_checkpoint(args.out, ckpt["arch"], ckpt["arch_kwargs"], module, meta, pools="average")
    f = done["finetune"]
    print(f"{args.out}: ANN test accuracy {100 * ckpt.get('meta', {}).get('ann_test_acc', float('nan')):.2f}% with "
          f"max-pools, {100 * f['ann_test_acc_substituted']:.2f}% with average pools, "
          f"{100 * f['ann_test_acc']:.2f}% after {args.epochs} epochs of fine-tuning ({f['seconds']:.0f} s)")
    return 0
