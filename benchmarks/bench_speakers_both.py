"""Two faces talking at once over one mixed track: how often `--speaker auto` dubs both.

    python benchmarks/bench_speakers.py --cases hard --dry     # builds the hard composites first
    python benchmarks/bench_speakers_both.py [--work /tmp/lipsync-speakers] [--code CHECKOUT]

Each composite is a hard pair of bench_speakers.py (talkX | talkY, both playing their own footage
from frame 0) with its sound replaced by the sum of both clips' own speech (ffmpeg amix, no
normalisation), so that both faces speak in every frame in which both speeches are voiced. One
`lipsync speakers --json` run per composite; the table gives the share of frames in which both
faces are dubbed, and each face's share. Results are recorded in benchmarks/speakers.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lipsync_cli.media import ffmpeg_binary  # noqa: E402

PAIRS = (("T1", "T2"), ("T1", "T5"), ("T2", "T3"), ("T2", "T4"), ("T3", "T5"), ("T4", "T5"))


def mixed(work: Path, a: str, b: str) -> Path:
    composites = work / "composites"
    video = composites / f"hard-{a}_{b}_audio_{a}.mp4"
    speech = [composites / f"hard-{a}_{b}_audio_{a}.wav", composites / f"hard-{b}_{a}_audio_{b}.wav"]
    missing = [str(p) for p in (video, *speech) if not p.exists()]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: run `python benchmarks/bench_speakers.py --cases hard --dry` first")
    out = work / "both" / f"both-{a}_{b}.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        subprocess.run([ffmpeg_binary(), "-v", "error", "-y", "-i", str(video), "-i", str(speech[0]), "-i", str(speech[1]),
                        "-filter_complex", "[1:a][2:a]amix=inputs=2:duration=shortest:normalize=0[a]",
                        "-map", "0:v", "-map", "[a]", "-c:v", "copy", "-c:a", "aac", str(out)], check=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/lipsync-speakers"))
    ap.add_argument("--weights", default="light_asd_talkset")
    ap.add_argument("--code", type=Path, default=ROOT, help="a lipsync checkout to run (default: this one)")
    args = ap.parse_args()
    print("| composite | frames | both dubbed | left face dubbed | right face dubbed |")
    print("| --- | --- | --- | --- | --- |")
    shares = []
    for a, b in PAIRS:
        video = mixed(args.work, a, b)
        done = subprocess.run([sys.executable, "-m", "lipsync_cli.cli", "speakers", str(video), "--json",
                               "--weights", args.weights], capture_output=True, text=True, check=True, cwd=args.code)
        report = json.loads(done.stdout[done.stdout.index("{"):])
        dubbed, tracks = report["dubbed"], sorted(report["tracks"], key=lambda t: t["box"][0] + t["box"][2])
        n = len(dubbed)
        both = sum(len(d) >= 2 for d in dubbed) / n
        each = [sum(t["index"] in d for d in dubbed) / n for t in tracks]
        shares.append(both)
        print(f"| {a}\\|{b}, both speeches | {n} | {both:.1%} | " + " | ".join(f"{e:.0%}" for e in each[:2]) + " |")
    print(f"\nmean share of frames with both dubbed: {sum(shares) / len(shares):.1%}")


if __name__ == "__main__":
    main()
