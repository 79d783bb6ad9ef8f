"""Fine-tuning on one person's footage (issue 30), proven on synthetic truth.

    python benchmarks/bench_finetune.py [--models /tmp/lipsync-tilt-synth] [--work /tmp/lipsync-finetune]
                                        [--videos 8] [--shots 14] [--steps 500] [--seeds 0,1] [--eval-clips 16]
                                        [--lr 3e-5] [--batch-size 4]

The base models: the generators, expert and judge that bench_tilt_synth.py trains (in --models:
quarter-width AttnWav2Lip at 96 trained 800 steps on 400 clips of the synthetic corpus, seed 5,
its many identities; one generator per seed; the expert it was trained with; the judge, another
expert trained on another corpus, for LSE).

The person: the first identity and the first voice of the corpus's test split, never seen in
training. Their footage: --videos talking videos (256x256, 25 fps, with sound), each of --shots
shots of 1.5-3 s (2-4 words each; the face at another place in every shot, so every shot change
is a hard cut), with 1.2 s of b-roll (no face, no speech) after every fourth shot and a title card
(1 s, black, text) in the middle. Their held-out clips: --eval-clips other renders of the same
person (same face, same voice, other words), as 256x256 talking videos.

The steps, each with the real command: `lipsync preprocess FOOTAGE DATA` (one speaker: the split
by time); for each seed, `lipsync train wav2lip DATA --config finetune --init BASE --expert
EXPERT` with the CPU's scale given as flags (--width 0.25, --steps, --batch-size, --lr,
--eval-every 100); then every model, base and fine-tuned, scored on the held-out clips, each clip
dubbed through the real pipeline (`lipsync_cli.Dubber`: the crops dub takes, framed as preprocess
framed the fine-tuning set) with the next one's speech, against the truth rendering of that speech
on the clip's face, cropped upright as the corpus's crops are: mouth PSNR / SSIM, the synthetic sync
measure, LSE-D / LSE-C from the judge. A row: mean over seeds of the mean over clips, +- the
standard deviation over seeds. Also reported: how many of preprocess's clips hold a cut of their
video, and each generator's L1 and lower-face tone on windows of the footage's val clips (what
found the batch-norm drift: benchmarks/finetune.md).
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
from bench_train import load_expert  # noqa: E402
from lipsync_cli import audio as audio_mod  # noqa: E402
from lipsync_cli import media  # noqa: E402
from lipsync_cli.synth import corpus  # noqa: E402

SCENE = (256, 256)
BROLL_EVERY, BROLL_SECONDS, TITLE_SECONDS = 4, 1.2, 1.0
FOOTAGE_INDEX, EVAL_INDEX = 100_000, 200_000  # plan indices far from the corpus's own


def lipsync(*args) -> None:
    subprocess.run([sys.executable, "-m", "lipsync_cli.cli", *map(str, args)], check=True, cwd=ROOT)


def the_person(spec) -> tuple[int, int]:
    return corpus.split_members(spec.identities)["test"][0], corpus.split_members(spec.voices)["test"][0]


def render(spec, layout: str, index: int, person: tuple[int, int], rng) -> corpus.Clip:
    words = tuple(str(w) for w in rng.choice(corpus.WORDS, size=int(rng.integers(2, 5))))
    s = corpus.CorpusSpec(**{**spec.__dict__, "layout": layout, "scene": SCENE})
    return corpus.render_clip(s, corpus.ClipPlan(index, f"p{index}", "test", person[0], person[1], words))


def faceless(rng, n: int) -> np.ndarray:
    """b-roll: a slow pan over soft colour blobs, no face."""
    h, w = SCENE
    field = cv2.GaussianBlur(rng.integers(0, 255, (h // 8, w // 4, 3), dtype=np.uint8), (0, 0), 2)
    big = cv2.resize(field, (w * 2, h), interpolation=cv2.INTER_CUBIC)
    return np.stack([big[:, i * 2:i * 2 + w] for i in range(n)])


def title(n: int, text: str) -> np.ndarray:
    card = np.zeros((*SCENE, 3), np.uint8)
    cv2.putText(card, text, (20, SCENE[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (230, 230, 230), 2, cv2.LINE_AA)
    return np.repeat(card[None], n, axis=0)


def write_video(frames: list[np.ndarray], sound: list[np.ndarray], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    wav = out.with_suffix(".wav")
    audio_mod.write_wav(wav, np.concatenate(sound))
    video = np.concatenate(frames)
    writer = media.FrameWriter(str(out), SCENE[1], SCENE[0], media.FPS, str(wav), crf=18)
    for f in video:
        writer.write(f)
    writer.close()
    wav.unlink()


def footage(spec, person, folder: Path, videos: int, shots: int) -> float:
    """The person's edited videos; returns their seconds."""
    seconds = 0.0
    for v in range(videos):
        out = folder / f"vlog{v + 1}.mp4"
        rng = np.random.default_rng([9, v])
        frames, sound = [], []
        for s in range(shots):
            clip = render(spec, "videos", FOOTAGE_INDEX + v * 1000 + s, person, rng)
            n = len(clip.frames)
            frames.append(clip.frames)
            sound.append(np.pad(clip.audio, (0, max(0, n * 640 - len(clip.audio))))[:n * 640])  # 640 samples a frame
            if s == shots // 2:
                k = int(TITLE_SECONDS * 25)
                frames.append(title(k, f"Part {v + 1}"))
                sound.append(np.zeros(k * 640, np.float32))
            elif (s + 1) % BROLL_EVERY == 0:
                k = int(BROLL_SECONDS * 25)
                frames.append(faceless(rng, k))
                sound.append(np.zeros(k * 640, np.float32))
        seconds += sum(len(f) for f in frames) / 25
        if not out.exists():
            write_video(frames, sound, out)
    return seconds


