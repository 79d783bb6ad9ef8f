"""SIGTERM and SIGHUP stop a command as Ctrl-C does.

SLURM, Kubernetes, systemd and `timeout` stop a job with SIGTERM; a closed terminal or SSH session
sends SIGHUP. While the CLI runs (`signals_as_interrupts`), both raise `Interrupted` in the main
thread, a KeyboardInterrupt carrying the signal number, so every `finally` and `except
KeyboardInterrupt` written for Ctrl-C runs for them too: temporary outputs are removed, the batch
job log records what was in flight, training saves a checkpoint. The CLI exits with 128 + the
signal number (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), what a shell reports for a process the signal
killed.

Only the first signal interrupts. Later ones arrive while the cleanup runs, and are ignored so that
they cannot cut it short and leave temporary files behind (SIGKILL still stops everything). A
signal that the process was started with ignored (`nohup`, a background job without job control)
stays ignored. Processes forked from this one (data loader workers, synth's pool) die of the
signal as they would have without the handler: the main process does the cleaning up.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A stop request (Ctrl-C, SIGTERM, SIGHUP): a KeyboardInterrupt with the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


_received: list[int] = []  # the signal of the interruption under way, if any


def stopping() -> int | None:
    """The signal that is stopping this process, None while nothing is: a clip that fails now
    failed because its ffmpeg was stopped too, not because of the clip."""
    return _received[0] if _received else None


def signal_number(exc: BaseException) -> int:
    """The signal behind a KeyboardInterrupt (SIGINT for a plain one)."""
    return getattr(exc, "signum", signal.SIGINT)


def exit_code(exc: BaseException) -> int:
    return 128 + signal_number(exc)


def describe(exc: BaseException) -> str:
    """'interrupted' for Ctrl-C, 'interrupted by SIGTERM' for the others: the start of the CLI's line."""
    number = signal_number(exc)
    return "interrupted" if number == signal.SIGINT else f"interrupted by {signal.Signals(number).name}"


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise `Interrupted` in the main thread inside the block; the
    previous handlers come back at its end. Outside the main thread it changes nothing."""
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:  # a forked worker: die of it, as without us
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if _received:  # already stopping: let the cleanup finish
            return
        _received.append(signum)
        raise Interrupted(signum)

    _received.clear()
    previous = {}
    try:
        for number in SIGNALS:
            if signal.getsignal(number) is not signal.SIG_IGN:
                previous[number] = signal.signal(number, handler)
    except ValueError:  # not the main thread: signals are not ours to handle
        pass
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old if old is not None else signal.SIG_DFL)
        _received.clear()
