"""`lipsync train wav2lip`: the generator (Wav2Lip or AttnWav2Lip) against a frozen lip-sync
expert and, unless --no-gan, the visual-quality discriminator.

Generator loss: (1 - a - b) * L1 + a * L_sync + b * L_gen, where L_sync is the expert's binary
cross-entropy on the generated lower halves against the span's mel (label "in sync") and L_gen the
discriminator's (label "real"). b = 0.07 with the discriminator, 0 without. a starts at 0 and is
switched to 0.03 once the evaluation sync loss falls below 0.75, so that the generator first
learns to reconstruct faces. Windows of T = 5 frames; the reference window is a random other
window of the same clip; Adam, learning rate 1e-4. The discriminator learns real (1) against
generated (0) lower halves, with its own Adam.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
from torch.nn import functional as F

from ..checkpoints import load_weights, read_state_dict
from ..errors import InputError
from ..models.discriminator import VisualQualityDiscriminator
from ..models import syncnet
from ..models.syncnet import SyncNetColor, lower_half_stack, sync_loss
from ..models.wav2lip import build_generator
from . import loop
from .config import Wav2LipConfig
from ..datasets import GeneratorWindows, PreprocessedData

def loss_weights(cfg: Wav2LipConfig, sync_on: bool) -> tuple[float, float, float]:
    """(L1, sync, GAN) weights for the generator at this point of training."""
    a = cfg.sync_weight if sync_on else 0.0
    b = cfg.gan_weight if cfg.gan else 0.0
    return 1.0 - a - b, a, b


def load_expert(path: str, device, dtype: torch.dtype | None = None) -> SyncNetColor:
    if not path:
        raise InputError("--expert CKPT is required: a lip-sync expert from `lipsync train syncnet` or lipsync_expert.pth")
    expert = SyncNetColor()
    load_weights(expert, path, syncnet.SIGNATURE.kind, "not a lip-sync expert (SyncNet colour) checkpoint")
    expert.eval().requires_grad_(False)
    return loop.place(expert, device, dtype)


def expert_sync_loss(expert: SyncNetColor, generated: torch.Tensor, sync_mel: torch.Tensor) -> torch.Tensor:
    a, v = expert(sync_mel, lower_half_stack(generated))
    return sync_loss(a.float(), v.float(), torch.ones(len(a), device=a.device))


@torch.no_grad()
def evaluate(gen, expert, disc, ds, cfg: Wav2LipConfig, device, dtype) -> dict:
    gen.eval()
    sums = {"l1": 0.0, "sync": 0.0, "gen_realism": 0.0}
    n = 0
    for faces_in, mels, sync_mel, target in loop.batches(ds, range(cfg.eval_batches), cfg.batch_size, 0, device):
        with loop.autocast(device, dtype):
            g = gen(mels, faces_in).float()
            s = expert_sync_loss(expert, g, sync_mel)
            r = disc(g).float().mean() if disc is not None else torch.tensor(0.0)
        k = len(target)
        sums["l1"] += float(F.l1_loss(g, target)) * k
        sums["sync"] += float(s) * k
        sums["gen_realism"] += float(r) * k
        n += k
    gen.train()
    return {f"val_{key}": v / n for key, v in sums.items()}


def train_wav2lip(cfg: Wav2LipConfig, progress: Callable[[int, int, dict], None] | None = None) -> dict:
    out, ddp, device, dtype = loop.start_run(cfg, "wav2lip")
    expert = load_expert(cfg.expert, device, dtype)
    train_ds = GeneratorWindows(PreprocessedData(cfg.data, "train"), seed=cfg.seed, t=cfg.t)
    val_ds = GeneratorWindows(PreprocessedData(cfg.data, "val"), seed=10_000 + cfg.seed, t=cfg.t)

    gen = loop.place(build_generator(cfg.model), device, dtype)
    gen_opt = torch.optim.Adam(gen.parameters(), lr=cfg.lr)
    disc = loop.place(VisualQualityDiscriminator(), device, dtype) if cfg.gan else None
    disc_opt = torch.optim.Adam(disc.parameters(), lr=cfg.lr) if disc is not None else None
    start, sync_on = 0, math.isinf(cfg.sync_switch)  # --sync-switch inf: the sync loss from the first step
    if cfg.resume and (out / "last.pth").exists():
        start = loop.resume(out, gen, gen_opt)
        sync_on = bool(read_state_dict(out / "last.pth")[1].get("sync_on", False))
        if disc is not None and (out / "disc_last.pth").exists():
            loop.resume_named(out / "disc_last.pth", disc, disc_opt)
    elif cfg.init:
        if not Path(cfg.init).exists():
            raise InputError(f"--init {cfg.init}: no such checkpoint")
        load_weights(gen, cfg.init)  # weights only: a fresh optimiser, step 0, a = 0 until switched
    gen_step = loop.parallel(gen, ddp, device)
    # The generator's adversarial term goes through the bare discriminator: its gradients there
    # are discarded, so they need no averaging; the discriminator's own step uses the wrapped one.
    disc_step = loop.parallel(disc, ddp, device) if disc is not None else None
    fp16 = device.type == "cuda" and dtype == torch.float16
    gen_scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    disc_scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    metrics = loop.Metrics(out) if ddp.main else None
    last_eval: dict = {}
    step = start

    def save(step: int):
        loop.save_checkpoint(out, f"{cfg.model}_step{step:06d}", gen, gen_opt, step, extra={"sync_on": sync_on})
        if disc is not None:
            loop.save_checkpoint(out, f"disc_step{step:06d}", disc, disc_opt, step, last_name="disc_last")

    gen.train()
    with loop.finishing(ddp, metrics, save, start, lambda: step):
        steps = range(start, cfg.steps)
        for faces_in, mels, sync_mel, target in loop.batches(train_ds, steps, cfg.batch_size, cfg.workers, device, ddp):
            w_l1, w_sync, w_gan = loss_weights(cfg, sync_on)
            with loop.autocast(device, dtype):
                g = gen_step(mels, faces_in).float()
                l1 = F.l1_loss(g, target)
                l_sync = expert_sync_loss(expert, g, sync_mel) if w_sync > 0 else torch.zeros((), device=device)
                l_gen = F.binary_cross_entropy(disc(g).float(), torch.ones(g.size(0) * g.size(2), 1, device=device)) \
                    if disc is not None else torch.zeros((), device=device)
            loss = w_l1 * l1 + w_sync * l_sync + w_gan * l_gen
            gen_opt.zero_grad(set_to_none=True)
            gen_scaler.scale(loss).backward()
            gen_scaler.step(gen_opt)
            gen_scaler.update()
            logged = {"l1": l1.item(), "sync": l_sync.item(), "loss": loss.item()}
            if disc is not None:
                with loop.autocast(device, dtype):
                    # real and generated lower halves in one forward (one DDP reduction per step)
                    both = torch.cat([target, g.detach()]).transpose(1, 2).flatten(0, 1)  # (2*B*T, 3, H, W)
                    judged = disc_step(both).float()
                    real, fake = judged.chunk(2)
                    d_loss = F.binary_cross_entropy(real, torch.ones_like(real)) + \
                        F.binary_cross_entropy(fake, torch.zeros_like(fake))
                disc_opt.zero_grad(set_to_none=True)
                disc_scaler.scale(d_loss).backward()
                disc_scaler.step(disc_opt)
                disc_scaler.update()
                logged.update(gen_adv=l_gen.item(), disc=d_loss.item())
            step += 1
            evaluate_now = step % cfg.eval_every == 0 or step == cfg.steps
            if ddp.main:
                metrics.scalars(step, **{f"train_{k}": v for k, v in logged.items()}, sync_weight=w_sync)
                if evaluate_now:
                    last_eval = evaluate(gen, expert, disc, val_ds, cfg, device, dtype)
                    if not sync_on and last_eval["val_sync"] < cfg.sync_switch:
                        sync_on = True  # a: 0 -> sync_weight from the next step on
                    metrics.scalars(step, **last_eval)
                    grid = torch.cat([target[:4, :, 0], g[:4, :, 0].detach()], dim=0)
                    metrics.images(step, "target_top_generated_bottom", _grid(grid))
            if evaluate_now:
                sync_on = loop.broadcast_flag(sync_on, ddp, device)
            if ddp.main:
                if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    save(step)
                if progress:
                    progress(step, cfg.steps, {"loss": logged["loss"], **last_eval})
        loop.check_ranks_agree(gen, ddp, device)
    return {"step": step, "sync_on": float(sync_on), **last_eval}


def _grid(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) BGR in [0, 1] -> one RGB image, the first half of N on top of the second."""
    top, bottom = images.chunk(2)
    return torch.cat([torch.cat(list(top), dim=2), torch.cat(list(bottom), dim=2)], dim=1).flip(0).clamp(0, 1)
