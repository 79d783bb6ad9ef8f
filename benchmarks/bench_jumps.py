"""Jump cuts the shot detector cannot see: where dub's face boxes land around them.

    python benchmarks/bench_jumps.py [--work /tmp/lipsync-jumps] [--videos 8]

A vlogger's jump cuts between takes against one wall change little but where the face is, so
PySceneDetect's content change (faces/shots.py) misses many of them and one face track runs across
the cut. The videos: bench_finetune.py's edited footage of one synthetic person (256x256, a shot of
1.5-3 s at another place after every cut, b-roll and a title card between some), rendered from the
corpus of CorpusSpec(seed 5, 120 identities, 48 voices), its first test identity and voice; and the
sample set's five real clips (no cut: nothing may change there).

Per frame, the box `dub` pastes (FacePlan of `find_speakers` at dub's default detection every 2nd
frame, smoothed) against the face's own detection on every frame, in face widths, with the
smoothing stopped at each jump of the face (faces.track.jump_starts, today) and without (before):
the frames off by more than 8% of the face's width (a mouth pasted visibly off), and the largest.
Cuts counted as frames whose mean change from the frame before exceeds 5 grey levels (the synthetic
footage's cuts; its head motion and b-roll pans stay under 1.2).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dub import machine  # noqa: E402
from bench_finetune import footage, the_person  # noqa: E402
from lipsync_cli import media  # noqa: E402
from lipsync_cli.faces import speakers as sp  # noqa: E402
from lipsync_cli.synth import corpus  # noqa: E402

MEDIA = Path(__import__("os").environ.get("LIPSYNC_MEDIA", ROOT.parent / "shared" / "media"))
OFF = 0.08  # a box this share of the face's width off its detection: a mouth visibly misplaced


def cuts_of(video: Path) -> tuple[list[int], int]:
    cuts, prev, n = [], None, 0
    for chunk in media.FrameReader(media.probe(str(video)), chunk=64, fps=media.FPS):
        for f in chunk:
            g = f.astype(np.int16)
            if prev is not None and np.abs(g - prev).mean() > 5:
                cuts.append(n)
            prev, n = g, n + 1
    return cuts, n


def offsets(plan: sp.FacePlan, ref: sp.FacePlan, frames: int) -> list[float]:
    """Per frame with a face in both: the pasted box's centre from the detection's, in face widths."""
    out = []
    for j in range(frames):
        chosen = ref.chosen[j] if j < len(ref.chosen) else ()
        boxes = plan.boxes(j)
        if not chosen or not boxes:
            continue
        t = ref.tracks[chosen[0]]
        a = t.boxes[j - t.first]
        (b,) = boxes.values()
        out.append(float(np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2) / (a[2] - a[0])))
    return out


def measure(video: Path) -> dict:
    cuts, n = cuts_of(video)
    report = sp.find_speakers(str(video), None, sp.SpeakerOptions(detect_every=2), score=False)
    ref = sp.FacePlan(sp.find_speakers(str(video), None, sp.SpeakerOptions(detect_every=1), score=False), "largest")
    now = sp.FacePlan(report, "largest")
    found = sp.jump_starts
    sp.jump_starts = lambda boxes: []  # the smoothing as it was: over each whole track
    try:
        before = sp.FacePlan(report, "largest")
    finally:
        sp.jump_starts = found
    row = {"video": video.name, "frames": n, "cuts": len(cuts), "shots found": len(report.shots) - 1}
    for name, plan in (("before", before), ("now", now)):
        off = offsets(plan, ref, n)
        row[name] = (sum(o > OFF for o in off), max(off))
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/lipsync-jumps"))
    ap.add_argument("--videos", type=int, default=8)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    spec = corpus.CorpusSpec(clips=400, identities=120, voices=48, seed=5)
    footage(spec, the_person(spec), args.work, args.videos, 14)
    videos = [args.work / f"vlog{v + 1}.mp4" for v in range(args.videos)]
    videos += sorted(MEDIA.glob("talk*.mp4"))
    rows = []
    for v in videos:
        rows.append(measure(v))
        print(f"<!-- {rows[-1]} -->", flush=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"\n# Jump cuts the shot detector misses: the boxes dub pastes\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"{machine()}; lipsync at {commit}; {(time.perf_counter() - t0) / 60:.0f} min\n"
          f"`python benchmarks/bench_jumps.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n")
    print(f"| video | frames | cuts | shot boundaries found | frames off > {OFF:.0%}, before | largest, before "
          f"| frames off > {OFF:.0%}, now | largest, now |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        cuts = r["cuts"] if r["video"].startswith("vlog") else "-"  # real clips: no cut (their motion may pass 5)
        print(f"| {r['video']} | {r['frames']} | {cuts} | {r['shots found']} | {r['before'][0]} | {r['before'][1]:.2f} "
              f"| {r['now'][0]} | {r['now'][1]:.2f} |")
    synth = [r for r in rows if r["video"].startswith("vlog")]
    print(f"| **all footage** | {sum(r['frames'] for r in synth)} | {sum(r['cuts'] for r in synth)} | "
          f"{sum(r['shots found'] for r in synth)} | **{sum(r['before'][0] for r in synth)}** | "
          f"{max(r['before'][1] for r in synth):.2f} | **{sum(r['now'][0] for r in synth)}** | "
          f"{max(r['now'][1] for r in synth):.2f} |")


if __name__ == "__main__":
    main()
