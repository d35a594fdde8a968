"""The ``spikeport`` command line. Every subcommand's --help shows a working example.

Bad input ends with one line naming the problem and a non-zero exit status; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import traceback
from pathlib import Path

EXAMPLES = {
    "demo": "spikeport demo --out out/demo",
    "run": "spikeport run cnn_mnist --target sim --T 2 --method ftbc",
    "verify": "spikeport verify cnn_mnist --T 8 --samples 16 --targets sim,lava --method cos",
    "info": "spikeport info model.onnx --data mnist5k",
    "methods": "spikeport methods cnn_mnist --T 1,2,4,8 --out out/methods",
    "train": "spikeport train cnn_mnist --epochs 40 --seeds 0,1,2 --out cnn.pt",
    "finetune": "spikeport finetune maxpool_cnn_mnist --epochs 3 --out maxpool_ft.pt",
    "maxpool": "spikeport maxpool --T 4,8,16 --out out/maxpool",
    "netx-reset": "spikeport netx-reset mlp_digits cnn_mnist --T 4,8,16",
    "lowlat": "spikeport lowlat cnn_mnist --T 1,2,4 --out out/lowlat",
    "conformance": "spikeport conformance --json",
    "bench": "spikeport bench --out out/bench",
    "export": "spikeport export cnn_mnist --netx out/netx --reset zero --T 8",
    "report": "spikeport report cnn_mnist --T 4 --out out/report",
    "eval": "spikeport eval cnn_mnist --target lava --T 8 --samples 64 --verify-every 8 --out out/eval",
    "fuzz": "spikeport fuzz --cases 500 --lava-every 10",
    "lava-env": "spikeport lava-env --python ~/.pyenv/versions/3.10.13/bin/python",
    "mutants": "spikeport mutants --json",
}

MODEL_HELP = ("a bundled model (cnn_mnist, mlp_digits, resnet_digits), a spikeport checkpoint (.pt) or an "
              "ONNX file")


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _steps(text: str) -> tuple[int, ...]:
    vals = _ints(text)
    if any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"time steps must be positive, got {text!r}")
    return vals


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {v}")
    return v


def _data(text: str) -> str:
    if text in ("digits", "mnist5k", "cifar10", "cifar100") or text.endswith(".npz") or Path(text).exists():
        return text
    raise argparse.ArgumentTypeError(f"expected digits, mnist5k, cifar10, cifar100 or a path (an .npz file, a CIFAR "
                                     f"python folder or .tar.gz, an image folder with train/ and test/), got {text!r}")


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _nonnegative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v}")
    return v


def _positive_float(text: str, unit: str = "") -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number{' of ' + unit if unit else ''}, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0{' ' + unit if unit else ''}, got {text}")
    return v


def _percent(text: str) -> float:
    v = _positive_float(text)
    if v > 100:
        raise argparse.ArgumentTypeError(f"a percentile is at most 100, got {text}")
    return v


def _seconds(text: str) -> float:
    return _positive_float(text, "seconds")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--data", type=_data, help="digits, mnist5k or an .npz file with x_train, y_train, x_test, "
                   "y_test (default: the data set the checkpoint "
                   "was trained on; required for ONNX files)")
    p.add_argument("--mean", type=_floats, default=None, help="input normalisation (x - mean) / std per channel, "
                   "folded into the first layer, e.g. 0.49,0.48,0.45")
    p.add_argument("--std", type=_floats, default=None, help="see --mean, e.g. 0.25,0.24,0.26")
    p.add_argument("--maxpool", choices=["error", "average", "spiking"], default="error",
                   help="MaxPool2d: refuse it (default), replace it by average pooling, or run spikeport's "
                   "spiking max-pool (exact on sim and Lava)")
    p.add_argument("--allow-maxpool", dest="maxpool", action="store_const", const="average",
                   help=argparse.SUPPRESS)  # the earlier spelling of --maxpool average
    p.add_argument("--calib", type=_positive, default=512, help="training samples used for calibration")
    p.add_argument("--percentile", type=_percent, default=99.9, help="a plain ReLU layer's threshold: this "
                   "percentile of its activations on the calibration samples")
    p.add_argument("--method", choices=["qcfs", "ftbc", "cos", "tpp", "graded"], default="qcfs",
                   help="calibration method on top of the QCFS conversion (NQ: pass an *_nq model); graded: "
                   "graded spikes (Loihi 2 spike payloads of up to L thresholds)")
    p.add_argument("--rho", type=_positive, default=4, help="COS pre-run length")
    p.add_argument("--seed", type=_nonnegative, default=0, help="TPP seed")
    _profile_arg(p)
    _device_arg(p)


def _profile_arg(p: argparse.ArgumentParser) -> None:
    from spikeport.toolchain.hardware.profiles import PROFILES

    p.add_argument("--profile", choices=sorted(PROFILES), default="loihi2",
                   help="target profile: the bit widths the integers are sized for")


def _device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device for conversion, calibration, the reference "
                   "and sim, e.g. cuda or cuda:1 (results are bit-identical to cpu)")


def _check_device(device: str) -> str:
    import torch

    from spikeport.toolchain.errors import SpikeportError

    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise SpikeportError(f"--device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpikeportError(f"--device {device}: this torch build ({torch.__version__}) sees no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise SpikeportError(f"--device {device}: spikeport runs on cpu or cuda")
    return device


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikeport", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Trained ANN -> integer SNN -> Lava / Loihi-style targets, verified spike for spike.",
        epilog="examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES.values()))
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, epilog=f"example:\n  {EXAMPLES[name]}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = add("demo", "the main job on the bundled MNIST-5k CNN: accuracy vs T, verification, report")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for report.json and report.html")
    p.add_argument("--model", default="cnn_mnist", help=MODEL_HELP)
    p.add_argument("--T", type=_steps, default=(1, 2, 4, 8, 16), help="time steps, e.g. 1,2,4,8")
    p.add_argument("--lava-T", type=_positive, default=8, help="T of the Lava run")
    p.add_argument("--lava-samples", type=_nonnegative, default=16, help="test samples streamed through Lava (0: none)")
    p.add_argument("--samples", type=_positive, default=None, help="use only the first N test samples")
    p.add_argument("--methods-T", type=_ints, default=(1, 2, 4),
                   help="T values of the seed-methods table (0: leave it out)")
    p.add_argument("--methods-samples", type=_positive, default=500,
                   help="test samples of the seed-methods table (spikeport methods runs them all)")
    p.add_argument("--tpp-seeds", type=_positive, default=1, help="TPP seeds in the methods table")

    p = add("run", "accuracy of one target on the test split")
    _model_args(p)
    p.add_argument("--target", default="sim", choices=["torch_float", "torch_int", "sim", "lava"])
    p.add_argument("--T", type=_positive, default=8)
    p.add_argument("--samples", type=_positive, default=None, help="first N test samples (default: all)")
    p.add_argument("--stream", action="store_true", help="sim: run the samples one after another as Lava "
                   "streams them (differs from side by side only where membranes leave the head-room)")
    _sim_kernels_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("verify", "compare torch_int, sim and lava spike for spike (exit 1 on any mismatch)")
    _model_args(p)
    p.add_argument("--T", type=_positive, default=8)
    p.add_argument("--samples", type=_positive, default=16, help="first N test samples")
    p.add_argument("--targets", default="sim,lava", help="comma-separated: sim, lava")
    _sim_kernels_arg(p)
    p.add_argument("--timeout", type=_seconds, default=900.0, help="seconds before a Lava worker is stopped")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("methods", "the seed methods side by side: QCFS, FTBC, COS, TPP, NQ, permutation diagnostic")
    p.add_argument("model", nargs="?", default="cnn_mnist", help="a bundled model (its NQ twin is <model>_nq)")
    p.add_argument("--T", type=_steps, default=(1, 2, 4, 8, 16, 32), help="time steps, e.g. 1,2,4,8")
    p.add_argument("--rho", type=_positive, default=4, help="COS pre-run length")
    p.add_argument("--tpp-seeds", type=_positive, default=5, help="TPP seeds (mean and spread)")
    p.add_argument("--lava-T", type=_steps, default=(2, 8), help="T values also run in Lava")
    p.add_argument("--lava-samples", type=_nonnegative, default=16, help="test samples per Lava run (0: none)")
    p.add_argument("--verify-samples", type=_positive, default=100, help="samples verified spike for spike")
    p.add_argument("--samples", type=_positive, default=None, help="use only the first N test samples")
    p.add_argument("--out", type=Path, default=Path("out/methods"), help="folder for methods.json and methods.md")

    p = add("maxpool", "the max-pool options side by side: average pooling, average + fine-tune, spiking max-pool")
    p.add_argument("model", nargs="?", default="maxpool_cnn_mnist", help="a bundled model or spikeport checkpoint "
                   "with MaxPool2d layers")
    p.add_argument("--T", type=_steps, default=(4, 8, 16), help="time steps, e.g. 4,8,16")
    p.add_argument("--epochs", type=_positive, default=3, help="fine-tuning epochs")
    p.add_argument("--lava-samples", type=_nonnegative, default=16, help="test samples per Lava run (0: none)")
    p.add_argument("--verify-samples", type=_positive, default=100, help="samples verified spike for spike")
    p.add_argument("--samples", type=_positive, default=None, help="use only the first N test samples")
    p.add_argument("--out", type=Path, default=Path("out/maxpool"),
                   help="folder for maxpool.json, maxpool.md and the fine-tuned checkpoint")

    p = add("lowlat", "every configuration for very few time steps (twins at L = 2, 4, 8, QCFS and NQ; qcfs, ftbc, "
            "cos, tpp, ftbc+tpp, graded): held-out and test accuracy, latency, energy; the pick for each T")
    p.add_argument("model", nargs="?", default="cnn_mnist", help="a bundled family: cnn_mnist or mlp_digits")
    p.add_argument("--T", type=_steps, default=(1, 2, 4), help="time steps, e.g. 1,2,4")
    p.add_argument("--samples", type=_positive, default=None, help="use only the first N test samples")
    p.add_argument("--lava-samples", type=_nonnegative, default=16, help="samples verified in Lava per pick (0: none)")
    p.add_argument("--out", type=Path, default=Path("out/lowlat"), help="folder for lowlat.json, .md and .html")

    p = add("netx-reset", "the netx form (reset to zero) against spikeport's soft reset: accuracy at each T, "
            "and the written .net file in lava-dl's netx compared with sim")
    p.add_argument("models", nargs="*", default=["mlp_digits", "cnn_mnist"], help="bundled models or checkpoints")
    p.add_argument("--T", type=_steps, default=(4, 8, 16), help="time steps, e.g. 4,8,16")
    p.add_argument("--samples", type=_positive, default=None, help="use only the first N test samples")
    p.add_argument("--lava-samples", type=_nonnegative, default=4, help="samples run through lava-dl's netx (0: none)")
    p.add_argument("--out", type=Path, default=Path("out/netx_reset"), help="folder for the exports, "
                   "netx_reset.json and netx_reset.md")

    p = add("conformance", "reproduce lava-dl 0.6.0's own ground-truth traces with sim (exit 1 on any mismatch)")
    p.add_argument("--only", default=None, help="comma-separated subset of tinynet, dense, pilotnet_lif, ntidigits")
    p.add_argument("--lava", action="store_true", help="also run every .net file through lava-dl's netx in Lava "
                   "and compare it with sim")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("bench", "speed benchmarks, side by side in one run (figures for BENCHMARKS.md)")
    p.add_argument("--suite", choices=["perf", "netx", "families", "peers", "kernels", "cifar10", "relu"],
                   default="perf",
                   help="perf: the MNIST-5k CNN and a VGG-style net on sim, torch, Lava and the float ANN, with "
                   "scaling tables; netx: lava-dl's pilotnet_lif and ntidigits, sim vs Lava; families: the "
                   "standard CNN families through both importers, verified, with sizes and Loihi 2 estimates; "
                   "peers: sim beside SpikingJelly and snnTorch (optional, pip install --no-deps spikingjelly "
                   "snntorch loguru) on the same networks; kernels: one convolution or product at a time on "
                   "float32 and int8 kernels; cifar10: the seed methods on the zoo's CIFAR-10 networks (--data), "
                   "float and integer, beside the published figures; relu: a plain-ReLU network (--model)")
    p.add_argument("--data", type=_data, default="cifar10", help="cifar10: the data set (a path, or cifar10 under "
                   "$SPIKEPORT_DATA)")
    p.add_argument("--models", default="resnet20_cifar10_l4", help="cifar10: comma-separated models (their NQ twins "
                   "are found by name)")
    p.add_argument("--Ts", type=_ints, default=(1, 2, 4, 8, 16, 32), help="cifar10: time steps")
    p.add_argument("--samples", type=_positive, default=None, help="cifar10: test samples (default: all)")
    p.add_argument("--oracle-samples", type=_positive, default=1000, help="cifar10: test samples also run on "
                   "torch_int, whose logits must equal sim's")
    p.add_argument("--methods", default="qcfs,ftbc,cos,tpp,graded,nq", help="cifar10: comma-separated subset")
    p.add_argument("--model", default=None, help="relu: a network trained with plain ReLU (.onnx or .pt): accuracy "
                   "against T with the default threshold percentile, the best one on held-out data, and FTBC")
    p.add_argument("--mean", type=_floats, default=None, help="relu: the model's input normalisation")
    p.add_argument("--std", type=_floats, default=None, help="relu: see --mean")
    p.add_argument("--T", type=_positive, default=None, help="time steps (perf, netx: 8; families: 4)")
    p.add_argument("--batch", type=_positive, default=64)
    p.add_argument("--lava-samples", type=_ints, default=None, help="samples streamed through Lava per network "
                   "(perf: CNN,VGG, default 8,2; peers: CNN,VGG,ResNet-18, default 2,1,1; 0: leave Lava out)")
    p.add_argument("--repeat", type=_positive, default=3, help="repetitions (the fastest is kept)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that every figure is produced")
    p.add_argument("--out", type=Path, default=None, help="also write bench.json and bench.md here")
    p.add_argument("--json", action="store_true", help="print JSON")
    _device_arg(p)

    p = add("export", "write the converted SNN as a Lava package, as NIR (details NIR cannot hold go to a "
            "sidecar JSON), or check netx")
    _model_args(p)
    p.add_argument("--T", type=_positive, default=8, help="T the integer network is quantized for")
    p.add_argument("--lava", type=Path, default=None, help="folder for a Lava package: the network and a loader "
                   "that needs only lava-nc and numpy (see its README.md)")
    p.add_argument("--examples", type=_nonnegative, default=16, help="test samples stored with the Lava package")
    p.add_argument("--nir", type=Path, default=None, help="NIR file to write")
    p.add_argument("--netx", type=Path, default=None, help="folder for a lava-dl netx export (network.net, an "
                   "example script, README); needs --reset zero unless the network is netx-exact")
    p.add_argument("--reset", choices=["subtract", "zero"], default="subtract",
                   help="netx: subtract (spikeport's neuron; lists what netx cannot hold) or zero (the nearest "
                   "netx form: reset-to-zero neurons; its accuracy cost is measured and reported)")
    p.add_argument("--samples", type=_positive, default=1000, help="netx --reset zero: test samples the "
                   "accuracy cost is measured on")

    p = add("eval", "hardware-in-the-loop evaluation on one target, resumable (results.jsonl + config.toml)")
    p.add_argument("model", nargs="?", default=None, help=MODEL_HELP + " (omit with --config)")
    p.add_argument("--config", type=Path, default=None, help="a config.toml written by an earlier eval: rerun it")
    p.add_argument("--target", choices=["torch_int", "sim", "lava", "loihi2"], default="sim",
                   help="torch_int: the integer PyTorch reference (zero delay)")
    p.add_argument("--T", type=_positive, default=8)
    p.add_argument("--method", choices=["qcfs", "ftbc", "cos", "tpp", "graded"], default="qcfs")
    p.add_argument("--rho", type=_positive, default=4)
    p.add_argument("--seed", type=_nonnegative, default=0)
    p.add_argument("--data", type=_data, default=None, help="digits, mnist5k or an .npz file")
    p.add_argument("--samples", type=_nonnegative, default=0, help="first N test samples (0: all)")
    p.add_argument("--calib", type=_positive, default=512)
    p.add_argument("--verify-every", type=_nonnegative, default=0, help="check every N-th sample against the reference")
    p.add_argument("--chunk", type=_positive, default=16, help="samples per target call")
    p.add_argument("--out", type=Path, default=None, help="folder for results.jsonl and config.toml (default: "
                   "the --config file's folder, so that the same command resumes the run; else out/eval)")
    _profile_arg(p)
    _device_arg(p)

    p = add("report", "quantization report: per-layer and per-channel rounding, head-room, firing, energy")
    _model_args(p)
    p.add_argument("--T", type=_positive, default=8)
    p.add_argument("--samples", type=_positive, default=256, help="calibration samples the report measures on")
    p.add_argument("--out", type=Path, default=Path("out/report"), help="folder for quantization.json and .html")

    p = add("fuzz", "random integer networks on torch_int, sim and Lava, and damaged input files: exit 1 on any "
            "disagreement or unclear error")
    p.add_argument("--cases", type=_nonnegative, default=200, help="random networks (0: none)")
    p.add_argument("--files", type=_nonnegative, default=0, help="damaged files per kind (onnx, checkpoint, netx, nir, "
                   "config, results)")
    p.add_argument("--seed", type=_nonnegative, default=0, help="first case seed (case i uses seed + i)")
    p.add_argument("--lava-every", type=_nonnegative, default=10, help="run every N-th case in Lava too (0: never)")
    p.add_argument("--verbose", action="store_true", help="a line per case, not only per disagreement")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")

    p = add("mutants", "plant faults in sim and show that verify and the fuzzer catch each (exit 1 if one is missed)")
    p.add_argument("--json", action="store_true", help="print {mutants, caught, missed} as JSON")

    p = add("lava-env", "create the Lava environment (Python 3.10, lava-nc 0.10, lava-dl 0.6) and fetch lava-dl's "
            "ground-truth traces, in spikeport's cache folder; idempotent")
    p.add_argument("--python", default=None, help="a Python 3.10 interpreter (default: pyenv's 3.10, then python3.10)")

    p = add("info", "show the imported graph, the spiking network and its quantization")
    _model_args(p)
    p.add_argument("--T", type=_positive, default=8)

    p = add("train", "train a model of the zoo with the QCFS recipe")
    p.add_argument("arch", choices=["cnn_mnist", "mlp_digits", "resnet_digits", "vgg_mnist", "maxpool_cnn_mnist",
                                    "resnet20_cifar10", "vgg16_cifar10"])
    p.add_argument("--levels", type=_positive, default=8, help="QCFS quantization levels L")
    p.add_argument("--epochs", type=_positive, default=None, help="epochs (default 40; CIFAR networks 200); "
                   "with --budget the most it may choose")
    p.add_argument("--budget", type=_seconds, default=None, help="wall-clock seconds: choose the epoch count "
                   "that fits, timed on this machine (recorded in the checkpoint)")
    p.add_argument("--data", type=_data, default=None, help="the data set (default: the architecture's; "
                   "CIFAR networks: cifar10 under $SPIKEPORT_DATA, or a path)")
    p.add_argument("--log", action="store_true", help="a line per epoch instead of a progress bar")
    p.add_argument("--init", default=None, help="continue from this checkpoint's weights (same architecture and L)")
    p.add_argument("--lr", type=_positive_float, default=None, help="peak learning rate (default: the recipe's)")
    p.add_argument("--warmup", type=_positive_float, default=None, help="one-cycle warm-up fraction")
    _device_arg(p)
    p.add_argument("--seeds", type=_ints, default=(0,), help="seeds to train; the best on the "
                   "held-out selection metric is kept, e.g. 0,1,2")
    p.add_argument("--nq", action="store_true", help="NQ: train with noise refitted to the SNN-ANN gap")
    p.add_argument("--noise-T", type=_positive, default=4, help="NQ: time steps of the SNN whose gap to the ANN "
                   "sets the noise")
    p.add_argument("--out", type=Path, required=True)

    p = add("finetune", "replace a model's max-pools by average pools and train it a few epochs more")
    p.add_argument("model", help="a bundled model or a spikeport checkpoint (.pt) with MaxPool2d layers")
    p.add_argument("--data", type=_data, help="digits, mnist5k or an .npz file (default: the checkpoint's data set)")
    p.add_argument("--epochs", type=_positive, default=3)
    p.add_argument("--lr", type=_positive_float, default=0.01, help="initial learning rate (cosine schedule)")
    p.add_argument("--seed", type=_nonnegative, default=0)
    p.add_argument("--out", type=Path, required=True, help="the fine-tuned checkpoint (.pt)")
    return parser


def _prepare(args):
    """The one recipe (``api.prepare``): the prepared model and its float SNN running ``--method``."""
    from spikeport.api import prepare

    p = prepare(args.model, args.data, args.calib, args.maxpool, _check_device(args.device), args.mean,
                args.std, args.percentile)
    return p, p.method(args.method, args.T, args.rho, args.seed)


def cmd_demo(args) -> int:
    from spikeport.demo import all_exact, demo

    report = demo(args.out, model=args.model, Ts=args.T, lava_T=args.lava_T, lava_samples=args.lava_samples,
                  test_samples=args.samples, lava=args.lava_samples > 0,
                  methods_Ts=tuple(t for t in args.methods_T if t > 0), tpp_seeds=args.tpp_seeds,
                  methods_samples=args.methods_samples)
    return 0 if all_exact(report) else 1


SIM_KERNELS = {"auto": None, "int8": True, "float32": False}  # SimTarget's int8 setting


def _sim_kernels_arg(p) -> None:
    p.add_argument("--sim-kernels", choices=list(SIM_KERNELS), default="auto",
                   help="sim's binary synapses: int8 (oneDNN's integer kernels; an error where they are not exact "
                   "here), float32, or auto: int8 where the CPU has int8 dot-product instructions (spikeport info)")


def cmd_run(args) -> int:
    from spikeport.api import accuracy, run

    p, snn = _prepare(args)
    x, y = p.data.x_test[:args.samples], p.data.y_test[:args.samples]
    net = snn if args.target == "torch_float" else p.quantize(snn, args.T, args.profile)
    options = {} if args.target == "lava" else {"device": args.device}
    if args.stream:
        if args.target != "sim":
            from spikeport.toolchain.errors import SpikeportError
            raise SpikeportError("--stream applies to the sim target")
        options["stream"] = True
    if args.target == "sim":
        options["int8"] = SIM_KERNELS[args.sim_kernels]
    trace = run(net, x, args.T, args.target, **options)
    acc = accuracy(trace, y)
    overflow = int(sum(trace.overflow.values()))
    if args.json:
        print(json.dumps({"target": args.target, "T": args.T, "acc": acc, "n": len(x), "overflow": overflow}))
    else:
        print(f"{args.target} T={args.T}: accuracy {100 * acc:.2f}% on {len(x)} test samples"
              + (f" ({overflow} membrane overflow events)" if overflow else ""))
    return 0


def cmd_verify(args) -> int:
    from spikeport.api import verify

    p, snn = _prepare(args)
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    bad = [t for t in targets if t not in ("sim", "lava")]
    if bad:
        from spikeport.toolchain.errors import SpikeportError
        raise SpikeportError(f"unknown verification target(s) {bad}; choose from sim, lava")
    q = p.quantize(snn, args.T, args.profile)
    rows, _ = verify(q, p.data.x_test[:args.samples], args.T, targets=targets,
                     target_options={"lava": {"timeout": args.timeout},
                                     "sim": {"device": args.device, "int8": SIM_KERNELS[args.sim_kernels]}},
                     device=args.device)
    return _print_checks(rows, args.json)


def _print_checks(checks: list, as_json: bool) -> int:
    """Verification or conformance results, a line each (or JSON); exit status 1 unless all exact."""
    if as_json:
        print(json.dumps([c.to_dict() for c in checks], indent=1))
    else:
        for c in checks:
            print(c.line())
    return 0 if all(c.exact for c in checks) else 1


def cmd_info(args) -> int:
    p, snn = _prepare(args)
    model = p.model
    print(f"# float graph ({model.name})\n{model.graph.summary()}\n\n# spiking network\n{snn.summary()}")
    q = p.quantize(snn, args.T, args.profile)
    print(f"\n# quantized for T={args.T} ({q.profile.name})")
    for layer in q.meta["quantization"]:
        exps = [p.get("weight_exp", "analog") for p in layer["projections"]]
        thr = f"2^{layer['threshold_exp']}" if layer["threshold_exp"] is not None else "-"
        print(f"{layer['population']:<14} threshold {thr:<6} weight exponents {exps!s:<14} "
              f"head-room used {100 * layer['headroom_used']:.1f}%")
    from spikeport.toolchain.costs.resources import estimate
    from spikeport.toolchain.passes.lowering import lower

    print(f"\n# resources at T={args.T} (an estimate from published chip limits)")
    print("\n".join(estimate(lower(q, args.T)).lines()))
    from spikeport.targets.int8_kernels import describe

    print(f"\n# sim on this machine\nsynapse kernels: {describe()}")
    return 0


def cmd_train(args) -> int:
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


def cmd_finetune(args) -> int:
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


def _write_table(table, out: Path, stem: str) -> int:
    """``stem``.json and ``stem``.md of a method table in ``out``; exit 1 unless every check was exact."""
    from dataclasses import asdict

    from spikeport.toolchain.files import write_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / f"{stem}.json", json.dumps(asdict(table), indent=1))
    md = table.markdown()
    write_atomic(out / f"{stem}.md", md + "\n")
    print(md)
    exact = table.notes["all_checks_exact"]
    print(f"integer checks: {len(table.checks)}, all exact: {exact}")
    return 0 if exact else 1


def _bench_cifar(args) -> int:
    import time

    from spikeport.studies.methods_table import compare_methods, published_markdown, row_times
    from spikeport.toolchain.files import write_atomic

    out = args.out or Path("out/cifar10")
    ok = True
    for model in args.models.split(","):
        t0 = time.perf_counter()
        table = compare_methods(model, Ts=tuple(args.Ts), tpp_seeds=1, lava_Ts=(2, 8),
                                lava_samples=args.lava_samples[0] if args.lava_samples else 4, verify_samples=8,
                                test_samples=args.samples, data=args.data, oracle_samples=args.oracle_samples,
                                methods=tuple(args.methods.split(",")))
        table.timings["total_s"] = time.perf_counter() - t0
        ok &= _write_table(table, out / model, "cifar10") == 0
        arch = table.notes.get("arch") or model.rsplit("_l", 1)[0].replace("_nq", "")
        extra = "\n\n".join(t for t in (published_markdown(arch, tuple(args.Ts)), row_times(table)) if t)
        write_atomic(out / model / "cifar10_published_and_times.md", extra + "\n")
        print(f"\n{extra}\n\n{model}: {table.n_test} test samples ({table.dataset}), {table.timings['total_s']:.0f} s")
    return 0 if ok else 1


def _bench_relu(args) -> int:
    from spikeport.studies.methods_table import relu_markdown, relu_study
    from spikeport.toolchain.errors import SpikeportError
    from spikeport.toolchain.files import write_atomic

    if not args.model:
        raise SpikeportError("--suite relu needs --model (an .onnx file or a spikeport .pt checkpoint)")
    res = relu_study(args.model, data=args.data, mean=args.mean, std=args.std, Ts=tuple(args.Ts),
                     test_samples=args.samples, oracle_samples=args.oracle_samples,
                     log=lambda s: print(f"bench: {s}", file=sys.stderr, flush=True))
    md = relu_markdown(res)
    out = args.out or Path("out/relu")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "relu.json", json.dumps(res, indent=1))
    write_atomic(out / "relu.md", md + "\n")
    print(md)
    print(f"sim vs torch_int logits on the first {args.oracle_samples} test samples, every row: "
          f"{'exact' if res['all_checks_exact'] else 'MISMATCH'}")
    return 0 if res["all_checks_exact"] else 1


def cmd_methods(args) -> int:
    from spikeport.studies.methods_table import compare_methods

    table = compare_methods(args.model, Ts=args.T, rho=args.rho, tpp_seeds=args.tpp_seeds, lava_Ts=args.lava_T,
                            lava_samples=args.lava_samples, verify_samples=args.verify_samples,
                            test_samples=args.samples)
    return _write_table(table, args.out, "methods")


def cmd_maxpool(args) -> int:
    from spikeport.studies.maxpool_table import compare_maxpool

    args.out.mkdir(parents=True, exist_ok=True)
    table = compare_maxpool(args.model, Ts=args.T, epochs=args.epochs, lava_samples=args.lava_samples,
                            verify_samples=args.verify_samples, test_samples=args.samples, out=args.out)
    return _write_table(table, args.out, "maxpool")


def cmd_lowlat(args) -> int:
    from spikeport.studies.lowlat import markdown, study, write

    res = study(args.model, Ts=args.T, lava_samples=args.lava_samples, test_samples=args.samples,
                log=lambda s: print(s, file=sys.stderr, flush=True))
    write(res, args.out)
    print(markdown(res))
    print(f"wrote {args.out / 'lowlat.html'}; picks verified spike for spike: {res['all_checks_exact']}")
    return 0 if res["all_checks_exact"] else 1


def cmd_netx_reset(args) -> int:
    from spikeport.interop.netx_export import reset_table
    from spikeport.toolchain.files import write_atomic

    res = reset_table(args.models, args.T, args.out, samples=args.samples, lava_samples=args.lava_samples,
                      log=lambda s: print(s, file=sys.stderr, flush=True))
    write_atomic(args.out / "netx_reset.json", json.dumps(res["rows"], indent=1))
    write_atomic(args.out / "netx_reset.md", res["markdown"] + "\n")
    print(res["markdown"])
    return 1 if any(r["lava_exact"] is False for r in res["rows"]) else 0


def cmd_conformance(args) -> int:
    from spikeport.quality.conformance import SUITE, run_suite
    from spikeport.toolchain.errors import SpikeportError

    names = [n.strip() for n in args.only.split(",")] if args.only else None
    unknown = [n for n in names or [] if n not in SUITE]
    if unknown:
        raise SpikeportError(f"unknown conformance trace(s) {unknown}; choose from {sorted(SUITE)}")
    return _print_checks(run_suite(names, lava=args.lava), args.json)


def cmd_export(args) -> int:
    from spikeport.interop.netx import netx_obstacles
    from spikeport.interop.nir import export_nir
    from spikeport.toolchain.errors import SpikeportError, UnsupportedOpError

    if args.nir is None and args.netx is None and args.lava is None:
        raise SpikeportError("nothing to do: pass --lava DIR, --nir FILE and/or --netx DIR")
    p, snn = _prepare(args)
    q = p.quantize(snn, args.T, args.profile)
    if args.lava is not None:
        from spikeport.targets.lava.package import export_lava

        spec = export_lava(args.lava, q, p.model.name, args.method, p.data.x_test[:args.examples],
                           p.data.y_test[:args.examples])
        from spikeport.targets.lava.environment import lava_python

        try:
            python = lava_python()
        except SpikeportError:
            python = "<the Lava environment's python>"
        print(f"wrote the Lava package {args.lava} ({len(spec['lifs'])} populations, T={spec['T']}, a sample every "
              f"{spec['period']} steps); run it with: {python} {args.lava / 'run_example.py'}")
    if args.nir is not None:
        export_nir(snn, args.nir, integer=q)
        print(f"wrote {args.nir} and {args.nir}.spikeport.json")
    if args.netx is not None and args.reset == "zero":
        from spikeport.interop.netx_export import export_netx

        d = p.data
        info = export_netx(args.netx, q, args.T, p.model.name, d.x_test[:args.examples], d.y_test[:args.examples],
                           d.x_test[:args.samples], d.y_test[:args.samples])
        print(f"wrote {args.netx / 'network.net'} (lava-dl netx, reset to zero, T={args.T}, reset_interval={args.T}); "
              f"accuracy on {info['samples']} test samples (sim): soft reset {info['soft_reset']:.1%}, this file "
              f"{info['reset_zero']:.1%}; run it with: python {args.netx / 'run_netx_example.py'}")
    elif args.netx is not None:
        problems = netx_obstacles(q)
        if problems:
            raise UnsupportedOpError(f"netx cannot express this network exactly ({len(problems)} problem(s)): "
                                     + "; ".join(problems) + ". --reset zero writes the nearest netx form and "
                                     "measures what it costs")
    return 0


def cmd_eval(args) -> int:
    from spikeport.evaluate import EvalConfig, Evaluation
    from spikeport.toolchain.errors import SpikeportError

    if args.out is None:
        args.out = args.config.parent if args.config is not None else Path("out/eval")
    if args.config is not None:
        cfg = EvalConfig.from_toml(args.config)
    elif args.model is None:
        raise SpikeportError("give a model or --config")
    else:
        cfg = EvalConfig(model=args.model, target=args.target, T=args.T, method=args.method, rho=args.rho,
                         seed=args.seed, data=args.data or "", samples=args.samples, calib=args.calib,
                         verify_every=args.verify_every, chunk=args.chunk, profile=args.profile)
    again = f"spikeport eval --config {shlex.quote(str((args.out / 'config.toml').resolve()))}"

    def announce(_config: Path) -> None:  # said before the work, so that a run stopped half-way can be resumed
        print(f"eval: results in {args.out.resolve()}; resume (or reproduce) with: {again}", file=sys.stderr,
              flush=True)

    s = Evaluation(cfg, args.out, device=_check_device(args.device), announce=announce).run()
    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun, rank 0 speaks for all
        return 0 if s["verified_exact"] in (None, True) else 1
    ver = f", {s['verified']} verified, all exact: {s['verified_exact']}" if s["verified"] else ""
    print(f"{cfg.model} on {cfg.target} (T={cfg.T}, {cfg.method}): accuracy {100 * s['accuracy']:.2f}% on "
          f"{s['samples']} samples, latency {s['latency_steps']} steps, {s['spikes_per_sample']:,.0f} spikes and "
          f"{s['synops_per_sample']:,.0f} synaptic ops per sample, {1000 * s['wall_s_per_sample']:.1f} ms per sample"
          + ver)
    print(f"results: {args.out / 'results.jsonl'}; rerun with: {again}")
    return 0 if s["verified_exact"] in (None, True) else 1


def cmd_report(args) -> int:
    from spikeport.reports.quantization import quantization_report, write_qreport

    p, snn = _prepare(args)
    q = p.quantize(snn, args.T, args.profile)
    r = quantization_report(snn, q, p.data.x_train[:args.samples], p.model.graph)
    write_qreport(r, args.out)
    for line in r["summary"]:
        print(line)
    net = r["network"]
    print(f"per inference: {net['synops_per_inference']:,.0f} synaptic ops, {net['spikes_per_inference']:,.0f} spikes, "
          f"~{net['snn_energy_uJ']:.3g} uJ on Loihi" + (f" vs ~{net['ann_energy_uJ']:.3g} uJ for the ANN's MACs"
                                                        if "ann_energy_uJ" in net else ""))
    print(f"wrote {args.out / 'quantization.html'} and {args.out / 'quantization.json'}")
    return 0


def _bench_output(args, res: dict, md: str, stem: str) -> None:
    """Print the bench's tables (or JSON) and write ``stem``.json and ``stem``.md to ``--out``."""
    from spikeport.toolchain.files import write_atomic

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_atomic(args.out / f"{stem}.json", json.dumps(res, indent=1))
        write_atomic(args.out / f"{stem}.md", md + "\n")
    print(json.dumps(res, indent=1) if args.json else md)


