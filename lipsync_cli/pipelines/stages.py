"""Pipeline stages: running one in a thread, joined to the next by a bounded queue (timing.StageClock
counts the time each takes).

Bounded queues are what keep memory flat: a fast producer waits for a slow consumer instead of
piling frames up. Exceptions raised in a stage reach the consumer; closing the consumer (or an
error downstream) stops the producer.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def threaded(produce: Callable[[], Iterable[T]], maxsize: int = 4, name: str = "stage") -> Iterator[T]:
    """Iterate `produce()` in a background thread, handing items over through a queue of `maxsize`."""
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run():
        it = None
        try:
            it = iter(produce())
            for item in it:
                if not put(item):
                    break
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(_Failure(exc))
            return
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        put(_DONE)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                break
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)
