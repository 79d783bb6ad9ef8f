"""`dub --enhance gfpgan`: what GFPGAN costs per face, and whether the enhanced mouth shimmers.

    python benchmarks/bench_enhance.py cost [--runs 3]
    python benchmarks/bench_enhance.py flicker [--frames 16] [--weights GFPGANv1.4.pth]

`cost`: seconds per 512x512 face of the full GFPGAN v1.4 network (seeded weights: the cost is the
architecture's), batch 1 and 2, fp32 and (where the CPU has bf16 instructions) bf16 autocast; fp16
on CUDA when there is a GPU.

`flicker`: real clips (examples/talk.mp4, ../shared/media talk2 and talk3) and a still portrait
(examples/portrait.png, with speech and with silence) dubbed by a seeded random Wav2Lip, lossless
(crf 0), without and with the enhance stage; flicker = the mean absolute change (grey levels) of
the mouth region (the feathered mask's area: the lower face from FEATHER_FROM of the box down) from
one frame to the next, over the clip. The enhance stage runs three ways:
- as `dub --enhance gfpgan` does: the checkpoint's stored noise, landmarks smoothed per face;
- stored noise, each frame's own landmarks (what the smoothing buys);
- fresh noise at every call, each frame's own landmarks: as GFPGAN's own inference runs.
Without the published weights (not downloadable here) the network is seeded at random: its output
is not a face, so the figures compare the stage's sources of change with each other (how much the
noise and the landmark jitter add), not GFPGAN's look; `--weights` runs the same with the real file.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lipsync_cli import media  # noqa: E402
from lipsync_cli.faces import make_detector  # noqa: E402
from lipsync_cli.faces.paste import FEATHER_FROM  # noqa: E402
from lipsync_cli.models import gfpgan as g  # noqa: E402
from lipsync_cli.pipelines.dub import ClipRequest, Dubber, load_model_for  # noqa: E402
from lipsync_cli.pipelines.enhance import FaceRestorer, restore_precision  # noqa: E402
from lipsync_cli.pipelines.options import DubOptions  # noqa: E402

EXAMPLES = ROOT / "examples"
MEDIA = ROOT.parent / "shared" / "media"


def machine() -> str:
    try:
        name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor()
    return f"{name}, {os.cpu_count()} cores, torch {torch.__version__}"


def seeded(narrow: float = 1.0) -> g.GFPGAN:
    return g.random_gfpgan(0, narrow)


# ---------------------------------------------------------------------------------------------- cost

def cost(runs: int) -> None:
    model = seeded()
    print(f"GFPGAN v1.4 ({g.parameter_count(model):,} parameters), {machine()}\n")
    print("| device | precision | faces per call | seconds per face (median of runs) | runs |")
    print("| --- | --- | --- | --- | --- |")
    setups = [("cpu", "fp32", None)]
    if torch.backends.mkldnn.is_available() and "bf16" in open("/proc/cpuinfo").read():
        setups.append(("cpu", "bf16", torch.bfloat16))
    if torch.cuda.is_available():
        setups.append(("cuda", "fp16", torch.float16))
    for device, name, dtype in setups:
        net = model.to(device)
        for batch in (1, 2) if device == "cpu" else (1, 8):
            x = torch.rand(batch, 3, 512, 512, device=device) * 2 - 1
            times = []
            for _ in range(runs + 1):  # the first call warms up
                t = time.perf_counter()
                with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=dtype is not None):
                    net(x)
                if device == "cuda":
                    torch.cuda.synchronize()
                times.append((time.perf_counter() - t) / batch)
            print(f"| {device} | {name} | {batch} | {np.median(times[1:]):.2f} | "
                  f"{', '.join(f'{v:.2f}' for v in times[1:])} |", flush=True)


# ---------------------------------------------------------------------------------------------- flicker

class FreshNoise(torch.nn.Module):
    """GFPGAN as its own inference runs it: new N(0, 1) noise maps at every call."""

    def __init__(self, model: g.GFPGAN):
        super().__init__()
        self.model = model

    def forward(self, x):
        noises = self.model.stylegan_decoder.noises
        stored = [noises[i].clone() for i in range(g.NOISES)]
        for i in range(g.NOISES):
            noises[i].normal_()
        try:
            return self.model(x)
        finally:  # the stored maps back, for the other ways of running
            for i in range(g.NOISES):
                noises[i].copy_(stored[i])


class Recording(FaceRestorer):
    """The enhance stage, keeping each frame's boxes (where the mouths are)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.boxes: list = []

    def enhance(self, pairs):
        self.boxes.extend(b for _, _, b in pairs)
        return super().enhance(pairs)


