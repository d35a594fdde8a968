"""``spikeport bench``: the speed benchmarks (figures for BENCHMARKS.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from spikeport.cli.args import add_command, check_device, data, device_arg, floats, ints, positive, write_table

EXAMPLE = "spikeport bench --out out/bench"


def register(sub) -> None:
    p = add_command(sub, "bench", "speed benchmarks, side by side in one run (figures for BENCHMARKS.md)", EXAMPLE)
    p.add_argument("--suite", choices=["perf", "netx", "families", "peers", "kernels", "cifar10", "relu"],
                   default="perf",
                   help="perf: the MNIST-5k CNN and a VGG-style net on sim, torch, Lava and the float ANN, with "
                   "scaling tables; netx: lava-dl's pilotnet_lif and ntidigits, sim vs Lava; families: the "
                   "standard CNN families through both importers, verified, with sizes and Loihi 2 estimates; "
                   "peers: sim beside SpikingJelly and snnTorch (optional, pip install --no-deps spikingjelly "
                   "snntorch loguru) on the same networks; kernels: one convolution or product at a time on "
                   "float32 and int8 kernels; cifar10: the seed methods on the zoo's CIFAR-10 networks (--data), "
                   "float and integer, beside the published figures; relu: a plain-ReLU network (--model)")
    p.add_argument("--data", type=data, default="cifar10", help="cifar10: the data set (a path, or cifar10 under "
                   "$SPIKEPORT_DATA)")
    p.add_argument("--models", default="resnet20_cifar10_l4", help="cifar10: comma-separated models (their NQ twins "
                   "are found by name)")
    p.add_argument("--Ts", type=ints, default=(1, 2, 4, 8, 16, 32), help="cifar10: time steps")
    p.add_argument("--samples", type=positive, default=None, help="cifar10: test samples (default: all)")
    p.add_argument("--oracle-samples", type=positive, default=1000, help="cifar10: test samples also run on "
                   "torch_int, whose logits must equal sim's")
    p.add_argument("--methods", default="qcfs,ftbc,cos,tpp,graded,nq", help="cifar10: comma-separated subset")
    p.add_argument("--model", default=None, help="relu: a network trained with plain ReLU (.onnx or .pt): accuracy "
                   "against T with the default threshold percentile, the best one on held-out data, and FTBC")
    p.add_argument("--mean", type=floats, default=None, help="relu: the model's input normalisation")
    p.add_argument("--std", type=floats, default=None, help="relu: see --mean")
    p.add_argument("--T", type=positive, default=None, help="time steps (perf, netx: 8; families: 4)")
    p.add_argument("--batch", type=positive, default=64)
    p.add_argument("--lava-samples", type=ints, default=None, help="samples streamed through Lava per network "
                   "(perf: CNN,VGG, default 8,2; peers: CNN,VGG,ResNet-18, default 2,1,1; 0: leave Lava out)")
    p.add_argument("--repeat", type=positive, default=3, help="repetitions (the fastest is kept)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that every figure is produced")
    p.add_argument("--out", type=Path, default=None, help="also write bench.json and bench.md here")
    p.add_argument("--json", action="store_true", help="print JSON")
    device_arg(p)
    p.set_defaults(run=run)


def run(args) -> int:
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
    cfg = replace(cfg, device=check_device(args.device))
    res = bench_perf(cfg, log=lambda s: print(f"bench: {s}", file=sys.stderr, flush=True))
    _bench_output(args, res, perf_tables(res), "bench")
    exact = [n["lava_exact"] for n in res["networks"] if n["lava_exact"] is not None]
    return 0 if all(exact) else 1


def _bench_output(args, res: dict, md: str, stem: str) -> None:
    """Print the bench's tables (or JSON) and write ``stem``.json and ``stem``.md to ``--out``."""
    from spikeport.toolchain.files import write_atomic

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_atomic(args.out / f"{stem}.json", json.dumps(res, indent=1))
        write_atomic(args.out / f"{stem}.md", md + "\n")
    print(json.dumps(res, indent=1) if args.json else md)


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
        ok &= write_table(table, out / model, "cifar10") == 0
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