def cmd_bench(args) -> int:
    if args.suite == "cifar10":
        return _bench_cifar(args)
    if args.suite == "relu":
        return _bench_relu(args)
    if args.suite == "families":
        from spikeport.quality.coverage import bench_families, coverage_table

        res = bench_families(T=args.T or 4, lava=not args.quick, large=not args.quick,
                             log=lambda s: print(f"bench: {s}", file=sys.stderr, flush=True))
        _bench_output(args, res, coverage_table(res), "families")
        ok = all(r["sim_exact"] and r["lava_exact"] is not False for r in res["rows"])
        return 0 if ok else 1
    if args.suite == "peers":
        from spikeport.quality.peers import bench_peers, peers_table
        from spikeport.quality.perf import bundled_cnn, random_resnet18, random_vgg
        from spikeport.toolchain.errors import SpikeportError

        n = 16 if args.quick else args.batch
        lava = tuple(args.lava_samples or ((0, 0, 0) if args.quick else (2, 1, 1)))  # bench_peers pads with 0
        if len(lava) > 3:
            raise SpikeportError(f"--lava-samples takes up to three counts (CNN,VGG,ResNet-18), got {lava}")
        nets = [bundled_cnn(n), random_vgg(n), random_resnet18(n, width=8 if args.quick else 64)]
        res = bench_peers(nets, T=args.T or 8, batch=n, repeat=args.repeat, lava_samples=lava,
                          log=lambda s: print(f"bench: {s}", file=sys.stderr, flush=True))
        _bench_output(args, res, peers_table(res), "peers")
        return 0
    if args.suite == "kernels":
        from spikeport.quality.kernels import bench_kernels, kernels_table

        res = bench_kernels(images=64 if args.quick else 512, repeat=args.repeat,
                            log=lambda s: print(f"bench: {s}", file=sys.stderr, flush=True))
        _bench_output(args, res, kernels_table(res), "kernels")
        return 0 if all(r["equal"] for r in res["rows"]) else 1
    if args.suite == "netx":
        from spikeport.quality.bench_netx import bench_netx, table

        rows = bench_netx(repeat=args.repeat)
        print(json.dumps(rows, indent=1) if args.json else table(rows))
        return 0
    from dataclasses import replace

    from spikeport.quality.perf import PerfConfig, bench_perf, perf_tables
    from spikeport.toolchain.errors import SpikeportError

    args.lava_samples = args.lava_samples or (8, 2)
    lava = tuple(args.lava_samples) + (0,) * (2 - len(args.lava_samples))
    if len(lava) != 2 or min(lava) < 0:
        raise SpikeportError(f"--lava-samples takes one or two counts (CNN,VGG), got {args.lava_samples}")
    cfg = PerfConfig.quick() if args.quick else PerfConfig(
        T=args.T or 8, batch=args.batch, lava_samples=lava, repeat=args.repeat)
    cfg = replace(cfg, device=_check_device(args.device))
    res = bench_perf(cfg, log=lambda s: print(f"bench: {s}", file=sys.stderr, flush=True))
    _bench_output(args, res, perf_tables(res), "bench")
    exact = [n["lava_exact"] for n in res["networks"] if n["lava_exact"] is not None]
    return 0 if all(exact) else 1


