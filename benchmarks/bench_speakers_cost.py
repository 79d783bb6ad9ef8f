"""What `dub --speaker auto` costs over a one-face dub of the same clip, and its memory.

    python benchmarks/bench_speakers_cost.py cost [--runs 3] [--seconds 10]
    python benchmarks/bench_speakers_cost.py memory

The clip: talk2.mp4 and talk3.mp4 of ../shared/media side by side at 480x480 each (960x480,
25 fps), looped to the length asked, with talk2's own sound (the original speech `auto` listens
to); the dubbed speech is speech_long.wav. The generator is a seeded random-init Wav2Lip (the
published architecture, so the cost is the real one). `cost` runs `lipsync dub --speaker largest`
and `--speaker auto` in pairs, alternating which goes first, and reports the median extra wall time
of auto; `memory` the peak RSS of auto on 10 s and 60 s. Run it once as the machine is, and once
with ONEDNN_MAX_CPU_ISA=AVX2 in the environment (PyTorch then runs as on a CPU without AMX: fp32
generator and Light-ASD). Wall time and peak RSS are of the whole process (/usr/bin/time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"


def ffmpeg() -> str:
    sys.path.insert(0, str(ROOT))
    from lipsync_cli.media import ffmpeg_binary

    return ffmpeg_binary()


def make_inputs(tmp: Path, seconds: int) -> tuple[Path, Path, Path]:
    clip, speech, ckpt = tmp / f"pair_{seconds}s.mp4", tmp / f"speech_{seconds}s.wav", tmp / "random.pth"
    if not clip.exists():
        subprocess.run([ffmpeg(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(MEDIA / "talk2.mp4"),
                        "-stream_loop", "-1", "-i", str(MEDIA / "talk3.mp4"), "-filter_complex",
                        "[0:v]scale=480:480,fps=25[a];[1:v]scale=480:480,fps=25[b];[a][b]hstack=inputs=2[v]",
                        "-map", "[v]", "-map", "0:a", "-t", str(seconds), "-c:v", "libx264", "-crf", "18",
                        "-preset", "veryfast", "-c:a", "aac", str(clip)], check=True)
    if not speech.exists():
        subprocess.run([ffmpeg(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(MEDIA / "speech_long.wav"),
                        "-t", str(seconds), str(speech)], check=True)
    if not ckpt.exists():
        subprocess.run([sys.executable, "-m", "lipsync_cli.cli", "weights", "init", str(ckpt)], check=True, capture_output=True)
    return clip, speech, ckpt


def timed_dub(clip: Path, speech: Path, ckpt: Path, out: Path, speaker: str) -> dict:
    cmd = ["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "lipsync_cli.cli", "dub", str(clip), str(speech), "-c", str(ckpt), "-o", str(out),
           "--force", "--json", "--speaker", speaker]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall, peak_kb = done.stderr.strip().splitlines()[-1].split()
    result = json.loads(done.stdout)
    return {"wall": float(wall), "peak_mb": int(peak_kb) / 1024, "result": result}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mode = "AVX2 emulated (ONEDNN_MAX_CPU_ISA=AVX2)" if os.environ.get("ONEDNN_MAX_CPU_ISA") else "as the machine is"
    return f"{cpu}, {os.cpu_count()} cores, {mode}, load {os.getloadavg()[0]:.1f}"


def cmd_cost(args, tmp: Path):
    clip, speech, ckpt = make_inputs(tmp, args.seconds)
    rows, extra = [], []
    for run in range(args.runs):
        order = ("largest", "auto") if run % 2 == 0 else ("auto", "largest")
        got = {mode: timed_dub(clip, speech, ckpt, tmp / f"out_{mode}.mp4", mode) for mode in order}
        one, auto = got["largest"], got["auto"]
        share = (auto["wall"] - one["wall"]) / one["wall"]
        extra.append(share)
        stages = auto["result"]["stage_seconds"]
        rows.append(f"| {run + 1} | {one['wall']:.2f} | {auto['wall']:.2f} | {100 * share:+.1f}% | "
                    f"{stages.get('speakers', 0):.2f} | {auto['result']['precision']} | "
                    f"{auto['result']['dubbed_tracks']} |")
    print(f"machine: {machine()}; clip {args.seconds} s, 960x480, two faces\n")
    print("| run | one face (largest) wall s | auto wall s | extra | auto's speakers stage s | precision | dubbed |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print(f"\nmedian extra of auto: {100 * statistics.median(extra):+.1f}% (bar: at most +25%)")


def cmd_memory(args, tmp: Path):
    print(f"machine: {machine()}\n")
    print("| input | frames | wall s | peak RSS MB |")
    print("| --- | --- | --- | --- |")
    peaks = {}
    for seconds in (10, 60):
        clip, speech, ckpt = make_inputs(tmp, seconds)
        got = timed_dub(clip, speech, ckpt, tmp / "out_memory.mp4", "auto")
        peaks[seconds] = got["peak_mb"]
        print(f"| {seconds} s | {got['result']['frames']} | {got['wall']:.1f} | {got['peak_mb']:.0f} |")
    print(f"\n60 s / 10 s peak memory with --speaker auto: **{peaks[60] / peaks[10]:.3f}** (bar: within 10%)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["cost", "memory"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--work", type=Path, default=None, help="Folder for the inputs (default: a temporary one).")
    args = ap.parse_args()
    if not MEDIA.exists():
        sys.exit(f"needs the sample media in {MEDIA}")
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        {"cost": cmd_cost, "memory": cmd_memory}[args.what](args, args.work)
        return
    with tempfile.TemporaryDirectory() as tmp:
        {"cost": cmd_cost, "memory": cmd_memory}[args.what](args, Path(tmp))


if __name__ == "__main__":
    main()
