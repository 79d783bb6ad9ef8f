"""End-to-end benchmarks of `lipsync dub` on this machine. Prints markdown tables.

    python benchmarks/bench_dub.py compare --runs 5     # vs the reference inference design (lipsync==0.1.0)
    python benchmarks/bench_dub.py compare --runs 5 -- --precision fp32   # extra `dub` arguments after --
    python benchmarks/bench_dub.py compare --clip talk3.mp4 --audio speech3.wav --box 120 450 180 410
    python benchmarks/bench_dub.py compare --emulate-avx2   # as a CPU without AVX-512 and AMX (both tools)
    python benchmarks/bench_dub.py detect --runs 3      # share of the time the default detector takes
    python benchmarks/bench_dub.py memory               # peak memory, 10 s vs 60 s input

Every run is a separate process, timed from the outside (`/usr/bin/time`: wall seconds and peak
RSS), with a seeded random-init Wav2Lip generator in the published layout: the cost of a network
does not depend on its weights. `compare` needs the reference package in a venv of its own
(see run_reference.py); runs alternate between the two tools so drifts in machine load hit both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
MEDIA = Path(os.environ.get("LIPSYNC_MEDIA", HERE.parent.parent / "shared" / "media"))
REF_PYTHON = os.environ.get("LIPSYNC_REF_PYTHON", "/work/refvenv/bin/python")
CLIP, AUDIO, BOX = "talk2.mp4", "speech1.wav", ("350", "700", "250", "600")  # 844x844, 25 fps, 5 s


def timed(cmd: list[str], env=None) -> tuple[float, int, str]:
    """Run a command under /usr/bin/time: (wall seconds, peak RSS in MB, stdout)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        proc = subprocess.run(["/usr/bin/time", "-o", tf.name, "-f", "%e %M", *cmd], capture_output=True,
                              text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
        wall, rss_kb = tf.read().split()[-2:]
    return float(wall), int(rss_kb) // 1024, proc.stdout


def make_checkpoint(folder: Path) -> Path:
    from lipsync_cli.checkpoints import save_published
    from lipsync_cli.models.wav2lip import build_generator

    path = folder / "wav2lip_random.pth"
    torch.manual_seed(0)
    save_published(build_generator("wav2lip"), path)
    return path


def ours(video, audio, out, ckpt, *extra) -> list[str]:
    return [sys.executable, "-m", "lipsync_cli.cli", "dub", str(video), str(audio), "-o", str(out), "-c", str(ckpt),
            "--force", "--json", *extra]


def machine() -> str:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


# What makes this machine's libraries run as on a CPU with AVX2 only (no AVX-512, no AMX): oneDNN
# (PyTorch's convolutions), ATen's own vectorised kernels, FBGEMM (PyTorch's int8 kernels);
# LIPSYNC_NO_AMX keeps lipsync's precision choice off bf16. ONNX Runtime has no such switch.
EMULATE_AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
                "LIPSYNC_NO_AMX": "1"}


