"""`lipsync dub` end to end on a GPU at 720p and 1080p: frames per second, real-time factor, the
share of each stage, and ffmpeg's own decode + encode of the same clip for comparison.

    python benchmarks/bench_gpu.py [--seconds 10] [--device cuda]

The clips are a real talking head (../shared/media/talk2.mp4, or examples/talk.mp4 when
../shared is absent) scaled into a 1280x720 and a 1920x1080 frame and looped to --seconds, with
real speech; the generator is a seeded random-init Wav2Lip in the published layout (its cost does
not depend on its weights); face detection runs as by default (RetinaFace). Each run is a separate
process timed from the outside. Prints markdown tables. benchmarks/gpu_check.sh runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
MEDIA = Path(os.environ.get("LIPSYNC_MEDIA", HERE.parent.parent / "shared" / "media"))
EXAMPLES = HERE.parent / "examples"
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def ffmpeg_binary() -> str:
    from lipsync_cli.media import ffmpeg_binary as find

    return find()


def source_clip() -> tuple[Path, Path]:
    if (MEDIA / "talk2.mp4").exists():
        return MEDIA / "talk2.mp4", MEDIA / "speech_long.wav"
    return EXAMPLES / "talk.mp4", EXAMPLES / "speech.wav"


def make_clip(src: Path, size: tuple[int, int], seconds: float, out: Path):
    w, h = size
    subprocess.run([ffmpeg_binary(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(src), "-t", str(seconds),
                    "-vf", f"scale=-2:{h},pad={w}:{h}:(ow-iw)/2:0", "-c:v", "libx264", "-crf", "18", "-preset",
                    "veryfast", "-an", str(out)], check=True)


def timed(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t, proc.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    from lipsync_cli.checkpoints import save_published
    from lipsync_cli.models.wav2lip import build_generator

    src, speech = source_clip()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"GPU: {gpu}; torch {torch.__version__}; clip: {src.name} scaled and looped to {args.seconds:g} s; "
          f"speech: {speech.name}\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = tmp / "wav2lip.pth"
        torch.manual_seed(0)
        save_published(build_generator("wav2lip"), ckpt)
        audio = tmp / "speech.wav"
        subprocess.run([ffmpeg_binary(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(speech), "-t",
                        str(args.seconds), str(audio)], check=True)
        for label, size in SIZES.items():
            clip = tmp / f"{label}.mp4"
            make_clip(src, size, args.seconds, clip)
            # ffmpeg alone: decode the clip and encode it again as dub's writer does (libx264 veryfast, crf 18)
            ff, _ = timed([ffmpeg_binary(), "-v", "error", "-y", "-i", str(clip), "-i", str(audio), "-c:v", "libx264",
                           "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac",
                           str(tmp / "ff.mp4")])
            wall, out = timed([sys.executable, "-m", "lipsync_cli.cli", "dub", str(clip), str(audio), "-o",
                               str(tmp / "out.mp4"), "-c", str(ckpt), "--device", args.device, "--force", "--json"])
            rows.append((label, size, ff, wall, json.loads(out)))
    print("| size | frames | dub wall s | fps | x real time | ffmpeg decode+encode s | dub / ffmpeg | precision |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, (w, h), ff, wall, r in rows:
        print(f"| {label} ({w}x{h}) | {r['frames']} | {wall:.2f} | {r['frames'] / wall:.1f} | "
              f"{r['duration'] / wall:.2f} | {ff:.2f} | {wall / ff:.2f} | {r['precision']} |")
    print("\nShare of each stage (stage seconds over their sum; the stages run in overlapping threads):\n")
    stages = sorted({k for *_, r in rows for k in r["stage_seconds"]})
    print("| size | " + " | ".join(stages) + " |")
    print("| --- |" + " --- |" * len(stages))
    for label, _, _, _, r in rows:
        total = sum(r["stage_seconds"].values()) or 1.0
        print(f"| {label} | " + " | ".join(f"{r['stage_seconds'].get(k, 0) / total:.0%} "
                                           f"({r['stage_seconds'].get(k, 0):.2f} s)" for k in stages) + " |")


if __name__ == "__main__":
    main()