def mouth_flicker(frames: np.ndarray, boxes: list) -> float:
    """Mean absolute grey-level change of the mouth region from frame to frame."""
    grey = frames.astype(np.float32).mean(axis=3)
    changes = []
    for t in range(1, min(len(grey), len(boxes))):
        for x1, y1, x2, y2 in boxes[t]:
            top = y1 + int(FEATHER_FROM * (y2 - y1))
            changes.append(np.abs(grey[t, top:y2, x1:x2] - grey[t - 1, top:y2, x1:x2]).mean())
    return float(np.mean(changes)) if changes else float("nan")


def flicker(frames: int, weights: str | None, narrow: float = 1.0) -> None:
    work = Path(tempfile.mkdtemp(prefix="lipsync-enhance-"))
    ckpt = work / "random.pth"
    subprocess.run([sys.executable, "-m", "lipsync_cli.cli", "weights", "init", str(ckpt)], check=True, capture_output=True)
    ff = media.ffmpeg_binary()
    seconds = f"{frames / 25:.2f}"
    speech, silence = work / "speech.wav", work / "silence.wav"
    subprocess.run([ff, "-v", "error", "-y", "-i", str(EXAMPLES / "speech.wav"), "-t", seconds, str(speech)], check=True)
    subprocess.run([ff, "-v", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", seconds, str(silence)],
                   check=True)
    cases = [("examples/talk.mp4", EXAMPLES / "talk.mp4", speech)]
    for name in ("talk2.mp4", "talk3.mp4"):
        if (MEDIA / name).exists():
            cases.append((f"shared/media/{name}", MEDIA / name, speech))
    cases += [("examples/portrait.png, speech", EXAMPLES / "portrait.png", speech),
              ("examples/portrait.png, silence", EXAMPLES / "portrait.png", silence)]
    net = g.load_gfpgan(weights) if weights else seeded(narrow)
    opts = DubOptions(checkpoint=str(ckpt), precision="fp32", crf=0, speaker="largest")
    runner = load_model_for(opts)
    detector = make_detector("retinaface", "cpu", max_side=160)
    precision = restore_precision("cpu")  # what dub --enhance runs on this CPU
    ways = [("stored noise, smoothed landmarks (dub --enhance)", False, None),
            ("stored noise, each frame's landmarks", False, 1.0),
            ("fresh noise, each frame's landmarks (GFPGAN's own inference)", True, 1.0)]
    print(f"{machine()}; GFPGAN {'from ' + weights if weights else 'seeded at random (models.gfpgan.random_gfpgan(0))'}; "
          f"{frames} frames per clip; GFPGAN in {precision}\n")
    print("| clip | plain dub | " + " | ".join(w for w, _, _ in ways) + " | seconds per face |")
    print("| --- | --- | " + " | ".join("---" for _ in ways) + " | --- |")
    for label, video, audio in cases:
        cells, per_face = [], []
        plain = None
        for k, (_, fresh, smoothing) in enumerate([(None, False, None)] + ways):
            restorer = None
            if k > 0:
                model = FreshNoise(net) if fresh else net
                kwargs = {} if smoothing is None else {"smoothing": smoothing}
                restorer = Recording(model, "cpu", precision, detector=detector, **kwargs)
            out = work / f"out{k}.mp4"
            t = time.perf_counter()
            results = []
            Dubber(runner, opts, restorer=restorer).run([ClipRequest(str(video), str(audio), str(out), force=True)],
                                                       lambda req, res, err: results.append((res, err)))
            if results[0][1] is not None:
                raise results[0][1]
            dubbed = np.concatenate(list(media.FrameReader(media.probe(str(out)), chunk=32)))
            if k == 0:
                plain = dubbed
                continue
            per_face.append((time.perf_counter() - t) / max(1, restorer.faces_done))
            if k == 1:
                cells.append(f"{mouth_flicker(plain, restorer.boxes):.2f}")
            cells.append(f"{mouth_flicker(dubbed, restorer.boxes):.2f}")
        print(f"| {label} | " + " | ".join(cells) + f" | {np.median(per_face):.2f} |", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("cost")
    c.add_argument("--runs", type=int, default=3)
    f = sub.add_parser("flicker")
    f.add_argument("--frames", type=int, default=16)
    f.add_argument("--weights", default=None, help="a GFPGANv1.4.pth to use instead of seeded weights")
    f.add_argument("--narrow", type=float, default=1.0, help="seeded weights at this width (a quick try of the script)")
    args = ap.parse_args(argv)
    print(f"`python benchmarks/bench_enhance.py {' '.join(sys.argv[1:])}`, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    if args.what == "cost":
        cost(args.runs)
    else:
        flicker(args.frames, args.weights, args.narrow)


if __name__ == "__main__":
    main()
