"""`lipsync dub` and `lipsync batch`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, List, Optional, Tuple

import typer
from rich.progress import TimeElapsedColumn, TimeRemainingColumn

from ..pipelines.options import MANIFEST_COLUMNS, PER_CLIP, DubOptions
from ..weights import DEFAULT_CHECKPOINT
from .common import (DebugOpt, DetectorOpt, DetectSizeOpt, DeviceOpt, FieldColumn, FpsOpt, JsonOpt, PadsOpt,
                     QuietOpt, RateColumn, S3fdWeightsOpt, err, from_table, interrupted, out, print_json,
                     progress_bar, report_errors, with_flags)
from .layout import help_panels

CheckpointOpt = Annotated[Optional[str], typer.Option("--checkpoint", "-c", metavar="NAME|PATH", help=f"Generator checkpoint: a path, or a name from `lipsync weights list` (default: {DEFAULT_CHECKPOINT}).")]
ModelOpt = Annotated[Optional[str], typer.Option(metavar="NAME", help="Override the architecture read from the checkpoint: wav2lip, attnwav2lip, attnwav2lip-spatial, attnwav2lip-channel.")]
BoxOpt = Annotated[Optional[Tuple[int, int, int, int]], typer.Option("--box", metavar="Y1 Y2 X1 X2", help=PER_CLIP["box"].help, callback=from_table(PER_CLIP["box"]), show_default=False)]
FaceIndexOpt = Annotated[Optional[int], typer.Option(metavar="N", help=PER_CLIP["face_index"].help)]
SpeakerOpt = Annotated[str, typer.Option(help=PER_CLIP["speaker"].help, callback=from_table(PER_CLIP["speaker"]), metavar="auto|largest|all|N")]
SpeakerAudioOpt = Annotated[Optional[Path], typer.Option(metavar="PATH", help=PER_CLIP["speaker_audio"].help)]
SpeakerWeightsOpt = Annotated[str, typer.Option(metavar="NAME|PATH", help="The active speaker detector's weights: light_asd_talkset (ships inside the package), light_asd_ava, or a file.")]
OnNoFaceOpt = Annotated[str, typer.Option(help=PER_CLIP["on_no_face"].help, callback=from_table(PER_CLIP["on_no_face"]), metavar="skip|error")]
PasteOpt = Annotated[str, typer.Option(metavar="feather|hard", help="feather: blend the lower face softly into the frame; hard: paste the whole box back exactly like the reference Wav2Lip inference.")]
LoopOpt = Annotated[bool, typer.Option("--loop", help=PER_CLIP["loop"].help)]
SmoothOpt = Annotated[bool, typer.Option("--smooth/--no-smooth", help=PER_CLIP["smooth"].help)]
AlignOpt = Annotated[bool, typer.Option("--align/--no-align", help="Crop a tilted head along its tilt (its eye line, read from the detector's landmarks) so the generator sees it upright, and put the mouth back along it; --no-align: upright boxes, as Wav2Lip. --paste hard and --box never turn.")]
DetectEveryOpt = Annotated[int, typer.Option(min=1, metavar="N", help="Detect faces on every N-th frame; boxes in between are interpolated.")]
PrecisionOpt = Annotated[str, typer.Option(metavar="NAME", help="auto (fp16 on CUDA; bf16 on a CPU with AMX; int8 on other CPUs; fp32 with --paste hard), fp32, fp16 (CUDA), bf16 or int8 (CPU).")]
BatchSizeOpt = Annotated[Optional[int], typer.Option(min=1, metavar="FRAMES", help="Frames per generator batch (default: 16 on CPU, 128 on CUDA, halved on out-of-memory).")]
EnhanceOpt = Annotated[str, typer.Option(help="gfpgan: restore the dubbed mouths with GFPGAN v1.4 (sharper; heavy: 1.3-5 s per face and frame on a 2-core CPU, so 10 s of 25 fps video takes 5-20 min there; milliseconds on a GPU); none: off.", metavar="none|gfpgan")]
EnhanceWeightsOpt = Annotated[str, typer.Option(metavar="NAME|PATH", help="The restoration network: gfpgan_v1.4 (GFPGANv1.4.pth in the weights folder; see `lipsync weights list`) or a file.")]
EnhanceRegionOpt = Annotated[str, typer.Option(help="mouth: blend the restored lower face only, where the generator drew (the rest of the frame stays exactly the dub's); face: the whole face.", metavar="mouth|face")]
CrfOpt = Annotated[int, typer.Option(min=PER_CLIP["crf"].low, max=PER_CLIP["crf"].high, metavar="N", help=PER_CLIP["crf"].help)]

# The flags of `dub` and `batch`, declared once: one per DubOptions field, named as it, with its default.
DUB_FLAGS = {
    "checkpoint": (CheckpointOpt, None),  # None: the registry's default generator
    **{name: (annotation, getattr(DubOptions, name)) for name, annotation in [
        ("model", ModelOpt), ("detector", DetectorOpt), ("box", BoxOpt), ("pads", PadsOpt),
        ("face_index", FaceIndexOpt), ("speaker", SpeakerOpt), ("speaker_audio", SpeakerAudioOpt),
        ("speaker_weights", SpeakerWeightsOpt), ("on_no_face", OnNoFaceOpt), ("paste", PasteOpt), ("loop", LoopOpt),
        ("fps", FpsOpt), ("smooth", SmoothOpt), ("align", AlignOpt), ("detect_size", DetectSizeOpt), ("detect_every", DetectEveryOpt),
        ("s3fd_weights", S3fdWeightsOpt), ("device", DeviceOpt), ("precision", PrecisionOpt),
        ("batch_size", BatchSizeOpt), ("crf", CrfOpt), ("enhance", EnhanceOpt), ("enhance_weights", EnhanceWeightsOpt),
        ("enhance_region", EnhanceRegionOpt)]},
}
with_dub_flags = with_flags(DUB_FLAGS, before="force")

# The panels of `dub`'s and `batch`'s help, after each command's own input and output.
DUB_PANELS = {
    "Model and speed": ("checkpoint", "model", "device", "precision", "batch_size"),
    "Faces": ("detector", "box", "pads", "detect_size", "detect_every", "smooth", "align", "on_no_face", "paste",
              "s3fd_weights"),
    "Several faces": ("speaker", "face_index", "speaker_audio", "speaker_weights"),
    "HD / restoration": ("enhance", "enhance_weights", "enhance_region"),
    "Encoding": ("fps", "crf"),
}


def dub_options(flags: dict, **changes) -> DubOptions:
    """DubOptions from the dub flags, the checkpoint name or path resolved to its file."""
    from ..weights import resolve_checkpoint

    return DubOptions(**{**flags, **changes, "checkpoint": resolve_checkpoint(flags["checkpoint"])})


@report_errors
@help_panels({"Input and output": ("output", "loop", "force", "quiet", "as_json", "debug"), **DUB_PANELS})
@with_dub_flags
def dub(
    video: Path = typer.Argument(..., help="Talking-head video, or a still image of a face."),
    audio: Path = typer.Argument(..., help="Speech: any audio ffmpeg reads (wav, mp3, m4a, or a video's audio track)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", metavar="PATH", help="Output video (default: VIDEO_STEM_dubbed.mp4 in the current folder)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite OUTPUT if it exists."),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
    **flags,
):
    """Re-sync the mouth in VIDEO (or a still image) to AUDIO."""
    from ..device import resolve_device
    from ..pipelines.dub import dub as run_dub, start_loading

    if output is None:
        output = Path.cwd() / f"{video.stem}_dubbed.mp4"
    opts = dub_options(flags)
    started = time.perf_counter()
    generator = start_loading(opts)  # the face analysis runs meanwhile
    if opts.enhance != "none" and resolve_device(opts.device).type == "cpu" and not (quiet or as_json):
        err.print(f"note: {enhance_estimate(str(video), str(audio), opts.precision)}")
    with progress_bar("dubbing", quiet or as_json, RateColumn("frames"), TimeRemainingColumn()) as update:
        result = run_dub(generator, str(video), str(audio), str(output), opts, force=force, progress=update)
    result.seconds = time.perf_counter() - started
    result.stage_seconds["load"] = generator.result().load_seconds
    if as_json:
        print_json(result.as_dict())
    elif not quiet:
        note = f", {result.frames_without_face} frames without a face left unchanged" if result.frames_without_face else ""
        err.print(
            f"wrote {result.output}: {result.frames} frames at {float(result.fps):.3f} fps "
            f"({result.duration:.2f} s), {result.model}{'' if result.face_size == 96 else f' {result.face_size}x{result.face_size}'} on {result.device} "
            f"({result.precision}{', for ' + result.isa if result.isa else ''}), {result.seconds:.1f} s{note}"
        )
        if result.dubbed_tracks or result.shots > 1 or result.silent_faces_seconds:
            dubbed = ", ".join(f"track {k} for {v:.1f} s" for k, v in result.dubbed_tracks.items()) or "no face"
            shots = f" in {result.shots} shots" if result.shots > 1 else ""
            err.print(f"speaker {result.speaker}: dubbed {dubbed}{shots}", markup=False)
        if result.silent_faces_seconds:
            err.print(f"left {result.silent_faces_seconds:.1f} s of faces untouched because they did not speak "
                      "(--speaker all dubs every face, --speaker largest the largest)", markup=False)
        if result.enhanced_faces:
            err.print(f"enhanced {result.enhanced_faces} faces: {result.enhance}")
        for line in result.notes:
            err.print(f"note: {line}")


def enhance_estimate(video: str, audio: str, requested: str) -> str:
    """What --enhance costs on this CPU for one face over the dub's length, said before it starts."""
    from .. import media
    from ..audio import load_audio, output_frame_count
    from ..pipelines.enhance import CPU_SECONDS_PER_FACE, cpu_estimate, restore_precision

    info = media.probe(video)
    fps = float(info.video.fps) if info.video and not info.video.is_still else 25.0
    frames = output_frame_count(load_audio(audio).duration, fps)
    precision = restore_precision("cpu", requested)
    return (f"--enhance on the CPU: GFPGAN ({precision}) takes about {CPU_SECONDS_PER_FACE[precision]:.1f} s "
            f"per face and frame on 2 cores; {frames} frames: {cpu_estimate(frames, precision)} per face")