def eval_clips(spec, person, count: int) -> list[corpus.Clip]:
    rng = np.random.default_rng(12)
    s96 = corpus.CorpusSpec(**{**spec.__dict__, "size": 96})
    return [render(s96, "train", EVAL_INDEX + j, person, rng) for j in range(count)]


def score(gen_path: Path | None, clips, spec, judge, work: Path) -> dict:
    """Each held-out clip, rendered as a video of the person (256x256, the face upright at the
    place bench_tilt_synth.py renders it), dubbed through the real pipeline (`lipsync_cli.Dubber`,
    the crops `dub` takes, as preprocess took the fine-tuning set's) with the next clip's speech,
    and scored against the truth rendering of that speech on the clip's face (no generator: the
    video as it was, for scale)."""
    import lipsync_cli
    from bench_tilt_synth import dub, read_frames, scene_frames, score as score_crops, upright_crops, write_video

    ident = corpus.identity_of(spec, clips[0].plan.identity)
    model = lipsync_cli.load_model(gen_path, device="cpu", precision="fp32") if gen_path else None
    rows = []
    for k, clip in enumerate(clips):
        other = clips[(k + 1) % len(clips)]
        roll = np.zeros(len(clip.frames))
        video, speech = work / "eval" / f"e{k}.mp4", work / "eval" / f"e{k}-speech.wav"
        if not video.exists():
            own = work / "eval" / f"e{k}-own.wav"
            own.parent.mkdir(parents=True, exist_ok=True)
            audio_mod.write_wav(own, clip.audio)
            write_video(scene_frames(ident, clip.truth["mouth"], clip.truth["blink"], roll), own, video)
            audio_mod.write_wav(speech, other.audio)
        inp = upright_crops(read_frames(video, len(other.frames)), roll)
        n = len(inp)
        truth = upright_crops(scene_frames(ident, other.truth["mouth"][:n], clip.truth["blink"][:n], roll[:n]), roll)
        mel = audio_mod.melspectrogram(other.audio)
        if model is None:
            crops = inp
        else:
            out = work / "eval" / f"e{k}-{Path(gen_path).parent.name}.mp4"
            dub(model, video, speech, out, align=True)
            crops = upright_crops(read_frames(out, n), roll)
        rows.append(score_crops(crops, truth, other.truth, mel, judge))
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def val_windows(gen_path: Path, data: Path, windows: int = 48) -> dict:
    """The generator in evaluation mode on `windows` windows of the footage's val clips, as the
    training's evaluation feeds them (a random reference of the same clip): L1, and the mean
    difference of the generated lower half from the true one in grey levels (a tone the mouths are
    painted in)."""
    import torch

    from lipsync_cli.checkpoints import load_generator
    from lipsync_cli.datasets import GeneratorWindows, PreprocessedData

    gen = load_generator(gen_path)[0].eval()
    ds = GeneratorWindows(PreprocessedData(data, "val"), seed=3)
    l1, bias = [], []
    with torch.no_grad():
        for i in range(windows):
            faces_in, mels, _, target = ds[i]
            g = gen(mels[None], faces_in[None])[0]
            half = g.shape[2] // 2
            l1.append(float((g - target).abs().mean()))
            bias.append(float((g[:, :, half:] - target[:, :, half:]).mean()) * 255)
    return {"l1": float(np.mean(l1)), "bias": float(np.mean(bias))}


def clips_across_a_cut(report: list[dict]) -> int:
    """Clips of `preprocess` holding a cut of their video (two frames in a row more than 5 grey
    levels apart on average: the footage's cuts, never its head motion or b-roll pans)."""
    across = 0
    for r in report:
        cuts, prev, n = [], None, 0
        for chunk in media.FrameReader(media.probe(r["source"]), chunk=64, fps=media.FPS):
            for f in chunk:
                g = f.astype(np.int16)
                if prev is not None and np.abs(g - prev).mean() > 5:
                    cuts.append(n)
                prev, n = g, n + 1
        for c in r.get("clips", []):
            a, b = round(c["start"] * media.FPS), round(c["end"] * media.FPS)
            across += any(a < k < b for k in cuts)
    return across


