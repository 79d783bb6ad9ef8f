"""The training loops' settings. Each default is declared once, in the dataclasses below; what a
setting accepts beyond its type is declared once, in the LIMITS table beside its class (the CLI
reads both for its help and its flags' ranges). A config file and the flags are user input:
`from_sources` checks every value's type and range and names unknown keys, and a mistake is one
line naming the file (or the flag) and the key. This module imports no torch.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, get_type_hints

from ..errors import InputError
from ..models import FACE_SIZES, GENERATOR_NAMES


@dataclass(frozen=True)
class Limit:
    """What a setting accepts beyond its type: bounds (inclusive, or exclusive with min_open), a
    fixed set of values, or a pattern the whole text matches. Infinity only with allow_inf."""

    min: float | None = None
    max: float | None = None
    min_open: bool = False
    choices: tuple | None = None
    pattern: str | None = None
    allow_inf: bool = False

    def problem(self, value: Any) -> str | None:
        """Why `value` (already of the right type) is refused, or None."""
        if self.choices is not None and value not in self.choices:
            return f"choose {self.text()}"
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            return f"choose {self.text()}"
        if isinstance(value, float) and (math.isnan(value) or (math.isinf(value) and not self.allow_inf)):
            return "must be a finite number"
        if self.min is not None and (value <= self.min if self.min_open else value < self.min):
            return f"must be {self.text()}"
        if self.max is not None and value > self.max:
            return f"must be {self.text()}"
        return None

    def text(self) -> str:
        """The accepted values in words: "at least 1", "above 0", "64, 128 or 256"."""
        if self.choices is not None:
            names = [str(c) for c in self.choices]
            return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        if self.pattern is not None:
            return "auto, cpu, cuda or cuda:N" if self.pattern == DEVICE_PATTERN else f"text matching {self.pattern}"
        low = None if self.min is None else f"{'above' if self.min_open else 'at least'} {self.min:g}"
        high = None if self.max is None else f"at most {self.max:g}"
        return " and ".join(x for x in (low, high) if x) or "any value"


DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"
AT_LEAST_1 = Limit(min=1)
NOT_NEGATIVE = Limit(min=0)
POSITIVE = Limit(min=0, min_open=True)


@dataclass(frozen=True)
class TrainConfig:
    """The settings every loop shares; the lip-sync expert's (`train syncnet`) are these alone."""

    data: str
    out: str
    steps: int = 10000
    batch_size: int = 64
    lr: float = 1e-4
    eval_every: int = 500
    eval_batches: int = 20
    checkpoint_every: int = 1000
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto: fp16 on CUDA, bf16 on a CPU with AMX; off: fp32
    workers: int = 2
    resume: bool = True  # continue from OUT/last.pth when it exists
    width: float = 1.0  # channel multiplier of the networks trained: 1 is the published size
    size: int = 96  # face side in pixels: 96 (the published networks), 192 or 288

    LIMITS: ClassVar[dict[str, Limit]] = {
        "size": Limit(choices=FACE_SIZES),
        "steps": AT_LEAST_1, "batch_size": AT_LEAST_1, "lr": POSITIVE, "eval_every": AT_LEAST_1,
        "eval_batches": AT_LEAST_1, "checkpoint_every": AT_LEAST_1, "seed": NOT_NEGATIVE,
        "device": Limit(pattern=DEVICE_PATTERN), "amp": Limit(choices=("auto", "on", "off")), "workers": NOT_NEGATIVE,
        "width": POSITIVE,
    }

    def __post_init__(self):
        for f in fields(self):  # a config built in Python is checked as one read from a file
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, _check(type(self), f.name, value, f"{f.name} = {_shown(value)}"))
        problem = self.inconsistency()
        if problem:
            raise InputError(problem)

    def inconsistency(self) -> str | None:
        """A problem between settings that are each fine on their own, or None."""
        return None

    @classmethod
    def limit(cls, name: str) -> Limit | None:
        """What setting `name` accepts beyond its type (the nearest class's LIMITS entry)."""
        for klass in cls.__mro__:
            table = klass.__dict__.get("LIMITS", {})
            if name in table:
                return table[name]
        return None

    @classmethod
    def from_sources(cls, config_file: str | None, **flags):
        """A JSON or TOML config file, then the command-line flags that were given (not None)."""
        values: dict[str, Any] = {}
        where: dict[str, str] = {}  # how a message names each value's origin
        if config_file:
            for name, value in _read_config_file(config_path(config_file)).items():
                values[name], where[name] = value, f"{config_file}: {name} = {_shown(value)}"
        for name, value in flags.items():
            if value is not None:
                values[name], where[name] = value, f"--{name.replace('_', '-')} {value}"
        known = [f.name for f in fields(cls)]
        for name in values:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
                origin = f"{config_file}: " if where[name].startswith(f"{config_file}: ") else ""
                raise InputError(f"{origin}unknown setting {name!r} ({hint})")
        missing = [k for k in ("data", "out") if k not in values]
        if missing:
            raise InputError(f"missing setting: {missing[0]}")
        return cls(**{name: _check(cls, name, value, where[name]) for name, value in values.items()})


