"""Reading a checkpoint and loading a network from it: the part that knows no particular network.

Published files are `{"state_dict": {"module.<key>": tensor}, "optimizer": ..., "global_step": ...,
"global_epoch": ...}` (saved from DataParallel). We also accept a bare state_dict, keys without
`module.` and BasicSR's `{"params_ema": ...}`. Everything loads with `weights_only=True`: a
checkpoint can carry tensors and plain containers, never code. Networks are built to fit a file
from their `Signature` and loaded strictly; one check compares a file's keys and shapes with the
network that should take them. Telling which of the package's networks a file holds is
checkpoints.py's (it knows them all); a model module loads its own network with `load_as`.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from ..errors import CheckpointError
from . import Signature


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Load a checkpoint file safely; returns (state_dict without `module.`, the other top-level entries)."""
    path = str(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a folder, not a checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{path}: refused: it holds Python objects, not only weights (weights_only=True); {first[:120]}"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint") from None
    except Exception:  # torch.load raises many types on foreign files (IndexError, RuntimeError, ...)
        raise CheckpointError(f"{path}: not a readable checkpoint (not a PyTorch checkpoint, or a truncated one)") from None
    extras: dict = {}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        extras = {k: v for k, v in obj.items() if k != "state_dict"}
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and any(isinstance(obj.get(k), dict) for k in ("params_ema", "params")):
        # BasicSR's checkpoints (GFPGAN): the moving average of the weights when it is there
        key = "params_ema" if isinstance(obj.get("params_ema"), dict) else "params"
        extras = {k: v for k, v in obj.items() if k != key}
        obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a model checkpoint (no state_dict of tensors inside)")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}
    return state, extras


def mismatch(state: dict[str, torch.Tensor], expected: dict[str, Iterable[int]]) -> list[str]:
    """How a state_dict differs from the keys and shapes a network expects: one line per kind of
    difference ("2 missing keys (e.g. a, b)"); empty when it fits exactly."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    return [f"{len(keys)} {label} (e.g. {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''})"
            for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
            if keys]


def shapes_of(net: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """A network's state_dict keys and shapes (what `mismatch` compares a file with)."""
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _architecture(net: torch.nn.Module) -> str:
    config = getattr(net, "config", None)
    return getattr(config, "name", None) or type(net).__name__


@dataclass
class Loaded:
    kind: str
    net: torch.nn.Module  # on the CPU, in evaluation mode
    extras: dict  # the file's other top-level entries (global_step, optimizer, ...)


def build_fitted(path: str | os.PathLike, state: dict[str, torch.Tensor], extras: dict, sig: Signature,
                 build: Callable[[dict, dict], torch.nn.Module] | None = None) -> Loaded:
    """The network of `sig`, built to fit the state_dict read from `path` (or by `build`, to ask
    for a given architecture) and loaded strictly."""
    try:
        with torch.device("meta"):  # no random initialisation: every tensor comes from the file
            net = (build or sig.build)(state, extras)
    except (ValueError, TypeError) as exc:  # a config entry the network cannot be built from
        raise CheckpointError(f"{path}: {str(exc).splitlines()[0]}") from None
    problems = mismatch(state, shapes_of(net))
    if problems:
        raise CheckpointError(f"{path}: does not match the {_architecture(net)} architecture ({'; '.join(problems)})")
    net.load_state_dict(state, strict=True, assign=True)
    return Loaded(sig.kind, net.eval(), extras)


def load_into(model: torch.nn.Module, path: str | os.PathLike, state: dict[str, torch.Tensor]) -> None:
    """Load the state_dict read from `path` into an existing `model`, strictly (a resumed or
    initialised training network, which keeps its device and memory layout)."""
    problems = mismatch(state, shapes_of(model))
    if problems:
        raise CheckpointError(f"{path}: does not fit this network ({_architecture(model)}: {'; '.join(problems)})")
    model.load_state_dict(state)


def load_as(path: str | os.PathLike, sig: Signature) -> torch.nn.Module:
    """The network of `sig` from a checkpoint that must hold it, built to fit the file and loaded
    strictly: on the CPU, in evaluation mode. (checkpoints.load_network takes a file that may hold
    one of several networks, and names the network a refused file holds.)"""
    state, extras = read_state_dict(path)
    if not sig.matches(state):
        absent = [k for k in sig.keys if k not in state]
        raise CheckpointError(f"{path}: not {sig.description} (it lacks that network's keys: {', '.join(absent)})")
    return build_fitted(path, state, extras, sig).net