def step_seconds(run: Path) -> float:
    times = [json.loads(line)["time"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if "train_loss" in line]
    return float(np.median(np.diff(times))) if len(times) > 2 else float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=Path("/tmp/lipsync-tilt-synth"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/lipsync-finetune"))
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--shots", type=int, default=14)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--eval-clips", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    data0 = args.models / "data"
    spec = corpus.CorpusSpec(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in json.loads((data0 / "corpus.json").read_text())["spec"].items()})
    person = the_person(spec)
    seconds = footage(spec, person, args.work / "footage", args.videos, args.shots)
    data = args.work / "data"
    if not (data / "filelists" / "val.txt").exists():
        lipsync("preprocess", args.work / "footage", data, "-q")
    report = [json.loads(line) for line in (data / "preprocess_report.jsonl").read_text().splitlines()]
    split = report[-1]
    runs = {}
    for s in seeds:
        run = args.work / f"ft_seed{s}"
        if not (run / "last.pth").exists():
            t = time.perf_counter()
            lipsync("train", "wav2lip", data, "-o", run, "--config", "finetune", "--init",
                    args.models / f"gen_seed{s}" / "last.pth", "--expert", args.models / "expert" / "last.pth",
                    "--model", "attnwav2lip", "--width", 0.25, "--steps", args.steps, "--batch-size", args.batch_size, "--lr", args.lr,
                    "--eval-every", 100, "--eval-batches", 4, "--seed", s, "--workers", 1, "-q")
            (run / "bench_minutes.txt").write_text(f"{(time.perf_counter() - t) / 60:.1f}")
        runs[s] = run
    judge = load_expert(str(args.models / "judge" / "last.pth"))
    clips = eval_clips(spec, person, args.eval_clips)
    results = {"base": [score(args.models / f"gen_seed{s}" / "last.pth", clips, spec, judge, args.work) for s in seeds],
               "fine-tuned": [score(runs[s] / "last.pth", clips, spec, judge, args.work) for s in seeds],
               "undubbed (the clip's own mouth)": [score(None, clips, spec, judge, args.work)]}
    for name, rs in results.items():
        print(f"<!-- {json.dumps({'model': name, 'per_seed': rs})} -->", flush=True)
    windows = {name: [val_windows(p, data) for p in paths] for name, paths in
               (("base", [args.models / f"gen_seed{s}" / "last.pth" for s in seeds]),
                ("fine-tuned", [runs[s] / "last.pth" for s in seeds]))}
    across = clips_across_a_cut(report[:-1])

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"\n# Fine-tuning on one person's footage (synthetic truth)\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"{machine()}; lipsync at {commit}; {(time.perf_counter() - t0) / 60:.0f} min\n"
          f"`python benchmarks/bench_finetune.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n")
    clipped = sum(len(r.get("clips", [])) for r in report[:-1])
    print(f"The person: identity {person[0]}, voice {person[1]} (test split). Footage: {args.videos} videos, "
          f"{seconds:.0f} s in all. `preprocess`: {clipped} clips, {across} of them across a cut; split: {split.get('split')} "
          f"({split.get('why', '')}); train {split.get('train')}, val {split.get('val')}, gap "
          f"{split.get('gap_seconds')} s.\n")
    for s in seeds:
        minutes = (runs[s] / "bench_minutes.txt").read_text() if (runs[s] / "bench_minutes.txt").exists() else "?"
        print(f"- seed {s}: {args.steps} steps of batch {args.batch_size} at lr {args.lr:g}, {step_seconds(runs[s]):.2f} s a step (median), {minutes} min in all")
    keys = ("psnr", "ssim", "sync", "lse_d", "lse_c")
    print("\n| model | seeds | mouth PSNR dB | mouth SSIM | sync measure | LSE-D | LSE-C |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, rs in results.items():
        cells = [f"{np.mean([r[k] for r in rs]):.3f}" + (f" ± {np.std([r[k] for r in rs]):.3f}" if len(rs) > 1 else "")
                 for k in keys]
        print(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
    print("\nOn the footage's val clips (48 windows, evaluation mode; the generated lower half's mean "
          "difference from the true one, grey levels):\n")
    print("| model | " + " | ".join(f"seed {s}: L1, bias" for s in seeds) + " |")
    print("| --- |" + " --- |" * len(seeds))
    for name, ws in windows.items():
        print(f"| {name} | " + " | ".join(f"{w['l1']:.3f}, {w['bias']:+.1f}" for w in ws) + " |")


if __name__ == "__main__":
    main()
