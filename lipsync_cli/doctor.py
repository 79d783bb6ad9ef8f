"""`lipsync doctor`: what this install has and what it lacks, in one place.

The package and the versions of what pyproject.toml requires, Python, the CPU's instructions and
the precision `dub --precision auto` takes on this machine (the function dub itself calls), the
GPUs torch sees, which ffmpeg runs and where it came from, and the registry's checkpoints: present,
verified, or the one step that gets them. Each missing or broken piece is a Problem with its fix;
`blocks_dub` marks those `dub` cannot run without (ffmpeg, torch, a required package), which make
the command exit 1. Nothing is downloaded or changed, and a piece that cannot be read is reported,
never raised: a section that fails says why in place of its content.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

from . import DISTRIBUTION, package_version


@dataclass
class Problem:
    what: str  # the piece: "ffmpeg", "torch", a checkpoint's name
    detail: str  # what is wrong with it
    fix: str  # the one command (or step) that fixes it
    blocks_dub: bool  # `dub` cannot run until it is fixed


@dataclass
class Diagnosis:
    sections: dict[str, dict | list] = field(default_factory=dict)  # JSON-ready: see diagnose()
    problems: list[Problem] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if any(p.blocks_dub for p in self.problems) else 0

    def as_dict(self) -> dict:
        return {**self.sections, "problems": [asdict(p) for p in self.problems]}


def diagnose() -> Diagnosis:
    found = Diagnosis()
    sections: dict[str, Callable[[list[Problem]], dict | list]] = {
        "package": _package, "python": _python, "dependencies": _dependencies, "cpu": _cpu, "torch": _torch,
        "precision": _precision, "ffmpeg": _ffmpeg, "weights": _weights}
    for name, read in sections.items():
        try:
            found.sections[name] = read(found.problems)
        except Exception as exc:  # a part that cannot be read is reported, and the rest goes on
            found.sections[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return found


def _package(problems: list[Problem]) -> dict:
    return {"name": DISTRIBUTION, "version": package_version(), "location": str(Path(__file__).resolve().parent)}


def _python(problems: list[Problem]) -> dict:
    try:
        needs = metadata.metadata(DISTRIBUTION).get("Requires-Python")
    except metadata.PackageNotFoundError:
        needs = None
    return {"version": platform.python_version(), "executable": sys.executable, "requires": needs,
            "platform": platform.platform()}


def _dependencies(problems: list[Problem]) -> list[dict] | dict:
    """pyproject.toml's required packages (as installed: the package's metadata) and their versions."""
    try:
        requirements = [r for r in metadata.requires(DISTRIBUTION) or [] if "extra ==" not in r]
    except metadata.PackageNotFoundError:
        return {"error": f"{DISTRIBUTION} is not installed (run from a copy): its requirements are unknown"}
    rows = []
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
        wanted = requirement[len(name):].split(";")[0].strip()
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = None
        ok = version is not None and _satisfies(version, wanted)
        rows.append({"name": name, "version": version, "requires": wanted, "ok": ok})
        if not ok:
            detail = "not installed" if version is None else f"{version} installed, {wanted} required"
            problems.append(Problem(name, detail, f"pip install '{name}{wanted}'", blocks_dub=True))
    return rows


def _satisfies(version: str, wanted: str) -> bool:
    try:
        from packaging.specifiers import SpecifierSet  # not a requirement: without it, any version passes
    except ImportError:
        return True
    return SpecifierSet(wanted).contains(version, prereleases=True) if wanted else True


def _cpu(problems: list[Problem]) -> dict:
    from .device import CPU_INSTRUCTIONS, cpu_flags, cpu_info, cpu_isa

    flags = cpu_flags()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": cpu_info("model name") or platform.processor() or "unknown",
        "cores": os.cpu_count(), "usable_cores": usable,
        # None where the flags cannot be read (not Linux)
        "instructions": {name: flag in flags for name, flag in CPU_INSTRUCTIONS.items()} if flags else None,
        "used": cpu_isa(),  # as the libraries will use them: ONEDNN_MAX_CPU_ISA and LIPSYNC_NO_AMX count
        "limits": {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "LIPSYNC_NO_AMX") if k in os.environ},
    }


def _torch(problems: list[Problem]) -> dict:
    try:
        import torch
    except Exception as exc:
        if not any(p.what == "torch" for p in problems):  # installed, but it does not import
            problems.append(Problem("torch", f"does not import: {exc}", "pip install --force-reinstall torch",
                                    blocks_dub=True))
        return {"error": f"torch does not import: {exc}"}
    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append({"index": index, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                         "capability": f"{props.major}.{props.minor}"})
    return {"version": torch.__version__, "cuda_build": torch.version.cuda, "threads": torch.get_num_threads(),
            "gpus": gpus, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def _precision(problems: list[Problem]) -> dict:
    """What `dub --precision auto` runs the generator in here: dub's own choice, on the device
    `--device auto` picks, and on the CPU when that is a GPU."""
    import torch

    from .device import cpu_isa, resolve_device
    from .pipelines.dub import generator_precision
    from .pipelines.options import DubOptions

    defaults = DubOptions(checkpoint="")  # dub's defaults: --precision auto, --device auto
    device = resolve_device(defaults.device)
    found = {"device": str(device), "precision": generator_precision(defaults, device),
             "for": "CUDA" if device.type == "cuda" else cpu_isa()}
    if device.type != "cpu":
        found["cpu_precision"] = generator_precision(defaults, torch.device("cpu"))
    return found


def _ffmpeg(problems: list[Problem]) -> dict:
    from .errors import LipsyncError
    from .media import FFMPEG_FIX, find_ffmpeg

    try:
        path, source = find_ffmpeg()
    except LipsyncError:
        problems.append(Problem("ffmpeg", "not found: not in LIPSYNC_FFMPEG, not on PATH, no imageio-ffmpeg wheel",
                                FFMPEG_FIX, blocks_dub=True))
        return {"path": None, "source": None, "version": None}
    try:
        run = subprocess.run([path, "-hide_banner", "-version"], capture_output=True, text=True, timeout=30)
        # "ffmpeg version 6.1.1-3ubuntu5 Copyright (c) ...": the first line, up to the copyright
        version = run.stdout.splitlines()[0].split(" Copyright")[0] if run.returncode == 0 and run.stdout else None
        why = f"exit status {run.returncode}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        version, why = None, str(exc)
    if version is None:
        fix = "unset LIPSYNC_FFMPEG" if source == "LIPSYNC_FFMPEG" else FFMPEG_FIX
        problems.append(Problem("ffmpeg", f"{path} (from {source}) does not run: {why}", fix, blocks_dub=True))
    return {"path": path, "source": source, "version": version}


def _weights(problems: list[Problem]) -> dict:
    """The registry's checkpoints: where each is looked for, present or not, and whether it
    verifies (size and sha256 where recorded, keys and shapes always: `lipsync weights verify`)."""
    from .weights import DEFAULT_CHECKPOINT, how_to_get, local_path, registry, shipped_path, verify_file, weights_dir

    rows = []
    for e in registry():
        path = local_path(e)
        row = {"name": e.name, "file": e.file, "path": str(path), "present": path.exists(),
               "shipped": path == shipped_path(e), "verified": None, "problems": [], "fix": None}
        if row["present"]:
            try:
                row["problems"] = verify_file(path, e)
            except Exception as exc:
                row["problems"] = [f"{type(exc).__name__}: {exc}"]
            row["verified"] = not row["problems"]
            if row["problems"]:
                row["fix"] = f"lipsync weights fetch {e.name} --force" if e.url else f"replace {path}: {how_to_get(e)}"
                problems.append(Problem(e.name, f"{path} does not verify: {'; '.join(row['problems'])}", row["fix"],
                                        blocks_dub=False))
        else:
            row["fix"] = how_to_get(e)
            if e.name == DEFAULT_CHECKPOINT:  # the others serve a flag, training or evaluation
                problems.append(Problem(e.name, f"missing: `dub` needs it unless given -c PATH ({path})", row["fix"],
                                        blocks_dub=False))
        rows.append(row)
    return {"folder": str(weights_dir()), "entries": rows}
