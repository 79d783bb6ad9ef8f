"""Where the time of a run goes: wall seconds per stage (decode, detect, generator, ...), reported in
every command's JSON as `stage_seconds`."""

from __future__ import annotations

import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


class StageClock:
    """Wall time spent per stage, in `seconds` (threads overlap, so the sum can exceed the total)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def record(self, stage: str, seconds: float):
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def add(self, stage: str, t0: float):
        """Count the time since t0 (a time.perf_counter()) to `stage`."""
        self.record(stage, time.perf_counter() - t0)

    def timed(self, iterable: Iterable[T], stage: str) -> Iterator[T]:
        """`iterable`, the time spent waiting for each item counted to `stage`."""
        it = iter(iterable)
        try:
            while True:
                t = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    return
                self.add(stage, t)
                yield item
        finally:
            close = getattr(it, "close", None)
            if close:
                close()