def cmd_fuzz(args) -> int:
    from tqdm import tqdm

    from spikeport.quality.fuzz import fuzz, summary

    status = 0
    if args.files > 0:
        status = _fuzz_files(args)
    if args.cases <= 0:
        return status
    bar = tqdm(total=args.cases, desc="fuzz", unit="case", file=sys.stderr)

    def log(o) -> None:
        bar.update(1)
        if args.verbose or not o.exact:
            tqdm.write(o.line())

    outcomes = fuzz(args.cases, seed=args.seed, lava_every=max(0, args.lava_every), log=log)
    bar.close()
    s = summary(outcomes)
    if args.json:
        print(json.dumps(s, indent=1))
    else:
        print(f"{s['cases']} cases (seeds {args.seed}..{args.seed + args.cases - 1}), {s['lava_cases']} of them "
              f"also in Lava; {s['beyond_headroom_cases']} beyond the head-room; {s['independent_values']:,} values "
              f"compared against independent code ({s['beyond_headroom_independent_values']:,} of them beyond the "
              "head-room) "
              f"and {s['self_check_values']:,} in self-checks; {100 * s['silent_layer_share']:.1f}% of hidden layers "
              f"silent; {s['disagreements']} disagreements")
    return 1 if s["disagreements"] or status else 0