def cmd_compare(args, tmp: Path):
    ckpt = make_checkpoint(tmp)
    video, audio = MEDIA / args.clip, MEDIA / args.audio
    env = {**os.environ, **EMULATE_AVX2} if args.emulate_avx2 else None
    rows = []
    for i in range(args.runs):
        pair = {}
        order = ("ours", "reference") if i % 2 == 0 else ("reference", "ours")
        for who in order:
            if who == "ours":
                wall, rss, out = timed(ours(video, audio, tmp / "ours.mp4", ckpt, "--box", *args.box, *args.extra), env)
                pair["ours"] = (wall, rss, json.loads(out))
            else:
                wall, rss, _ = timed([REF_PYTHON, str(HERE / "run_reference.py"), "--video", str(video), "--audio",
                                      str(audio), "--checkpoint", str(ckpt), "--box", *args.box, "--out",
                                      str(tmp / "ref.mp4")], env)
                pair["reference"] = (wall, rss, None)
        rows.append(pair)
    summary = rows[0]["ours"][2]
    frames = summary["frames"]
    emulated = " (emulated: " + " ".join(f"{k}={v}" for k, v in EMULATE_AVX2.items()) + ")" if args.emulate_avx2 else ""
    print(f"machine: {machine()}{emulated}\nclip: {args.clip} + {args.audio}, fixed box {' '.join(args.box)}, {frames} frames; "
          f"ours: `dub {' '.join(args.extra) or '(defaults)'}` ran {summary['precision']}\n")
    print("| run | reference wall s | ours wall s | ratio | reference peak MB | ours peak MB | ours dub() s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    ratios = []
    for i, r in enumerate(rows, 1):
        ratio = r["ours"][0] / r["reference"][0]
        ratios.append(ratio)
        print(f"| {i} | {r['reference'][0]:.2f} | {r['ours'][0]:.2f} | {ratio:.3f} | {r['reference'][1]} | "
              f"{r['ours'][1]} | {r['ours'][2]['seconds']:.2f} |")
    med_ours = statistics.median(r["ours"][0] for r in rows)
    med_pipeline = statistics.median(r["ours"][2]["seconds"] for r in rows)
    print(f"\nmedian ratio ours / reference: **{statistics.median(ratios):.3f}** over {len(rows)} paired runs\n")
    stages = rows[len(rows) // 2]["ours"][2]["stage_seconds"]
    if args.emulate_avx2:  # the floor below runs in this process, which is not emulated
        print(f"stage seconds (one run of ours; threads overlap): `{json.dumps(stages)}`")
        return
    print("| generator-only floor (folded, channels_last, batch %d) | ms / frame | s for %d frames | "
          "ours whole process / floor | ours dub() / floor |" % (args.batch, frames))
    print("| --- | --- | --- | --- | --- |")
    for precision in ("fp32", "bf16"):
        floor_ms = generator_floor_ms(args.batch, precision)
        floor_s = floor_ms * frames / 1000
        print(f"| {precision} | {floor_ms:.1f} | {floor_s:.2f} | {med_ours / floor_s:.2f}x | {med_pipeline / floor_s:.2f}x |")
    print(f"\nstage seconds (one run of ours; threads overlap): `{json.dumps(stages)}`")


def generator_floor_ms(batch: int, precision: str = "fp32") -> float:
    import copy
    import time

    from lipsync_cli.models.inference import fold_batchnorm
    from lipsync_cli.models.wav2lip import build_generator

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    torch.manual_seed(0)
    net = copy.deepcopy(fold_batchnorm(build_generator())).to(dtype).to(memory_format=torch.channels_last)
    faces = torch.rand(batch, 6, 96, 96).to(dtype).contiguous(memory_format=torch.channels_last)
    mel = torch.randn(batch, 1, 80, 16).to(dtype)
    with torch.inference_mode():
        net(mel, faces)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            net(mel, faces)
            times.append(time.perf_counter() - t)
    return min(times) / batch * 1000


def cmd_detect(args, tmp: Path):
    ckpt = make_checkpoint(tmp)
    video, audio = MEDIA / CLIP, MEDIA / AUDIO
    rows = []
    for _ in range(args.runs):
        box = timed(ours(video, audio, tmp / "a.mp4", ckpt, "--box", *BOX, *args.extra))
        det = timed(ours(video, audio, tmp / "b.mp4", ckpt, *args.extra))
        rows.append((box, det))
    print(f"machine: {machine()}\nclip: {CLIP} + {AUDIO}\n")
    print("| run | fixed box wall s | RetinaFace wall s | extra wall share | detect stage s | detect stage / run |")
    print("| --- | --- | --- | --- | --- | --- |")
    for i, (box, det) in enumerate(rows, 1):
        stats = json.loads(det[2])
        d = stats["stage_seconds"].get("detect", 0.0)
        print(f"| {i} | {box[0]:.2f} | {det[0]:.2f} | {(det[0] - box[0]) / det[0]:.1%} | {d:.2f} | {d / det[0]:.1%} |")


def cmd_memory(args, tmp: Path):
    ckpt = make_checkpoint(tmp)
    long_video = tmp / "long.mp4"
    ff = [sys.executable, "-c", "from lipsync_cli.media import ffmpeg_binary; print(ffmpeg_binary())"]
    ffmpeg = subprocess.run(ff, capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([ffmpeg, "-v", "error", "-y", "-stream_loop", "3", "-i", str(MEDIA / "silent_long.mp4"), "-t", "60",
                    "-c:v", "libx264", "-crf", "20", "-preset", "veryfast", str(long_video)], check=True)
    print(f"machine: {machine()}\nvideo: silent_long.mp4 looped (576x768, 25 fps), audio: speech_long.wav\n")
    print("| input | frames | wall s | peak RSS MB |")
    print("| --- | --- | --- | --- |")
    results = {}
    for seconds in (10, 60):
        audio = tmp / f"speech_{seconds}.wav"
        subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(MEDIA / "speech_long.wav"), "-t", str(seconds),
                        str(audio)], check=True)
        video = tmp / f"video_{seconds}.mp4"
        subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(long_video), "-t", str(seconds), "-c", "copy",
                        str(video)], check=True)
        wall, rss, out = timed(ours(video, audio, tmp / "m.mp4", ckpt, *args.extra))
        results[seconds] = rss
        print(f"| {seconds} s | {json.loads(out)['frames']} | {wall:.1f} | {rss} |")
    print(f"\n60 s / 10 s peak memory: **{results[60] / results[10]:.3f}**")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["compare", "detect", "memory"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--clip", default=CLIP, help="a clip of ../shared/media")
    ap.add_argument("--audio", default=AUDIO, help="a speech file of ../shared/media")
    ap.add_argument("--box", nargs=4, default=list(BOX), metavar=("Y1", "Y2", "X1", "X2"), help="the fixed face box")
    ap.add_argument("--emulate-avx2", action="store_true", help="run both tools as on a CPU with AVX2 only")
    args, rest = ap.parse_known_args()
    args.extra = rest[1:] if rest[:1] == ["--"] else rest  # extra arguments for `lipsync dub`, after --
    with tempfile.TemporaryDirectory() as tmp:
        {"compare": cmd_compare, "detect": cmd_detect, "memory": cmd_memory}[args.what](args, Path(tmp))


if __name__ == "__main__":
    main()
