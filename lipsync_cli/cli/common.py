"""What every command shares: the consoles, the error wrapper, the progress bar, shared options."""

from __future__ import annotations

import functools
import inspect
import json
import os
import traceback
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional, Tuple

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
from rich.text import Text

from .. import interrupts, package_version
from ..errors import LipsyncError
from ..pipelines.options import PER_CLIP, ClipOption

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def print_json(result: dict) -> None:
    """A command's --json output: one JSON object on stdout, led by the version that wrote it."""
    print(json.dumps({"version": package_version(), **result}))


def interrupted(exc: KeyboardInterrupt, what_is_kept: str) -> typer.Exit:
    """Say what an interruption (Ctrl-C, SIGTERM, SIGHUP: interrupts.py) left behind; the exit to
    raise, 128 + the signal's number as a shell reports it (130 for Ctrl-C)."""
    err.print(f"{interrupts.describe(exc)}: {what_is_kept}", markup=False)
    return typer.Exit(interrupts.exit_code(exc))


def report_errors(fn):
    """User errors become one line on stderr and an exit code, never a traceback (unless --debug).
    A command returns its exit code (None: 0)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = bool(kwargs.get("debug")) or bool(os.environ.get("LIPSYNC_DEBUG"))
        try:
            code = fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except KeyboardInterrupt as exc:
            raise interrupted(exc, "no output was written") from None
        except Exception as exc:
            if debug:
                traceback.print_exc()
            if isinstance(exc, LipsyncError):
                err.print(f"error: {exc}", markup=False)
                raise typer.Exit(getattr(exc, "exit_code", 1)) from None
            err.print(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", markup=False)
            raise typer.Exit(1) from None
        if code:
            raise typer.Exit(code)

    return wrapper


class RateColumn(ProgressColumn):
    """Items per second since the bar appeared."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        elapsed = task.elapsed or 0.0
        return Text(f"{task.completed / elapsed:.1f} {self.unit}/s" if elapsed > 0 else f"- {self.unit}/s")


class SpeedColumn(ProgressColumn):
    """Iterations per second over the last few seconds."""

    def render(self, task) -> Text:
        return Text(f"{task.speed:.2f} it/s" if task.speed else "- it/s")


class FieldColumn(ProgressColumn):
    """A text field the updates set (the last item, the latest losses)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def render(self, task) -> Text:
        return Text(str(task.fields.get(self.name, "")))


@contextmanager
def progress_bar(label: str, quiet: bool, *columns: ProgressColumn) -> Iterator[Optional[Callable[..., None]]]:
    """A progress bar on stderr: yields `update(done, total, **fields)`, or None under --quiet.

    The bar appears at the first update, so an early error prints alone, and rates count from
    there (a resumed run's earlier steps do not); it is stopped however the block ends."""
    if quiet:
        yield None
        return
    progress = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), *columns, console=err)
    task = progress.add_task(label, total=None, start=False)

    def update(done: int, total: int | None, **fields) -> None:
        if progress.live.is_started:
            progress.update(task, completed=done, total=total, **fields)
        else:
            progress.reset(task, total=total, completed=done, **fields)
            progress.start()

    try:
        yield update
    finally:
        if progress.live.is_started:
            progress.stop()


def with_flags(flags: dict[str, tuple[Any, Any]], before: str) -> Callable:
    """A decorator that gives a command flags declared once for several commands: {name:
    (annotation, default)}, listed in its help before its own parameter `before`. The command
    takes them as **flags."""

    def add(command):
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        at = [p.name for p in own].index(before)
        shared = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation,
                                    default=default) for name, (annotation, default) in flags.items()]
        command.__signature__ = inspect.Signature(own[:at] + shared + own[at:])  # what Typer reads
        command.__annotations__ = {**command.__annotations__, **{n: a for n, (a, _) in flags.items()}}
        return command

    return add


def from_table(option: ClipOption) -> Callable:
    """A flag's parser or callback that reads its value as the per-clip option table says."""

    def read(value):
        if value is None:
            return None
        try:
            return option.read(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return read


# Options that several commands share, declared once.
DetectorOpt = Annotated[str, typer.Option(metavar="NAME", help="Face detector: retinaface (built in, offline) or s3fd (face-alignment; needs its weights).")]
PadsOpt = Annotated[Tuple[int, int, int, int], typer.Option("--pads", metavar="TOP BOTTOM LEFT RIGHT", help=PER_CLIP["pads"].help)]
FpsOpt = Annotated[Fraction, typer.Option(help=PER_CLIP["fps"].help, parser=from_table(PER_CLIP["fps"]), metavar="RATE")]
DetectSizeOpt = Annotated[int, typer.Option(min=0, metavar="PIXELS", help="Detect faces on frames downscaled to this longer side (pixels; 0: full size); frames where no face is found are searched again at twice the size.")]
S3fdWeightsOpt = Annotated[Optional[Path], typer.Option(metavar="FILE", help="Local S3FD weights file (s3fd-619a316812.pth) for --detector s3fd.")]
DeviceOpt = Annotated[str, typer.Option(metavar="NAME", help="auto, cpu or cuda (under torchrun, auto is the process's own GPU).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object on stdout.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]
