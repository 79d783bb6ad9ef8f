"""Does the training learn? Runs on the synthetic corpus, CPU-sized. Prints markdown tables.

    python benchmarks/bench_train.py expert [--clips 2000] [--steps 1500] [--batch 32]
    python benchmarks/bench_train.py expert-test --expert RUN/last.pth [--data DATA] [--pairs 2048]
    python benchmarks/bench_train.py generator --expert A.pth --judge B.pth [--data DATA] [--base-steps 400]
        [--steps 300] [--batch 4] [--runs 2] [--work DIR]
    python benchmarks/bench_train.py ablation --expert A.pth --judge B.pth [--data DATA] [--steps 150] [--runs 2]
    python benchmarks/bench_train.py sizes [--clips 40] [--steps 6]
    python benchmarks/bench_train.py hires [--clips 400] [--width 0.25] [--expert-steps 600] [--steps 300]
        [--batch 4] [--runs 2] [--eval-clips 20] [--sizes 96 192] [--lr 1e-3] [--no-gan] [--work DIR]
        [--judge J.pth --rescore]   (score the trained runs in DIR again, with another judge)

`hires`: 96 against 192 (or more sizes) on a corpus rendered at 288: an expert per size, AttnWav2Lip
with the same recipe and steps, `--runs` seeds each, scored at 288 on held-out clips dubbed with
another clip's speech against the truth rendering of that speech (mouth-box PSNR, SSIM, gradient
energy relative to the truth's), the synthetic sync measure and LSE-D / LSE-C from an independent
expert (another corpus and seed); beside them the undubbed clips and the truth brought down to each
size and back up (the best a generator of that size could score).

`sizes`: step time and peak memory of the expert and of AttnWav2Lip (with the discriminator and the
expert's loss) at face sizes 96, 192 and 288, on a corpus rendered at 288.

`expert`: makes a train-layout corpus (seed 5; faces and voices of val never in train), trains the
lip-sync expert with `lipsync train syncnet`, and prints the held-out evaluation (loss and
in-sync / off-sync accuracy on 256 fixed val pairs) every `--eval-every` steps.

`expert-test`: an expert's accuracy on many pairs of the test split (held out like val, and never
used to pick a checkpoint).

`generator` and `ablation` train generators with `lipsync train wav2lip` (no discriminator: the
plain Wav2Lip stage) and score every final checkpoint on the test split with
lipsync_cli.eval.generator: each clip dubbed with another clip's speech, LSE-D / LSE-C from the
judge B (an expert trained independently of A: another corpus, another seed), the synthetic sync
measure, and reconstruction L1. `generator`: a base trained on L1, continued twice from the same
weights (L1 alone; L1 + the expert's sync loss). `ablation`: the four architectures from scratch.
Run folders and scores stay in --work, so an interrupted benchmark picks up where it stopped.
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


def load_expert(path: str):
    """An expert built at the width and face size its file was saved at."""
    from lipsync_cli.checkpoints import load_network

    return load_network(path, ["wav2lip_syncnet_expert_color"]).net.eval()


def cmd_expert_test(args, tmp: Path):
    import torch

    from lipsync_cli.datasets import PreprocessedData, SyncPairs
    from lipsync_cli.device import autocast_dtype
    from lipsync_cli.train.syncnet import evaluate

    data = Path(args.data) if args.data else _corpus(tmp, 5)
    expert = load_expert(args.expert)
    ds = SyncPairs(PreprocessedData(data, "test"), seed=20_000)
    dtype = autocast_dtype(torch.device("cpu"), "auto")
    ev = evaluate(expert, ds, args.pairs // 64, 64, torch.device("cpu"), dtype, workers=1)
    print(f"machine: {machine()}\n{args.expert} on the test split of {data}: {ev.samples} pairs, "
          f"loss {ev.loss:.3f}, accuracy **{ev.accuracy:.4f}**")


def _corpus(tmp: Path, seed: int) -> Path:
    data = tmp / f"data{seed}"
    if not (data / "corpus.json").exists():
        lipsync("synth", data, "--clips", 2000, "--seed", seed, "--workers", 2, "-q")
    return data


def _train_and_score(name: str, run: Path, data: Path, judge, test, dtype, args, model: str, *flags) -> dict:
    """Train one generator run (unless its scores exist) and score its final checkpoint."""
    import torch

    from lipsync_cli.checkpoints import load_weights
    from lipsync_cli.eval.generator import score_split, summarise
    from lipsync_cli.models.wav2lip import build_generator
    from lipsync_cli.train import loop

    scores_file = run / "test_scores.json"
    if not scores_file.exists():
        t = time.perf_counter()
        lipsync("train", "wav2lip", data, "-o", run, "--expert", args.expert, "--model", model, "--no-gan",
                "--batch-size", args.batch, "--eval-every", args.eval_every, "--eval-batches", 4,
                "--workers", 1, "-q", *flags)
        wall = time.perf_counter() - t
        gen = build_generator(model)
        load_weights(gen, run / "last.pth")
        gen = loop.place(gen, torch.device("cpu"), dtype)
        summary = summarise(score_split(gen, judge, test, dtype=dtype, max_clips=args.eval_clips))
        summary.update(name=name, train_minutes=wall / 60)
        scores_file.write_text(json.dumps(summary, indent=1))
    r = json.loads(scores_file.read_text())
    print(f"{name}: LSE-D {r['lse_d']:.3f} LSE-C {r['lse_c']:.3f} sync {r['sync']:.3f} L1 {r['l1']:.4f} "
          f"({r['train_minutes']:.1f} min)", flush=True)
    return r


def _cell(values, digits):
    import numpy as np

    v = np.array(values, float)
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else f"{v.mean():.{digits}f}"


def _setup(args):
    import torch

    from lipsync_cli.datasets import PreprocessedData
    from lipsync_cli.device import autocast_dtype

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else _corpus(work, 5)
    return work, data, load_expert(args.judge), PreprocessedData(data, "test"), \
        autocast_dtype(torch.device("cpu"), "auto")


HEADER = ("| {what} | runs | LSE-D (lower better) | LSE-C (higher better) | sync measure (higher better) "
          "| L1 reconstruction |\n| --- | --- | --- | --- | --- | --- |")


def _row(label, rs):
    return (f"| {label} | {len(rs)} | {_cell([r['lse_d'] for r in rs], 3)} | {_cell([r['lse_c'] for r in rs], 3)} | "
            f"{_cell([r['sync'] for r in rs], 3)} | {_cell([r['l1'] for r in rs], 4)} |")


def cmd_generator(args, tmp: Path):
    """A Wav2Lip generator trained on L1 alone (the base), then continued for the same steps twice
    from the same weights and sample order: on L1 alone, and with the expert's sync loss (a = 0.03
    from the first step of the branch). Only the loss differs between the two branches."""
    work, data, judge, test, dtype = _setup(args)
    base = _train_and_score("base (L1)", work / "base", data, judge, test, dtype, args, "wav2lip",
                            "--steps", args.base_steps, "--checkpoint-every", args.base_steps, "--sync-weight", 0)
    branches = {"l1": [], "expert": []}
    for seed in range(args.runs):
        for branch, flags in (("l1", ["--sync-weight", 0]), ("expert", ["--sync-switch", "inf"])):
            branches[branch].append(_train_and_score(
                f"{branch} seed {seed}", work / f"{branch}_s{seed}", data, judge, test, dtype, args, "wav2lip",
                "--init", work / "base" / "last.pth", "--steps", args.steps, "--checkpoint-every", args.steps,
                "--seed", 100 + seed, *flags))
    print(f"\nmachine: {machine()}\ncorpus: {data}; Wav2Lip generator, batch {args.batch} (windows of 5 frames), "
          f"Adam 1e-4, no discriminator, bf16 autocast where the CPU has AMX. Base: {args.base_steps} steps on L1. "
          f"Branches: {args.steps} more steps from the base, {args.runs} sample orders (seeds 100..). Scored on "
          f"{base['clips']} test clips (identities and voices never seen in training), each dubbed with another "
          f"clip's speech; LSE from the judge {args.judge} (trained on another corpus with another seed).\n")
    print(HEADER.format(what="generator"))
    print(_row(f"base: {args.base_steps} steps, L1", [base]))
    print(_row(f"+{args.steps} steps, L1 alone", branches["l1"]))
    print(_row(f"+{args.steps} steps, L1 + 0.03 sync (expert)", branches["expert"]))
    print(f"| undubbed faces, other clip's speech | - | {base['undubbed_lse_d']:.3f} | {base['undubbed_lse_c']:.3f} | "
          f"{base['undubbed_sync']:.3f} | - |")
    print("\n(± is the standard deviation over runs)")


ARCHITECTURES = ("wav2lip", "attnwav2lip", "attnwav2lip-spatial", "attnwav2lip-channel")


def cmd_ablation(args, tmp: Path):
    """Wav2Lip against AttnWav2Lip (both attentions, spatial only, channel only), each from scratch
    with the same recipe and steps, `--runs` seeds each."""
    work, data, judge, test, dtype = _setup(args)
    results = {}
    for arch in ARCHITECTURES:
        results[arch] = [_train_and_score(f"{arch} seed {seed}", work / f"{arch}_s{seed}", data, judge, test, dtype,
                                          args, arch, "--steps", args.steps, "--checkpoint-every", args.steps,
                                          "--seed", seed, "--sync-switch", "inf")
                         for seed in range(args.runs)]
    first = results[ARCHITECTURES[0]][0]
    print(f"\nmachine: {machine()}\ncorpus: {data}; {args.steps} steps from scratch, batch {args.batch} (windows of "
          f"5 frames), L1 + 0.03 sync from the first step, no discriminator, Adam 1e-4, bf16 autocast where the "
          f"CPU has AMX; seeds 0..{args.runs - 1}; scored on {first['clips']} test clips dubbed with another clip's "
          f"speech; LSE from the judge {args.judge}.\n")
    print(HEADER.format(what="architecture"))
    for arch in ARCHITECTURES:
        print(_row(arch, results[arch]))
    print("\n(± is the standard deviation over runs)")


def _step_seconds(run: Path) -> float:
    """The median time between consecutive training steps of a run (its metrics' timestamps)."""
    import statistics

    times = [r["time"] for r in (json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines())
             if "train_loss" in r or "train_l1" in r]
    return statistics.median(b - a for a, b in zip(times[1:], times[2:]))  # the first step warms up


def _timed(*args) -> float:
    """Run `lipsync ARGS` under /usr/bin/time: its peak RSS in MB."""
    done = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "lipsync_cli.cli", *map(str, args)],
                          check=True, capture_output=True, text=True)
    return int(done.stderr.strip().splitlines()[-1]) / 1024


