"""`lipsync animate`: a still portrait driven by speech (or a talking video) through DAVS."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import TimeRemainingColumn

from ..media import FPS
from .common import (DebugOpt, DetectorOpt, DeviceOpt, FpsOpt, JsonOpt, QuietOpt, RateColumn, err, print_json,
                     progress_bar, report_errors)


@report_errors
def animate(
    photo: Path = typer.Argument(..., help="A still portrait (JPEG or PNG) with one face."),
    audio: Optional[Path] = typer.Argument(None, help="Speech to drive it with (any audio ffmpeg reads); optional with --driver."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", metavar="PATH", help="Output video (default: PHOTO_STEM_animated.mp4 in the current folder)."),
    checkpoint: Path = typer.Option(..., "-c", "--checkpoint", metavar="FILE", help="A DAVS checkpoint from `lipsync train davs`."),
    driver: Optional[Path] = typer.Option(None, "--driver", metavar="VIDEO", help="A talking video whose mouth drives the photo (its word-ID features) instead of the speech; its sound is used when AUDIO is not given."),
    crop: bool = typer.Option(False, "--crop", help="Write the aligned generated face alone instead of pasting it into the photo."),
    fps: FpsOpt = FPS,
    smooth: float = typer.Option(1.0, min=0, metavar="SIGMA", help="Temporal smoothing of the word-ID features: Gaussian sigma in frames (0: none)."),
    detector: DetectorOpt = "retinaface",
    device: DeviceOpt = "auto",
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite OUTPUT if it exists."),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
):
    """Animate a still PHOTO with AUDIO (or a driving video) through DAVS."""
    from ..pipelines.animate import AnimateOptions, animate as run_animate

    if output is None:
        output = Path.cwd() / f"{photo.stem}_animated.mp4"
    opts = AnimateOptions(checkpoint=str(checkpoint), driver=str(driver) if driver else None, fps=fps,
                          detector=detector, device=device, smooth=smooth, crop=crop)
    with progress_bar("animating", quiet or as_json, RateColumn("frames"), TimeRemainingColumn()) as update:
        result = run_animate(str(photo), str(audio) if audio else None, str(output), opts, force=force, progress=update)
    if as_json:
        print_json({"output": result.output, "frames": result.frames, "fps": float(result.fps), "width": result.width,
                    "height": result.height, "driven_by": result.driven_by, "seconds": round(result.seconds, 3)})
    elif not quiet:
        err.print(f"wrote {result.output}: {result.frames} frames at {float(result.fps):.3f} fps "
                  f"({result.frames / float(result.fps):.2f} s), {result.width}x{result.height}, driven by "
                  f"{result.driven_by}, {result.seconds:.1f} s", markup=False)
