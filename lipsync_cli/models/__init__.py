"""The networks. Each module declares, beside its model, the `Signature` by which
checkpoints.py recognises it in a checkpoint and loading.py builds it from one (this module
imports no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

# The generator architectures (models/wav2lip.py builds them), here for the torch-free training config.
GENERATOR_NAMES = ("wav2lip", "attnwav2lip", "attnwav2lip-spatial", "attnwav2lip-channel")
# The face sizes the Wav2Lip family (generator, expert, discriminator) is built at: 96 is published
FACE_SIZES = (96, 192, 288)


@dataclass(frozen=True)
class Signature:
    """How a network's checkpoints are recognised and loaded.

    kind: the name used in the weights registry and in messages' place of a class name;
    keys: state_dict keys only this network has (all must be present);
    description: what to call it in a message ("a Wav2Lip lip-sync expert (SyncNet)");
    build: the untrained network that fits a checkpoint, from its state_dict and its other
    top-level entries (called under torch.device("meta"): no initialisation is computed)."""

    kind: str
    keys: tuple[str, ...]
    description: str
    build: Callable[[dict, dict], Any]

    def matches(self, state: dict) -> bool:
        """Whether a state_dict has this network's keys (all of them)."""
        return all(k in state for k in self.keys)
