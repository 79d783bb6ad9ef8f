"""`lipsync batch`: dub many clips unattended, resumable, sharded across processes and machines.

- Items come from folders of videos or images (paired with one audio file, or with a folder of
  audio files by file-name stem) or from a CSV / JSON / JSON-lines manifest with per-row options.
  An item's id is its output path relative to the output folder: unique and stable across runs.
- The model and the detectors load once; the clips stream through one Dubber, so decoding the
  next clip overlaps the generator and the encoder of the last one.
- The job folder keeps an append-only JSON-lines log per shard. Every state change of an item is
  one line, flushed and fsynced: started, writing (the finished file's sha256, just before it is
  renamed into place), done (with checksum, size and timings) or failed (the one-line reason).
  A rerun skips items that are done and whose output still exists, adopts an output that was
  renamed into place just before a crash (its checksum matches the `writing` line), retries
  failed items only with --retry-failed, and never overwrites an output it did not make unless
  --force. A crash loses at most the clips in flight; their temporary files are removed on rerun.
  Ctrl-C, SIGTERM or SIGHUP record the clips in flight as `interrupted` (their temporary files
  removed) before the run stops.
- Inputs are never modified: no output may be an input of the batch (under any name), and the
  output folder may not be an input folder (the next run would take the dubbed clips for inputs).
- One run per shard of a job: a lock file per shard in the job folder (flock: the lock of a process
  that is gone is free again); a second run of a running shard is refused, naming the first.
- Sharding uses what schedulers already provide: `--shard K/N`, or torchrun's RANK / WORLD_SIZE
  (with LOCAL_RANK choosing the GPU), or a SLURM array's task id and count. Items are split
  round-robin over their sorted ids, so every shard computes the same split without talking to
  the others. `lipsync batch --report DIR` merges the logs of all shards.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .. import interrupts, media, outputs
from ..errors import InputError
from ..weights import sha256_of
from .dub import ClipRequest, DubResult
from .options import MANIFEST_COLUMNS, PER_CLIP_OPTIONS, DubOptions

MANIFEST_SUFFIXES = {".csv", ".json", ".jsonl"}
JOB_FOLDER = ".lipsync-job"


# ----------------------------------------------------------------------------------------------
# Items


@dataclass
class BatchItem:
    id: str  # the output path relative to the output folder
    video: str
    audio: str | None
    output: str
    overrides: dict = field(default_factory=dict)
    problem: str | None = None  # a pairing problem: the item fails alone with this reason


def _is_media(path: Path, suffixes) -> bool:
    return path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith(".")


def _audio_by_stem(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if _is_media(p, media.AUDIO_SUFFIXES | media.VIDEO_SUFFIXES):
            found.setdefault(p.stem, []).append(p)
    return found


def _pair_audio(video: Path, audio: Path | None, by_stem: dict[str, list[Path]] | None) -> tuple[str | None, str | None]:
    """(audio path, problem) for a video from the folders/files inputs."""
    if by_stem is None:
        return str(audio), None
    candidates = [p for p in by_stem.get(video.stem, []) if p.resolve() != video.resolve()]
    if not candidates:
        return None, f"no audio named {video.stem}.* in {audio}"
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        return None, f"several audio files for {video.stem} in {audio}: {names}"
    return str(candidates[0]), None


def row_overrides(row: dict, where: str) -> dict:
    """Per-clip options of a manifest row, as DubOptions fields (PER_CLIP_OPTIONS: a column per
    option, its parser and its range). An empty cell keeps the batch's option."""
    out: dict = {}
    for option in PER_CLIP_OPTIONS:
        value = row.get(option.name)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            out[option.name] = option.read(value)
        except ValueError as exc:
            raise InputError(f"{where}: {option.name} {exc}") from None
    return out


