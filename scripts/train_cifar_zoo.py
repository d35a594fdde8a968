"""Train the CIFAR-10 checkpoints of the zoo, several at once on one GPU (or CPU), each within a budget.

    python scripts/train_cifar_zoo.py --data PATH --device cuda --budget 470 --out DIR [--jobs resnet20_l4,...]

Each job is one ``spikeport train`` command (printed, and recorded in its checkpoint's meta with the
epoch count its budget chose, so ``spikeport train ... --epochs N`` reproduces it). Jobs run side by side:
the small networks leave most of a large GPU idle. A log per job lands in DIR; a job still running at
``--deadline`` seconds is stopped, and the others' checkpoints are kept.

``pack``/``unpack`` turn an image folder into one file of its JPEG bytes and back (a compact way to carry
CIFAR-10's 60,000 files to another machine; the bytes are not re-encoded).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

JOBS = {  # name: (architecture, levels, NQ, most epochs)
    "resnet20_cifar10_l4": ("resnet20_cifar10", 4, False, 300),
    "resnet20_cifar10_l8": ("resnet20_cifar10", 8, False, 300),
    "resnet20_cifar10_nq_l4": ("resnet20_cifar10", 4, True, 300),
    "resnet20_cifar10_nq_l8": ("resnet20_cifar10", 8, True, 300),
    "vgg16_cifar10_l4": ("vgg16_cifar10", 4, False, 200),
    "vgg16_cifar10_l8": ("vgg16_cifar10", 8, False, 200),
    "vgg16_cifar10_nq_l4": ("vgg16_cifar10", 4, True, 200),
}


def command(name: str, data: str, device: str, budget: float, out: Path) -> list[str]:
    arch, levels, nq, most = JOBS[name]
    return [sys.executable, "-m", "spikeport.cli", "train", arch, "--levels", str(levels), *(["--nq"] if nq else []),
            "--data", data, "--device", device, "--budget", str(budget), "--epochs", str(most), "--log",
            "--out", str(out / f"{name}.pt")]


def train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.jobs.split(",") if args.jobs else list(JOBS)
    t0 = time.monotonic()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    procs = {}
    for name in names:
        cmd = command(name, args.data, args.device, args.budget, out)
        print(" ".join(cmd[1:]), flush=True)
        log = open(out / f"{name}.log", "w")  # noqa: SIM115 (closed below)
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    while any(p.poll() is None for p, _ in procs.values()) and time.monotonic() - t0 < args.deadline:
        time.sleep(2)
    failed = 0
    for name, (p, log) in procs.items():
        if p.poll() is None:
            p.kill()
            print(f"{name}: stopped at the deadline ({args.deadline:.0f} s)", flush=True)
            failed += 1
        elif p.returncode != 0:
            failed += 1
        log.close()
        tail = (out / f"{name}.log").read_text().strip().splitlines()[-1:]
        print(f"{name}: exit {p.returncode}; {tail[0] if tail else ''}", flush=True)
    print(f"all jobs: {time.monotonic() - t0:.0f} s", flush=True)
    return 1 if failed else 0


def pack(args: argparse.Namespace) -> int:
    root = Path(args.folder)
    names, blobs = [], []
    for f in sorted(root.glob("*/*/*")):
        if f.suffix.lower() in (".jpg", ".jpeg", ".png"):
            names.append(str(f.relative_to(root)))
            blobs.append(np.frombuffer(f.read_bytes(), dtype=np.uint8))
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    np.savez(args.file, blob=np.concatenate(blobs), offsets=offsets, names=np.array(names, dtype="S"))
    print(f"{args.file}: {len(names)} files, {offsets[-1] / 1e6:.1f} MB")
    return 0


def unpack(args: argparse.Namespace) -> int:
    root = Path(args.folder)
    with np.load(args.file, allow_pickle=False) as z:
        blob, offsets, names = z["blob"], z["offsets"], z["names"]
    for i, name in enumerate(names):
        f = root / name.decode()
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(blob[offsets[i]:offsets[i + 1]].tobytes())
    print(f"{root}: {len(names)} files")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    t = sub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--device", default="cuda")
    t.add_argument("--budget", type=float, required=True, help="seconds per job")
    t.add_argument("--deadline", type=float, default=1e9, help="seconds after which running jobs are stopped")
    t.add_argument("--jobs", default="", help=f"comma-separated, of {', '.join(JOBS)} (default: all)")
    t.add_argument("--threads", type=int, default=2, help="CPU threads per job")
    t.add_argument("--out", required=True)
    for verb in ("pack", "unpack"):
        s = sub.add_parser(verb)
        s.add_argument("folder")
        s.add_argument("file")
    args = ap.parse_args()
    return {"train": train, "pack": pack, "unpack": unpack}.get(args.cmd, lambda _: ap.print_help() or 2)(args)


if __name__ == "__main__":
    sys.exit(main())
