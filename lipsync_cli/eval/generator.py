"""How well a trained generator dubs the held-out clips of a preprocessed split.

Every clip's face crops are driven twice, each frame with its lower half masked and the unmasked
frame itself as the reference (what `lipsync dub` feeds the generator):
- by the speech of another clip of the split (the dubbing case: the reference shows a mouth that
  does not match the speech, so only a generator that listens gets the mouth right). The dubbed
  crops are scored with LSE-D / LSE-C from a lip-sync expert (use one trained independently of the
  expert the generator was trained with) and, on the synthetic corpus (truth.json in every clip),
  with the synthetic sync measure against the mouth the driving speech implies;
- by its own speech with the reference taken half a clip away (as in training): L1 against the
  real lower half measures reconstruction.
The same scores of the undubbed crops against the other clip's speech, and of the real crops
against their own speech, bracket the dubbed ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from .. import audio as audio_mod
from ..datasets import FACE, PreprocessedData
from ..media import FPS
from .lse import expert_sync_of_crops


@torch.no_grad()
def generate(gen, faces: np.ndarray, references: np.ndarray, mel_windows: np.ndarray, device="cpu",
             dtype: torch.dtype | None = None, batch: int = 32) -> np.ndarray:
    """Faces and references (n, S, S, 3) uint8 BGR (S: the generator's face size), mel windows
    (n, 80, 16) -> (n, S, S, 3) uint8."""
    from ..device import autocast

    gen.eval()
    out = np.empty_like(faces)
    device = torch.device(device)
    for s in range(0, len(faces), batch):
        f = torch.from_numpy(faces[s:s + batch]).permute(0, 3, 1, 2).float().div(255)
        r = torch.from_numpy(references[s:s + batch]).permute(0, 3, 1, 2).float().div(255)
        f[:, :, f.shape[2] // 2:] = 0.0
        m = torch.from_numpy(mel_windows[s:s + batch]).unsqueeze(1)
        with autocast(device, dtype):
            g = gen(m.to(device), torch.cat([f, r], dim=1).to(device)).float()
        out[s:s + batch] = (g.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return out


@dataclass
class ClipScores:
    l1: float  # reconstruction, lower half, in [0, 1] units
    lse_d: float
    lse_c: float
    sync: float | None  # synthetic sync measure (correlation), None without truth.json
    undubbed_lse_d: float
    undubbed_lse_c: float
    undubbed_sync: float | None


def _truth_opening(folder) -> np.ndarray | None:
    from ..synth.corpus import truth_opening

    path = folder / "truth.json"
    return truth_opening(json.loads(path.read_text())) if path.exists() else None


def score_split(gen, judge, data: PreprocessedData, device="cpu", dtype: torch.dtype | None = None,
                max_clips: int | None = None) -> list[ClipScores]:
    """Scores for each clip k of the split (driven by the speech of clip k+1, cyclically)."""
    from ..synth.sync import mouth_opening, sync_score

    n_clips = len(data) if max_clips is None else min(len(data), max_clips)
    size = getattr(getattr(gen, "config", None), "size", FACE)  # the generator's face size
    scores = []
    for k in range(n_clips):
        other = (k + 1) % len(data)
        frames = data.frames(k, 0, data.clips[k].frames, size)
        mel_other = data.mel(other)
        n = min(len(frames), data.usable_frames(other, 1))
        faces = frames[:n]
        windows = audio_mod.mel_windows(mel_other, FPS, range(n))
        dubbed = generate(gen, faces, faces, windows, device, dtype)
        lse = expert_sync_of_crops(judge, dubbed, mel_other, str(data.clips[k].folder))
        undubbed = expert_sync_of_crops(judge, faces, mel_other, str(data.clips[k].folder))

        own_n = min(len(frames), data.usable_frames(k, 1))
        own = frames[:own_n]
        rolled = np.roll(own, own_n // 2, axis=0)  # reference frames half a clip away
        recon = generate(gen, own, rolled, audio_mod.mel_windows(data.mel(k), FPS, range(own_n)), device, dtype)
        half = slice(size // 2, None)
        l1 = float(np.abs(recon[:, half].astype(np.float32) - own[:, half].astype(np.float32)).mean() / 255)

        truth = _truth_opening(data.clips[other].folder)
        sync = undub_sync = None
        if truth is not None:
            sync = sync_score(mouth_opening(dubbed), truth[:n]).correlation
            undub_sync = sync_score(mouth_opening(faces), truth[:n]).correlation
        scores.append(ClipScores(l1, lse.lse_d, lse.lse_c, sync, undubbed.lse_d, undubbed.lse_c, undub_sync))
    return scores


def summarise(scores: list[ClipScores]) -> dict:
    """Means over clips (and the median of the sync measure, which is bounded and skewed)."""
    out = {}
    for field in ClipScores.__dataclass_fields__:
        values = [getattr(s, field) for s in scores if getattr(s, field) is not None]
        if values:
            out[field] = float(np.mean(values))
    syncs = [s.sync for s in scores if s.sync is not None]
    if syncs:
        out["sync_median"] = float(np.median(syncs))
    out["clips"] = len(scores)
    return out
