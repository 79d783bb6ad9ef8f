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
from torch import nn
from torch.nn import functional as F

from ..checkpoints import load_network, load_weights
from ..datasets import GeneratorWindows, PreprocessedData
from ..device import autocast
from ..errors import InputError
from ..models import syncnet
from ..models.discriminator import VisualQualityDiscriminator
from ..models.syncnet import SyncNetColor, lower_half_stack, sync_loss
from ..models.wav2lip import build_generator
from ..weights import resolve_checkpoint
from . import loop
from .config import Wav2LipConfig


def loss_weights(cfg: Wav2LipConfig, sync_on: bool) -> tuple[float, float, float]:
    """(L1, sync, GAN) weights for the generator at this point of training."""
    a = cfg.sync_weight if sync_on else 0.0
    b = cfg.gan_weight if cfg.gan else 0.0
    return 1.0 - a - b, a, b


def load_expert(path: str, device, dtype: torch.dtype | None = None, size: int = 96) -> SyncNetColor:
    if not path:
        raise InputError("--expert CKPT is required: a lip-sync expert from `lipsync train syncnet` or lipsync_expert.pth")
    path = resolve_checkpoint(path, flag="--expert")  # a file, or a registry name: lipsync_expert
    # built at the width and face size the file was saved at (the published expert's, or another)
    expert = load_network(path, (syncnet.SIGNATURE.kind,), "not a lip-sync expert (SyncNet colour) checkpoint").net
    if expert.size != size:
        raise InputError(f"--expert {path}: an expert for {expert.size}-pixel faces; this generator trains at "
                         f"{size}: train one with `lipsync train syncnet --size {size}`")
    expert.eval().requires_grad_(False)
    return loop.place(expert, device, dtype)


def expert_sync_loss(expert: SyncNetColor, generated: torch.Tensor, sync_mel: torch.Tensor) -> torch.Tensor:
    a, v = expert(sync_mel, lower_half_stack(generated))
    return sync_loss(a.float(), v.float(), torch.ones(len(a), device=a.device))


NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def training_mode(gen: nn.Module, freeze_norm: bool) -> None:
    """`gen` in training mode; with `freeze_norm`, its batch-norm layers normalise with their
    running statistics and leave them as they are (their scale and shift still learn)."""
    gen.train()
    if freeze_norm:
        for m in gen.modules():
            if isinstance(m, NORM_LAYERS):
                m.eval()


@torch.no_grad()
def evaluate(gen, expert, disc, ds, cfg: Wav2LipConfig, device, dtype) -> dict:
    """The validation means (L1, the expert's sync loss, the discriminator's realism), `gen` in
    evaluation mode (the training loop puts it back in training mode: Trainer.train_mode)."""
    gen.eval()
    sums = {"l1": 0.0, "sync": 0.0, "gen_realism": 0.0}
    n = 0
    for faces_in, mels, sync_mel, target in loop.batches(ds, range(cfg.eval_batches), cfg.batch_size, 0, device):
        with autocast(device, dtype):
            g = gen(mels, faces_in).float()
            s = expert_sync_loss(expert, g, sync_mel)
            r = disc(g).float().mean() if disc is not None else torch.tensor(0.0)
        k = len(target)
        sums["l1"] += float(F.l1_loss(g, target)) * k
        sums["sync"] += float(s) * k
        sums["gen_realism"] += float(r) * k
        n += k
    return {f"val_{key}": v / n for key, v in sums.items()}


