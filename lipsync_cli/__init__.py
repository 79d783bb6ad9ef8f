"""lipsync: offline lip-sync dubbing (Wav2Lip / AttnWav2Lip) from the command line or from Python.

    from lipsync_cli import load_model, dub

    model = load_model("wav2lip_gan")          # a path or a registry name; loaded once
    result = dub(model, "talk.mp4", "speech.wav", "dubbed.mp4", pads=(0, 20, 0, 0))

`dub`'s options are the fields of `DubOptions` (those of `lipsync dub`); `Dubber(model,
DubOptions(...))` streams many clips through one pipeline. Importing this package is cheap: torch
and the rest load when a model does.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .models.inference import GeneratorRunner
    from .pipelines.dub import ClipRequest, Dubber, DubOptions, DubResult

__all__ = ["ClipRequest", "DubOptions", "DubResult", "Dubber", "dub", "load_model", "package_version"]

# What load_model decides; a loaded model brings them with it.
_LOADING_OPTIONS = ("checkpoint", "model", "device", "precision", "batch_size")


def load_model(checkpoint: str | os.PathLike = "wav2lip_gan", device: str = "auto", precision: str = "auto",
               model: str | None = None, batch_size: int | None = None) -> "GeneratorRunner":
    """Load a generator once: `checkpoint` is a file or a name from `lipsync weights list`;
    `device` auto, cpu, cuda or cuda:N; `precision` auto (fp16 on CUDA, bf16 on a CPU with AMX,
    else fp32), fp32, fp16 or bf16; `model` overrides the architecture read from the checkpoint;
    `batch_size`: frames per generator batch (default 16 on a CPU, 128 on CUDA)."""
    from .models.inference import load_model as load

    return load(str(checkpoint), device, precision, model, batch_size)


def dub(model: "GeneratorRunner", video: str | os.PathLike, audio: str | os.PathLike, output: str | os.PathLike, *,
        force: bool = False, progress: Callable[[int, int], None] | None = None, **options) -> "DubResult":
    """Dub `video` (or a still image) with the speech in `audio` into `output` with a model from
    `load_model`; `options` are DubOptions fields (pads, face_index, paste, crf...). An existing
    output is refused unless `force`; `progress(done, total)` is called as frames are written.
    Returns the DubResult (frames, fps, duration, frames without a face, timings). paste="hard"
    reproduces the reference computation exactly with a model loaded in fp32."""
    from .pipelines.dub import DubOptions, dub as run

    loading = [k for k in _LOADING_OPTIONS if k in options]
    if loading:
        raise TypeError(f"{', '.join(loading)}: load_model's options, fixed when the model was loaded")
    opts = DubOptions(checkpoint=model.checkpoint, **options)
    return run(model, str(video), str(audio), str(output), opts, force=force, progress=progress)


DISTRIBUTION = "lipsync-cli"  # the name pip knows this package by (pyproject.toml)


def package_version() -> str:
    """This package's version, from its installed metadata (pyproject.toml's `version`); also
    `lipsync_cli.__version__`. "unknown" for a copy that was never installed."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def __getattr__(name: str):
    if name == "__version__":  # read when asked for: the metadata lookup costs a few milliseconds
        return package_version()
    if name in ("ClipRequest", "DubOptions", "DubResult", "Dubber"):  # imported when first asked for
        from .pipelines import dub as engine

        return getattr(engine, name)
    raise AttributeError(f"module 'lipsync_cli' has no attribute {name!r}")
