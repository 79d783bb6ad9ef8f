"""Tilted heads on synthetic truth: a generator trained on the upright synthetic corpus dubs
held-out faces whose heads are rolled, with alignment (`--align`, the default) and without.

    python benchmarks/bench_tilt_synth.py [--work /tmp/lipsync-tilt-synth] [--clips 12]
                                          [--angles 0,15,30,40] [--seeds 0,1]

Training (cached in --work; the same checkpoints for every row): a 400-clip corpus of the train
layout at 96 (`lipsync synth --seed 5`; heads within +-4 degrees of upright), an expert on it
(`train syncnet`, 1000 steps, batch 16), quarter-width AttnWav2Lip generators on it, one per
seed (800 steps, batch 4, Adam 1e-3, L1 + 0.03 sync from the first step, no discriminator: the
recipe of benchmarks/README.md's CPU-sized runs), and a judge for LSE trained independently
(another corpus, seed 6; init seed 1; 2000 steps).

Test clips: the first --clips clips of the corpus's test split (faces and voices never seen in
training), each rendered as a 256x256 talking video with its own speech, the head rolled by
each angle: "still" (the roll fixed) and "swaying" (the roll +-8 degrees around it at 0.4 Hz).
Each is dubbed through the real pipeline (`lipsync_cli.Dubber`, `--speaker largest`, `--crf 0`:
RetinaFace, the roll read from its landmarks and refined on the face turned upright, the warps
and the paste) with the next test clip's speech. One thing is added for the benchmark: RetinaFace
does not find the corpus's drawn faces once they lean by 30 degrees (it finds the real faces of
bench_tilt.py rolled by 40), so where it finds no face in a frame, it looks again at the frame
turned by +-15, 30 and 45 degrees, and the first face found there comes back turned: its box
centre and its five landmarks (RetinaFace's own), its box keeping its size, as a detector that
sees leaning faces would give it. Aligned and unaligned dubs get the same detections. The truth is the
same head rendered with the mouth of that speech. Both are turned upright about the face's known
centre and roll and cropped as the corpus's 96x96 crops are framed, then scored on the mouth
region: PSNR and SSIM against the truth, the synthetic sync measure (mouth opening against the
speech's, synth/sync.py), LSE-D / LSE-C from the judge. A row is the mean over seeds of the mean
over clips; +- is the standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dub import machine  # noqa: E402
from bench_train import load_expert, mouth_scores  # noqa: E402
from lipsync_cli import audio as audio_mod  # noqa: E402
from lipsync_cli import media  # noqa: E402

SCENE = 256
SWAY_DEGREES, SWAY_HZ = 8.0, 0.4
FACE_RADIUS, FACE_CENTRE = 0.2 * SCENE, (0.5 * SCENE, 0.47 * SCENE)


def lipsync(*args) -> None:
    subprocess.run([sys.executable, "-m", "lipsync_cli.cli", *map(str, args)], check=True, cwd=ROOT)


def train(work: Path, seeds: list[int]) -> tuple[Path, Path, list[Path]]:
    """The corpus, expert, judge and generators, each made once."""
    data, judge_data = work / "data", work / "data_judge"
    for folder, seed in ((data, 5), (judge_data, 6)):
        if not (folder / "corpus.json").exists():
            lipsync("synth", folder, "--clips", 400, "--seed", seed, "--size", 96, "--workers", 2, "-q")
    width = ["--width", 0.25, "--workers", 1, "-q"]
    if not (work / "expert" / "last.pth").exists():
        lipsync("train", "syncnet", data, "-o", work / "expert", "--size", 96, "--steps", 1000, "--batch-size", 16,
                "--eval-every", 1000, *width)
    gens = []
    for s in seeds:
        run = work / f"gen_seed{s}"
        if not (run / "last.pth").exists():
            lipsync("train", "wav2lip", data, "-o", run, "--expert", work / "expert" / "last.pth", "--model",
                    "attnwav2lip", "--size", 96, "--steps", 800, "--batch-size", 4, "--eval-every", 200,
                    "--eval-batches", 4, "--seed", s, "--lr", 0.001, "--sync-switch", "inf", "--no-gan", *width)
        gens.append(run / "last.pth")
    if not (work / "judge" / "last.pth").exists():
        lipsync("train", "syncnet", judge_data, "-o", work / "judge", "--size", 96, "--steps", 2000,
                "--batch-size", 16, "--eval-every", 2000, "--seed", 1, *width)
    return data, work / "judge" / "last.pth", gens


TURNS = (15, -15, 30, -30, 45, -45)


class TurningDetector:
    """RetinaFace, and where it finds no face, RetinaFace on the frame turned by each of TURNS in
    turn, what it finds turned back (see the module's docstring)."""

    name = "retinaface"

    def __init__(self, inner):
        self.inner = inner

    def detect(self, frames):
        from lipsync_cli.faces.base import Detection

        found = self.inner.detect(frames)
        for i, dets in enumerate(found):
            if dets:
                continue
            h, w = frames[i].shape[:2]
            for angle in TURNS:
                m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
                again = self.inner.detect([cv2.warpAffine(frames[i], m, (w, h), borderMode=cv2.BORDER_REPLICATE)])[0]
                if again:
                    back = cv2.invertAffineTransform(m)
                    turn = lambda pts: np.asarray(pts, np.float64) @ back[:, :2].T + back[:, 2]  # noqa: E731
                    out = []
                    for d in again:
                        (cx, cy), = turn([d.center])
                        bw, bh = d.width / 2, d.height / 2
                        out.append(Detection((cx - bw, cy - bh, cx + bw, cy + bh), d.score,
                                             None if d.landmarks is None else turn(d.landmarks).astype(np.float32)))
                    found[i] = out
                    break
        return found


class TurningPool:
    def __init__(self, pool):
        self.pool = pool

    def __call__(self, size: int) -> TurningDetector:
        return TurningDetector(self.pool(size))


def dub(model, video: Path, speech: Path, out: Path, align: bool) -> None:
    import lipsync_cli

    opts = lipsync_cli.DubOptions(checkpoint=model.checkpoint, speaker="largest", align=align, crf=0)
    dubber = lipsync_cli.Dubber(model, opts)
    dubber.detectors = TurningPool(dubber.detectors)
    outcome = []
    dubber.run([lipsync_cli.ClipRequest(str(video), str(speech), str(out), force=True)],
               lambda request, result, error: outcome.append((result, error)))
    [(result, error)] = outcome
    if error is not None:
        raise error
    if result.frames_without_face:
        print(f"<!-- {out.name}: {result.frames_without_face} frames without a face -->", flush=True)


def rolls(n: int, angle: float, motion: str) -> np.ndarray:
    t = np.arange(n) / float(media.FPS)
    sway = SWAY_DEGREES * np.sin(2 * np.pi * SWAY_HZ * t) if motion == "swaying" else 0.0 * t
    return angle + sway


def scene_frames(identity, mouth, blink, roll) -> np.ndarray:
    from lipsync_cli.synth.face import render

    return np.stack([render(identity, tuple(m), float(b), (SCENE, SCENE), FACE_CENTRE, FACE_RADIUS, float(r))
                     for m, b, r in zip(mouth, blink, roll)])


def upright_crops(frames: np.ndarray, roll: np.ndarray, size: int = 96) -> np.ndarray:
    """Each frame turned about the face's centre by its roll and framed as the corpus's crops are
    (synth.face.crop_placement): the face upright at the place the truth has it."""
    from lipsync_cli.synth.face import crop_placement

    (ccx, ccy), crop_r = crop_placement(size)
    k = FACE_RADIUS / crop_r
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, (frame, r) in enumerate(zip(frames, roll)):
        a = np.radians(r)
        rot = k * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])  # crop -> frame (the renderer's turn)
        shift = np.array(FACE_CENTRE) - rot @ np.array([ccx, ccy])
        m = np.hstack([rot, shift[:, None]]).astype(np.float64)
        out[i] = cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
    return out


