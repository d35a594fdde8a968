"""``spikeport train``: a model of the zoo trained with the QCFS recipe."""

from __future__ import annotations

from pathlib import Path

from spikeport.cli.args import add_command, data, device_arg, ints, positive, positive_float, seconds

EXAMPLE = "spikeport train cnn_mnist --epochs 40 --seeds 0,1,2 --out cnn.pt"


def register(sub) -> None:
    p = add_command(sub, "train", "train a model of the zoo with the QCFS recipe", EXAMPLE)
    p.add_argument("arch", choices=["cnn_mnist", "mlp_digits", "resnet_digits", "vgg_mnist", "maxpool_cnn_mnist",
                                    "resnet20_cifar10", "vgg16_cifar10"])
    p.add_argument("--levels", type=positive, default=8, help="QCFS quantization levels L")
    p.add_argument("--epochs", type=positive, default=None, help="epochs (default 40; CIFAR networks 200); "
                   "with --budget the most it may choose")
    p.add_argument("--budget", type=seconds, default=None, help="wall-clock seconds: choose the epoch count "
                   "that fits, timed on this machine (recorded in the checkpoint)")
    p.add_argument("--data", type=data, default=None, help="the data set (default: the architecture's; "
                   "CIFAR networks: cifar10 under $SPIKEPORT_DATA, or a path)")
    p.add_argument("--log", action="store_true", help="a line per epoch instead of a progress bar")
    p.add_argument("--init", default=None, help="continue from this checkpoint's weights (same architecture and L)")
    p.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default: the recipe's)")
    p.add_argument("--warmup", type=positive_float, default=None, help="one-cycle warm-up fraction")
    device_arg(p)
    p.add_argument("--seeds", type=ints, default=(0,), help="seeds to train; the best on the "
                   "held-out selection metric is kept, e.g. 0,1,2")
    p.add_argument("--nq", action="store_true", help="NQ: train with noise refitted to the SNN-ANN gap")
    p.add_argument("--noise-T", type=positive, default=4, help="NQ: time steps of the SNN whose gap to the ANN "
                   "sets the noise")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(run=run)


def run(args) -> int:
    from spikeport.models.train import recipe, train_and_save

    extra = {k: v for k, v in (("epochs", args.epochs), ("data", args.data), ("budget_seconds", args.budget),
                               ("device", args.device), ("init", args.init), ("lr", args.lr),
                               ("warmup", args.warmup)) if v is not None}
    cfg = recipe(args.arch, args.levels, noise=args.nq, noise_T=args.noise_T, **extra)
    meta = train_and_save(cfg, args.out, seeds=args.seeds, progress=not args.log,
                          log=(lambda line: print(line, flush=True)) if args.log else None)
    print(f"{args.out}: ANN test accuracy {100 * meta['ann_test_acc']:.2f}% "
          f"(unquantized activations {100 * meta['ann_clip_test_acc']:.2f}%) on {meta['dataset']}, "
          f"{meta['epochs_trained']} epochs in {meta['train_seconds']:.0f} s on {meta['device']}")
    return 0