def _fuzz_files(args) -> int:
    from collections import Counter

    from tqdm import tqdm

    from spikeport.quality.filefuzz import KINDS, fuzz_files

    bar = tqdm(total=args.files * len(KINDS), desc="fuzz files", unit="file", file=sys.stderr)

    def log(o) -> None:
        bar.update(1)
        if args.verbose or o.result == "FAILED":
            tqdm.write(f"{o.result:<11} {o.kind:<10} {o.mutation}: {o.detail[:200]}")

    outcomes = fuzz_files(args.files, seed=args.seed, log=log)
    bar.close()
    counts = Counter((o.kind, o.result) for o in outcomes)
    for kind in KINDS:
        print(f"{kind:<10} {sum(v for (k, _), v in counts.items() if k == kind):>5} files: "
              + ", ".join(f"{counts[(kind, r)]} {r}" for r in ("accepted", "clear error", "FAILED")))
    failed = sum(o.result == "FAILED" for o in outcomes)
    print(f"{len(outcomes)} damaged files, {failed} without a clear error")
    return 1 if failed else 0


def cmd_mutants(args) -> int:
    from spikeport.quality.mutants import run_mutants

    results, baseline = run_mutants(log=None if args.json else lambda r: print(r.line(), flush=True))
    missed = [r.name for r in results if r.caught_by is None]
    if args.json:
        print(json.dumps({"mutants": len(results), "caught": len(results) - len(missed), "missed": missed,
                          "baseline_failure": None if baseline is None else list(baseline)}, indent=1))
    else:
        if baseline is not None:
            print(f"the unmutated code fails {baseline[0]}: {baseline[1]}")
        print(f"{len(results)} mutants, {len(results) - len(missed)} caught, {len(missed)} missed")
    return 1 if missed or baseline is not None else 0


def cmd_lava_env(args) -> int:
    from spikeport.lava_env import create

    env, netx = create(args.python)
    print(f"Lava environment: {env}\nlava-dl ground-truth traces: {netx}")
    return 0


COMMANDS = {
    "demo": cmd_demo, "run": cmd_run, "verify": cmd_verify, "eval": cmd_eval, "methods": cmd_methods,
    "report": cmd_report, "conformance": cmd_conformance, "bench": cmd_bench, "export": cmd_export, "info": cmd_info,
    "train": cmd_train, "finetune": cmd_finetune, "maxpool": cmd_maxpool, "netx-reset": cmd_netx_reset,
    "lowlat": cmd_lowlat,
    "fuzz": cmd_fuzz, "lava-env": cmd_lava_env, "mutants": cmd_mutants,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from spikeport.toolchain.errors import SpikeportError

    try:
        return COMMANDS[args.command](args)
    except SpikeportError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"spikeport: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spikeport: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # anything else is a bug: still one line, the traceback behind --debug
        if args.debug:
            traceback.print_exc()
        print(f"spikeport: internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(run with --debug for the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
