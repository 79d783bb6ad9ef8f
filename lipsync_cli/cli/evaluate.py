"""`lipsync eval sync|davs`: sync scores (LSE-D / LSE-C) and DAVS's measures."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import DebugOpt, DetectorOpt, DeviceOpt, JsonOpt, out, print_json, report_errors
from .layout import App

app = App(help="Evaluation: sync (LSE-D / LSE-C), davs (reconstruction, word accuracy, retrieval, disentangling).",
                  no_args_is_help=True)


@app.command("sync")
@report_errors
def eval_sync(
    videos: List[Path] = typer.Argument(..., help="Videos to score (their own audio track, or --audio)."),
    syncnet: Path = typer.Option(..., "--syncnet", metavar="FILE", help="The evaluation SyncNet (syncnet_v2.model) for published-comparable LSE, or a lip-sync expert of ours."),
    audio: Optional[Path] = typer.Option(None, "--audio", metavar="PATH", help="Score against this audio instead of each video's own track."),
    detector: DetectorOpt = "retinaface",
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
):
    """LSE-D (lower is better) and LSE-C (higher is better) per video and their mean."""
    from rich.table import Table

    from ..eval.lse import score_videos
    from ..device import resolve_device

    report = score_videos(str(syncnet), videos, str(audio) if audio else None, detector, resolve_device(device))
    if as_json:
        print_json(report.as_dict())
        return
    table = Table(title=f"sync ({'syncnet_v2' if report.published_syncnet else 'our expert'})")
    for col in ("video", "LSE-D", "LSE-C", "offset", "frames"):
        table.add_column(col)
    for r in report.videos:
        table.add_row(r.video, f"{r.lse_d:.3f}", f"{r.lse_c:.3f}", str(r.offset), str(r.frames))
    table.add_row("mean", f"{report.lse_d:.3f}", f"{report.lse_c:.3f}", "", "")
    out.print(table)


@app.command("davs")
@report_errors
def eval_davs(
    data: Path = typer.Argument(..., help="Words-layout data folder (the split to score, and train for the probe)."),
    checkpoint: Path = typer.Option(..., "-c", "--checkpoint", metavar="FILE", help="A DAVS checkpoint from `lipsync train davs`."),
    split: str = typer.Option("test", metavar="test|val", help="The held-out split to score: test or val."),
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
):
    """PSNR / SSIM from audio and video, word accuracy, audio-video retrieval, and the word probe on person-ID features."""
    from rich.table import Table

    from ..eval.davs import evaluate_split
    from ..device import resolve_device
    from ..checkpoints import load_davs

    dev = resolve_device(device)
    result = evaluate_split(load_davs(str(checkpoint), dev), str(data), split, device=dev)
    if as_json:
        print_json({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()})
        return
    table = Table(title=f"DAVS on {data} ({split}, {result['clips']} clips)")
    table.add_column("measure")
    table.add_column("value")
    for k, v in result.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    out.print(table)
