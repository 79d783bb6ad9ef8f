"""Does the training learn? Runs on the synthetic corpus, CPU-sized. Prints markdown tables.

    python benchmarks/bench_train.py expert [--clips 2000] [--steps 1500] [--batch 32]
    python benchmarks/bench_train.py expert-test --expert RUN/last.pth [--data DATA] [--pairs 2048]
    python benchmarks/bench_train.py generator --expert A.pth --judge B.pth [--data DATA] [--steps 300]
        [--batch 8] [--runs 2] [--variants wav2lip-l1,wav2lip,attnwav2lip,...] [--work DIR]

`expert`: makes a train-layout corpus (seed 5; faces and voices of val never in train), trains the
lip-sync expert with `lipsync train syncnet`, and prints the held-out evaluation (loss and
in-sync / off-sync accuracy on 256 fixed val pairs) every `--eval-every` steps.

`expert-test`: an expert's accuracy on many pairs of the test split (held out like val, and never
used to pick a checkpoint).

`generator`: trains the generator variants (`wav2lip-l1` is Wav2Lip on L1 alone, `--sync-weight
0`; the others use the expert A with its default schedule; all without the discriminator, the
plain Wav2Lip stage) for `--runs` seeds each, and scores every final checkpoint on the test split
with lipsync_cli.eval.generator: each clip dubbed with another clip's speech, LSE-D / LSE-C from
the judge B (an expert trained independently of A: another corpus, another seed), the synthetic
sync measure, and reconstruction L1. Run folders and scores stay in --work, so an interrupted
benchmark picks up where it stopped.
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


def _load_expert(path: str):
    from lipsync_cli.models.syncnet import SyncNetColor
    from lipsync_cli.train.loop import load_weights

    net = SyncNetColor()
    load_weights(net, path)
    return net.eval()


def cmd_expert_test(args, tmp: Path):
    import torch

    from lipsync_cli.train import loop
    from lipsync_cli.train.data import PreprocessedData, SyncPairs
    from lipsync_cli.train.syncnet import evaluate

    data = Path(args.data) if args.data else _corpus(tmp, 5)
    expert = _load_expert(args.expert)
    ds = SyncPairs(PreprocessedData(data, "test"), seed=20_000)
    dtype = loop.autocast_dtype(torch.device("cpu"), "auto")
    ev = evaluate(expert, ds, args.pairs // 64, 64, torch.device("cpu"), dtype, workers=1)
    print(f"machine: {machine()}\n{args.expert} on the test split of {data}: {ev.samples} pairs, "
          f"loss {ev.loss:.3f}, accuracy **{ev.accuracy:.4f}**")


def _corpus(tmp: Path, seed: int) -> Path:
    data = tmp / f"data{seed}"
    if not (data / "corpus.json").exists():
        lipsync("synth", data, "--clips", 2000, "--seed", seed, "--workers", 2, "-q")
    return data


VARIANTS = {  # name -> (model, extra flags)
    "wav2lip-l1": ("wav2lip", ["--sync-weight", 0]),
    "wav2lip": ("wav2lip", []),
    "attnwav2lip": ("attnwav2lip", []),
    "attnwav2lip-spatial": ("attnwav2lip-spatial", []),
    "attnwav2lip-channel": ("attnwav2lip-channel", []),
}


def cmd_generator(args, tmp: Path):
    import numpy as np
    import torch

    from lipsync_cli.eval.generator import score_split, summarise
    from lipsync_cli.models.wav2lip import build_generator
    from lipsync_cli.train import loop
    from lipsync_cli.train.data import PreprocessedData

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else _corpus(work, 5)
    judge = _load_expert(args.judge)
    test = PreprocessedData(data, "test")
    dtype = loop.autocast_dtype(torch.device("cpu"), "auto")
    results = []
    for name in args.variants.split(","):
        model, extra = VARIANTS[name]
        for seed in range(args.runs):
            run = work / f"{name}_s{seed}"
            scores_file = run / "test_scores.json"
            if not scores_file.exists():
                t = time.perf_counter()
                lipsync("train", "wav2lip", data, "-o", run, "--expert", args.expert, "--model", model, "--no-gan",
                        "--steps", args.steps, "--batch-size", args.batch, "--seed", seed, "--eval-every",
                        args.eval_every, "--eval-batches", 4, "--checkpoint-every", args.steps, "--workers", 1, "-q",
                        *extra)
                wall = time.perf_counter() - t
                gen = build_generator(model)
                loop.load_weights(gen, run / "last.pth")
                summary = summarise(score_split(gen, judge, test, dtype=dtype, max_clips=args.eval_clips))
                rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
                switched = [r["step"] for r in rows if r.get("sync_weight", 0) > 0]
                summary.update(variant=name, seed=seed, train_minutes=wall / 60,
                               sync_on_from=switched[0] if switched else None)
                scores_file.write_text(json.dumps(summary, indent=1))
            results.append(json.loads(scores_file.read_text()))
            r = results[-1]
            print(f"{name} seed {seed}: LSE-D {r['lse_d']:.3f} LSE-C {r['lse_c']:.3f} sync {r['sync']:.3f} "
                  f"L1 {r['l1']:.4f} (sync loss on from step {r['sync_on_from']})", flush=True)

    print(f"\nmachine: {machine()}\ncorpus: {data}; {args.steps} steps of batch {args.batch} (windows of 5 frames), "
          f"Adam 1e-4, no discriminator, bf16 autocast where the CPU has AMX; {args.runs} run(s) per variant "
          f"(seeds 0..{args.runs - 1}); scored on {results[0]['clips']} test clips (identities and voices never "
          f"seen in training), each dubbed with another clip's speech; judge: {args.judge}\n")
    print("| variant | runs | LSE-D (lower better) | LSE-C (higher better) | sync measure | L1 reconstruction |")
    print("| --- | --- | --- | --- | --- | --- |")

    def cell(values, digits):
        v = np.array(values, float)
        return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else f"{v.mean():.{digits}f}"

    for name in args.variants.split(","):
        rs = [r for r in results if r["variant"] == name]
        print(f"| {name} | {len(rs)} | {cell([r['lse_d'] for r in rs], 3)} | {cell([r['lse_c'] for r in rs], 3)} | "
              f"{cell([r['sync'] for r in rs], 3)} | {cell([r['l1'] for r in rs], 4)} |")
    r0 = results[0]
    print(f"| undubbed faces, other clip's speech | - | {r0['undubbed_lse_d']:.3f} | {r0['undubbed_lse_c']:.3f} | "
          f"{r0['undubbed_sync']:.3f} | - |")
    print("\n(± is the standard deviation over runs)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["expert", "expert-test", "generator"])
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--data", help="a train-layout corpus to use instead of making one")
    ap.add_argument("--expert", help="expert checkpoint (expert-test: the one to test; generator: the training expert)")
    ap.add_argument("--judge", help="generator: an independently trained expert that scores LSE-D / LSE-C")
    ap.add_argument("--pairs", type=int, default=2048)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--variants", default="wav2lip-l1,wav2lip,attnwav2lip,attnwav2lip-spatial,attnwav2lip-channel")
    ap.add_argument("--eval-clips", type=int, default=60)
    ap.add_argument("--work", default="bench_generator_runs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        {"expert": cmd_expert, "expert-test": cmd_expert_test, "generator": cmd_generator}[args.what](args, Path(tmp))


if __name__ == "__main__":
    main()