def cmd_sizes(args, tmp: Path):
    """Step time and peak memory of the expert and the generator at each face size."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from lipsync_cli.models.wav2lip import build_generator

    data = Path(args.data) if args.data else tmp / "data"
    if not args.data:
        lipsync("synth", data, "--clips", args.clips, "--seed", 5, "--size", 288, "--workers", 2, "-q")
    print(f"machine: {machine()}; corpus {data} (crops resized to each size); {args.steps} steps per run, "
          f"workers 0, amp auto\n")
    print("| face size | generator parameters | generator GFLOPs per frame | expert s / step (batch 8) | expert peak MB | "
          "generator s / step (batch 4 x 5 frames, L1 + sync + GAN) | generator peak MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size in (96, 192, 288):
        with torch.device("meta"):
            params = sum(p.numel() for p in build_generator("attnwav2lip", size=size).parameters())
        g = build_generator("attnwav2lip", width=1.0, size=size).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            g(torch.rand(1, 1, 80, 16), torch.rand(1, 6, size, size))
        expert, gen = tmp / f"expert{size}", tmp / f"gen{size}"
        e_mb = _timed("train", "syncnet", data, "-o", expert, "--size", size, "--steps", args.steps, "--batch-size", 8,
                      "--eval-every", 10 ** 6, "--checkpoint-every", args.steps, "--workers", 0, "-q")
        g_mb = _timed("train", "wav2lip", data, "-o", gen, "--expert", expert / "last.pth", "--model", "attnwav2lip",
                      "--size", size, "--steps", args.steps, "--batch-size", 4, "--sync-switch", "inf",
                      "--eval-every", 10 ** 6, "--checkpoint-every", args.steps, "--workers", 0, "-q")
        print(f"| {size} | {params:,} | {fc.get_total_flops() / 1e9:.1f} | {_step_seconds(expert):.2f} | {e_mb:.0f} | "
              f"{_step_seconds(gen):.2f} | {g_mb:.0f} |", flush=True)


def truth_frames(spec, truth_face: dict, truth_speech: dict, n: int):
    """Clip A's face (identity, placement, blinks) with clip B's mouth track, rendered at the
    corpus's size: the ground truth of A dubbed with B's speech."""
    import numpy as np

    from lipsync_cli.synth.corpus import identity_of
    from lipsync_cli.synth.face import render

    ident = identity_of(spec, truth_face["identity"])
    out = []
    for i in range(n):
        cx, cy, r, rot = truth_face["placement"][i]
        out.append(render(ident, tuple(truth_speech["mouth"][i]), float(truth_face["blink"][i]),
                          (spec.size, spec.size), (cx, cy), r, rot))
    return np.stack(out)


def mouth_scores(dubbed, truth) -> tuple[float, float, float]:
    """PSNR, SSIM and gradient energy relative to the truth's, on the mouth box of (n, S, S, 3) frames."""
    import cv2
    import numpy as np
    from skimage.metrics import structural_similarity

    from lipsync_cli.synth.sync import REGION_COLS, REGION_ROWS

    s = truth.shape[1]
    box = (slice(int(s * REGION_ROWS[0]), int(round(s * REGION_ROWS[1]))),
           slice(int(s * REGION_COLS[0]), int(round(s * REGION_COLS[1]))))
    a = dubbed[:, box[0], box[1]].astype(np.float64)
    b = truth[:, box[0], box[1]].astype(np.float64)
    mse = ((a - b) ** 2).mean()
    psnr = 10 * np.log10(255 ** 2 / max(mse, 1e-10))
    ssim = float(np.mean([structural_similarity(x, y, channel_axis=2, data_range=255) for x, y in zip(a, b)]))

    def energy(frames):
        grey = [cv2.cvtColor(f.astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(np.float64) for f in frames]
        return np.mean([(cv2.Sobel(g, cv2.CV_64F, 1, 0) ** 2 + cv2.Sobel(g, cv2.CV_64F, 0, 1) ** 2).mean() for g in grey])

    return float(psnr), ssim, float(energy(a) / energy(b))


def _dub_pairs(test, spec, clips: int):
    """The scored pairs: each test clip k with the next clip's speech, as (k, other, the other's
    truth.json, the truth rendering of k dubbed with it) over the frames both clips have."""
    for k in range(min(clips, len(test))):
        other = (k + 1) % len(test)
        truth_k = json.loads((test.clips[k].folder / "truth.json").read_text())
        truth_o = json.loads((test.clips[other].folder / "truth.json").read_text())
        n = min(test.clips[k].frames, test.usable_frames(other, 1), truth_o["frames"])
        yield k, other, truth_o, truth_frames(spec, truth_k, truth_o, n)


def _score_hires(gen_path: Path | None, judge, test, spec, clips: int) -> dict:
    """A generator on held-out test clips, each dubbed with the next clip's speech, at the corpus's
    resolution (its output resized up when it is smaller): the mouth box against the truth
    (PSNR, SSIM, sharpness), the synthetic sync measure, LSE-D / LSE-C from the judge. No
    generator: the undubbed frames, for scale."""
    import cv2
    import numpy as np

    from lipsync_cli import audio as audio_mod
    from lipsync_cli.checkpoints import load_network
    from lipsync_cli.eval.generator import generate
    from lipsync_cli.eval.lse import expert_sync_of_crops
    from lipsync_cli.media import FPS
    from lipsync_cli.synth.corpus import truth_opening
    from lipsync_cli.synth.sync import mouth_opening, sync_score

    gen = load_network(gen_path, ["wav2lip_generator"]).net if gen_path else None
    size = gen.config.size if gen else spec.size
    rows = []
    for k, other, truth_o, truth in _dub_pairs(test, spec, clips):
        n = len(truth)
        faces = test.frames(k, 0, n, size)
        windows = audio_mod.mel_windows(test.mel(other), FPS, range(n))
        out = generate(gen, faces, faces, windows) if gen else faces
        if size != spec.size:
            out = np.stack([cv2.resize(f, (spec.size, spec.size), interpolation=cv2.INTER_CUBIC) for f in out])
        psnr, ssim, sharp = mouth_scores(out, truth)
        lse = expert_sync_of_crops(judge, out, test.mel(other), str(test.clips[k].folder))
        sync = sync_score(mouth_opening(out), truth_opening(truth_o)[:n]).correlation
        rows.append({"psnr": psnr, "ssim": ssim, "sharpness": sharp, "sync": sync, "lse_d": lse.lse_d, "lse_c": lse.lse_c})
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]} | {"clips": len(rows)}


