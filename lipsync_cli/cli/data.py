"""`lipsync synth` (a synthetic corpus) and `lipsync preprocess` (raw videos -> a training set)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import typer
from rich.progress import TimeRemainingColumn

from ..faces.track import DEFAULT_PADS
from ..pipelines.clips import MAX_OFFSET
from .common import (DebugOpt, DetectorOpt, DetectSizeOpt, DeviceOpt, PadsOpt, QuietOpt, RateColumn, S3fdWeightsOpt,
                     err, interrupted, progress_bar, report_errors)


def _min_max(value: tuple[int, int]) -> tuple[int, int]:
    if value[0] > value[1]:
        raise typer.BadParameter(f"must be MIN MAX with MIN <= MAX, got {value[0]} {value[1]}")
    return value


@report_errors
def synth(
    out_dir: Path = typer.Argument(..., help="Folder to create for the corpus."),
    clips: int = typer.Option(1000, "--clips", "-n", min=1, metavar="N", help="How many clips."),
    layout: str = typer.Option("train", metavar="train|words|videos", help="train (face crops + audio, the preprocessed Wav2Lip layout), words (one word per clip with word and person labels, for DAVS) or videos (full-frame mp4 with audio, for dub)."),
    seed: int = typer.Option(0, min=0, metavar="N", help="Corpus seed: the same seed gives a byte-identical corpus."),
    identities: int = typer.Option(120, min=3, metavar="N", help="Face identities (split 80/10/10 between train/val/test)."),
    voices: int = typer.Option(48, min=3, metavar="N", help="Voices (split 80/10/10, separately from the faces)."),
    size: int = typer.Option(96, min=32, max=1024, metavar="PIXELS", help="Face crop side in pixels (train, words)."),
    scene: Tuple[int, int] = typer.Option((256, 256), min=32, metavar="HEIGHT WIDTH", help="Frame HEIGHT WIDTH of the videos layout."),
    words: Tuple[int, int] = typer.Option((2, 4), min=1, callback=_min_max, metavar="MIN MAX", help="Words per clip, MIN MAX (train, videos)."),
    workers: int = typer.Option(1, min=1, metavar="N", help="Processes (the corpus is identical for any number)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace OUT_DIR if it is a corpus that synth made."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
):
    """Make a synthetic talking-face corpus with known truth (audio, faces, mouth shapes, labels).

    For smoke-testing training setups and for measuring sync where the truth is known."""
    import time

    from ..synth.corpus import CorpusSpec, make_corpus

    spec = CorpusSpec(clips=clips, seed=seed, layout=layout, identities=identities, voices=voices, size=size,
                      scene=tuple(scene), min_words=words[0], max_words=words[1])
    started = time.perf_counter()
    with progress_bar("synth", quiet, RateColumn("clips"), TimeRemainingColumn()) as update:
        make_corpus(spec, out_dir, workers=workers, force=force, progress=update)
    if not quiet:
        took = time.perf_counter() - started
        err.print(f"wrote {out_dir}: {clips} clips ({layout}), {took:.1f} s, {clips / took:.1f} clips/s")


@report_errors
def preprocess(
    src: Path = typer.Argument(..., help="Folder of talking videos (any depth; LRS2's layout with its train/val/test lists is understood)."),
    data: Path = typer.Argument(..., help="Output folder: <speaker>/<video>/<clip>/{0..n}.jpg + audio.wav, filelists/, preprocess_report.jsonl."),
    size: int = typer.Option(96, min=1, metavar="PIXELS", help="Side of the saved face crops."),
    detector: DetectorOpt = "retinaface",
    detect_size: DetectSizeOpt = 320,
    pads: PadsOpt = DEFAULT_PADS,
    s3fd_weights: S3fdWeightsOpt = None,
    device: DeviceOpt = "auto",
    val: float = typer.Option(0.1, min=0, max=1, metavar="SHARE", help="Share for the val split: of the speakers when there are several (folders), else of one speaker's seconds (the end of the footage, in name order). At least one clip goes to val whenever there are two; LRS2's lists are used as they are."),
    sync_filter: Optional[str] = typer.Option(None, "--sync-filter", metavar="CKPT", help="Leave out clips whose sound and mouth are out of sync, as this model measures them: a lip-sync expert (lipsync_expert.pth, or one from `lipsync train syncnet`) or syncnet_v2. Each clip's offset goes in the report."),
    max_offset: int = typer.Option(MAX_OFFSET, min=0, max=15, metavar="FRAMES", help="With --sync-filter: the largest offset kept, in frames (25 fps)."),
    align: bool = typer.Option(True, "--align/--no-align", help="Crop a tilted head along its tilt, as `dub` does by default, so a model trained here sees what dub gives it; --no-align: upright boxes."),
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Turn raw talking videos into a training set: clips of 1-6 s of one face, 25 fps face crops +
    16 kHz audio, and file lists split train/val.

    Each video is cut at shot boundaries, around frames without a face or where another face takes
    over, and at pauses of the speech; each clip's source and time span are in the report.
    Resumable: finished videos are kept on a rerun; skipped ones and why are in the report."""
    from ..device import resolve_device
    from ..pipelines.preprocess import PreprocessOptions, preprocess as run

    opts = PreprocessOptions(size=size, detector=detector, detect_size=detect_size, pads=tuple(pads),
                             s3fd_weights=str(s3fd_weights) if s3fd_weights else None,
                             device=resolve_device(device).type, val_share=val, align=align,
                             sync_model=sync_filter, max_offset=max_offset)
    try:
        with progress_bar("preprocess", quiet, RateColumn("videos"), TimeRemainingColumn()) as update:
            counts = run(src, data, opts, progress=(lambda i, n, key: update(i, n)) if update else None)
    except KeyboardInterrupt as exc:
        raise interrupted(exc, f"finished videos are kept in {data}; run the same command again to go on") from None
    videos = f"{counts['done']} video{'s' if counts['done'] != 1 else ''}"
    err.print(f"{data}: {videos} done, {counts['kept']} kept from before, {counts['skipped']} skipped "
              f"(see preprocess_report.jsonl); {counts['clips']} clip{'s' if counts['clips'] != 1 else ''}: {counts['train']} train ({counts['train_seconds']:g} s), "
              f"{counts['val']} val ({counts['val_seconds']:g} s), split {counts['why']}")
