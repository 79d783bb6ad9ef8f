"""The `lipsync` command line: argument parsing and reporting only; the work is in pipelines/."""

from __future__ import annotations

import json
import os
import sys
import traceback
from fractions import Fraction
from pathlib import Path
from typing import Annotated, List, Optional, Tuple

import typer
from rich.console import Console

from . import interrupts
from .errors import LipsyncError

# PyTorch's OpenMP threads spin after each parallel region by default, burning the cores that the
# decoder and encoder processes need; sleeping instead made `dub` 15-20% faster end to end on a
# 2-core CPU (benchmarks/README.md). Set before torch is imported; the user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(
    help="Offline lip-sync dubbing (Wav2Lip / AttnWav2Lip) and portrait animation (DAVS) for the command line.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
weights_app = typer.Typer(help="The registry of known checkpoints: list, fetch, verify.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")
train_app = typer.Typer(help="The training loops: syncnet (the lip-sync expert), wav2lip (the generator), davs.",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")
eval_app = typer.Typer(help="Evaluation: sync (LSE-D / LSE-C), davs (reconstruction, word accuracy, retrieval, disentangling).", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def _report_errors(fn):
    """User errors become one line on stderr and an exit code, never a traceback (unless --debug)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = bool(kwargs.get("debug")) or bool(os.environ.get("LIPSYNC_DEBUG"))
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP (interrupts.py)
            err.print(f"{interrupts.describe(exc)}: no output was written", markup=False)
            raise typer.Exit(interrupts.exit_code(exc))
        except Exception as exc:
            if debug:
                traceback.print_exc()
            if isinstance(exc, LipsyncError):
                err.print(f"error: {exc}", markup=False)
                raise typer.Exit(getattr(exc, "exit_code", 1))
            err.print(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", markup=False)
            raise typer.Exit(1)

    return wrapper


def _progress(quiet: bool, label: str, unit: str = "frames"):
    """A rich progress bar with rate and ETA, or nothing under --quiet / no terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if quiet:
        return None, None
    progress = Progress(
        TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} " + unit + "/s"), TimeRemainingColumn(), console=err, transient=False,
    )
    task = progress.add_task(label, total=None, rate="-", start=False)

    def update(done: int, total: int):
        if not progress.live.is_started:  # shown from the first frame on, not before errors
            progress.start()
            progress.start_task(task)
        t = progress.tasks[task]
        elapsed = t.elapsed or 0.0
        rate = f"{done / elapsed:.1f}" if elapsed > 0 else "-"
        progress.update(task, completed=done, total=total, rate=rate)

    return progress, update


def _parse_fps(text: str) -> Fraction:
    from .media import parse_frame_rate

    try:
        return parse_frame_rate(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


# Options that `dub` and `batch` share, declared once.
CheckpointOpt = Annotated[Optional[str], typer.Option("--checkpoint", "-c", help="Generator checkpoint: a path, or a name from `lipsync weights list` (default: wav2lip_gan).")]
ModelOpt = Annotated[Optional[str], typer.Option(help="Override the architecture read from the checkpoint: wav2lip, attnwav2lip, attnwav2lip-spatial, attnwav2lip-channel.")]
DetectorOpt = Annotated[str, typer.Option(help="Face detector: retinaface (built in, offline) or s3fd (face-alignment; needs its weights).")]
BoxOpt = Annotated[Optional[Tuple[int, int, int, int]], typer.Option("--box", help="Fixed face box Y1 Y2 X1 X2 in pixels: skips detection.", show_default=False)]
PadsOpt = Annotated[Tuple[int, int, int, int], typer.Option("--pads", help="Padding of the detected box: TOP BOTTOM LEFT RIGHT pixels.")]
FaceIndexOpt = Annotated[Optional[int], typer.Option(help="Which face when there are several, counted left to right from 0 (default: the largest).")]
OnNoFaceOpt = Annotated[str, typer.Option(help="Frames without a face: skip (left unchanged, counted) or error (the clip fails).")]
PasteOpt = Annotated[str, typer.Option(help="feather: blend the lower face softly into the frame; hard: paste the whole box back exactly like the reference Wav2Lip inference.")]
LoopOpt = Annotated[bool, typer.Option("--loop", help="When the audio is longer than the video, repeat the video from the start (default: play it back and forth).")]
FpsOpt = Annotated[str, typer.Option(help="Frame rate of the output for a still image.")]
NoSmoothOpt = Annotated[bool, typer.Option("--no-smooth", help="Do not smooth face boxes over time.")]
DetectSizeOpt = Annotated[int, typer.Option(help="Detect faces on frames downscaled to this longer side (pixels); frames where no face is found are searched again at twice the size.")]
DetectEveryOpt = Annotated[int, typer.Option(help="Detect faces on every N-th frame; boxes in between are interpolated.")]
S3fdWeightsOpt = Annotated[Optional[Path], typer.Option(help="Local S3FD weights file (s3fd-619a316812.pth) for --detector s3fd.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda (under torchrun, auto is the process's own GPU).")]
PrecisionOpt = Annotated[str, typer.Option(help="auto (fp16 on CUDA; bf16 on a CPU with AMX, else fp32; fp32 with --paste hard), fp32, fp16 (CUDA) or bf16.")]
BatchSizeOpt = Annotated[Optional[int], typer.Option(help="Frames per generator batch (default: 16 on CPU, 128 on CUDA, halved on out-of-memory).")]
CrfOpt = Annotated[int, typer.Option(help="H.264 quality (lower is better, 0-51).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object on stdout.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]


def _dub_options(checkpoint, model, detector, box, pads, face_index, on_no_face, paste, loop, fps, no_smooth,
                 detect_size, detect_every, s3fd_weights, device, precision, batch_size, crf):
    """The shared options as the engine's DubOptions."""
    from .pipelines.dub import DubOptions
    from .weights import resolve_checkpoint

    return DubOptions(
        checkpoint=resolve_checkpoint(checkpoint), model=model, detector=detector,
        box=tuple(box) if box else None, pads=tuple(pads), face_index=face_index,
        detect_max_side=detect_size, detect_every=detect_every, s3fd_weights=str(s3fd_weights) if s3fd_weights else None,
        smooth=not no_smooth, on_no_face=on_no_face, paste=paste, replay="loop" if loop else "pingpong",
        still_fps=_parse_fps(fps), device=device, precision=precision, batch_size=batch_size, crf=crf,
    )


@app.command()
@_report_errors
def dub(
    video: Path = typer.Argument(..., help="Talking-head video, or a still image of a face."),
    audio: Path = typer.Argument(..., help="Speech: any audio ffmpeg reads (wav, mp3, m4a, or a video's audio track)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output video (default: VIDEO_STEM_dubbed.mp4 in the current folder)."),
    checkpoint: CheckpointOpt = None,
    model: ModelOpt = None,
    detector: DetectorOpt = "retinaface",
    box: BoxOpt = None,
    pads: PadsOpt = (0, 10, 0, 0),
    face_index: FaceIndexOpt = None,
    on_no_face: OnNoFaceOpt = "skip",
    paste: PasteOpt = "feather",
    loop: LoopOpt = False,
    fps: FpsOpt = "25",
    no_smooth: NoSmoothOpt = False,
    detect_size: DetectSizeOpt = 320,
    detect_every: DetectEveryOpt = 2,
    s3fd_weights: S3fdWeightsOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    batch_size: BatchSizeOpt = None,
    crf: CrfOpt = 18,
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite OUTPUT if it exists."),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
):
    """Re-sync the mouth in VIDEO (or a still image) to AUDIO."""
    from .pipelines.dub import dub as run_dub, load_model_for

    if output is None:
        output = Path.cwd() / f"{video.stem}_dubbed.mp4"
    opts = _dub_options(checkpoint, model, detector, box, pads, face_index, on_no_face, paste, loop, fps, no_smooth,
                        detect_size, detect_every, s3fd_weights, device, precision, batch_size, crf)
    generator = load_model_for(opts)
    progress, update = _progress(quiet or as_json, "dubbing")
    try:
        result = run_dub(generator, str(video), str(audio), str(output), opts, force=force, progress=update)
    finally:
        if progress is not None and progress.live.is_started:
            progress.stop()
    result.seconds += generator.load_seconds
    result.stage_seconds["load"] = generator.load_seconds
    if as_json:
        print(json.dumps(result.as_dict()))
    elif not quiet:
        note = f", {result.frames_without_face} frames without a face left unchanged" if result.frames_without_face else ""
        err.print(
            f"wrote {result.output}: {result.frames} frames at {float(result.fps):.3f} fps "
            f"({result.duration:.2f} s), {result.model} on {result.device} ({result.precision}), {result.seconds:.1f} s{note}"
        )


@app.command()
@_report_errors
def animate(
    photo: Path = typer.Argument(..., help="A still portrait (JPEG or PNG) with one face."),
    audio: Optional[Path] = typer.Argument(None, help="Speech to drive it with (any audio ffmpeg reads); optional with --driver."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output video (default: PHOTO_STEM_animated.mp4 in the current folder)."),
    checkpoint: Path = typer.Option(..., "-c", "--checkpoint", help="A DAVS checkpoint from `lipsync train davs`."),
    driver: Optional[Path] = typer.Option(None, "--driver", help="A talking video whose mouth drives the photo (its word-ID features) instead of the speech; its sound is used when AUDIO is not given."),
    crop: bool = typer.Option(False, "--crop", help="Write the aligned generated face alone instead of pasting it into the photo."),
    fps: FpsOpt = "25",
    smooth: float = typer.Option(1.0, help="Temporal smoothing of the word-ID features: Gaussian sigma in frames (0: none)."),
    detector: DetectorOpt = "retinaface",
    device: DeviceOpt = "auto",
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite OUTPUT if it exists."),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
):
    """Animate a still PHOTO with AUDIO (or a driving video) through DAVS."""
    from .pipelines.animate import AnimateOptions, animate as run_animate

    if output is None:
        output = Path.cwd() / f"{photo.stem}_animated.mp4"
    if smooth < 0:
        raise typer.BadParameter("--smooth must be 0 or more")
    opts = AnimateOptions(checkpoint=str(checkpoint), driver=str(driver) if driver else None, fps=_parse_fps(fps),
                          detector=detector, device=device, smooth=smooth, crop=crop)
    progress, update = _progress(quiet or as_json, "animating")
    try:
        result = run_animate(str(photo), str(audio) if audio else None, str(output), opts, force=force, progress=update)
    finally:
        if progress is not None and progress.live.is_started:
            progress.stop()
    if as_json:
        print(json.dumps({"output": result.output, "frames": result.frames, "fps": float(result.fps),
                          "width": result.width, "height": result.height, "driven_by": result.driven_by,
                          "seconds": round(result.seconds, 3)}))
    elif not quiet:
        err.print(f"wrote {result.output}: {result.frames} frames at {float(result.fps):.3f} fps "
                  f"({result.frames / float(result.fps):.2f} s), {result.width}x{result.height}, driven by "
                  f"{result.driven_by}, {result.seconds:.1f} s", markup=False)


@app.command()
def batch(
    inputs: Optional[List[Path]] = typer.Argument(None, help="Folders of videos or images, single files, or CSV / JSON / JSON-lines manifests (columns: video, audio, output, box, pads, face_index, loop, fps, crf, on_no_face, smooth)."),
    output_dir: Optional[Path] = typer.Option(None, "-o", "--output-dir", help="Folder for the dubbed clips (created if missing); each is named after its video."),
    audio: Optional[Path] = typer.Option(None, "--audio", "-a", help="One audio file for every video, or a folder of audio files paired with the videos by file name."),
    job: Optional[Path] = typer.Option(None, "--job", help="Job folder with the resumable log (default: OUTPUT_DIR/.lipsync-job)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Process only shard K of N (K/N, from 0) (default: from torchrun's RANK/WORLD_SIZE or a SLURM array, else all)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry items that failed in an earlier run."),
    report_dir: Optional[Path] = typer.Option(None, "--report", help="Print the merged report of a job (all shards) and exit: a job folder or a batch output folder."),
    checkpoint: CheckpointOpt = None,
    model: ModelOpt = None,
    detector: DetectorOpt = "retinaface",
    box: BoxOpt = None,
    pads: PadsOpt = (0, 10, 0, 0),
    face_index: FaceIndexOpt = None,
    on_no_face: OnNoFaceOpt = "skip",
    paste: PasteOpt = "feather",
    loop: LoopOpt = False,
    fps: FpsOpt = "25",
    no_smooth: NoSmoothOpt = False,
    detect_size: DetectSizeOpt = 320,
    detect_every: DetectEveryOpt = 2,
    s3fd_weights: S3fdWeightsOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    batch_size: BatchSizeOpt = None,
    crf: CrfOpt = 18,
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite outputs that exist but were not made by this job."),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
):
    """Dub many clips: pairing, a resumable job log, a per-clip report, sharding.

    Rerun the same command after an interruption: finished clips are kept, the rest are done."""
    code = _report_errors(_batch)(**locals())
    raise typer.Exit(code)


def _batch(inputs, output_dir, audio, job, shard, retry_failed, report_dir, checkpoint, model, detector, box, pads,
           face_index, on_no_face, paste, loop, fps, no_smooth, detect_size, detect_every, s3fd_weights, device,
           precision, batch_size, crf, force, quiet, as_json, debug) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .errors import InputError
    from .pipelines import batch as batch_mod

    if report_dir is not None:
        rows = batch_mod.report(batch_mod.find_job_dir(report_dir))
        _print_report(rows, as_json)
        return 0
    if not inputs:
        raise InputError("no inputs: give folders, files or a manifest (see `lipsync batch --help`)")
    if output_dir is None:
        raise InputError("give the output folder with -o DIR")
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"{output_dir}: not a folder")
    items = batch_mod.collect_items(inputs, output_dir, str(audio) if audio else None)
    the_shard = batch_mod.parse_shard(shard) if shard else (batch_mod.shard_from_environment() or batch_mod.Shard(0, 1))
    opts = _dub_options(checkpoint, model, detector, box, pads, face_index, on_no_face, paste, loop, fps, no_smooth,
                        detect_size, detect_every, s3fd_weights, device, precision,
                        batch_size, crf)
    output_dir.mkdir(parents=True, exist_ok=True)
    job_dir = job or output_dir / batch_mod.JOB_FOLDER

    progress = None if (quiet or as_json) else Progress(
        TextColumn("[bold]batch"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(), console=err)
    task = None

    def on_start(n: int):
        nonlocal task
        if progress is not None and n:
            progress.start()
            task = progress.add_task("batch", total=n, last="")

    def on_outcome(o):
        if progress is not None and task is not None and o.state != "skipped" and not o.reason.startswith("failed earlier"):
            progress.update(task, advance=1, last=f"{o.item.id}: {o.state}")

    try:
        summary = batch_mod.run_batch(items, opts, job_dir, the_shard, retry_failed=retry_failed, force=force,
                                      on_outcome=on_outcome, on_start=on_start)
    except KeyboardInterrupt as exc:
        if progress is not None:
            progress.stop()
        err.print(f"{interrupts.describe(exc)}: finished clips are kept; run the same command again to go on",
                  markup=False)
        return interrupts.exit_code(exc)
    finally:
        if progress is not None and progress.live.is_started:
            progress.stop()
    if as_json:
        print(json.dumps(summary.as_dict()))
    elif not quiet:
        _print_summary(summary)
    return 1 if summary.failed else 0


def _print_summary(summary) -> None:
    from rich.table import Table

    table = Table(title=f"batch (shard {summary.shard}, job {summary.job_dir})")
    for col in ("done", "failed", "skipped"):
        table.add_column(col, justify="right")
    table.add_row(str(summary.count("done")), str(summary.count("failed")), str(summary.count("skipped")))
    err.print(table)
    if summary.failed:
        failures = Table(title="failed")
        failures.add_column("item")
        failures.add_column("why")
        for o in summary.failed:
            failures.add_row(o.item.id, o.reason)
        err.print(failures)


def _print_report(rows: list[dict], as_json: bool) -> None:
    from collections import Counter

    from rich.table import Table

    if as_json:
        print(json.dumps({"items": rows, "counts": dict(Counter(r["state"] for r in rows))}))
        return
    table = Table(title="batch report (all shards)")
    for col in ("item", "state", "shard", "seconds", "reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["item"], r["state"], r.get("shard", ""), str(r.get("seconds", "")), r.get("reason", ""))
    out.print(table)
    counts = Counter(r["state"] for r in rows)
    out.print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))


@app.command()
@_report_errors
def synth(
    out_dir: Path = typer.Argument(..., help="Folder to create for the corpus."),
    clips: int = typer.Option(1000, "--clips", "-n", help="How many clips."),
    layout: str = typer.Option("train", help="train (face crops + audio, the preprocessed Wav2Lip layout), words (one word per clip with word and person labels, for DAVS) or videos (full-frame mp4 with audio, for dub)."),
    seed: int = typer.Option(0, help="Corpus seed: the same seed gives a byte-identical corpus."),
    identities: int = typer.Option(120, help="Face identities (split 80/10/10 between train/val/test)."),
    voices: int = typer.Option(48, help="Voices (split 80/10/10, separately from the faces)."),
    size: int = typer.Option(96, help="Face crop side in pixels (train, words)."),
    scene: Tuple[int, int] = typer.Option((256, 256), help="Frame HEIGHT WIDTH of the videos layout."),
    words: Tuple[int, int] = typer.Option((2, 4), help="Words per clip, MIN MAX (train, videos)."),
    workers: int = typer.Option(1, help="Processes (the corpus is identical for any number)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace OUT_DIR if it is a corpus that synth made."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
):
    """Make a synthetic talking-face corpus with known truth (audio, faces, mouth shapes, labels).

    For smoke-testing training setups and for measuring sync where the truth is known."""
    import time

    from .synth.corpus import CorpusSpec, make_corpus

    spec = CorpusSpec(clips=clips, seed=seed, layout=layout, identities=identities, voices=voices, size=size,
                      scene=tuple(scene), min_words=words[0], max_words=words[1])
    progress, update = _progress(quiet, "synth", unit="clips")
    started = time.perf_counter()
    try:
        make_corpus(spec, out_dir, workers=max(1, workers), force=force, progress=update)
    finally:
        if progress is not None and progress.live.is_started:
            progress.stop()
    if not quiet:
        took = time.perf_counter() - started
        err.print(f"wrote {out_dir}: {clips} clips ({layout}), {took:.1f} s, {clips / took:.1f} clips/s")


@app.command()
@_report_errors
def preprocess(
    src: Path = typer.Argument(..., help="Folder of talking videos (any depth; LRS2's layout with its train/val/test lists is understood)."),
    data: Path = typer.Argument(..., help="Output folder: <speaker>/<clip>/{0..n}.jpg + audio.wav, filelists/, preprocess_report.jsonl."),
    size: int = typer.Option(96, help="Side of the saved face crops."),
    detector: DetectorOpt = "retinaface",
    detect_size: DetectSizeOpt = 320,
    pads: PadsOpt = (0, 10, 0, 0),
    s3fd_weights: S3fdWeightsOpt = None,
    device: DeviceOpt = "auto",
    val: float = typer.Option(0.1, help="Share of speakers for the val split (without LRS2 lists)."),
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Turn raw talking videos into a training set: 25 fps face crops + 16 kHz audio + file lists.

    Resumable: finished clips are kept on a rerun; skipped clips and why are in the report."""
    from .device import resolve_device
    from .pipelines.preprocess import PreprocessOptions, preprocess as run

    opts = PreprocessOptions(size=size, detector=detector, detect_size=detect_size, pads=tuple(pads),
                             s3fd_weights=str(s3fd_weights) if s3fd_weights else None,
                             device=resolve_device(device).type, val_share=val)
    progress, update = _progress(quiet, "preprocess", unit="clips")
    try:
        counts = run(src, data, opts, progress=(lambda i, n, key: update(i, n)) if update else None)
    except KeyboardInterrupt as exc:
        if progress is not None and progress.live.is_started:
            progress.stop()
        err.print(f"{interrupts.describe(exc)}: finished clips are kept in {data}; run the same command again to go on",
                  markup=False)
        raise typer.Exit(interrupts.exit_code(exc))
    finally:
        if progress is not None and progress.live.is_started:
            progress.stop()
    err.print(f"{data}: {counts['done']} clips done, {counts['kept']} kept from before, {counts['skipped']} skipped "
              f"(see preprocess_report.jsonl); {counts['train']} train, {counts['val']} val")


@eval_app.command("sync")
@_report_errors
def eval_sync(
    videos: List[Path] = typer.Argument(..., help="Videos to score (their own audio track, or --audio)."),
    syncnet: Path = typer.Option(..., "--syncnet", help="The evaluation SyncNet (syncnet_v2.model) for published-comparable LSE, or a lip-sync expert of ours."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="Score against this audio instead of each video's own track."),
    detector: DetectorOpt = "retinaface",
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
):
    """LSE-D (lower is better) and LSE-C (higher is better) per video and their mean."""
    from rich.table import Table

    from .eval.lse import evaluate_expert, evaluate_syncnet_v2, load_sync_model
    from .device import resolve_device

    dev = resolve_device(device)
    kind, net = load_sync_model(str(syncnet))
    net = net.to(dev)
    evaluate = evaluate_syncnet_v2 if kind == "syncnet_v2_evaluation" else evaluate_expert
    results = [evaluate(net, str(v), str(audio) if audio else None, detector, device=dev.type) for v in videos]
    mean_d = sum(r.lse_d for r in results) / len(results)
    mean_c = sum(r.lse_c for r in results) / len(results)
    if as_json:
        print(json.dumps({"model": kind, "videos": [r.as_dict() for r in results],
                          "lse_d": round(mean_d, 4), "lse_c": round(mean_c, 4)}))
        return
    table = Table(title=f"sync ({'syncnet_v2' if kind == 'syncnet_v2_evaluation' else 'our expert'})")
    for col in ("video", "LSE-D", "LSE-C", "offset", "frames"):
        table.add_column(col)
    for r in results:
        table.add_row(r.video, f"{r.lse_d:.3f}", f"{r.lse_c:.3f}", str(r.offset), str(r.frames))
    table.add_row("mean", f"{mean_d:.3f}", f"{mean_c:.3f}", "", "")
    out.print(table)


# The settings every training loop shares (their defaults live in the loop's config class).
ConfigFileOpt = Annotated[Optional[Path], typer.Option("--config", help="JSON or TOML file of settings; flags given here win.")]
StepsOpt = Annotated[Optional[int], typer.Option(help="Total optimisation steps (default: 10000).")]
LrOpt = Annotated[Optional[float], typer.Option(help="Adam learning rate (default: 1e-4; davs 2e-4).")]
EvalEveryOpt = Annotated[Optional[int], typer.Option(help="Evaluate on the val split every N steps (default: 500).")]
EvalBatchesOpt = Annotated[Optional[int], typer.Option(help="Batches per evaluation (default: 20).")]
CheckpointEveryOpt = Annotated[Optional[int], typer.Option(help="Save a checkpoint every N steps (default: 1000).")]
SeedOpt = Annotated[Optional[int], typer.Option(help="Seed of the initialisation and of the samples (default: 0).")]
TrainDeviceOpt = Annotated[Optional[str], typer.Option(help="auto, cpu or cuda (under torchrun, auto is the process's own GPU).")]
AmpOpt = Annotated[Optional[str], typer.Option(help="auto (fp16 on CUDA, bf16 on a CPU with AMX), on or off.")]
WorkersOpt = Annotated[Optional[int], typer.Option(help="Data loading processes (default: 2).")]
FreshOpt = Annotated[bool, typer.Option("--fresh", help="Start from scratch even if OUT/last.pth exists (default: resume).")]


def _loop_settings(steps, lr, eval_every, eval_batches, checkpoint_every, seed, device, amp, workers, fresh) -> dict:
    """The shared training flags as config values (None: not given, the config file or default wins)."""
    return dict(steps=steps, lr=lr, eval_every=eval_every, eval_batches=eval_batches,
                checkpoint_every=checkpoint_every, seed=seed, device=device, amp=amp, workers=workers,
                resume=False if fresh else None)


@train_app.command("syncnet")
@_report_errors
def train_syncnet(
    data: Path = typer.Argument(..., help="Preprocessed data folder (filelists/ and clip folders), e.g. from `lipsync synth`."),
    out: Path = typer.Option(..., "-o", "--out", help="Run folder: checkpoints (published layout), last.pth, metrics.jsonl, TensorBoard logs."),
    config: ConfigFileOpt = None,
    steps: StepsOpt = None,
    batch_size: Optional[int] = typer.Option(None, help="Samples per step (default: 64)."),
    lr: LrOpt = None,
    eval_every: EvalEveryOpt = None,
    eval_batches: EvalBatchesOpt = None,
    checkpoint_every: CheckpointEveryOpt = None,
    seed: SeedOpt = None,
    device: TrainDeviceOpt = None,
    amp: AmpOpt = None,
    workers: WorkersOpt = None,
    fresh: FreshOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Train the lip-sync expert (SyncNet, colour) on 5-frame windows; resumes from OUT/last.pth."""
    from .train.config import TrainConfig
    from .train.syncnet import train_syncnet as run

    cfg = TrainConfig.from_sources(
        str(config) if config else None, data=str(data), out=str(out), batch_size=batch_size,
        **_loop_settings(steps, lr, eval_every, eval_batches, checkpoint_every, seed, device, amp, workers, fresh))
    _run_training(run, cfg, quiet, "syncnet")


@train_app.command("wav2lip")
@_report_errors
def train_wav2lip(
    data: Path = typer.Argument(..., help="Preprocessed data folder (filelists/ and clip folders), e.g. from `lipsync synth`."),
    out: Path = typer.Option(..., "-o", "--out", help="Run folder: generator and discriminator checkpoints (published layout), metrics, TensorBoard."),
    expert: Optional[Path] = typer.Option(None, "--expert", help="The frozen lip-sync expert: from `lipsync train syncnet`, or lipsync_expert.pth."),
    model: Optional[str] = typer.Option(None, help="wav2lip, attnwav2lip, attnwav2lip-spatial or attnwav2lip-channel (default: wav2lip)."),
    attention: bool = typer.Option(False, "--attention", help="Same as --model attnwav2lip (channel + spatial attention)."),
    no_gan: bool = typer.Option(False, "--no-gan", help="No visual-quality discriminator (the plain Wav2Lip stage): b = 0."),
    sync_switch: Optional[float] = typer.Option(None, help="Evaluation sync loss below which the sync weight switches from 0 to 0.03 (default: 0.75); inf: from the first step."),
    sync_weight: Optional[float] = typer.Option(None, help="a, the expert's weight once switched on (default: 0.03); 0 trains on L1 (and GAN) alone."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from these generator weights (fine-tune; e.g. a run trained on L1 alone). Ignored when resuming."),
    config: ConfigFileOpt = None,
    steps: StepsOpt = None,
    batch_size: Optional[int] = typer.Option(None, help="Windows of 5 frames per step (default: 64)."),
    lr: LrOpt = None,
    eval_every: EvalEveryOpt = None,
    eval_batches: EvalBatchesOpt = None,
    checkpoint_every: CheckpointEveryOpt = None,
    seed: SeedOpt = None,
    device: TrainDeviceOpt = None,
    amp: AmpOpt = None,
    workers: WorkersOpt = None,
    fresh: FreshOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Train the generator (Wav2Lip or AttnWav2Lip) with a frozen expert and the discriminator."""
    from .train.wav2lip import Wav2LipConfig, train_wav2lip as run

    if attention and model not in (None, "attnwav2lip"):
        raise typer.BadParameter("--attention means --model attnwav2lip")
    cfg = Wav2LipConfig.from_sources(
        str(config) if config else None, data=str(data), out=str(out), batch_size=batch_size,
        **_loop_settings(steps, lr, eval_every, eval_batches, checkpoint_every, seed, device, amp, workers, fresh),
        expert=str(expert) if expert else None, model="attnwav2lip" if attention else model,
        gan=False if no_gan else None, sync_switch=sync_switch, sync_weight=sync_weight,
        init=str(init) if init else None)
    _run_training(run, cfg, quiet, cfg.model)


@train_app.command("davs")
@_report_errors
def train_davs(
    data: Path = typer.Argument(..., help="Words-layout data folder (one word per clip; file lists with word and person), e.g. `lipsync synth --layout words`."),
    out: Path = typer.Option(..., "-o", "--out", help="Run folder: checkpoints, last.pth, metrics.jsonl, TensorBoard logs."),
    config: ConfigFileOpt = None,
    size: Optional[int] = typer.Option(None, help="Aligned face side: 64, 128 or 256 (the paper) (default: 64)."),
    width: Optional[float] = typer.Option(None, help="Channel multiplier of the networks (default: 1.0)."),
    disentangle_from: Optional[int] = typer.Option(None, help="Step at which the adversarial disentangling starts (default: 1000)."),
    generate_from: Optional[int] = typer.Option(None, help="Step at which generation training starts (default: 2000)."),
    word_classifier: Optional[str] = typer.Option(None, help="shared (one C_w for audio and video), separate, or none (contrastive loss alone) (default: shared)."),
    no_domain: bool = typer.Option(False, "--no-domain", help="Without the domain-adversarial loss (an ablation)."),
    no_disentangle: bool = typer.Option(False, "--no-disentangle", help="Without the adversarial disentangling (an ablation)."),
    contrastive_weight: Optional[float] = typer.Option(None, help="Weight of the audio-video contrastive loss beside the word classifier's (default: 1)."),
    uniform_weight: Optional[float] = typer.Option(None, help="Weight of the push of the encoders towards the critics' uniform softmax (default: 100)."),
    gan_weight: Optional[float] = typer.Option(None, help="alpha, the temporal GAN loss's weight beside L1 (default: 0.01)."),
    steps: StepsOpt = None,
    batch_size: Optional[int] = typer.Option(None, help="Clips per step (default: 16)."),
    lr: LrOpt = None,
    eval_every: EvalEveryOpt = None,
    eval_batches: EvalBatchesOpt = None,
    checkpoint_every: CheckpointEveryOpt = None,
    seed: SeedOpt = None,
    device: TrainDeviceOpt = None,
    amp: AmpOpt = None,
    workers: WorkersOpt = None,
    fresh: FreshOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Train DAVS: the word-ID space, the adversarial disentangling, then generation, in one resumable loop."""
    from .train.davs import DavsTrainConfig, train_davs as run

    cfg = DavsTrainConfig.from_sources(
        str(config) if config else None, data=str(data), out=str(out), size=size, width=width,
        disentangle_from=disentangle_from, generate_from=generate_from, word_classifier=word_classifier,
        domain_adversarial=False if no_domain else None, disentangle=False if no_disentangle else None,
        contrastive_weight=contrastive_weight, uniform_weight=uniform_weight, gan_weight=gan_weight,
        batch_size=batch_size,
        **_loop_settings(steps, lr, eval_every, eval_batches, checkpoint_every, seed, device, amp, workers, fresh))
    _run_training(run, cfg, quiet, "davs")


@eval_app.command("davs")
@_report_errors
def eval_davs(
    data: Path = typer.Argument(..., help="Words-layout data folder (the split to score, and train for the probe)."),
    checkpoint: Path = typer.Option(..., "-c", "--checkpoint", help="A DAVS checkpoint from `lipsync train davs`."),
    split: str = typer.Option("test", help="The held-out split to score: test or val."),
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
):
    """PSNR / SSIM from audio and video, word accuracy, audio-video retrieval, and the word probe on person-ID features."""
    from rich.table import Table

    from .checkpoints import load_davs
    from .eval.davs import evaluate_split
    from .device import resolve_device

    dev = resolve_device(device)
    result = evaluate_split(load_davs(str(checkpoint), dev), str(data), split, device=dev)
    if as_json:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
        return
    table = Table(title=f"DAVS on {data} ({split}, {result['clips']} clips)")
    table.add_column("measure")
    table.add_column("value")
    for k, v in result.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    out.print(table)


def _run_training(run, cfg, quiet: bool, label: str) -> dict:
    """A training loop under a progress bar; Ctrl-C keeps a checkpoint and says how to go on.
    Under torchrun only rank 0 shows progress and the summary."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeRemainingColumn)
    from rich.text import Text

    class StepsPerSecond(ProgressColumn):
        def render(self, task):
            return Text(f"{task.speed:.2f} it/s" if task.speed else "- it/s")

    main_rank = os.environ.get("RANK", "0") == "0"
    quiet = quiet or not main_rank
    progress = None if quiet else Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                                           StepsPerSecond(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                           console=err)
    task = progress.add_task(label, total=cfg.steps, info="") if progress else None

    def update(step: int, total: int, info: dict):
        if progress is None:
            return
        text = "  ".join(f"{k} {v:.3f}" for k, v in info.items() if k != "step")
        if not progress.live.is_started:  # the first step of this run (maybe a resumed one): speed counts from here
            progress.reset(task, total=total, completed=step, info=text)
            progress.start()
            return
        progress.update(task, completed=step, info=text)

    try:
        result = run(cfg, update)
    except KeyboardInterrupt as exc:
        if progress is not None and progress.live.is_started:
            progress.stop()
        if main_rank:
            err.print(f"{interrupts.describe(exc)}: checkpoint saved in {cfg.out}; run the same command to resume",
                      markup=False)
        raise typer.Exit(interrupts.exit_code(exc))
    finally:
        if progress is not None and progress.live.is_started:
            progress.stop()
    if main_rank:
        err.print(f"step {result['step']}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items() if k != "step"))
    return result


@weights_app.command("list")
@_report_errors
def weights_list(as_json: bool = typer.Option(False, "--json", help="JSON on stdout.")):
    """Known checkpoints, and which are present in the weights folder."""
    from rich.table import Table

    from .weights import local_path, registry, weights_dir

    rows = [dict(name=e.name, file=e.file, architecture=e.architecture, present=local_path(e).exists(),
                 path=str(local_path(e)), url=e.url, description=e.description) for e in registry()]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title=f"checkpoints (folder: {weights_dir()})")
    for col in ("name", "architecture", "present", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["architecture"], "yes" if r["present"] else "no", r["description"])
    out.print(table)


@weights_app.command("fetch")
@_report_errors
def weights_fetch(name: str = typer.Argument(..., help="A name from `lipsync weights list`."),
                  force: bool = typer.Option(False, "--force", help="Download again if present.")):
    """Download a known checkpoint into the weights folder (needs network)."""
    from .weights import fetch

    path = fetch(name, force=force)
    err.print(f"saved {path}")


@weights_app.command("verify")
@_report_errors
def weights_verify(target: str = typer.Argument(..., help="A registry name or a checkpoint file.")):
    """Check a checkpoint: size and sha256 where recorded, exact keys and shapes always."""
    from .errors import InputError
    from .weights import entry, local_path, verify_file

    if os.path.exists(target):
        path, e = target, None
    else:
        e = entry(target)
        path = str(local_path(e))
        if not os.path.exists(path):
            raise InputError(f"{e.name}: not present at {path}")
    problems = verify_file(path, e)
    if problems:
        raise LipsyncError(f"{path}: does not verify: {'; '.join(problems)}")
    err.print(f"{path}: OK")


@weights_app.command("init")
@_report_errors
def weights_init(
    path: Path = typer.Argument(..., help="Where to write the checkpoint (.pth)."),
    model: str = typer.Option("wav2lip", help="wav2lip, attnwav2lip, attnwav2lip-spatial or attnwav2lip-channel."),
    seed: int = typer.Option(0, help="Random seed."),
    force: bool = typer.Option(False, "--force", help="Overwrite PATH if it exists."),
):
    """Write a seeded random-initialised generator in the published layout.

    For smoke tests and benchmarks without the published weights: it runs the whole pipeline at
    full cost, but its mouths are grey, not speech."""
    import torch

    from .checkpoints import save_published
    from .errors import InputError
    from .models.wav2lip import GENERATOR_NAMES, build_generator

    if model not in GENERATOR_NAMES:
        raise InputError(f"--model {model}: choose from {', '.join(GENERATOR_NAMES)}")
    if path.exists() and not force:
        raise InputError(f"{path}: already exists (use --force to overwrite)")
    torch.manual_seed(seed)
    save_published(build_generator(model), path)
    err.print(f"wrote {path} (random {model}, seed {seed})")


def main(argv: list[str] | None = None) -> int:
    """Run the app; returns the exit code (usage errors: 2, user errors: 2, failures: 1, a signal:
    128 + its number, so 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP)."""
    with interrupts.signals_as_interrupts():
        try:
            app(args=argv, standalone_mode=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        stopped_by = interrupts.stopping()  # also when it came outside a command (click answers 1)
    return 128 + stopped_by if stopped_by is not None else code


def entry_point():  # console script
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