class Wav2LipTrainer(loop.Trainer):
    def __init__(self, run: loop.Run, expert: SyncNetColor, val_data: GeneratorWindows):
        self.cfg, self.run, self.expert, self.val_data = run.cfg, run, expert, val_data
        cfg = self.cfg
        self.gen = self.model = run.place(build_generator(cfg.model, cfg.width, cfg.size))
        self.gen_opt = torch.optim.Adam(self.gen.parameters(), lr=cfg.lr)
        self.disc = run.place(VisualQualityDiscriminator(cfg.width, cfg.size)) if cfg.gan else None
        self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr) if self.disc is not None else None
        self.gen_update = loop.Update(self.gen_opt, run.device, run.dtype)
        self.disc_update = loop.Update(self.disc_opt, run.device, run.dtype) if self.disc is not None else None
        self.gen_step, self.disc_step = self.gen, self.disc  # what the step calls (DDP-wrapped or not)
        self.sync_on = math.isinf(cfg.sync_switch)  # --sync-switch inf: the sync loss from the first step
        self.shown: torch.Tensor | None = None  # the last step's targets and generated faces, for TensorBoard

    def resume(self, last: Path) -> int:
        extras = loop.restore(last, self.gen, self.gen_opt)
        self.sync_on = bool(extras.get("sync_on", False))
        if self.disc is not None and (last.parent / "disc_last.pth").exists():
            loop.restore(last.parent / "disc_last.pth", self.disc, self.disc_opt)
        return int(extras.get("global_step", 0))

    def fresh(self) -> int:
        if self.cfg.init:
            init = resolve_checkpoint(self.cfg.init, flag="--init")  # a file, or a registry name: wav2lip_gan
            if not Path(init).exists():
                raise InputError(f"--init {self.cfg.init}: no such checkpoint")
            load_weights(self.gen, init)  # weights only: a fresh optimiser, step 0, a = 0 until switched
        return 0

    def parallel(self):
        ddp, device = self.run.ddp, self.run.device
        self.gen_step = loop.parallel(self.gen, ddp, device)
        # The generator's adversarial term goes through the bare discriminator: its gradients there
        # are discarded, so they need no averaging; the discriminator's own step uses the wrapped one.
        self.disc_step = loop.parallel(self.disc, ddp, device) if self.disc is not None else None

    def step(self, batch, step: int) -> dict:
        faces_in, mels, sync_mel, target = batch
        device, disc = self.run.device, self.disc
        w_l1, w_sync, w_gan = loss_weights(self.cfg, self.sync_on)
        with self.run.autocast():
            g = self.gen_step(mels, faces_in).float()
            l1 = F.l1_loss(g, target)
            l_sync = expert_sync_loss(self.expert, g, sync_mel) if w_sync > 0 else torch.zeros((), device=device)
            l_gen = F.binary_cross_entropy(disc(g).float(), torch.ones(g.size(0) * g.size(2), 1, device=device)) \
                if disc is not None else torch.zeros((), device=device)
        loss = w_l1 * l1 + w_sync * l_sync + w_gan * l_gen
        self.gen_update(loss)
        logged = {"train_l1": l1.item(), "train_sync": l_sync.item(), "train_loss": loss.item()}
        if disc is not None:
            with self.run.autocast():
                # real and generated lower halves in one forward (one DDP reduction per step)
                both = torch.cat([target, g.detach()]).transpose(1, 2).flatten(0, 1)  # (2*B*T, 3, H, W)
                real, fake = self.disc_step(both).float().chunk(2)
                d_loss = F.binary_cross_entropy(real, torch.ones_like(real)) + \
                    F.binary_cross_entropy(fake, torch.zeros_like(fake))
            self.disc_update(d_loss)
            logged.update(train_gen_adv=l_gen.item(), train_disc=d_loss.item())
        self.shown = torch.cat([target[:4, :, 0], g[:4, :, 0].detach()], dim=0)
        return {**logged, "sync_weight": w_sync}

    def train_mode(self):
        training_mode(self.gen, self.cfg.freeze_norm)

    def evaluate(self) -> dict:
        result = evaluate(self.gen, self.expert, self.disc, self.val_data, self.cfg, self.run.device, self.run.dtype)
        if not self.sync_on and result["val_sync"] < self.cfg.sync_switch:
            self.sync_on = True  # a: 0 -> sync_weight from the next step on
        return result

    def evaluated(self):
        self.sync_on = loop.broadcast_flag(self.sync_on, self.run.ddp, self.run.device)

    def images(self) -> dict:
        return {"target_top_generated_bottom": _grid(self.shown)}

    def save(self, step: int):
        out = self.run.out
        loop.save_published_checkpoint(out, f"{self.cfg.model}_step{step:06d}", self.gen, self.gen_opt, step,
                                       extra={"sync_on": self.sync_on})
        if self.disc is not None:
            loop.save_published_checkpoint(out, f"disc_step{step:06d}", self.disc, self.disc_opt, step,
                                           last_name="disc_last")

    def summary(self) -> dict:
        return {"sync_on": float(self.sync_on)}


def train_wav2lip(cfg: Wav2LipConfig, progress: Callable[[int, int, dict], None] | None = None) -> dict:
    run = loop.start_run(cfg, "wav2lip")
    expert = load_expert(cfg.expert, run.device, run.dtype, cfg.size)
    train_data = GeneratorWindows(PreprocessedData(cfg.data, "train"), seed=cfg.seed, t=cfg.t, size=cfg.size)
    val_data = GeneratorWindows(PreprocessedData(cfg.data, "val"), seed=10_000 + cfg.seed, t=cfg.t, size=cfg.size)
    return loop.train(Wav2LipTrainer(run, expert, val_data), run, train_data, progress)


def _grid(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) BGR in [0, 1] -> one RGB image, the first half of N on top of the second."""
    top, bottom = images.chunk(2)
    return torch.cat([torch.cat(list(top), dim=2), torch.cat(list(bottom), dim=2)], dim=1).flip(0).clamp(0, 1)
