"""`lipsync train syncnet`: the colour lip-sync expert.

Five consecutive lower halves against the mel window of the same span (in sync) or of another span
of the same clip (off sync), half and half; cosine similarity of the normalised embeddings as
P_sync; binary cross-entropy; Adam. Evaluation on the validation split: loss and accuracy
(P_sync > 0.5 is "in sync"). Checkpoints are in the published lipsync_expert.pth layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..datasets import PreprocessedData, SyncPairs
from ..device import autocast
from ..models.syncnet import SyncNetColor, sync_loss, sync_probability
from . import loop
from .config import TrainConfig


@dataclass
class SyncEval:
    loss: float
    accuracy: float
    samples: int


@torch.no_grad()
def evaluate(model: SyncNetColor, ds: SyncPairs, batches: int, batch_size: int, device, dtype, workers: int = 0) -> SyncEval:
    model.eval()
    total, correct, n = 0.0, 0, 0
    for faces, mel, label in loop.batches(ds, range(batches), batch_size, workers, device):
        with autocast(device, dtype):
            a, v = model(mel, faces)
        a, v = a.float(), v.float()
        total += float(sync_loss(a, v, label)) * len(label)
        correct += int(((sync_probability(a, v) > 0.5).float() == label).sum())
        n += len(label)
    model.train()
    return SyncEval(total / n, correct / n, n)


class SyncNetTrainer(loop.Trainer):
    def __init__(self, run: loop.Run, val_data: SyncPairs):
        self.cfg, self.run, self.val_data = run.cfg, run, val_data
        self.model = self.net = run.place(SyncNetColor(self.cfg.width, self.cfg.size))  # net: what the step calls (DDP-wrapped or not)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)
        self.update = loop.Update(self.optimizer, run.device, run.dtype)

    def resume(self, last) -> int:
        return int(loop.restore(last, self.model, self.optimizer).get("global_step", 0))

    def parallel(self):
        self.net = loop.parallel(self.model, self.run.ddp, self.run.device)

    def step(self, batch, step: int) -> dict:
        faces, mel, label = batch
        with self.run.autocast():
            a, v = self.net(mel, faces)
        loss = sync_loss(a.float(), v.float(), label)
        self.update(loss)
        return {"train_loss": loss.item()}

    def evaluate(self) -> dict:
        ev = evaluate(self.model, self.val_data, self.cfg.eval_batches, self.cfg.batch_size, self.run.device,
                      self.run.dtype)
        return {"val_loss": ev.loss, "val_accuracy": ev.accuracy}

    def save(self, step: int):
        loop.save_published_checkpoint(self.run.out, f"syncnet_step{step:06d}", self.model, self.optimizer, step)


def train_syncnet(cfg: TrainConfig, progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """Train (or continue training) the expert; returns the step and the last evaluation."""
    run = loop.start_run(cfg, "syncnet")
    train_data = SyncPairs(PreprocessedData(cfg.data, "train"), seed=cfg.seed, size=cfg.size)
    val_data = SyncPairs(PreprocessedData(cfg.data, "val"), seed=10_000 + cfg.seed, size=cfg.size)  # a fixed evaluation set
    return loop.train(SyncNetTrainer(run, val_data), run, train_data, progress)
