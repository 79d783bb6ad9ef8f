"""The registry of known checkpoints (weights/registry.json) and where their files live."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import InputError, LipsyncError
from .outputs import atomic_output


DEFAULT_CHECKPOINT = "wav2lip_gan"  # the generator `dub` uses when none is named


@dataclass(frozen=True)
class WeightEntry:
    name: str
    file: str
    architecture: str
    kind: str
    description: str
    source: str
    url: str | None
    size: int | None
    sha256: str | None
    sha256_prefix: str | None
    license: str


def registry() -> list[WeightEntry]:
    text = resources.files("lipsync_cli.weights_registry").joinpath("registry.json").read_text()
    return [WeightEntry(**entry) for entry in json.loads(text)["weights"]]


def entry(name: str) -> WeightEntry:
    for e in registry():
        if e.name == name or e.file == name:
            return e
    known = ", ".join(e.name for e in registry())
    raise InputError(f"unknown checkpoint name {name!r}; known: {known} (or give a file path)")


def weights_dir() -> Path:
    env = os.environ.get("LIPSYNC_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lipsync" / "weights"


SHIPPED_DIR = Path(__file__).resolve().parent / "data"  # weights that ship inside the package


def shipped_path(e: WeightEntry) -> Path | None:
    """The copy of a checkpoint that ships inside the package (lipsync_cli/data/*/FILE), if any."""
    return next(iter(sorted(SHIPPED_DIR.glob(f"*/{e.file}"))), None)


def local_path(e: WeightEntry) -> Path:
    """Where a registry entry's file is: the weights folder, else the package's own copy; the
    weights folder when neither has it (where `fetch` saves it)."""
    path = weights_dir() / e.file
    if not path.exists():
        return shipped_path(e) or path
    return path


CHECKPOINT_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt")


def locate(spec: str) -> tuple[str, WeightEntry | None]:
    """The one rule for a checkpoint argument, a name or a path: (file path, its registry entry,
    or None for a path given as such). An existing file is itself; otherwise a registry name or
    file name (wav2lip_gan, wav2lip_gan.pth) is that file in the weights folder; otherwise the
    argument is a path when it looks like one (a folder separator, a checkpoint suffix), and else
    an unknown name (InputError). The file may not exist: the caller says what to do about it."""
    if os.path.exists(spec):
        return spec, None
    if not any(sep and sep in spec for sep in (os.path.sep, os.path.altsep)):
        try:
            e = entry(spec)
            return str(local_path(e)), e
        except InputError:
            if not spec.lower().endswith(CHECKPOINT_SUFFIXES):
                raise  # an unknown name: the error lists the known ones
    return spec, None


def resolve_checkpoint(spec: str | None, default: str = DEFAULT_CHECKPOINT, flag: str = "--checkpoint") -> str:
    """A checkpoint argument (a path, or a registry name; see `locate`) -> a file path.

    When a named checkpoint is missing, the error says exactly what to download and where to put
    it; a missing path is left to models.loading.read_state_dict to report."""
    path, e = locate(spec or default)
    if e is None or os.path.exists(path):
        return path
    raise InputError(
        f"no checkpoint: {by_hand(e)} and save it as {path} (or pass {flag} PATH); "
        f"`lipsync weights fetch {e.name}` does this when online"
    )


def by_hand(e: WeightEntry) -> str:
    """Where to get an entry's file without `lipsync weights fetch`."""
    return f"download it from {e.url}" if e.url else f"get {e.file} from {e.source}"


def how_to_get(e: WeightEntry) -> str:
    """The one step that puts a missing entry's file where it is looked for."""
    if e.url:
        return f"lipsync weights fetch {e.name}"
    return f"{by_hand(e)} and save it as {weights_dir() / e.file}"


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(name: str, force: bool = False, progress=None) -> Path:
    """Download a registry entry into the weights folder (atomically), then verify it."""
    e = entry(name)
    if not e.url:
        raise InputError(f"{e.name}: no download address is recorded; get {e.file} from {e.source}")
    dest = local_path(e)
    if dest.exists() and not force:
        raise InputError(f"{dest}: already exists (use --force to download again)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output(dest, force=True) as tmp:
            with urllib.request.urlopen(e.url, timeout=30) as resp, open(tmp, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0)
                done = 0
                while block := resp.read(1 << 20):
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
            problems = verify_file(tmp, e)
            if problems:
                raise LipsyncError(f"{e.url}: the download does not verify: {'; '.join(problems)}")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LipsyncError(
            f"cannot download {e.url} ({reason}); download it by hand and save it as {dest}"
        ) from None
    return dest


def verify_file(path: str | os.PathLike, e: WeightEntry | None) -> list[str]:
    """Problems found with a checkpoint file (empty list: it verifies)."""
    from . import checkpoints

    problems = []
    if e is not None and e.size is not None and os.path.getsize(path) != e.size:
        problems.append(f"size {os.path.getsize(path)} != {e.size}")
    if e is not None and (e.sha256 or e.sha256_prefix):
        digest = sha256_of(path)
        if e.sha256 and digest != e.sha256:
            problems.append(f"sha256 {digest[:16]}... != {e.sha256[:16]}...")
        if e.sha256_prefix and not digest.startswith(e.sha256_prefix):
            problems.append(f"sha256 {digest[:10]} does not start with {e.sha256_prefix}")
    if e is None or e.kind != "s3fd":
        problems.extend(checkpoints.structure_problems(path, e.kind if e else None))
    return problems


def write_random_generator(path: str | os.PathLike, model: str = "wav2lip", seed: int = 0, force: bool = False,
                           size: int = 96) -> None:
    """A seeded random-initialised generator in the published layout. The whole pipeline runs on
    it at full cost, but its mouths are grey, not speech: for smoke tests and benchmarks without
    the published weights. The same seed gives the same weights."""
    import torch

    from .checkpoints import save_published
    from .models import FACE_SIZES, GENERATOR_NAMES
    from .models.wav2lip import build_generator

    if model not in GENERATOR_NAMES:
        raise InputError(f"--model {model}: choose from {', '.join(GENERATOR_NAMES)}")
    if size not in FACE_SIZES:
        raise InputError(f"--size {size}: choose {', '.join(map(str, FACE_SIZES))}")
    if os.path.exists(path) and not force:
        raise InputError(f"{path}: already exists (use --force to overwrite)")
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(seed)
        net = build_generator(model, size=size)
    save_published(net, path)
