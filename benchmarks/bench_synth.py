"""Benchmarks of the synthetic corpus (`lipsync synth`). Prints markdown tables.

    python benchmarks/bench_synth.py speed         # clips per second on ONE core (pinned), 96x96 crops
    python benchmarks/bench_synth.py separation    # the sync measure: in-sync vs shifted vs swapped
    python benchmarks/bench_synth.py determinism   # same seed: same bytes; other seed: other clips
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_dub import machine


def synth(out: Path, *args) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lipsync_cli.cli", "synth", str(out), "-q", *map(str, args)], check=True)
    return time.perf_counter() - t


def clip_seconds(root: Path) -> float:
    return sum(json.loads(p.read_text())["duration"] for p in root.rglob("truth.json"))


def cmd_speed(args, tmp: Path):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, inherited by the child
    print(f"machine: {machine()}; pinned to one core\n")
    print("| layout | clips | wall s (whole process) | clips / s | seconds of clip / s of wall |")
    print("| --- | --- | --- | --- | --- |")
    for layout in ("words", "train"):
        out = tmp / layout
        wall = synth(out, "--clips", args.clips, "--layout", layout)
        seconds = clip_seconds(out)
        print(f"| {layout} | {args.clips} | {wall:.1f} | {args.clips / wall:.0f} | {seconds / wall:.0f} |")


def cmd_separation(args, tmp: Path):
    import cv2

    from lipsync_cli.synth.corpus import truth_opening
    from lipsync_cli.synth.sync import mouth_opening, sync_score

    out = tmp / "corpus"
    synth(out, "--clips", args.clips, "--seed", 11)
    clips = []
    for split in ("val", "test"):  # held out: faces and voices never in train
        for line in (out / "filelists" / f"{split}.txt").read_text().splitlines():
            truth = json.loads((out / line / "truth.json").read_text())
            frames = np.stack([cv2.imread(str(out / line / f"{i}.jpg")) for i in range(truth["frames"])])
            clips.append((mouth_opening(frames), truth_opening(truth)))
    rng = np.random.default_rng(0)
    groups = {"in sync": [sync_score(v, t).correlation for v, t in clips]}
    for shift in (5, 10):
        groups[f"audio {shift} frames late"] = [sync_score(v[shift:], t[:-shift]).correlation for v, t in clips]
        groups[f"audio {shift} frames early"] = [sync_score(v[:-shift], t[shift:]).correlation for v, t in clips]
    others = [(k + int(rng.integers(1, len(clips)))) % len(clips) for k in range(len(clips))]
    groups["audio of another clip"] = [sync_score(v, clips[j][1]).correlation for (v, _), j in zip(clips, others)]
    offsets = [sync_score(v, t).best_offset for v, t in clips]
    print(f"machine: {machine()}\ncorpus: {args.clips} clips (train layout, seed 11); {len(clips)} held-out clips "
          "(val + test: faces and voices not in train)\n")
    print("| pairs | n | min | 5% | median | 95% | max |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, xs in groups.items():
        q = np.percentile(xs, [0, 5, 50, 95, 100])
        print(f"| {name} | {len(xs)} | " + " | ".join(f"{v:.3f}" for v in q) + " |")
    lies = np.concatenate([v for k, v in groups.items() if k != "in sync"])
    truth = np.array(groups["in sync"])
    print(f"\nP(an in-sync pair scores above a shifted or swapped one) = **{(truth[:, None] > lies[None]).mean():.4f}**; "
          f"best offset 0 for {sum(o == 0 for o in offsets)} of {len(offsets)} in-sync clips, "
          f"|offset| <= 1 for {sum(abs(o) <= 1 for o in offsets)}")


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def cmd_determinism(args, tmp: Path):
    print(f"machine: {machine()}\n")
    print("| layout | run A vs run B (seed 0, workers 1 and 2) | seed 0 vs seed 1: identical audio / frames |")
    print("| --- | --- | --- |")
    for layout in ("train", "words", "videos"):
        a, b, c = tmp / f"{layout}-a", tmp / f"{layout}-b", tmp / f"{layout}-c"
        synth(a, "--clips", args.clips, "--layout", layout)
        synth(b, "--clips", args.clips, "--layout", layout, "--workers", 2)
        synth(c, "--clips", args.clips, "--layout", layout, "--seed", 1)
        da, db, dc = digest(a), digest(b), digest(c)
        media = [k for k in da if k.endswith((".wav", ".jpg", ".mp4"))]
        same_other = sum(da[k] == dc.get(k) for k in media)
        verdict = "byte-identical" if da == db else f"{sum(da[k] != db.get(k) for k in da)} files differ"
        print(f"| {layout} | {len(da)} files, {verdict} | {same_other} of {len(media)} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["speed", "separation", "determinism"])
    ap.add_argument("--clips", type=int, default=None)
    args = ap.parse_args()
    args.clips = args.clips or {"speed": 1000, "separation": 600, "determinism": 40}[args.what]
    with tempfile.TemporaryDirectory() as tmp:
        {"speed": cmd_speed, "separation": cmd_separation, "determinism": cmd_determinism}[args.what](args, Path(tmp))


if __name__ == "__main__":
    main()
