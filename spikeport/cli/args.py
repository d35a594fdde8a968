"""What more than one command of the ``spikeport`` command line uses: argument types, the shared
arguments (the model, the target profile, the torch device, sim's kernels) and the shared steps
(preparing the model, printing checks, writing a method table)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MODEL_HELP = ("a bundled model (cnn_mnist, mlp_digits, resnet_digits), a spikeport checkpoint (.pt) or an "
              "ONNX file")


def add_command(sub, name: str, help_: str, example: str) -> argparse.ArgumentParser:
    """A subcommand's parser: its help is also its description; its epilog shows ``example``."""
    return sub.add_parser(name, help=help_, description=help_, epilog=f"example:\n  {example}",
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def steps(text: str) -> tuple[int, ...]:
    vals = ints(text)
    if any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"time steps must be positive, got {text!r}")
    return vals


def positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {v}")
    return v


def data(text: str) -> str:
    if text in ("digits", "mnist5k", "cifar10", "cifar100") or text.endswith(".npz") or Path(text).exists():
        return text
    raise argparse.ArgumentTypeError(f"expected digits, mnist5k, cifar10, cifar100 or a path (an .npz file, a CIFAR "
                                     f"python folder or .tar.gz, an image folder with train/ and test/), got {text!r}")


def floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def nonnegative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v}")
    return v


def positive_float(text: str, unit: str = "") -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number{' of ' + unit if unit else ''}, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0{' ' + unit if unit else ''}, got {text}")
    return v


def _percent(text: str) -> float:
    v = positive_float(text)
    if v > 100:
        raise argparse.ArgumentTypeError(f"a percentile is at most 100, got {text}")
    return v


def seconds(text: str) -> float:
    return positive_float(text, "seconds")


def model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--data", type=data, help="digits, mnist5k or an .npz file with x_train, y_train, x_test, "
                   "y_test (default: the data set the checkpoint "
                   "was trained on; required for ONNX files)")
    p.add_argument("--mean", type=floats, default=None, help="input normalisation (x - mean) / std per channel, "
                   "folded into the first layer, e.g. 0.49,0.48,0.45")
    p.add_argument("--std", type=floats, default=None, help="see --mean, e.g. 0.25,0.24,0.26")
    p.add_argument("--maxpool", choices=["error", "average", "spiking"], default="error",
                   help="MaxPool2d: refuse it (default), replace it by average pooling, or run spikeport's "
                   "spiking max-pool (exact on sim and Lava)")
    p.add_argument("--allow-maxpool", dest="maxpool", action="store_const", const="average",
                   help=argparse.SUPPRESS)  # the earlier spelling of --maxpool average
    p.add_argument("--calib", type=positive, default=512, help="training samples used for calibration")
    p.add_argument("--percentile", type=_percent, default=99.9, help="a plain ReLU layer's threshold: this "
                   "percentile of its activations on the calibration samples")
    p.add_argument("--method", choices=["qcfs", "ftbc", "cos", "tpp", "graded"], default="qcfs",
                   help="calibration method on top of the QCFS conversion (NQ: pass an *_nq model); graded: "
                   "graded spikes (Loihi 2 spike payloads of up to L thresholds)")
    p.add_argument("--rho", type=positive, default=4, help="COS pre-run length")
    p.add_argument("--seed", type=nonnegative, default=0, help="TPP seed")
    profile_arg(p)
    device_arg(p)


def profile_arg(p: argparse.ArgumentParser) -> None:
    from spikeport.toolchain.hardware.profiles import PROFILES

    p.add_argument("--profile", choices=sorted(PROFILES), default="loihi2",
                   help="target profile: the bit widths the integers are sized for")


def device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device for conversion, calibration, the reference "
                   "and sim, e.g. cuda or cuda:1 (results are bit-identical to cpu)")


def check_device(device: str) -> str:
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


SIM_KERNELS = {"auto": None, "int8": True, "float32": False}  # SimTarget's int8 setting


def sim_kernels_arg(p) -> None:
    p.add_argument("--sim-kernels", choices=list(SIM_KERNELS), default="auto",
                   help="sim's binary synapses: int8 (oneDNN's integer kernels; an error where they are not exact "
                   "here), float32, or auto: int8 where the CPU has int8 dot-product instructions (spikeport info)")


def prepare(args):
    """The one recipe (``api.prepare``): the prepared model and its float SNN running ``--method``."""
    from spikeport.api import prepare

    p = prepare(args.model, args.data, args.calib, args.maxpool, check_device(args.device), args.mean,
                args.std, args.percentile)
    return p, p.method(args.method, args.T, args.rho, args.seed)


def print_checks(checks: list, as_json: bool) -> int:
    """Verification or conformance results, a line each (or JSON); exit status 1 unless all exact."""
    if as_json:
        print(json.dumps([c.to_dict() for c in checks], indent=1))
    else:
        for c in checks:
            print(c.line())
    return 0 if all(c.exact for c in checks) else 1


def write_table(table, out: Path, stem: str) -> int:
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
