"""Benchmarks of `lipsync batch` on this machine. Prints markdown tables.

    python benchmarks/bench_batch.py speed --runs 2    # 20 clips: one `batch` against 20 separate `dub` runs
    python benchmarks/bench_batch.py kill              # SIGKILL mid-batch, rerun: each clip done exactly once
    python benchmarks/bench_batch.py shards            # 2 processes with --shard: each item once

The 20 clips are about 2 s each, cut from the real talking-head videos in ../shared/media (five
sources at four offsets, 524 to 844 px square), each paired by name with 2 s of real speech.
Every run uses the default detector (RetinaFace) and one seeded random-init Wav2Lip generator in
the published layout (the cost of a network does not depend on its weights). Runs are separate
processes timed from the outside, as a user would run them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench_dub import MEDIA, machine, make_checkpoint, timed

SOURCES = ["talk1.mp4", "talk2.mp4", "talk3.mp4", "talk4.mp4", "talk5.mp4"]
SPEECH = ["speech1.wav", "speech2.wav", "speech3.wav", "speech_long.wav"]
N_CLIPS, SECONDS = 20, 2.0


def ffmpeg_exe() -> str:
    from lipsync_cli.media import ffmpeg_binary

    return ffmpeg_binary()


def make_clips(folder: Path) -> tuple[Path, Path]:
    videos, audio = folder / "videos", folder / "audio"
    videos.mkdir()
    audio.mkdir()
    ff = ffmpeg_exe()
    for i in range(N_CLIPS):
        src, offset = SOURCES[i % len(SOURCES)], (i // len(SOURCES)) * 0.7
        subprocess.run([ff, "-v", "error", "-y", "-ss", str(offset), "-i", str(MEDIA / src), "-t", str(SECONDS),
                        "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", "-an", str(videos / f"clip{i:02d}.mp4")],
                       check=True)
        speech = SPEECH[i % len(SPEECH)]
        subprocess.run([ff, "-v", "error", "-y", "-ss", str(i % 3), "-i", str(MEDIA / speech), "-t", str(SECONDS),
                        str(audio / f"clip{i:02d}.wav")], check=True)
    return videos, audio


def lipsync(*args) -> list[str]:
    return [sys.executable, "-m", "lipsync_cli.cli", *map(str, args)]


def job_records(out: Path) -> list[dict]:
    from lipsync_cli.pipelines.batch import JOB_FOLDER, read_job

    return read_job(out / JOB_FOLDER) if (out / JOB_FOLDER).exists() else []


def cmd_speed(args, tmp: Path):
    ckpt = make_checkpoint(tmp)
    videos, audio = make_clips(tmp)
    rows = []
    for run in range(args.runs):
        result = {}
        for who in (("batch", "separate") if run % 2 == 0 else ("separate", "batch")):
            out = tmp / f"out-{who}-{run}"
            out.mkdir()
            if who == "batch":
                result["batch"] = timed(lipsync("batch", videos, "--audio", audio, "-o", out, "-c", ckpt, "-q"))[0]
            else:
                t = time.perf_counter()
                for video in sorted(videos.iterdir()):
                    timed(lipsync("dub", video, audio / f"{video.stem}.wav", "-o", out / video.name, "-c", ckpt, "-q"))
                result["separate"] = time.perf_counter() - t
        rows.append(result)
    print(f"machine: {machine()}\nclips: {N_CLIPS} x {SECONDS:.0f} s (talk1-5 at 4 offsets), default detector\n")
    print("| run | 20 separate `dub` s | one `batch` s | speed-up |")
    print("| --- | --- | --- | --- |")
    for i, r in enumerate(rows, 1):
        print(f"| {i} | {r['separate']:.1f} | {r['batch']:.1f} | {r['separate'] / r['batch']:.2f}x |")
    print(f"\nmedian speed-up: **{statistics.median(r['separate'] / r['batch'] for r in rows):.2f}x**")


def cmd_kill(args, tmp: Path):
    ckpt = make_checkpoint(tmp)
    videos, audio = make_clips(tmp)
    out = tmp / "out"
    cmd = lipsync("batch", videos, "--audio", audio, "-o", out, "-c", ckpt, "-q")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and sum(r["state"] == "done" for r in job_records(out)) < args.kill_after:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = job_records(out)
    partial_after_kill = sorted(p.name for p in out.iterdir() if ".partial-" in p.name)
    done_before = {r["item"] for r in killed if r["state"] == "done"}
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    records = job_records(out)
    done = Counter(r["item"] for r in records if r["state"] == "done")
    started = Counter(r["item"] for r in records if r["state"] == "started")
    redone = [k for k in done_before if started[k] > 1]
    partial_after_rerun = [p.name for p in out.iterdir() if ".partial-" in p.name]
    outputs = sorted(p.name for p in out.glob("*.mp4"))
    print(f"machine: {machine()}\n")
    print("| what | value |")
    print("| --- | --- |")
    print(f"| clips done when SIGKILL hit | {len(done_before)} of {N_CLIPS} |")
    print(f"| temporary files left by the kill | {len(partial_after_kill)} |")
    print(f"| rerun exit code | {rerun.returncode} |")
    print(f"| clips with exactly one `done` record | {sum(1 for n in done.values() if n == 1)} of {N_CLIPS} |")
    print(f"| clips with more than one `done` record | {sum(1 for n in done.values() if n > 1)} |")
    print(f"| finished clips started again | {len(redone)} |")
    print(f"| outputs present | {len(outputs)} |")
    print(f"| temporary files after the rerun | {len(partial_after_rerun)} |")


def cmd_shards(args, tmp: Path):
    ckpt = make_checkpoint(tmp)
    videos, audio = make_clips(tmp)
    out = tmp / "out"
    t = time.perf_counter()
    procs = [subprocess.Popen(lipsync("batch", videos, "--audio", audio, "-o", out, "-c", ckpt, "-q", "--shard", f"{k}/2"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for k in range(2)]
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - t
    records = job_records(out)
    shards_of = {}
    for r in records:
        shards_of.setdefault(r["item"], set()).add(r["shard"])
    done = Counter(r["item"] for r in records if r["state"] == "done")
    report = json.loads(subprocess.run(lipsync("batch", "--report", out, "--json"), capture_output=True, text=True,
                                       check=True).stdout)
    print(f"machine: {machine()}\n")
    print("| what | value |")
    print("| --- | --- |")
    print(f"| exit codes | {codes} |")
    print(f"| wall s (both processes, 2 cores) | {wall:.1f} |")
    print(f"| items done by shard 0/2, 1/2 | {sum('0/2' in s for s in shards_of.values())}, "
          f"{sum('1/2' in s for s in shards_of.values())} |")
    print(f"| items touched by both shards | {sum(len(s) > 1 for s in shards_of.values())} |")
    print(f"| items done exactly once | {sum(1 for n in done.values() if n == 1)} of {N_CLIPS} |")
    print(f"| merged report (`batch --report`) | {report['counts']} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["speed", "kill", "shards"])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--kill-after", type=int, default=7, help="SIGKILL once this many clips are done")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        {"speed": cmd_speed, "kill": cmd_kill, "shards": cmd_shards}[args.what](args, Path(tmp))


if __name__ == "__main__":
    main()