@dataclass(frozen=True)
class Wav2LipConfig(TrainConfig):
    """`train wav2lip`: loss (1 - a - b) L1 + a L_sync + b L_gen; a switches from 0 to sync_weight
    once the evaluation sync loss falls below sync_switch."""

    expert: str = ""
    model: str = "wav2lip"
    gan: bool = True
    sync_weight: float = 0.03  # a, once switched on
    gan_weight: float = 0.07  # b (0 without the discriminator)
    sync_switch: float = 0.75  # inf: use the sync loss from the first step
    t: int = 5
    init: str = ""  # generator weights to start from (fine-tuning), when not resuming
    # the generator's batch-norm layers keep the statistics they came with (--init's) and use them
    # in training too: fine-tuning on one person, every batch holds one face, whose statistics
    # are not those of the many faces the generator was trained on and dubs with
    freeze_norm: bool = False

    LIMITS: ClassVar[dict[str, Limit]] = {
        "model": Limit(choices=GENERATOR_NAMES), "sync_weight": NOT_NEGATIVE, "gan_weight": NOT_NEGATIVE,
        "sync_switch": Limit(min=0, allow_inf=True),
        "t": Limit(choices=(5,)),  # the expert judges windows of 5 frames
    }

    def inconsistency(self) -> str | None:
        b = self.gan_weight if self.gan else 0.0
        if self.sync_weight + b > 1:
            return (f"sync_weight + gan_weight = {self.sync_weight + b:g}: must be at most 1 "
                    "(the L1 term's weight is 1 - a - b)")
        return None


@dataclass(frozen=True)
class DavsTrainConfig(TrainConfig):
    """`train davs`: every step trains the word-ID space; the disentangling joins at
    disentangle_from, the generation at generate_from."""

    batch_size: int = 16
    lr: float = 2e-4
    size: int = 64  # aligned face side: 64, 128 or 256 (the paper)
    clip_frames: int = 12  # T for the word classifier and the contrastive loss
    gen_frames: int = 6  # frames generated per clip (D_seq's clip)
    disentangle_from: int = 1000  # step at which stage 2 starts
    generate_from: int = 2000  # step at which stage 3 starts
    word_classifier: str = "shared"  # shared | separate (one per modality) | none (contrastive alone)
    domain_adversarial: bool = True
    disentangle: bool = True  # off: the ablation without stage 2
    # 10 wins the word-ID ablation (retrieval), but in the full training it made the disentangled
    # faces follow the speech less well and the probe no longer dropped (benchmarks/README.md)
    contrastive_weight: float = 1.0
    domain_weight: float = 1.0
    # sum_j (softmax_j - 1/N)^2 is ~0.01 once a critic is near chance: at weight 1 it was ~1% of the
    # loss, the critic kept learning and the person-ID features kept the word (benchmarks/README.md)
    uniform_weight: float = 100.0
    gan_weight: float = 0.01  # alpha

    LIMITS: ClassVar[dict[str, Limit]] = {
        "size": Limit(choices=(64, 128, 256)), "clip_frames": AT_LEAST_1,
        "gen_frames": AT_LEAST_1, "disentangle_from": NOT_NEGATIVE, "generate_from": NOT_NEGATIVE,
        "word_classifier": Limit(choices=("shared", "separate", "none")), "contrastive_weight": NOT_NEGATIVE,
        "domain_weight": NOT_NEGATIVE, "uniform_weight": NOT_NEGATIVE, "gan_weight": NOT_NEGATIVE,
    }

    def inconsistency(self) -> str | None:
        if self.gen_frames > self.clip_frames:
            return f"gen_frames ({self.gen_frames}) must be at most clip_frames ({self.clip_frames}): " \
                   "the generated frames are taken from the clip"
        if self.disentangle and self.disentangle_from > self.generate_from:
            return f"disentangle_from ({self.disentangle_from}) must be at most generate_from " \
                   f"({self.generate_from}): the stages come in order"
        return None


# ------------------------------------------------------------------------------- checking


def _check(cls: type, name: str, value: Any, where: str) -> Any:
    """`value` as setting `name` of `cls` takes it (an int where a float is declared), or an
    InputError that starts with `where`, the value as the user gave it ("cfg.json: steps = "10"",
    "--batch-size 0")."""
    expected = get_type_hints(cls)[name]
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise InputError(f"{where}: expected {_TYPE_NAMES[expected]}, got {_kind_of(value)}")
    limit = cls.limit(name)
    problem = limit.problem(value) if limit is not None else None
    if problem:
        raise InputError(f"{where}: {problem}")
    return value


def _shown(value: Any) -> str:
    """A value as it is written in a config file."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


_TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (int, float)):
        return "a fraction" if isinstance(value, float) and not value.is_integer() else "a number"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


RECIPES = Path(__file__).resolve().parent / "recipes"  # config files that ship with the package


def recipes() -> list[str]:
    """The names of the shipped config files (`--config finetune`)."""
    return sorted(p.stem for p in RECIPES.glob("*.toml"))


def config_path(spec: str) -> Path:
    """A --config argument: a file, or the name of a config file that ships with the package
    (recipes/NAME.toml: `finetune`) when no file of that name is here."""
    path = Path(spec)
    if not path.exists() and path.name == spec and not path.suffix and (RECIPES / f"{spec}.toml").exists():
        return RECIPES / f"{spec}.toml"
    return path


def _read_config_file(path: Path) -> dict:
    """The settings of a JSON or TOML file (by suffix: .toml, else JSON), as one object."""
    if not path.exists():
        raise InputError(f"{path}: no such config file (nor a shipped one: {', '.join(recipes())})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise InputError(f"{path}: cannot read the config file ({reason})") from None
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{path}: not valid TOML ({str(exc).splitlines()[0]})") from None
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(values, dict):
        raise InputError(f"{path}: a config file holds one object of settings (name: value), not {_kind_of(values)}")
    return values
