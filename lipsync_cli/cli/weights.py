"""`lipsync weights list|fetch|verify|init`: the registry of known checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ..errors import LipsyncError
from .common import JsonOpt, err, out, print_json, report_errors
from .layout import App

app = App(help="The registry of known checkpoints: list, fetch, verify.", no_args_is_help=True)


@app.command("list")
@report_errors
def weights_list(as_json: JsonOpt = False):
    """Known checkpoints, and which are present in the weights folder."""
    from rich.table import Table

    from ..weights import local_path, registry, weights_dir

    rows = [dict(name=e.name, file=e.file, architecture=e.architecture, present=local_path(e).exists(),
                 path=str(local_path(e)), url=e.url, description=e.description) for e in registry()]
    if as_json:
        print_json({"weights": rows})
        return
    table = Table(title=f"checkpoints (folder: {weights_dir()})")
    for col in ("name", "architecture", "present", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["architecture"], "yes" if r["present"] else "no", r["description"])
    out.print(table)


@app.command("fetch")
@report_errors
def weights_fetch(name: str = typer.Argument(..., help="A name from `lipsync weights list`."),
                  force: bool = typer.Option(False, "--force", help="Download again if present.")):
    """Download a known checkpoint into the weights folder (needs network)."""
    from ..weights import fetch

    path = fetch(name, force=force)
    err.print(f"saved {path}")


@app.command("verify")
@report_errors
def weights_verify(target: str = typer.Argument(..., help="A registry name or a checkpoint file.")):
    """Check a checkpoint: size and sha256 where recorded, exact keys and shapes always."""
    from ..errors import InputError
    from ..weights import locate, verify_file

    path, e = locate(target)
    if not os.path.exists(path):
        raise InputError(f"{e.name}: not present at {path}" if e else f"{path}: no such checkpoint file")
    problems = verify_file(path, e)
    if problems:
        raise LipsyncError(f"{path}: does not verify: {'; '.join(problems)}")
    err.print(f"{path}: OK")


@app.command("init")
@report_errors
def weights_init(
    path: Path = typer.Argument(..., help="Where to write the checkpoint (.pth)."),
    model: str = typer.Option("wav2lip", metavar="NAME", help="wav2lip, attnwav2lip, attnwav2lip-spatial or attnwav2lip-channel."),
    seed: int = typer.Option(0, min=0, metavar="N", help="Random seed."),
    size: int = typer.Option(96, metavar="PIXELS", help="Face size: 96 (the published generators), 192 or 288."),
    force: bool = typer.Option(False, "--force", help="Overwrite PATH if it exists."),
):
    """Write a seeded random-initialised generator in the published layout.

    For smoke tests and benchmarks without the published weights: it runs the whole pipeline at
    full cost, but its mouths are grey, not speech."""
    from ..weights import write_random_generator

    write_random_generator(path, model, seed, force=force, size=size)
    err.print(f"wrote {path} (random {model}, {size}x{size}, seed {seed})")
