"""Which network a checkpoint holds, and the package's loaders and savers by kind of network.

Each network declares its `Signature` beside its model (models/*.py); the first in NETWORKS whose
keys a file has names it, and the loaders here refuse a file that holds another network than the
one asked for, saying which it holds. Reading a file (weights_only=True) and building a network
to fit it are models/loading.py's, which knows no particular network. Saved files are in the
published layout (`{"state_dict": {"module.<key>": tensor}, "optimizer": ..., "global_step": ...}`).
"""

from __future__ import annotations

import os
from typing import Callable, Iterable

import torch

from .errors import CheckpointError
from .models import GENERATOR_NAMES, Signature, davs, discriminator, gfpgan, light_asd, syncnet, syncnet_v2, wav2lip
from .models.loading import Loaded, build_fitted, load_into, mismatch, read_state_dict, shapes_of
from .outputs import atomic_torch_save

# In the order they are tried: the first whose keys are all present names the file.
NETWORKS: tuple[Signature, ...] = (wav2lip.SIGNATURE, discriminator.SIGNATURE, syncnet.SIGNATURE,
                                   syncnet_v2.SIGNATURE, davs.SIGNATURE, light_asd.SIGNATURE, gfpgan.SIGNATURE)
_BY_KIND = {sig.kind: sig for sig in NETWORKS}


def identify(state: dict[str, torch.Tensor]) -> str | None:
    """The kind of network a state_dict is for (a Signature's kind), or None."""
    return next((sig.kind for sig in NETWORKS if sig.matches(state)), None)


def describe(kind: str) -> str:
    """How messages name a kind of network ("a Wav2Lip lip-sync expert (SyncNet)")."""
    return _BY_KIND[kind].description if kind in _BY_KIND else kind


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


def load_network(path: str | os.PathLike, kinds: Iterable[str], refusal: str | None = None,
                 build: Callable[[dict, dict], torch.nn.Module] | None = None) -> Loaded:
    """The network a checkpoint holds, which must be one of `kinds`, built to fit it (or by
    `build`, to ask for a given architecture) and loaded strictly."""
    state, extras = read_state_dict(path)
    return build_fitted(path, state, extras, _expect(path, state, kinds, refusal), build)


def load_weights(model: torch.nn.Module, path: str | os.PathLike, kind: str | None = None,
                 refusal: str | None = None) -> dict:
    """Load a checkpoint's weights into an existing `model` (strict; a resumed or initialised
    training network, which keeps its device and memory layout); returns the other top-level
    entries. With `kind`, the file must hold that kind of network."""
    state, extras = read_state_dict(path)
    if kind is not None:
        _expect(path, state, (kind,), refusal)
    load_into(model, path, state)
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
                expected = shapes_of(_BY_KIND[found].build(state, extras))
        except (ValueError, TypeError) as exc:
            return [str(exc).splitlines()[0]]
    return mismatch(state, expected)
