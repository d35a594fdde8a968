"""``spikeport maxpool``: the max-pool options side by side."""

from __future__ import annotations

from pathlib import Path

from spikeport.cli.args import add_command, nonnegative, positive, steps, write_table

EXAMPLE = "spikeport maxpool --T 4,8,16 --out out/maxpool"


def register(sub) -> None:
    p = add_command(sub, "maxpool", "the max-pool options side by side: average pooling, average + "
                    "fine-tune, spiking max-pool", EXAMPLE)
    p.add_argument("model", nargs="?", default="maxpool_cnn_mnist", help="a bundled model or spikeport checkpoint "
                   "with MaxPool2d layers")
    p.add_argument("--T", type=steps, default=(4, 8, 16), help="time steps, e.g. 4,8,16")
    p.add_argument("--epochs", type=positive, default=3, help="fine-tuning epochs")
    p.add_argument("--lava-samples", type=nonnegative, default=16, help="test samples per Lava run (0: none)")
    p.add_argument("--verify-samples", type=positive, default=100, help="samples verified spike for spike")
    p.add_argument("--samples", type=positive, default=None, help="use only the first N test samples")
    p.add_argument("--out", type=Path, default=Path("out/maxpool"),
                   help="folder for maxpool.json, maxpool.md and the fine-tuned checkpoint")
    p.set_defaults(run=run)


def run(args) -> int:
    from spikeport.studies.maxpool_table import compare_maxpool

    args.out.mkdir(parents=True, exist_ok=True)
    table = compare_maxpool(args.model, Ts=args.T, epochs=args.epochs, lava_samples=args.lava_samples,
                            verify_samples=args.verify_samples, test_samples=args.samples, out=args.out)
    return write_table(table, args.out, "maxpool")
