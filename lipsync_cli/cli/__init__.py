"""The `lipsync` command line: argument parsing and reporting only; the work is in pipelines/.

One module per command group; this one assembles them into the app."""

from __future__ import annotations

import os
import sys

# PyTorch's OpenMP threads spin after each parallel region by default, burning the cores that the
# decoder and encoder processes need; sleeping instead made `dub` 15-20% faster end to end on a
# 2-core CPU (benchmarks/README.md). Set before torch is imported; the user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _tune_malloc(arenas: int = 2) -> None:
    """At most `arenas` glibc malloc arenas: glibc gives each allocating thread one of its own, up
    to 8 per core, and the int8 generator's maps of many sizes fragment them: peak memory crept
    11% from a 10 s to a 60 s dub with two generator threads (benchmarks/README.md). The cap only
    counts if it is set before any other thread has allocated (numpy's BLAS threads at import),
    hence here, first; the user's own MALLOC_ARENA_MAX wins. (A fixed mmap threshold also kept
    the analysis from fragmenting the heap, but cost 4-12% of a dub's time: the analysis gives
    its free pages back instead, device.give_back_free_memory.)"""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None).mallopt(ctypes.c_int(-8), ctypes.c_int(arenas))  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


_tune_malloc()

import typer  # noqa: E402

from .. import interrupts, package_version  # noqa: E402
from . import animate, data, doctor, dub, evaluate, speakers, train, weights  # noqa: E402
from .common import err, out  # noqa: E402
from .layout import App  # noqa: E402

app = App(
    help="Offline lip-sync dubbing (Wav2Lip / AttnWav2Lip) and portrait animation (DAVS) for the command line.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # --install-completion / --show-completion: free at start-up (Typer imports its completion
    # code either way) and answered through main() like any command (exit status 0)
    add_completion=True,
)


def show_version(value: bool) -> None:
    if value:
        out.print(f"lipsync {package_version()}", markup=False)
        raise typer.Exit()


@app.callback()
def lipsync(version: bool = typer.Option(False, "--version", is_eager=True, callback=show_version,
                                         help="Print the version and exit.")):
    pass  # the app's own options; its help is the app's


app.command()(dub.dub)
app.command()(animate.animate)
app.command()(dub.batch)
app.command()(speakers.speakers)
app.command()(data.synth)
app.command()(data.preprocess)
app.command()(doctor.doctor)
app.add_typer(weights.app, name="weights")
app.add_typer(train.app, name="train")
app.add_typer(evaluate.app, name="eval")


def main(argv: list[str] | None = None) -> int:
    """Run the app; returns the exit code (usage errors: 2, user errors: 2, failures: 1, a signal:
    128 + its number, so 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP). A usage error (an
    unknown flag, a value out of its range) is one line, as every other error."""
    with interrupts.signals_as_interrupts():
        code = _run(argv)
        stopped_by = interrupts.stopping()  # also when it came outside a command (Click answers 1)
    return 128 + stopped_by if stopped_by is not None else code


def _run(argv: list[str] | None) -> int:
    try:
        code = app(args=argv, standalone_mode=False)  # an Exit's code, or the command's return value
    except typer.Abort:
        err.print("aborted", markup=False)
        return 1
    except typer.TyperException as exc:  # Click's usage errors
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if message:  # empty: a group given no command, its help is shown
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            err.print(f"error: {message}{hint}", markup=False)
        return getattr(exc, "exit_code", 2)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code if isinstance(code, int) else 0


def entry_point():  # console script
    sys.exit(main())