@report_errors
@help_panels({"Input and output": ("output_dir", "audio", "loop", "force", "quiet", "as_json", "debug"),
              "Job": ("job", "shard", "retry_failed", "report_dir"), **DUB_PANELS})
@with_dub_flags
def batch(
    inputs: Optional[List[Path]] = typer.Argument(None, help=f"Folders of videos or images, single files, or CSV / JSON / JSON-lines manifests (columns: {', '.join(MANIFEST_COLUMNS)})."),
    output_dir: Optional[Path] = typer.Option(None, "-o", "--output-dir", metavar="DIR", help="Folder for the dubbed clips (created if missing); each is named after its video."),
    audio: Optional[Path] = typer.Option(None, "--audio", "-a", metavar="PATH", help="One audio file for every video, or a folder of audio files paired with the videos by file name."),
    job: Optional[Path] = typer.Option(None, "--job", metavar="DIR", help="Job folder with the resumable log (default: OUTPUT_DIR/.lipsync-job)."),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="K/N", help="Process only shard K of N (K/N, from 0) (default: from torchrun's RANK/WORLD_SIZE or a SLURM array, else all)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry items that failed in an earlier run."),
    report_dir: Optional[Path] = typer.Option(None, "--report", metavar="DIR", help="Print the merged report of a job (all shards) and exit: a job folder or a batch output folder."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite outputs that exist but were not made by this job."),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
    **flags,
):
    """Dub many clips: pairing, a resumable job log, a per-clip report, sharding.

    Rerun the same command after an interruption: finished clips are kept, the rest are done."""
    from ..errors import InputError
    from ..pipelines import batch as batch_mod

    if report_dir is not None:
        _print_report(batch_mod.report(batch_mod.find_job_dir(report_dir)), as_json)
        return 0
    if not inputs:
        raise InputError("no inputs: give folders, files or a manifest (see `lipsync batch --help`)")
    if output_dir is None:
        raise InputError("give the output folder with -o DIR")
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"{output_dir}: not a folder")
    the_shard = batch_mod.parse_shard(shard) if shard else (batch_mod.shard_from_environment() or batch_mod.Shard(0, 1))
    items = batch_mod.collect_items(inputs, output_dir, str(audio) if audio else None)
    opts = dub_options(flags)
    output_dir.mkdir(parents=True, exist_ok=True)
    job_dir = job or output_dir / batch_mod.JOB_FOLDER

    try:
        with progress_bar("batch", quiet or as_json, FieldColumn("last"), TimeElapsedColumn()) as update:
            total, done = None, 0

            def on_start(n: int):
                nonlocal total
                if update is not None and n:
                    total = n
                    update(0, n, last="")

            def on_outcome(o):
                # items settled by the log before the start (done or failed earlier) are not counted
                nonlocal done
                if update is not None and total is not None and o.state != "skipped" \
                        and not o.reason.startswith("failed earlier"):
                    done += 1
                    update(done, total, last=f"{o.item.id}: {o.state}")

            summary = batch_mod.run_batch(items, opts, job_dir, the_shard, retry_failed=retry_failed, force=force,
                                          on_outcome=on_outcome, on_start=on_start)
    except KeyboardInterrupt as exc:
        raise interrupted(exc, "finished clips are kept; run the same command again to go on") from None
    if as_json:
        print_json(summary.as_dict())
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
        print_json({"items": rows, "counts": dict(Counter(r["state"] for r in rows))})
        return
    table = Table(title="batch report (all shards)")
    for col in ("item", "state", "shard", "seconds", "reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["item"], r["state"], r.get("shard", ""), str(r.get("seconds", "")), r.get("reason", ""))
    out.print(table)
    counts = Counter(r["state"] for r in rows)
    out.print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