def read_frames(path: Path, n: int) -> np.ndarray:
    """The first n frames of a video (fewer if it has fewer)."""
    frames = []
    for chunk in media.FrameReader(media.probe(str(path)), chunk=16):
        frames.extend(chunk[:n - len(frames)])
        if len(frames) >= n:
            break
    return np.stack(frames)


def write_video(frames: np.ndarray, speech: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    cmd = [media.ffmpeg_binary(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt",
           "bgr24", "-s", f"{w}x{h}", "-r", str(media.FPS), "-i", "pipe:0", "-i", str(speech), "-map", "0:v",
           "-map", "1:a", "-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p", "-c:a", "aac", str(out)]
    subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), check=True)


def score(crops: np.ndarray, truth: np.ndarray, truth_o: dict, mel: np.ndarray, judge) -> dict:
    from lipsync_cli.eval.lse import expert_sync_of_crops
    from lipsync_cli.synth.corpus import truth_opening
    from lipsync_cli.synth.sync import mouth_opening, sync_score

    psnr, ssim, _ = mouth_scores(crops, truth)
    lse = expert_sync_of_crops(judge, crops, mel)
    sync = sync_score(mouth_opening(crops), truth_opening(truth_o)[:len(crops)]).correlation
    return {"psnr": psnr, "ssim": ssim, "sync": sync, "lse_d": lse.lse_d, "lse_c": lse.lse_c}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/lipsync-tilt-synth"))
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--angles", default="0,15,30,40")
    ap.add_argument("--motions", default="still,swaying")
    ap.add_argument("--seeds", default="0,1")
    args = ap.parse_args(argv)
    import lipsync_cli
    from lipsync_cli.synth.corpus import CorpusSpec, identity_of

    t0 = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    data, judge_path, gens = train(args.work, seeds)
    judge = load_expert(str(judge_path))
    spec = CorpusSpec(**{k: tuple(v) if isinstance(v, list) else v
                         for k, v in json.loads((data / "corpus.json").read_text())["spec"].items()})
    names = (data / "filelists" / "test.txt").read_text().split()[:args.clips]
    clips = [(data / n, json.loads((data / n / "truth.json").read_text())) for n in names]
    angles = [float(a) for a in args.angles.split(",")]
    motions = args.motions.split(",")
    models = {s: lipsync_cli.load_model(g, device="cpu", precision="fp32") for s, g in zip(seeds, gens)}
    results: dict = {}  # (angle, motion, method) -> seed -> [per-clip scores]
    for angle in angles:
        for motion in motions:
            for k, (folder, truth_k) in enumerate(clips):
                folder_o, truth_o = clips[(k + 1) % len(clips)]
                ident = identity_of(spec, truth_k["identity"])
                n = min(truth_k["frames"], truth_o["frames"])
                roll = rolls(truth_k["frames"], angle, motion)
                video = args.work / "tests" / f"{folder.name}-r{angle:g}-{motion}.mp4"
                if not video.exists():
                    write_video(scene_frames(ident, truth_k["mouth"], truth_k["blink"], roll), folder / "audio.wav", video)
                inp = upright_crops(read_frames(video, n), roll)
                n = len(inp)
                truth = upright_crops(scene_frames(ident, truth_o["mouth"][:n], truth_k["blink"][:n], roll[:n]), roll)
                speech = folder_o / "audio.wav"
                mel = audio_mod.melspectrogram(audio_mod.load_audio(str(speech)).samples)
                results.setdefault((angle, motion, "undubbed"), {}).setdefault(0, []).append(score(inp, truth, truth_o, mel, judge))
                for s, model in models.items():
                    for method, align in (("aligned", True), ("not aligned", False)):
                        out = args.work / "dubs" / f"{video.stem}-s{s}-{'align' if align else 'noalign'}.mp4"
                        out.parent.mkdir(parents=True, exist_ok=True)
                        dub(model, video, speech, out, align)
                        frames = read_frames(out, n)
                        if len(frames) != n:
                            sys.exit(f"{out}: {len(frames)} frames, {n} expected")
                        r = score(upright_crops(frames, roll), truth, truth_o, mel, judge)
                        results.setdefault((angle, motion, method), {}).setdefault(s, []).append(r)
            for method in ("aligned", "not aligned"):
                per_seed = {s: {m: float(np.mean([r[m] for r in rs])) for m in rs[0]}
                            for s, rs in results[(angle, motion, method)].items()}
                print(f"<!-- {json.dumps({'angle': angle, 'motion': motion, 'method': method, 'seeds': per_seed})} -->",
                      flush=True)

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"\n# Tilted heads on synthetic truth\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine()}; "
          f"lipsync at {commit}; {len(clips)} test clips, generators of seeds {seeds}; "
          f"{(time.perf_counter() - t0) / 60:.0f} min\n`python benchmarks/bench_tilt_synth.py "
          f"{' '.join(argv if argv is not None else sys.argv[1:])}`\n")
    keys = ("psnr", "ssim", "sync", "lse_d", "lse_c")
    head = ["roll", "motion", "crop", "mouth PSNR dB", "mouth SSIM", "sync measure", "LSE-D", "LSE-C"]
    print("| " + " | ".join(head) + " |\n| " + " | ".join("---" for _ in head) + " |")
    for (angle, motion, method), by_seed in results.items():
        means = {m: [float(np.mean([r[m] for r in rs])) for rs in by_seed.values()] for m in keys}
        cells = [f"{np.mean(v):.3f} ± {np.std(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}" for v in means.values()]
        print(f"| {angle:g} | {motion} | {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
