"""``spikeport eval``: hardware-in-the-loop evaluation on one target, resumable."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from spikeport.cli.args import (
    MODEL_HELP,
    add_command,
    check_device,
    data,
    device_arg,
    nonnegative,
    positive,
    profile_arg,
)

EXAMPLE = "spikeport eval cnn_mnist --target lava --T 8 --samples 64 --verify-every 8 --out out/eval"


def register(sub) -> None:
    p = add_command(sub, "eval", "hardware-in-the-loop evaluation on one target, resumable (results.jsonl + "
                    "config.toml)", EXAMPLE)
    p.add_argument("model", nargs="?", default=None, help=MODEL_HELP + " (omit with --config)")
    p.add_argument("--config", type=Path, default=None, help="a config.toml written by an earlier eval: rerun it")
    p.add_argument("--target", choices=["torch_int", "sim", "lava", "loihi2_hw"], default="sim",
                   help="torch_int: the integer PyTorch reference (zero delay)")
    p.add_argument("--T", type=positive, default=8)
    p.add_argument("--method", choices=["qcfs", "ftbc", "cos", "tpp", "graded"], default="qcfs")
    p.add_argument("--rho", type=positive, default=4)
    p.add_argument("--seed", type=nonnegative, default=0)
    p.add_argument("--data", type=data, default=None, help="digits, mnist5k or an .npz file")
    p.add_argument("--samples", type=nonnegative, default=0, help="first N test samples (0: all)")
    p.add_argument("--calib", type=positive, default=512)
    p.add_argument("--verify-every", type=nonnegative, default=0, help="check every N-th sample against the reference")
    p.add_argument("--chunk", type=positive, default=16, help="samples per target call")
    p.add_argument("--out", type=Path, default=None, help="folder for results.jsonl and config.toml (default: "
                   "the --config file's folder, so that the same command resumes the run; else out/eval)")
    profile_arg(p)
    device_arg(p)
    p.set_defaults(run=run)


def run(args) -> int:
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

    s = Evaluation(cfg, args.out, device=check_device(args.device), announce=announce).run()
    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun, rank 0 speaks for all
        return 0 if s["verified_exact"] in (None, True) else 1
    ver = f", {s['verified']} verified, all exact: {s['verified_exact']}" if s["verified"] else ""
    print(f"{cfg.model} on {cfg.target} (T={cfg.T}, {cfg.method}): accuracy {100 * s['accuracy']:.2f}% on "
          f"{s['samples']} samples, latency {s['latency_steps']} steps, {s['spikes_per_sample']:,.0f} spikes and "
          f"{s['synops_per_sample']:,.0f} synaptic ops per sample, {1000 * s['wall_s_per_sample']:.1f} ms per sample"
          + ver)
    print(f"results: {args.out / 'results.jsonl'}; rerun with: {again}")
    return 0 if s["verified_exact"] in (None, True) else 1
