"""`lipsync dub` on tilted heads: the real clips rolled with ffmpeg, dubbed with alignment and
without, judged from pixels.

    python benchmarks/bench_tilt.py [--clips talk1,talk3,talk5] [--angles 0,15,30,40] [--seconds 3]
                                    [--code CHECKOUT] [--work /tmp/lipsync-tilt]

Each clip of ../shared/media (or $LIPSYNC_MEDIA) is cut to --seconds and turned by each angle
(ffmpeg's rotate filter, bilinear, clockwise on screen, the frame size kept), then
dubbed with a seeded random generator (`lipsync weights init`: a grey mouth, so what changed is
plain to see) and its own sound, `--crf 0`, once with `--align` (the default) and once with
`--no-align`. Per frame, against the input frame as decoded:

    changed      pixels whose mean absolute difference over the three channels is above 8
    edge angle   the changed pixels turned about the eyes by the input frame's roll (its eye line:
                 RetinaFace's landmarks read again on the face turned upright, faces.align), so the
                 eyes lie level; then the slope of the region's upper edge (the top changed pixel of
                 each column over the middle 60% of its width, a Theil-Sen line through them): 0
                 when the regenerated region's top runs along the eyes
    eyes         the largest change in a disc around each eye (radius 0.15 of the eyes' distance):
                 untouched when it stays within compression noise (<= 8)
    mouth        the mean change in a disc around the mouth's centre: changed when above 8

Reported per clip and angle: the median |edge angle| over frames, the share of frames whose eyes
are untouched, the share whose mouth changed, and the roll read (median) against the truth
(the upright clip's own roll plus the angle).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lipsync_cli import media  # noqa: E402
from lipsync_cli.faces import DetectorPool, align  # noqa: E402

MEDIA = Path(os.environ.get("LIPSYNC_MEDIA", ROOT.parent / "shared" / "media"))
NOISE = 8.0  # grey levels: above this a pixel changed (the lossless output of a lossy input)


def ffmpeg(*args: str) -> None:
    subprocess.run([media.ffmpeg_binary(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args], check=True)


def rolled(work: Path, clip: str, angle: float, seconds: float) -> Path:
    out = work / "clips" / f"{clip}-r{angle:g}.mp4"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        vf = [] if angle == 0 else ["-vf", f"rotate={angle}*PI/180:fillcolor=0x404040"]
        ffmpeg("-i", str(MEDIA / f"{clip}.mp4"), "-t", str(seconds), *vf, "-c:v", "libx264", "-crf", "12",
               "-c:a", "aac", str(out))
    return out


def checkpoint(work: Path, code: Path) -> Path:
    ckpt = work / "random.pth"
    if not ckpt.exists():
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "lipsync_cli.cli", "weights", "init", str(ckpt)], cwd=code, check=True,
                       capture_output=True)
    return ckpt


def dub(code: Path, video: Path, ckpt: Path, out: Path, flag: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lipsync_cli.cli", "dub", str(video), str(video), "-c", str(ckpt), "-o",
                    str(out), "--crf", "0", "--force", "--quiet", flag], cwd=code, check=True)
    return time.perf_counter() - t


def frames_of(path: Path) -> np.ndarray:
    info = media.probe(str(path))
    return np.concatenate(list(media.FrameReader(info, chunk=32)))


def top_edge_angle(changed: np.ndarray) -> float | None:
    """Degrees of the changed region's upper edge (clockwise on screen positive), Theil-Sen over
    the middle 60% of its columns."""
    cols = np.nonzero(changed.sum(axis=0) >= 3)[0]
    if len(cols) < 10:
        return None
    lo, hi = cols[0] + 0.2 * (cols[-1] - cols[0]), cols[-1] - 0.2 * (cols[-1] - cols[0])
    cols = cols[(cols >= lo) & (cols <= hi)]
    tops = np.array([np.argmax(changed[:, x]) for x in cols], np.float64)
    pick = np.linspace(0, len(cols) - 1, min(len(cols), 60)).astype(int)
    x, y = cols[pick].astype(np.float64), tops[pick]
    i, j = np.triu_indices(len(x), 1)
    slopes = (y[j] - y[i]) / np.maximum(x[j] - x[i], 1e-9)
    return float(np.degrees(np.arctan(np.median(slopes))))


def disc(shape, centre, radius) -> np.ndarray:
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius ** 2


def landmarks(detectors, frame: np.ndarray):
    """(roll, eyes (2, 2), mouth centre) of the largest face in a full frame, or None."""
    found = detectors(640).detect([frame])[0]
    if not found:
        return None
    det = max(found, key=lambda d: d.area)
    upright = align.upright_face(detectors, frame, det, 640)
    roll = upright[0] if upright else align.roll_degrees(det.landmarks)
    lm = det.landmarks
    return roll, lm[:2], lm[3:5].mean(axis=0)


def judge(inp: np.ndarray, out: np.ndarray, detectors) -> dict:
    n = min(len(inp), len(out))
    angles, eyes_ok, mouth_changed, rolls = [], 0, 0, []
    for k in range(n):
        read = landmarks(detectors, inp[k])
        if read is None:
            continue
        roll, eyes, mouth = read
        rolls.append(roll)
        diff = np.abs(out[k].astype(np.int16) - inp[k].astype(np.int16)).mean(axis=2)
        level = cv2.getRotationMatrix2D(tuple(float(v) for v in eyes.mean(axis=0)), roll, 1.0)  # eyes level
        changed = cv2.warpAffine((diff > NOISE).astype(np.uint8), level, diff.shape[::-1],
                                 flags=cv2.INTER_NEAREST) > 0
        edge = top_edge_angle(changed)
        if edge is not None:
            angles.append(edge)
        r = 0.15 * float(np.hypot(*(eyes[1] - eyes[0])))
        eye_max = max(float(diff[disc(diff.shape, e, r)].max()) for e in eyes)
        eyes_ok += eye_max <= NOISE
        mouth_changed += float(diff[disc(diff.shape, mouth, r)].mean()) > NOISE
    m = len(rolls)
    return {"frames": m, "edge": statistics.median(abs(a) for a in angles) if angles else None,
            "eyes_ok": eyes_ok / max(1, m), "mouth": mouth_changed / max(1, m),
            "roll": statistics.median(rolls) if rolls else None}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", default="talk1,talk3,talk5")
    ap.add_argument("--angles", default="0,15,30,40")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--code", type=Path, default=ROOT)
    ap.add_argument("--work", type=Path, default=Path("/tmp/lipsync-tilt"))
    args = ap.parse_args(argv)
    code = args.code.resolve()
    commit = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(code), "status", "--porcelain", "lipsync_cli"], capture_output=True,
                           text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"# Tilted heads: real clips rolled with ffmpeg\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"{cpu}, {os.cpu_count()} cores; {code} at {commit}{' with uncommitted changes' if dirty else ''}\n"
          f"`python benchmarks/bench_tilt.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n")
    ckpt = checkpoint(args.work, code)
    detectors = DetectorPool("retinaface")
    rows, truth = [], {}
    for clip in [c for c in args.clips.split(",") if c]:
        for angle in [float(a) for a in args.angles.split(",") if a]:
            video = rolled(args.work, clip, angle, args.seconds)
            inp = frames_of(video)
            got = {}
            for flag in ("--align", "--no-align"):
                out = args.work / "dubs" / f"{video.stem}{flag[1:]}.mp4"
                out.parent.mkdir(parents=True, exist_ok=True)
                wall = dub(code, video, ckpt, out, flag)
                got[flag] = judge(inp, frames_of(out), detectors)
                got[flag]["wall"] = wall
            a, b = got["--align"], got["--no-align"]
            if angle == 0:
                truth[clip] = a["roll"]
            want = truth.get(clip, 0.0) + angle
            fmt = lambda v, f="{:.1f}": "-" if v is None else f.format(v)  # noqa: E731
            rows.append([clip, f"{angle:g}", str(a["frames"]), fmt(a["roll"]), fmt(want),
                         fmt(a["edge"]), fmt(b["edge"]), f"{100 * a['eyes_ok']:.0f}%", f"{100 * b['eyes_ok']:.0f}%",
                         f"{100 * a['mouth']:.0f}%", f"{100 * b['mouth']:.0f}%", f"{a['wall']:.1f}", f"{b['wall']:.1f}"])
            print(f"<!-- {json.dumps({'clip': clip, 'angle': angle, 'align': a, 'no_align': b})} -->", flush=True)
    head = ["clip", "rolled by", "frames", "roll read", "truth", "edge vs eyes, align", "... no-align",
            "eyes untouched, align", "... no-align", "mouth changed, align", "... no-align", "wall s align",
            "wall s no-align"]
    print("| " + " | ".join(head) + " |\n| " + " | ".join("---" for _ in head) + " |")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
