"""Checkpoint loading and saving, for every network of the package.

Published files are `{"state_dict": {"module.<key>": tensor}, "optimizer": ..., "global_step": ...,
"global_epoch": ...}` (saved from DataParallel). We also accept a bare state_dict and keys without
`module.`. Everything loads with `weights_only=True`: a checkpoint can carry tensors and plain
containers, never code. Which network a file holds is read from its keys: each network declares
its `Signature` beside its model (models/*.py); one check compares a file's keys and shapes with
the network that should take them.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from .errors import CheckpointError
from .models import GENERATOR_NAMES, Signature, davs, discriminator, gfpgan, light_asd, syncnet, syncnet_v2, wav2lip
from .outputs import atomic_torch_save

# In the order they are tried: the first whose keys are all present names the file.
NETWORKS: tuple[Signature, ...] = (wav2lip.SIGNATURE, discriminator.SIGNATURE, syncnet.SIGNATURE,
                                   syncnet_v2.SIGNATURE, davs.SIGNATURE, light_asd.SIGNATURE, gfpgan.SIGNATURE)
_BY_KIND = {sig.kind: sig for sig in NETWORKS}


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


def identify(state: dict[str, torch.Tensor]) -> str | None:
    """The kind of network a state_dict is for (a Signature's kind), or None."""
    return next((sig.kind for sig in NETWORKS if all(k in state for k in sig.keys)), None)


def describe(kind: str) -> str:
    """How messages name a kind of network ("a Wav2Lip lip-sync expert (SyncNet)")."""
    return _BY_KIND[kind].description if kind in _BY_KIND else kind


def mismatch(state: dict[str, torch.Tensor], expected: dict[str, Iterable[int]]) -> list[str]:
    """How a state_dict differs from the keys and shapes a network expects: one line per kind of
    difference ("2 missing keys (e.g. a, b)"); empty when it fits exactly."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    return [f"{len(keys)} {label} (e.g. {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''})"
            for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
            if keys]


def _shapes(net: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _expect(path, state: dict, kinds: Iterable[str], refusal: str | None = None) -> Signature:
    """The Signature of the file when it is one of `kinds`; otherwise a CheckpointError that says
    what the file is (`refusal` is the end of that sentence: "not a generator for `dub`")."""
    kinds = tuple(kinds)
    found = identify(state)
    if found in kinds:
        return _BY_KIND[found]
    wanted = [describe(k) for k in kinds]
    named = f"not {wanted[0]}" if len(wanted) == 1 else "neither " + " nor ".join(wanted)
    if found is None:
        raise CheckpointError(f"{path}: {named} (its keys are those of no network this tool knows)")
    raise CheckpointError(f"{path}: this checkpoint is {describe(found)}, {refusal or named}")


@dataclass
class Loaded:
    kind: str
    net: torch.nn.Module  # on the CPU, in evaluation mode
    extras: dict  # the file's other top-level entries (global_step, optimizer, ...)


def load_network(path: str | os.PathLike, kinds: Iterable[str], refusal: str | None = None,
                 build: Callable[[dict, dict], torch.nn.Module] | None = None) -> Loaded:
    """The network a checkpoint holds, which must be one of `kinds`, built to fit it (or by
    `build`, to ask for a given architecture) and loaded strictly."""
    state, extras = read_state_dict(path)
    sig = _expect(path, state, kinds, refusal)
    try:
        with torch.device("meta"):  # no random initialisation: every tensor comes from the file
            net = (build or sig.build)(state, extras)
    except (ValueError, TypeError) as exc:  # a config entry the network cannot be built from
        raise CheckpointError(f"{path}: {str(exc).splitlines()[0]}") from None
    problems = mismatch(state, _shapes(net))
    if problems:
        raise CheckpointError(f"{path}: does not match the {_architecture(net)} architecture ({'; '.join(problems)})")
    net.load_state_dict(state, strict=True, assign=True)
    return Loaded(sig.kind, net.eval(), extras)


def _architecture(net: torch.nn.Module) -> str:
    config = getattr(net, "config", None)
    return getattr(config, "name", None) or type(net).__name__


def load_weights(model: torch.nn.Module, path: str | os.PathLike, kind: str | None = None,
                 refusal: str | None = None) -> dict:
    """Load a checkpoint's weights into an existing `model` (strict; a resumed or initialised
    training network, which keeps its device and memory layout); returns the other top-level
    entries. With `kind`, the file must hold that kind of network."""
    state, extras = read_state_dict(path)
    if kind is not None:
        _expect(path, state, (kind,), refusal)
    problems = mismatch(state, _shapes(model))
    if problems:
        raise CheckpointError(f"{path}: does not fit this network ({_architecture(model)}: {'; '.join(problems)})")
    model.load_state_dict(state)
    return extras


def load_generator(path: str | os.PathLike, model: str | None = None):
    """Build the generator the checkpoint holds (or `model`, when given) and load it strictly.
    Returns (network in evaluation mode, its name)."""
    build = None
    if model is not None:
        if model not in GENERATOR_NAMES:
            raise CheckpointError(f"unknown model {model!r}; choose from {', '.join(GENERATOR_NAMES)}")
        build = lambda state, extras: wav2lip.build_generator(model)  # noqa: E731
    net = load_network(path, (wav2lip.SIGNATURE.kind,), "not a generator for `dub`", build).net
    return net, net.config.name


def load_davs(path: str | os.PathLike, device="cpu") -> davs.Davs:
    """The DAVS networks of a checkpoint from `lipsync train davs`, in evaluation mode."""
    return load_network(path, (davs.SIGNATURE.kind,)).net.to(device).eval()


def save_published(module: torch.nn.Module, path: str | os.PathLike, optimizer=None, global_step: int = 0,
                   global_epoch: int = 0, extra: dict | None = None) -> None:
    """Save in the published layout (DataParallel `module.` keys inside {"state_dict": ...});
    `extra` adds plain top-level entries (training state such as a loss schedule)."""
    net = module.module if hasattr(module, "module") else module
    state = {f"module.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    payload = {
        "state_dict": state,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "global_step": int(global_step),
        "global_epoch": int(global_epoch),
        **(extra or {}),
    }
    atomic_torch_save(payload, path)


def save_davs(net: davs.Davs, path: str | os.PathLike, global_step: int = 0,
              optimizers: dict[str, torch.optim.Optimizer] | None = None) -> None:
    """A DAVS checkpoint: the networks' state_dict, the DavsConfig they are built from, and the
    training state (step, each optimiser's state) that `lipsync train davs` resumes from."""
    atomic_torch_save({"kind": "davs", "davs_config": net.cfg.as_dict(), "global_step": int(global_step),
                       "state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
                       "optimizers": {k: o.state_dict() for k, o in (optimizers or {}).items()}}, path)


def published_keys() -> dict[str, dict[str, list[int]]]:
    """The exact state_dict keys and shapes of the published checkpoints, by kind."""
    import json
    from importlib import resources

    return json.loads(resources.files("lipsync_cli").joinpath("published_keys.json").read_text())


def structure_problems(path: str | os.PathLike, kind: str | None = None) -> list[str]:
    """Compare a checkpoint's keys and shapes with the architecture it should hold: the published
    key list for the published networks, else the network built to fit the file."""
    try:
        state, extras = read_state_dict(path)
    except CheckpointError as exc:
        return [str(exc)]
    found = identify(state)
    if found is None:
        return ["not a checkpoint of any known network"]
    if kind is not None and found != kind:
        return [f"holds {describe(found)}, expected {describe(kind)}"]
    expected = published_keys().get(found)
    if found == wav2lip.SIGNATURE.kind and (wav2lip.variant_of(state) != "wav2lip" or wav2lip.size_of(state) != 96):
        expected = None  # AttnWav2Lip, its ablations and the larger faces were never published
    if expected is None:
        try:
            with torch.device("meta"):
                expected = _shapes(_BY_KIND[found].build(state, extras))
        except (ValueError, TypeError) as exc:
            return [str(exc).splitlines()[0]]
    return mismatch(state, expected)
