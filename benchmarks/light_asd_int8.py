"""The int8 copy of Light-ASD's visual encoder: how it is made, what it costs, how far it moves the scores.

    python benchmarks/light_asd_int8.py build     # writes lipsync_cli/data/light_asd/light_asd_talkset.visual.int8.onnx
    python benchmarks/light_asd_int8.py measure   # the table in benchmarks/speakers.md

`build` needs the `onnx` package (not a dependency of lipsync: only this script uses it). The
calibration crops are the faces of the three example clips (examples/talk.mp4, talk2.mp4,
listener.mp4: a talking face and a listening one), cut as `lipsync speakers` cuts them. `measure`
times the fp32 and int8 encoders on the same crops (min of 5 runs, 1 and 2 threads) and compares
the speaking scores that each gives on the five talk clips of ../shared/media (each with its own
speech, the speaker's track found by `lipsync speakers`' tracking), which the calibration never saw.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lipsync_cli import media  # noqa: E402
from lipsync_cli.audio import load_audio  # noqa: E402
from lipsync_cli.models import light_asd as la  # noqa: E402
from lipsync_cli.faces import speakers as sp  # noqa: E402

EXAMPLES = [ROOT / "examples" / n for n in ("talk.mp4", "talk2.mp4", "listener.mp4")]
MEDIA = ROOT.parent / "shared" / "media"


def face_crops(video: Path) -> list[np.ndarray]:
    """Each face track of `video` as (T, 112, 112) crops, as `lipsync speakers` cuts them."""
    report = sp.find_speakers(str(video), None, sp.SpeakerOptions(), score=False)
    info = media.probe(str(video))
    frames = [f.copy() for chunk in media.FrameReader(info, chunk=32, fps=Fraction(sp.FPS)) for f in chunk]
    return [la.track_crops(frames[t.first:t.first + len(t.boxes)], t.boxes) for t in report.tracks]


def build() -> None:
    crops = [c for v in EXAMPLES for c in face_crops(v)]
    la.quantize_visual_onnx(la.SHIPPED_VISUAL_ONNX, la.SHIPPED_VISUAL_INT8, crops)
    size = la.SHIPPED_VISUAL_INT8.stat().st_size
    print(f"wrote {la.SHIPPED_VISUAL_INT8} ({size} bytes) from {sum(len(c) for c in crops)} crops of {len(crops)} tracks")


def ms_per_frame(encoder, grey, runs: int = 5) -> float:
    encoder(grey)
    best = min(_timed(encoder, grey) for _ in range(runs))
    return 1000 * best / grey.shape[1]


def _timed(encoder, grey) -> float:
    t0 = time.perf_counter()
    encoder(grey)
    return time.perf_counter() - t0


def measure() -> None:
    import onnxruntime as ort
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"Machine: {cpu}, {os.cpu_count()} cores; onnxruntime {ort.__version__}, torch {torch.__version__}\n")
    grey = torch.from_numpy(face_crops(EXAMPLES[1])[0][:100]).float()[None]
    print("| encoder | threads | ms per frame (100 frames at once) | ms per frame (25 at once, as 1 s windows) |")
    print("| --- | --- | --- | --- |")
    for path, name in ((la.SHIPPED_VISUAL_ONNX, "fp32"), (la.SHIPPED_VISUAL_INT8, "int8")):
        for threads in (1, 2):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])

            def encoder(g, s=session):
                return s.run(None, {"grey": g.numpy()})[0]

            whole = ms_per_frame(encoder, grey)
            windows = ms_per_frame(lambda g: [encoder(g[:, a:a + 25]) for a in range(0, g.shape[1], 25)], grey)
            print(f"| ONNX Runtime {name} | {threads} | {whole:.2f} | {windows:.2f} |")

    print("\n| clip | frames | max abs. score difference | mean abs. difference | same sign |")
    print("| --- | --- | --- | --- | --- |")
    fp32 = sp.load_detector("light_asd_talkset", precision="fp32")
    int8 = sp.load_detector("light_asd_talkset", precision="auto")
    assert int8.onnx_int8 and not fp32.onnx_int8
    diffs, same, n = [], 0, 0
    for i in range(1, 6):
        clip = MEDIA / f"talk{i}.mp4"
        samples = load_audio(str(clip)).samples
        for crops in face_crops(clip)[:1]:
            mfcc = la.mfcc_for(samples, frames=len(crops))
            a = la.speaking_scores(fp32, crops, mfcc, sp.DEFAULT_WINDOWS)
            b = la.speaking_scores(int8, crops, mfcc, sp.DEFAULT_WINDOWS)
            d = np.abs(a - b)
            diffs.append(d.max())
            same += int(((a > 0) == (b > 0)).sum())
            n += len(a)
            print(f"| talk{i} | {len(a)} | {d.max():.3f} | {d.mean():.3f} | {((a > 0) == (b > 0)).mean():.1%} |")
    print(f"\nall: max {max(diffs):.3f}, same sign in {same / n:.2%} of {n} frames")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("build", "measure"))
    {"build": build, "measure": measure}[ap.parse_args().what]()
