"""`lipsync speakers`: who speaks when in a video with several faces."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import (DebugOpt, DetectorOpt, DetectSizeOpt, DeviceOpt, JsonOpt, QuietOpt, err, out, print_json,
                     report_errors)

TIMELINE_COLUMNS = 20  # characters of the timeline column


@report_errors
def speakers(
    video: Path = typer.Argument(..., help="A video with one or more faces."),
    audio: Optional[Path] = typer.Argument(None, help="The speech to compare the faces with (default: the video's own sound)."),
    preview: Optional[Path] = typer.Option(None, "--preview", metavar="PATH", help="Also write the video with each face's box drawn: green while it speaks, red while it does not, thicker for the face `dub --speaker auto` dubs."),
    weights: str = typer.Option("light_asd_talkset", metavar="NAME|PATH", help="The active speaker detector's weights: light_asd_talkset (ships inside the package), light_asd_ava, or a file."),
    detector: DetectorOpt = "retinaface",
    detect_size: DetectSizeOpt = 320,
    detect_every: int = typer.Option(2, min=1, metavar="N", help="Detect faces on every N-th frame of the 25 fps analysis; boxes in between are interpolated."),
    device: DeviceOpt = "auto",
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite the preview if it exists."),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
):
    """Find the shots of VIDEO, every face in each, and when each one speaks: tables, or --json."""
    from ..device import resolve_device
    from ..errors import InputError
    from ..outputs import refuse_inputs
    from ..faces.speakers import SpeakerOptions, find_speakers
    from ..pipelines.speakers import write_preview

    if preview is not None:
        refuse_inputs(preview, (video, audio))  # before the analysis, not after it
    opts = SpeakerOptions(weights=weights, detector=detector, detect_size=detect_size, detect_every=detect_every,
                          device=str(resolve_device(device)))
    if not quiet and not as_json:
        err.print(f"finding the faces in {video} and who speaks when ...", markup=False)
    report = find_speakers(str(video), str(audio) if audio else None, opts)
    if not report.tracks:
        raise InputError(f"{video}: no face found in the video")
    if preview is not None:
        write_preview(report, str(preview), force=force)
    if as_json:
        print_json(report.as_dict())
        return
    if quiet:
        return
    _print_timeline(report)
    if preview is not None:
        err.print(f"wrote {preview}", markup=False)


def _print_shots(report) -> None:
    """One row per shot: its span, its faces, who speaks in it."""
    from rich.table import Table

    fps = float(report.fps)
    table = Table(title=f"{len(report.shots)} shot{'s' if len(report.shots) != 1 else ''}", title_justify="left")
    for col, justify in (("shot", "right"), ("frames", "left"), ("seconds", "left"), ("faces", "left"),
                         ("speaks", "left")):
        table.add_column(col, justify=justify, no_wrap=True)
    for k, (a, b) in enumerate(report.shot_spans()):
        here = [t for t in report.tracks if t.shot == k]
        speaks = [t for t in here if t.speaking is not None and t.speaking.any()]
        table.add_row(str(k), f"{a}-{b}", f"{a / fps:.2f}-{(b + 1) / fps:.2f}",
                      " ".join(f"#{t.index}" for t in here) or "none",
                      " ".join(f"#{t.index}" for t in speaks) or ("nobody" if report.audio else "-"))
    out.print(table)


def _print_timeline(report) -> None:
    from rich.table import Table

    n = report.frames
    table = Table(title=f"{report.video}: {len(report.tracks)} face track{'s' if len(report.tracks) != 1 else ''}, "
                        f"{report.duration:.1f} s, speech of {report.audio} ({report.weights})", title_justify="left")
    for col, justify, width in (("#", "right", 2), ("box", "left", 15), ("seen (s)", "left", 8),
                                ("speaks", "right", 6), ("score", "right", 5), ("timeline", "left", TIMELINE_COLUMNS)):
        table.add_column(col, justify=justify, no_wrap=True, min_width=width)
    for t in report.tracks:
        cells = []
        for c in range(TIMELINE_COLUMNS):  # each character: a slice of the clip
            lo, hi = c * n // TIMELINE_COLUMNS, max(c * n // TIMELINE_COLUMNS + 1, (c + 1) * n // TIMELINE_COLUMNS)
            here = [a for a in range(lo, hi) if a in t]
            speaking = [a for a in here if t.speaking is not None and t.speaking[a - t.first]]
            dubbed = any(t.index in report.dubbed[a] for a in here)
            cells.append("[green]█[/green]" if len(speaking) * 2 >= len(here) and here and speaking
                         else ("[yellow]▒[/yellow]" if dubbed else ("[dim]·[/dim]" if here else " ")))
        mean = f"{float(t.score.mean()):+.2f}" if t.score is not None and len(t.score) else "-"
        box = ",".join(str(int(round(v))) for v in t.box())
        speaks = f"{t.speaking_seconds:.1f} s" if t.speaking is not None else "-"
        table.add_row(str(t.index), box, f"{t.start:.1f}-{t.end:.1f}", speaks, mean,
                      "".join(cells))
    out.print(table)
    _print_shots(report)
    for t in report.tracks:  # the segments in full, below the table (a table cell would be cut)
        segments = ", ".join(f"{a:.2f}-{b:.2f}" for a, b in t.segments())
        out.print(f"track {t.index} speaks: {segments or 'never'}", markup=False)
    out.print("timeline: [green]█[/green] speaking, [yellow]▒[/yellow] dubbed between turns (the last speaker), "
              f"[dim]·[/dim] in the frame ({report.seconds:.1f} s)")
