"""Does the training learn? Runs on the synthetic corpus, CPU-sized. Prints markdown tables.

    python benchmarks/bench_train.py expert [--clips 2000] [--steps 1500] [--batch 32]

`expert`: makes a train-layout corpus (seed 5; faces and voices of val never in train), trains the
lip-sync expert with `lipsync train syncnet`, and prints the held-out evaluation (loss and
in-sync / off-sync accuracy on 256 fixed val pairs) every `--eval-every` steps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_dub import machine


def lipsync(*args):
    subprocess.run([sys.executable, "-m", "lipsync_cli.cli", *map(str, args)], check=True)


def cmd_expert(args, tmp: Path):
    data, run = tmp / "data", tmp / "run"
    lipsync("synth", data, "--clips", args.clips, "--seed", 5, "--workers", 2, "-q")
    t = time.perf_counter()
    lipsync("train", "syncnet", data, "-o", run, "--steps", args.steps, "--batch-size", args.batch, "--eval-every",
            args.eval_every, "--eval-batches", 256 // args.batch, "--checkpoint-every", args.steps, "--workers", 1, "-q")
    wall = time.perf_counter() - t
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val_accuracy" in r]
    print(f"machine: {machine()}\ncorpus: {args.clips} clips (train layout, seed 5); expert: batch {args.batch}, "
          f"Adam 1e-4, bf16 autocast where the CPU has AMX; {wall / 60:.1f} min for {args.steps} steps\n")
    print("| step | val loss | val accuracy |")
    print("| --- | --- | --- |")
    for r in evals:
        print(f"| {r['step']} | {r['val_loss']:.3f} | {r['val_accuracy']:.3f} |")
    best = max(evals, key=lambda r: r["val_accuracy"])
    print(f"\nbest held-out accuracy **{best['val_accuracy']:.3f}** at step {best['step']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["expert"])
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        {"expert": cmd_expert}[args.what](args, Path(tmp))


if __name__ == "__main__":
    main()
