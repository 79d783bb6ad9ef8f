"""Checkpoint loading and saving in the published Wav2Lip layouts.

Published files are `{"state_dict": {"module.<key>": tensor}, "optimizer": ..., "global_step": ...,
"global_epoch": ...}` (saved from DataParallel). We also accept a bare state_dict and keys without
`module.`. Everything loads with `weights_only=True`: a checkpoint can carry tensors and plain
containers, never code. The architecture is read from the keys.
"""

from __future__ import annotations

import os
import pickle

import torch

from .errors import CheckpointError
from .outputs import atomic_torch_save

# What each known network's state_dict looks like, by a key it alone has.
KIND_SIGNATURES = {
    "wav2lip_generator": ("face_decoder_blocks.0.0.conv_block.0.weight", "output_block.1.weight"),
    "wav2lip_visual_quality_discriminator": ("binary_pred.0.weight",),
    "wav2lip_syncnet_expert_color": ("face_encoder.0.conv_block.0.weight", "audio_encoder.0.conv_block.0.weight"),
    "syncnet_v2_evaluation": ("netcnnaud.0.weight",),
}
KIND_DESCRIPTIONS = {
    "wav2lip_generator": "a Wav2Lip generator",
    "wav2lip_visual_quality_discriminator": "a Wav2Lip visual-quality discriminator",
    "wav2lip_syncnet_expert_color": "a Wav2Lip lip-sync expert (SyncNet)",
    "syncnet_v2_evaluation": "the evaluation SyncNet (syncnet_v2)",
}


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
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (unreadable or truncated)") from None
    extras: dict = {}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        extras = {k: v for k, v in obj.items() if k != "state_dict"}
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a model checkpoint (no state_dict of tensors inside)")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}
    return state, extras


def identify(state: dict[str, torch.Tensor]) -> str | None:
    for kind, keys in KIND_SIGNATURES.items():
        if all(k in state for k in keys):
            if kind == "wav2lip_syncnet_expert_color" and "face_decoder_blocks.0.0.conv_block.0.weight" in state:
                continue
            return kind
    return None


def generator_variant(state: dict[str, torch.Tensor]) -> str:
    """wav2lip / attnwav2lip / attnwav2lip-spatial / attnwav2lip-channel, from the attention keys."""
    has_cam = any(k.startswith("face_encoder_attention.") and ".cam." in k for k in state)
    has_sam = any(k.startswith("face_encoder_attention.") and ".sam." in k for k in state)
    if has_cam and has_sam:
        return "attnwav2lip"
    if has_sam:
        return "attnwav2lip-spatial"
    if has_cam:
        return "attnwav2lip-channel"
    return "wav2lip"


def load_generator(path: str | os.PathLike, model: str | None = None):
    """Build the generator the checkpoint holds (or `model`, when given) and load it strictly."""
    from .models.wav2lip import GENERATOR_NAMES, build_generator

    state, _ = read_state_dict(path)
    kind = identify(state)
    if kind != "wav2lip_generator":
        what = KIND_DESCRIPTIONS.get(kind, "not a Wav2Lip-family generator")
        raise CheckpointError(f"{path}: this checkpoint is {what}, not a generator for `dub`")
    name = model or generator_variant(state)
    if name not in GENERATOR_NAMES:
        raise CheckpointError(f"unknown model {name!r}; choose from {', '.join(GENERATOR_NAMES)}")
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        net = build_generator(name)
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise CheckpointError(f"{path}: does not match the {name} architecture ({detail})")
    net.load_state_dict(state, strict=True, assign=True)
    return net.eval(), name


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


def published_keys() -> dict[str, dict[str, list[int]]]:
    """The exact state_dict keys and shapes of the published checkpoints, by kind."""
    import json
    from importlib import resources

    return json.loads(resources.files("lipsync_cli").joinpath("published_keys.json").read_text())


def structure_problems(path: str | os.PathLike, kind: str | None = None) -> list[str]:
    """Compare a checkpoint's keys and shapes with the architecture it should hold."""
    try:
        state, _ = read_state_dict(path)
    except CheckpointError as exc:
        return [str(exc)]
    found = identify(state)
    if found is None:
        return ["not a checkpoint of any known network"]
    if kind is not None and found != kind:
        return [f"holds {KIND_DESCRIPTIONS[found]}, expected {KIND_DESCRIPTIONS.get(kind, kind)}"]
    if found == "wav2lip_generator" and generator_variant(state) != "wav2lip":
        from .models.wav2lip import build_generator

        expected = {k: list(v.shape) for k, v in build_generator(generator_variant(state)).state_dict().items()}
    else:
        expected = published_keys()[found]
    problems = []
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and list(state[k].shape) != expected[k]]
    for label, keys in (("missing keys", missing), ("unexpected keys", extra), ("wrong shapes", wrong)):
        if keys:
            problems.append(f"{len(keys)} {label} (e.g. {keys[0]})")
    return problems