def read_manifest(path: Path) -> list[dict]:
    """Rows of a CSV (with a header), JSON (a list, or {"items": [...]}) or JSON-lines manifest."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc})") from None
    try:
        if path.suffix.lower() == ".csv":
            rows = [dict(r) for r in csv.DictReader(text.splitlines())]
        elif path.suffix.lower() == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
            rows = data.get("items") if isinstance(data, dict) else data
    except (json.JSONDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a valid manifest ({exc})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"{path}: a JSON manifest is a list of objects (or {{\"items\": [...]}})")
    known = set(MANIFEST_COLUMNS)
    for i, row in enumerate(rows, 1):
        unknown = sorted(k for k in row if k is not None and k not in known)
        if unknown:
            raise InputError(f"{path}: row {i}: unknown column {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return rows


def collect_items(inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike, audio: str | None) -> list[BatchItem]:
    """The batch's items, sorted by id. Raises InputError for mistakes that concern the whole
    batch (a missing input, no audio given, two items with one output); a problem of one item
    (its audio is missing from the audio folder) is recorded on the item, which then fails alone."""
    out_dir = Path(out_dir)
    audio_path = Path(audio) if audio else None
    by_stem = None
    if audio_path is not None:
        if not audio_path.exists():
            raise InputError(f"{audio_path}: no such file or folder (--audio)")
        if audio_path.is_dir():
            _refuse_output_folder(out_dir, audio_path)
            by_stem = _audio_by_stem(audio_path)
    items: list[BatchItem] = []

    def add_video(video: Path):
        if audio_path is None:
            raise InputError(f"{video}: no audio to pair it with: give --audio FILE (one for all) or --audio "
                             "FOLDER (paired by file name), or use a manifest")
        paired, problem = _pair_audio(video, audio_path, by_stem)
        items.append(BatchItem(f"{video.stem}.mp4", str(video), paired, str(out_dir / f"{video.stem}.mp4"),
                               problem=problem))

    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_dir():
            _refuse_output_folder(out_dir, path)
            videos = [p for p in sorted(path.iterdir()) if _is_media(p, media.VIDEO_SUFFIXES | media.IMAGE_SUFFIXES)]
            if not videos:
                raise InputError(f"{path}: no videos or images in this folder")
            for video in videos:
                add_video(video)
        elif path.suffix.lower() in MANIFEST_SUFFIXES:
            base = path.parent
            for i, row in enumerate(read_manifest(path), 1):
                where = f"{path}: row {i}"
                if not row.get("video"):
                    raise InputError(f"{where}: no video")
                video = base / str(row["video"]).strip()
                row_audio = row.get("audio") and str(row["audio"]).strip()
                problem = None
                if row_audio:
                    paired = str(base / row_audio)
                elif audio_path is not None:
                    paired, problem = _pair_audio(video, audio_path, by_stem)
                else:
                    raise InputError(f"{where}: no audio (add an audio column or give --audio)")
                name = str(row.get("output") or "").strip() or f"{video.stem}.mp4"
                if Path(name).is_absolute() or ".." in Path(name).parts:
                    raise InputError(f"{where}: output {name!r} must be a file name inside the output folder")
                if not Path(name).suffix:
                    name += ".mp4"
                overrides = row_overrides(row, where)
                if overrides.get("speaker_audio"):  # a path in the manifest, like video and audio
                    overrides["speaker_audio"] = str(base / overrides["speaker_audio"])
                items.append(BatchItem(Path(name).as_posix(), str(video), paired, str(out_dir / name),
                                       overrides, problem))
        else:
            add_video(path)

    seen: dict[str, BatchItem] = {}
    for item in items:
        if item.id in seen:
            raise InputError(f"two inputs would write {out_dir / item.id}: {seen[item.id].video} and {item.video} "
                             "(rename one, or give outputs in a manifest)")
        seen[item.id] = item
    inputs = outputs.InputFiles(p for item in items
                                for p in (item.video, item.audio, item.overrides.get("speaker_audio")))
    for item in items:  # inputs are never modified: no output may be any input of the batch
        outputs.refuse_inputs(item.output, inputs)
    return sorted(items, key=lambda it: it.id)


def _refuse_output_folder(out_dir: Path, folder: Path) -> None:
    """The output folder may not be an input folder: its outputs are named after the inputs, and
    the next run would take the dubbed clips for inputs."""
    if os.path.realpath(out_dir) == os.path.realpath(folder) or (out_dir.exists() and os.path.samefile(out_dir, folder)):
        raise InputError(f"{out_dir}: the output folder is also an input folder (the next run would take the "
                         "dubbed clips for inputs): give another output folder with -o")


# ----------------------------------------------------------------------------------------------
# Sharding


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, items: list[BatchItem]) -> list[BatchItem]:
        """Round-robin over the items sorted by id: the same split in every process."""
        ordered = sorted(items, key=lambda it: it.id)
        return [it for i, it in enumerate(ordered) if i % self.count == self.index]


def parse_shard(text: str) -> Shard:
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text}: write it K/N, e.g. 0/4 for the first of four shards") from None
    if n < 1 or not 0 <= k < n:
        raise InputError(f"--shard {text}: K must be from 0 to N-1")
    return Shard(k, n)


def shard_from_environment(env=os.environ) -> Shard | None:
    """torchrun (RANK, WORLD_SIZE) or a SLURM array (SLURM_ARRAY_TASK_ID / _COUNT / _MIN)."""
    if "WORLD_SIZE" in env and "RANK" in env:
        return Shard(int(env["RANK"]), int(env["WORLD_SIZE"]))
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        return Shard(int(env["SLURM_ARRAY_TASK_ID"]) - first, int(env["SLURM_ARRAY_TASK_COUNT"]))
    return None


# ----------------------------------------------------------------------------------------------
# The job log


class JobLog:
    """Append-only JSON lines, one file per shard; every line is on disk before we go on."""

    def __init__(self, job_dir: Path, shard: Shard):
        job_dir.mkdir(parents=True, exist_ok=True)
        self.path = job_dir / f"log-{shard.index}-of-{shard.count}.jsonl"
        self.shard = shard
        self._lock = threading.Lock()
        self._host = socket.gethostname()
        self._end_cut_line()

    def _end_cut_line(self):
        """A line cut short by a crash is ended, so that the next record starts a line of its own."""
        try:
            with open(self.path, "rb+") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
        except (FileNotFoundError, OSError):  # no log yet, or an empty one
            pass

    def append(self, item_id: str, state: str, **fields) -> dict:
        record = {"t": round(time.time(), 3), "item": item_id, "state": state, **fields,
                  "shard": str(self.shard), "host": self._host, "pid": os.getpid()}
        line = json.dumps(record, sort_keys=False) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        return record


class ShardLock:
    """One run at a time per shard of a job: an exclusive flock on `lock-K-of-N` in the job folder,
    held while the run lasts, with the holder's pid and host inside for the message. The kernel
    drops the lock when its process ends, however it ends, so a killed run never blocks the next."""

    def __init__(self, job_dir: Path, shard: Shard):
        self.path = job_dir / f"lock-{shard.index}-of-{shard.count}"
        self.job_dir, self.shard = job_dir, shard
        self._fd: int | None = None

    def __enter__(self) -> "ShardLock":
        self.job_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                return self  # a filesystem without locks: run unlocked, as before locks existed
            try:
                who = json.loads(holder)
                running = f"pid {who['pid']} on {who['host']}"
            except (ValueError, KeyError, TypeError):
                running = "a process that is just starting"
            raise InputError(f"{self.job_dir}: shard {self.shard} of this job is already running ({running}); "
                             "wait for it to finish or stop it, then run this again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "since": round(time.time(), 3)}).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)  # releases the lock; the file stays (removing it would race a new taker)
            self._fd = None


def read_job(job_dir: Path) -> list[dict]:
    """Every record of every shard's log, in time order. A line cut short by a crash is ignored."""
    records = []
    for path in sorted(job_dir.glob("log-*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f):
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and "item" in rec and "state" in rec:
                    records.append((rec.get("t", 0), path.name, n, rec))
    return [r for *_, r in sorted(records, key=lambda x: x[:3])]


def latest_states(records: list[dict]) -> dict[str, dict]:
    """The last record of each item (records come in time order)."""
    last: dict[str, dict] = {}
    for rec in records:
        last[rec["item"]] = rec
    return last


# ----------------------------------------------------------------------------------------------
# Running


@dataclass
class Outcome:
    item: BatchItem
    state: str  # done, failed, skipped
    reason: str = ""
    seconds: float = 0.0
    frames: int = 0


@dataclass
class BatchSummary:
    outcomes: list[Outcome]
    shard: Shard
    job_dir: str
    device: str = ""  # where the generator ran ("" when nothing was left to run)
    precision: str = ""
    enhance: str = "none"  # the restoration stage, as `dub` reports it: gfpgan (bf16, mouth)

    def count(self, state: str) -> int:
        return sum(1 for o in self.outcomes if o.state == state)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state == "failed"]

    def as_dict(self) -> dict:
        return {
            "shard": str(self.shard), "job": self.job_dir, "device": self.device, "precision": self.precision,
            "enhance": self.enhance, "done": self.count("done"), "failed": self.count("failed"), "skipped": self.count("skipped"),
            "items": [{"item": o.item.id, "state": o.state, "reason": o.reason, "seconds": round(o.seconds, 3),
                       "frames": o.frames, "video": o.item.video, "audio": o.item.audio, "output": o.item.output}
                      for o in self.outcomes],
        }


def plan(items: list[BatchItem], job_dir: Path, retry_failed: bool, force: bool) -> tuple[list[BatchItem], list[Outcome], list[tuple[BatchItem, str]]]:
    """Split the shard's items into (to run, settled outcomes, adopted) from the job's log."""
    states = latest_states(read_job(job_dir)) if job_dir.exists() else {}
    todo, settled, adopted = [], [], []
    for item in items:
        last = states.get(item.id)
        exists = os.path.exists(item.output)
        if last is not None and last["state"] == "done" and exists:
            settled.append(Outcome(item, "skipped", "done earlier"))
        elif last is not None and last["state"] == "writing" and exists and sha256_of(item.output) == last.get("sha256"):
            adopted.append((item, last["sha256"]))  # renamed into place just before a crash
            settled.append(Outcome(item, "skipped", "done earlier (finished just before an interruption)"))
        elif last is not None and last["state"] == "failed" and not retry_failed:
            settled.append(Outcome(item, "failed", f"failed earlier: {last.get('reason', '?')} (--retry-failed to retry)"))
        elif exists and not force and not (last is not None and last["state"] == "done"):
            settled.append(Outcome(item, "failed", f"{item.output}: already exists and this job did not make it "
                                                   "(use --force to overwrite)"))
        else:
            todo.append(item)
    return todo, settled, adopted


def run_batch(items: list[BatchItem], opts: DubOptions, job_dir: Path, shard: Shard, *, retry_failed: bool = False,
              force: bool = False, on_outcome: Callable[[Outcome], None] | None = None,
              on_start: Callable[[int], None] | None = None) -> BatchSummary:
    """Dub this shard's items that the job log does not already settle. The model loads once."""
    with ShardLock(job_dir, shard):  # before reading the log: the plan is this run's alone
        return _run_locked(items, opts, job_dir, shard, retry_failed, force, on_outcome, on_start)


def _run_locked(items, opts, job_dir, shard, retry_failed, force, on_outcome, on_start) -> BatchSummary:
    from .dub import Dubber, start_loading

    mine = shard.select(items)
    todo, settled, adopted = plan(mine, job_dir, retry_failed, force)
    log = JobLog(job_dir, shard)
    for item, digest in adopted:
        log.append(item.id, "done", output=item.output, sha256=digest, size=os.path.getsize(item.output),
                   adopted=True)
    outcomes = {o.item.id: o for o in settled}
    for o in settled:
        if on_outcome:
            on_outcome(o)
    if on_start:
        on_start(len(todo))
    runnable = []
    for item in todo:
        if item.problem:
            log.append(item.id, "failed", reason=item.problem, video=item.video, audio=item.audio)
            outcomes[item.id] = Outcome(item, "failed", item.problem)
            if on_outcome:
                on_outcome(outcomes[item.id])
        else:
            runnable.append(item)

    device = precision = ""
    enhance = "none"
    if runnable:
        dubber = Dubber(start_loading(opts), opts)  # loaded only when there is work, while the first clip is analysed
        device, precision = str(dubber.device), dubber.precision
        enhance = dubber.restorer.describe() if dubber.restorer is not None else "none"
        by_id = {it.id: it for it in runnable}
        digests: dict[str, str] = {}
        in_flight: dict[str, BatchItem] = {}  # started, neither done nor failed yet

        def requests():
            for item in runnable:
                for leftover in outputs.leftover_partials(item.output):  # from a killed earlier run
                    leftover.unlink(missing_ok=True)
                log.append(item.id, "started", video=item.video, audio=item.audio, output=item.output)
                in_flight[item.id] = item
                # force: the plan already decided this output may be replaced (ours, or --force)
                yield ClipRequest(item.video, item.audio, item.output, force=True, overrides=item.overrides,
                                  key=item.id)

        def before_commit(request: ClipRequest, tmp: str):
            digests[request.key] = sha256_of(tmp)
            log.append(request.key, "writing", sha256=digests[request.key])

        def on_result(request: ClipRequest, result: DubResult | None, error: BaseException | None):
            item = by_id[request.key]
            if error is not None and interrupts.stopping() is not None:
                return  # failed because the run is being stopped (its ffmpeg too): interrupted, not failed
            in_flight.pop(item.id, None)
            if error is None:
                log.append(item.id, "done", output=item.output, sha256=digests[item.id],
                           size=os.path.getsize(item.output), frames=result.frames, seconds=round(result.seconds, 3),
                           no_face=result.frames_without_face)
                outcome = Outcome(item, "done", seconds=result.seconds, frames=result.frames)
            else:
                log.append(item.id, "failed", reason=str(error), video=item.video, audio=item.audio)
                outcome = Outcome(item, "failed", str(error))
            outcomes[item.id] = outcome
            if on_outcome:
                on_outcome(outcome)

        try:
            dubber.run(requests(), on_result, before_commit=before_commit)
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: the log says what was cut short
            for item in list(in_flight.values()):
                log.append(item.id, "interrupted", reason=interrupts.describe(exc))
            raise

    ordered = [outcomes[it.id] for it in mine if it.id in outcomes]
    return BatchSummary(ordered, shard, str(job_dir), device, precision, enhance)


def report(job_dir: Path) -> list[dict]:
    """The merged state of every item in a job folder (all shards): its last record."""
    if not job_dir.is_dir() or not list(job_dir.glob("log-*.jsonl")):
        raise InputError(f"{job_dir}: no batch job logs here")
    return sorted(latest_states(read_job(job_dir)).values(), key=lambda r: r["item"])


def find_job_dir(path: Path) -> Path:
    """A job folder given itself or the batch's output folder."""
    return path / JOB_FOLDER if (path / JOB_FOLDER).is_dir() else path
