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

from ..models.syncnet import SyncNetColor, sync_loss, sync_probability
from . import loop
from ..datasets import PreprocessedData, SyncPairs


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
        with loop.autocast(device, dtype):
            a, v = model(mel, faces)
        a, v = a.float(), v.float()
        total += float(sync_loss(a, v, label)) * len(label)
        correct += int(((sync_probability(a, v) > 0.5).float() == label).sum())
        n += len(label)
    model.train()
    return SyncEval(total / n, correct / n, n)


def train_syncnet(cfg: loop.TrainConfig, progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """Train (or continue training) the expert; returns the last evaluation."""
    out, ddp, device, dtype = loop.start_run(cfg, "syncnet")
    train_ds = SyncPairs(PreprocessedData(cfg.data, "train"), seed=cfg.seed)
    val_ds = SyncPairs(PreprocessedData(cfg.data, "val"), seed=10_000 + cfg.seed)  # a fixed evaluation set

    model = loop.place(SyncNetColor(), device, dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start = loop.resume(out, model, optimizer) if cfg.resume else 0
    net = loop.parallel(model, ddp, device)
    scaler = torch.amp.GradScaler("cuda") if (device.type == "cuda" and dtype == torch.float16) else None
    metrics = loop.Metrics(out) if ddp.main else None
    last_eval: dict = {}
    step = start

    def save(step: int):
        loop.save_checkpoint(out, f"syncnet_step{step:06d}", model, optimizer, step)

    model.train()
    with loop.finishing(ddp, metrics, save, start, lambda: step):
        for faces, mel, label in loop.batches(train_ds, range(start, cfg.steps), cfg.batch_size, cfg.workers, device, ddp):
            with loop.autocast(device, dtype):
                a, v = net(mel, faces)
            loss = sync_loss(a.float(), v.float(), label)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            step += 1
            if not ddp.main:
                continue
            metrics.scalars(step, train_loss=loss.item())
            if step % cfg.eval_every == 0 or step == cfg.steps:
                ev = evaluate(model, val_ds, cfg.eval_batches, cfg.batch_size, device, dtype)
                last_eval = {"step": step, "val_loss": ev.loss, "val_accuracy": ev.accuracy}
                metrics.scalars(step, val_loss=ev.loss, val_accuracy=ev.accuracy)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save(step)
            if progress:
                progress(step, cfg.steps, {"loss": loss.item(), **last_eval})
        loop.check_ranks_agree(model, ddp, device)
    return {"step": step, **last_eval}
