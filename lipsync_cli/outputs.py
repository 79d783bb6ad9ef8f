"""Writing outputs without ever damaging anything: atomic files and folders, and inputs kept safe.

- Every output is written under a temporary name beside its final path (`.NAME.partial-PID.EXT`:
  hidden, and with the suffix that tells ffmpeg and torch the format) and renamed over the final
  path only once complete, so a reader never sees half a file. Any failure, Ctrl-C, SIGTERM or
  SIGHUP included (interrupts.py), removes the temporary file; only SIGKILL can leave one, which
  `leftover_partials` finds for the process that owns the output.
- Inputs are never modified: an output that is one of the command's inputs, under any name (the
  same path, a symlink either way, a hard link), is refused whatever --force says
  (`refuse_inputs`), and an output folder may not be, hold or lie inside an input folder
  (`refuse_overlap`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

from .errors import InputError, LipsyncError

PARTIAL_MARK = ".partial-"


def partial_path(final: str | os.PathLike, tag: object = None) -> Path:
    """The temporary name of `final` while this process writes it (`tag`: the process id)."""
    final = Path(final)
    return final.parent / f".{final.stem}{PARTIAL_MARK}{os.getpid() if tag is None else tag}{final.suffix}"


def leftover_partials(path: str | os.PathLike) -> list[Path]:
    """Temporary files (or folders) of `path` from other processes: what a killed run left behind.
    Only the process that owns an output (a batch shard owns its items) should remove them."""
    final = Path(path)
    pattern = f".{glob.escape(final.stem)}{PARTIAL_MARK}*{glob.escape(final.suffix)}"
    mine = partial_path(final).name
    return sorted(p for p in final.parent.glob(pattern) if p.name != mine)


# ----------------------------------------------------------------------------------------------
# Inputs are never outputs


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks: a link and its target are one file
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


class InputFiles:
    """The files a command reads, recognised under any name: by device and inode for files that
    exist (a symlink, in either direction, or a hard link is the same file), by resolved path for
    the rest. Built once, so a batch checks thousands of outputs against thousands of inputs."""

    def __init__(self, paths: Iterable[str | os.PathLike | None]):
        self._by_identity: dict[tuple[int, int], str] = {}
        self._by_path: dict[str, str] = {}
        for p in paths:
            p = os.fspath(p) if p is not None else ""
            if not p:
                continue
            identity = _identity(p)
            if identity is not None:
                self._by_identity.setdefault(identity, p)
            self._by_path.setdefault(os.path.realpath(p), p)

    def find(self, path: str | os.PathLike) -> str | None:
        """The input that `path` names, if any."""
        path = os.fspath(path)
        identity = _identity(path)
        if identity is not None and identity in self._by_identity:
            return self._by_identity[identity]
        return self._by_path.get(os.path.realpath(path))


def refuse_inputs(output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] | InputFiles) -> None:
    """InputError (one line, exit 2) when `output` is one of `inputs` under any name, whatever
    --force says: writing it would destroy what the command reads."""
    known = inputs if isinstance(inputs, InputFiles) else InputFiles(inputs)
    found = known.find(output)
    if found is not None:
        same = "" if os.fspath(output) == found else f" {found}"
        raise InputError(f"{output}: is the input{same} (the same file); an input is never overwritten, "
                         "even with --force: write the output elsewhere")


def refuse_overlap(output: str | os.PathLike, source: str | os.PathLike, output_label: str = "the output folder",
                   source_label: str = "the input folder") -> None:
    """InputError when the folder `output` is the folder `source`, lies inside it or holds it."""
    out, src = Path(os.path.realpath(output)), Path(os.path.realpath(source))
    if out == src:
        relation = "is"
    elif src in out.parents:
        relation = "is inside"
    elif out in src.parents:
        relation = "holds"
    else:
        return
    raise InputError(f"{output}: {output_label} {relation} {source_label} {source}; inputs are never written "
                     f"into: choose {output_label} outside it")


# ----------------------------------------------------------------------------------------------
# Atomic outputs


class AtomicFile:
    """An output written under a temporary name beside its final path and renamed over it only
    by `commit()`; `discard()` removes the temporary file. Creating it checks that the output may
    be written (never one of `inputs`; an existing one only with `force`), so a job fails before
    any work is done."""

    def __init__(self, path: str | os.PathLike, force: bool = False, inputs: Iterable = ()):
        refuse_inputs(path, inputs)
        final = Path(path)
        if final.is_dir():
            raise InputError(f"{final}: is a folder")
        if final.exists() and not force:
            raise InputError(f"{final}: already exists (use --force to overwrite)")
        folder = final.parent
        if not folder.exists():
            raise InputError(f"{folder}: output folder does not exist")
        self.final = final
        self.tmp = partial_path(final)
        try:  # creating the file is the only reliable test (root ignores permission bits)
            self.tmp.open("wb").close()
        except OSError as exc:
            raise InputError(f"{folder}: cannot write into the output folder ({exc.strerror})") from None

    def commit(self):
        os.replace(self.tmp, self.final)

    def discard(self):
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, force: bool = False, inputs: Iterable = ()) -> Iterator[str]:
    """Yields a temporary path beside `path`; renames it over `path` only if the block succeeds.
    Any failure (including Ctrl-C) removes the temporary file, so no half-written output remains."""
    out = AtomicFile(path, force, inputs)
    try:
        yield str(out.tmp)
        out.commit()
    finally:
        out.discard()


def _disk_error(path, exc: BaseException) -> LipsyncError:
    reason = str(exc).splitlines()[0] if str(exc) else repr(exc)
    return LipsyncError(f"could not write {path} (is the disk full?): {reason}")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text`, atomically (a small file a later run reads: config, file list)."""
    try:
        with atomic_output(path, force=True) as tmp:
            Path(tmp).write_text(text)
    except OSError as exc:
        raise _disk_error(path, exc) from exc


def atomic_torch_save(payload, path: str | os.PathLike) -> None:
    """torch.save that never leaves a half-written `path`: write beside it, then rename."""
    import torch

    try:
        with atomic_output(path, force=True) as tmp:
            torch.save(payload, tmp)
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as a RuntimeError from its zip writer
        raise _disk_error(path, exc) from exc


def link_or_copy(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Make `target` hold the same bytes as `source`, atomically: a hard link where the
    filesystem has them (no second copy of a large checkpoint on disk), else a copy."""
    try:
        with atomic_output(target, force=True) as tmp:
            os.unlink(tmp)  # the name is reserved; the link or the copy takes it
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
    except OSError as exc:
        raise _disk_error(target, exc) from exc


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yields an empty temporary folder beside `path`, renamed to `path` only if the block
    succeeds (over an existing folder only with `replace`); any failure removes it, and an
    interruption between the two renames of a replacement puts the old folder back."""
    final = Path(path)
    tmp, aside = partial_path(final), partial_path(final, f"{os.getpid()}-old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if replace and final.is_dir() and any(final.iterdir()):
            os.replace(final, aside)  # a folder is renamed over an empty folder only
        os.replace(tmp, final)
    finally:
        if aside.exists():
            if final.exists():
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.replace(aside, final)
        shutil.rmtree(tmp, ignore_errors=True)