def _ceiling(spec, test, size: int, clips: int) -> dict:
    """What a perfect generator at `size` could score: the truth rendering brought down to `size`
    (as the crops are) and back up to the corpus's size as dub's scoring does."""
    import cv2
    import numpy as np

    rows = []
    for _, _, _, truth in _dub_pairs(test, spec, clips):
        low = np.stack([cv2.resize(cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA), (spec.size, spec.size),
                                   interpolation=cv2.INTER_CUBIC) for f in truth])
        rows.append(mouth_scores(low, truth))
    return dict(zip(("psnr", "ssim", "sharpness"), np.mean(rows, axis=0)))


def cmd_hires(args, tmp: Path):
    """96 against 192 on a corpus rendered at 288: experts at each size, generators with the same
    recipe and steps, two seeds each, scored at 288 on held-out clips."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from lipsync_cli.datasets import PreprocessedData
    from lipsync_cli.synth.corpus import CorpusSpec

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data, judge_data = work / "data288", work / "data288_judge"
    for folder, seed in ((data, 5), (judge_data, 6)):
        if not (folder / "corpus.json").exists():
            lipsync("synth", folder, "--clips", args.clips, "--seed", seed, "--size", 288, "--workers", 2, "-q")
    spec = CorpusSpec(**{k: tuple(v) if isinstance(v, list) else v
                         for k, v in json.loads((data / "corpus.json").read_text())["spec"].items()})
    width = ["--width", args.width]
    t0 = time.perf_counter()
    judge_path = Path(args.judge) if args.judge else work / "judge96" / "last.pth"
    if not judge_path.exists():  # independent: another corpus, another seed
        lipsync("train", "syncnet", judge_data, "-o", judge_path.parent, "--size", 96, "--steps", args.expert_steps,
                "--batch-size", 16, "--eval-every", args.expert_steps, "--seed", 1, "--workers", 1, "-q", *width)
    judge = load_expert(str(judge_path))
    test = PreprocessedData(data, "test")
    experts = {}
    for size in args.sizes:
        experts[size] = work / f"expert{size}"
        if not (experts[size] / "last.pth").exists():
            lipsync("train", "syncnet", data, "-o", experts[size], "--size", size, "--steps", args.expert_steps,
                    "--batch-size", 16, "--eval-every", args.expert_steps, "--workers", 1, "-q", *width)
    recipe = ["--lr", args.lr, "--sync-switch", "inf"] + (["--no-gan"] if args.no_gan else [])
    results: dict[int, list[dict]] = {}
    for seed in range(args.runs):  # seed by seed, so that a cut-short run still compares the sizes
        for size in args.sizes:
            run = work / f"gen{size}_seed{seed}"
            scores = run / "hires_scores.json"
            if not scores.exists() or args.rescore:
                minutes = json.loads(scores.read_text())["train_minutes"] if scores.exists() else None
                if minutes is None:
                    t = time.perf_counter()
                    lipsync("train", "wav2lip", data, "-o", run, "--expert", experts[size] / "last.pth",
                            "--model", "attnwav2lip", "--size", size, "--steps", args.steps, "--batch-size",
                            args.batch, "--eval-every", args.eval_every, "--eval-batches", 4, "--seed", seed,
                            "--workers", 1, "-q", *recipe, *width)
                    minutes = (time.perf_counter() - t) / 60
                r = _score_hires(run / "last.pth", judge, test, spec, args.eval_clips)
                scores.write_text(json.dumps(r | {"train_minutes": minutes}, indent=1))
            r = json.loads(scores.read_text())
            results.setdefault(size, []).append(r)
            print(f"size {size} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in r.items()), flush=True)
    print(f"\nmachine: {machine()}; corpus {args.clips} clips at 288 (seed 5), judge {judge_path}: an expert at 96 on "
          f"another corpus (seed 6, init seed 1); experts {args.expert_steps} steps batch 16; AttnWav2Lip {args.steps} steps "
          f"batch {args.batch}, Adam {args.lr}, L1 + 0.03 sync{'' if args.no_gan else ' + 0.07 GAN'} from the first "
          f"step; width {args.width}; scored at 288 on "
          f"{args.eval_clips} test clips dubbed with the next clip's speech; {(time.perf_counter() - t0) / 60:.0f} min\n")
    print("| face size | runs | mouth PSNR dB | mouth SSIM | sharpness (gradient energy / truth's) | sync measure | LSE-D | LSE-C |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for size, rs in results.items():
        print(f"| {size} | {len(rs)} | " + " | ".join(_cell([r[k] for r in rs], 3 if k != "psnr" else 2)
                                                     for k in ("psnr", "ssim", "sharpness", "sync", "lse_d", "lse_c")) + " |")
    u = _score_hires(None, judge, test, spec, args.eval_clips)
    print(f"| undubbed (the clip's own mouth) | - | {u['psnr']:.2f} | {u['ssim']:.3f} | {u['sharpness']:.3f} | "
          f"{u['sync']:.3f} | {u['lse_d']:.3f} | {u['lse_c']:.3f} |")
    for size in args.sizes:  # the resolution's own limit, for scale
        c = _ceiling(spec, test, size, args.eval_clips)
        print(f"| truth at {size}, resized up | - | {c['psnr']:.2f} | {c['ssim']:.3f} | {c['sharpness']:.3f} | - | - | - |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["expert", "expert-test", "generator", "ablation", "sizes", "hires"])
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--data", help="a train-layout corpus to use instead of making one")
    ap.add_argument("--expert", help="expert checkpoint (expert-test: the one to test; generator: the training expert)")
    ap.add_argument("--judge", help="generator: an independently trained expert that scores LSE-D / LSE-C")
    ap.add_argument("--pairs", type=int, default=2048)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--base-steps", type=int, default=400)
    ap.add_argument("--eval-clips", type=int, default=60)
    ap.add_argument("--work", default="bench_generator_runs")
    ap.add_argument("--width", type=float, default=1.0, help="hires: channel multiplier of every network")
    ap.add_argument("--expert-steps", type=int, default=1500, help="hires: steps of each expert")
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 192], help="hires: face sizes to compare")
    ap.add_argument("--lr", type=float, default=1e-4, help="hires: the generators' Adam learning rate")
    ap.add_argument("--no-gan", action="store_true", help="hires: train the generators without the discriminator")
    ap.add_argument("--rescore", action="store_true", help="hires: score the trained generators again (another --judge)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        {"expert": cmd_expert, "expert-test": cmd_expert_test, "generator": cmd_generator,
         "ablation": cmd_ablation, "sizes": cmd_sizes, "hires": cmd_hires}[args.what](args, Path(tmp))


if __name__ == "__main__":
    main()
