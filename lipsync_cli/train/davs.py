"""`lipsync train davs`: DAVS's associative and adversarial training, three stages in one loop.

Every step trains the word-ID space; from `disentangle_from` the adversarial disentangling joins
it, and from `generate_from` the generation (the schedule is a function of the step, so a resumed
run is in the stage it left):

1. Word-ID space: the word classifier C_w, shared by video and audio features (L_w, cross-entropy
   on both); the contrastive loss on L2-normalised clip features (same clip: pull, another clip
   of the batch: push to distance 1); a domain classifier learns audio vs video features while
   the encoders learn to make it wrong (domain adversarial training). The person encoder learns
   identities with C_p (cross-entropy on person labels).
2. Disentangling: C_p^w learns the word from the (detached) person-ID features of the clip's
   frames, in order (a word is in the movement, hardly in one frame); then E_p^v, with C_p^w
   fixed, is pushed towards C_p^w's uniform softmax, sum_j (softmax_j - 1/N_w)^2. Symmetrically
   C_w^p learns the person from video word-ID features and E_w^v is pushed to its uniform softmax.
3. Generation: G(f_p of a random frame of the clip, f_w of each target frame), from audio and from
   video together; L1 to the real frames + alpha * the temporal GAN loss of D_seq.

Each step makes one update of the encoders, classifier C_w and decoder (one optimiser, the sum of
their losses), then one update of each critic (domain classifier, C_p^w, C_w^p, D_seq) on detached
features, each with its own optimiser: a critic's step never moves an encoder, and the encoders'
step never moves a critic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch.nn import functional as F

from ..checkpoints import load_weights, save_davs
from ..datasets import WordClips
from ..device import autocast
from ..models.davs import Davs, DavsConfig
from . import loop
from .config import DavsTrainConfig


# ------------------------------------------------------------------------------- losses


def contrastive_loss(f_v: torch.Tensor, f_a: torch.Tensor, same: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Clip features (B, D) of video and audio, same (B,) 1 for a matching pair and 0 otherwise:
    on L2-normalised features d = ||f_v - f_a||, loss = mean(l * d + (1 - l) * max(margin - d, 0))."""
    d = (F.normalize(f_v, dim=1) - F.normalize(f_a, dim=1)).norm(dim=1)
    return (same * d + (1 - same) * F.relu(margin - d)).mean()


def uniform_target_loss(logits: torch.Tensor) -> torch.Tensor:
    """sum_j (softmax_j - 1/N)^2, averaged over the batch: zero when the classifier cannot tell."""
    p = logits.float().softmax(dim=1)
    return ((p - 1.0 / p.size(1)) ** 2).sum(dim=1).mean()


def paired(f_v: torch.Tensor, f_a: torch.Tensor):
    """Each clip with its own audio (label 1) and with the next clip's audio in the batch (0)."""
    b = len(f_v)
    video = torch.cat([f_v, f_v])
    audio = torch.cat([f_a, f_a.roll(1, dims=0)])
    same = torch.cat([torch.ones(b, device=f_v.device), torch.zeros(b, device=f_v.device)])
    return video, audio, same


# ------------------------------------------------------------------------------- the trainer


class DavsTrainer(loop.Trainer):
    """The networks, their optimisers and one training step; used by the loop and by the tests
    (`val_data`: the evaluation set, for the loop)."""

    def __init__(self, cfg: DavsTrainConfig, words: int, persons: int, device: torch.device,
                 dtype: torch.dtype | None = None, ddp: loop.Distributed = loop.Distributed(),
                 val_data: WordClips | None = None):
        self.cfg, self.device, self.dtype, self.ddp, self.val_data = cfg, device, dtype, ddp, val_data
        self.model_cfg = DavsConfig(size=cfg.size, words=words, persons=persons, clip_frames=cfg.clip_frames,
                                    width=cfg.width,
                                    word_classifier="separate" if cfg.word_classifier == "separate" else "shared")
        self.net = self.model = loop.place(Davs(self.model_cfg), device, dtype)
        n = self.net
        encoder_side = [n.person_encoder, n.video_word_encoder, n.audio_word_encoder, n.decoder, n.word_classifier,
                        n.person_classifier] + ([n.audio_word_classifier] if n.audio_word_classifier else [])
        self.critics = {"domain": n.domain_classifier, "word_from_person": n.word_from_person,
                        "person_from_word": n.person_from_word, "sequence": n.sequence_discriminator}
        betas = (0.5, 0.999)
        self.optimizers = {"encoders": torch.optim.Adam([p for m in encoder_side for p in m.parameters()], lr=cfg.lr,
                                                        betas=betas)}
        for name, critic in self.critics.items():
            self.optimizers[name] = torch.optim.Adam(critic.parameters(), lr=cfg.lr, betas=betas)
        # several optimisers over parts of one network: gradients averaged by hand, not by a DDP wrapper
        self.updates = {k: loop.Update(o, device, dtype, average_over=ddp) for k, o in self.optimizers.items()}

    def stages(self, step: int) -> tuple[bool, bool]:
        """(disentangling on, generation on) at this step."""
        return (self.cfg.disentangle and step >= self.cfg.disentangle_from), step >= self.cfg.generate_from

    def step(self, batch, step: int) -> dict:
        """One update of the encoder side, then one of each critic in use. Returns the losses."""
        logs, cache = self.encoder_step(batch, step)
        logs.update(self.critic_steps(cache, step))
        return {f"train_{k}": v for k, v in logs.items()}

    def encoder_step(self, batch, step: int) -> tuple[dict, dict]:
        """Update the encoders, C_w, C_p and the decoder on the sum of their losses (the critics
        are used as they are, not updated). Returns the losses and what the critics need."""
        cfg, net = self.cfg, self.net
        frames, mfcc, identity, word, person = batch
        disentangling, generating = self.stages(step)
        logs: dict[str, float] = {}
        cache: dict = {"frames": frames, "word": word, "person": person}
        with autocast(self.device, self.dtype):
            f_v = net.video_words(frames).float()  # (B, T, 256)
            f_a = net.audio_words(mfcc).float()
            f_p = net.person_encoder(identity).float()  # (B, 256)
            loss = F.cross_entropy(net.person_classifier(f_p).float(), person)
            logs["person_ce"] = loss.item()
            if cfg.word_classifier != "none":
                l_w = F.cross_entropy(net.classify_words(f_v, audio=False).float(), word) + \
                    F.cross_entropy(net.classify_words(f_a, audio=True).float(), word)
                loss = loss + l_w
                logs["word_ce"] = l_w.item()
            l_c = contrastive_loss(*paired(f_v.flatten(1), f_a.flatten(1)))
            loss = loss + cfg.contrastive_weight * l_c
            logs["contrastive"] = l_c.item()
            if cfg.domain_adversarial:  # the encoders learn to make the domain classifier say the opposite
                dom = net.domain_classifier(torch.cat([f_a, f_v]).flatten(0, 1)).float().squeeze(1)
                fooled = torch.cat([torch.zeros(dom.numel() // 2), torch.ones(dom.numel() // 2)]).to(dom.device)
                l_d = F.binary_cross_entropy_with_logits(dom, fooled)
                loss = loss + cfg.domain_weight * l_d
                logs["domain_adv"] = l_d.item()
            if disentangling:
                f_p_seq = net.person_sequence(frames).float()  # C_p^w reads the clip's frames in order
                cache["f_p_seq"] = f_p_seq.detach()
                l_u = uniform_target_loss(net.word_from_person(f_p_seq)) + \
                    uniform_target_loss(net.person_from_word(f_v.flatten(0, 1)))
                loss = loss + cfg.uniform_weight * l_u
                logs["uniform"] = l_u.item()
            if generating:
                g0 = int(torch.randint(0, cfg.clip_frames - cfg.gen_frames + 1, (1,)))
                target = frames[:, g0:g0 + cfg.gen_frames].transpose(1, 2)  # (B, 3, G, S, S)
                gen_a = net.generate(f_p, f_a[:, g0:g0 + cfg.gen_frames]).float()
                gen_v = net.generate(f_p, f_v[:, g0:g0 + cfg.gen_frames]).float()
                l1 = F.l1_loss(gen_a, target) + F.l1_loss(gen_v, target)
                judged = net.sequence_discriminator(torch.cat([gen_a, gen_v])).float()
                l_gan = F.binary_cross_entropy_with_logits(judged, torch.ones_like(judged))
                loss = loss + l1 + cfg.gan_weight * l_gan
                logs.update(l1=l1.item(), gen_adv=l_gan.item())
                cache.update(target=target, generated=torch.cat([gen_a, gen_v]).detach())
        self.updates["encoders"](loss)
        logs["loss"] = loss.item()
        cache.update(f_v=f_v.detach(), f_a=f_a.detach(), f_p=f_p.detach())
        return logs, cache

    def critic_steps(self, cache: dict, step: int) -> dict:
        """Update each critic in use on the detached features of the encoder step."""
        cfg, net = self.cfg, self.net
        disentangling, generating = self.stages(step)
        f_v, f_a = cache["f_v"], cache["f_a"]
        logs: dict[str, float] = {}
        with autocast(self.device, self.dtype):
            if cfg.domain_adversarial:
                dom = net.domain_classifier(torch.cat([f_a, f_v]).flatten(0, 1)).float().squeeze(1)
                truth = torch.cat([torch.ones(dom.numel() // 2), torch.zeros(dom.numel() // 2)]).to(dom.device)
                logs["domain"] = self._critic_step("domain", F.binary_cross_entropy_with_logits(dom, truth))
            if disentangling:
                logs["word_from_person"] = self._critic_step(
                    "word_from_person", F.cross_entropy(net.word_from_person(cache["f_p_seq"]).float(),
                                                        cache["word"]))
                logs["person_from_word"] = self._critic_step(
                    "person_from_word", F.cross_entropy(net.person_from_word(f_v.flatten(0, 1)).float(),
                                                        cache["person"].repeat_interleave(f_v.size(1))))
            if generating and "generated" in cache:
                real = net.sequence_discriminator(cache["target"]).float()
                fake = net.sequence_discriminator(cache["generated"]).float()
                logs["sequence"] = self._critic_step(
                    "sequence", F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) +
                    F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
        return logs

    def _critic_step(self, name: str, loss: torch.Tensor) -> float:
        self.updates[name](loss)
        return loss.item()

    # ---------------------------------------------------------------- the loop's side

    def evaluate(self) -> dict:
        from ..eval.davs import evaluate_batches

        return {f"val_{k}": v for k, v in evaluate_batches(self.net, self.val_data, self.cfg.eval_batches,
                                                           self.cfg.batch_size, self.device, self.dtype).items()}

    def save(self, step: int):
        loop.save_checkpoint(Path(self.cfg.out), f"davs_step{step:06d}",
                             lambda path: save_davs(self.net, path, step, self.optimizers))

    def resume(self, last: Path) -> int:
        """The networks and every optimiser's state from a checkpoint of `save`; returns its step."""
        extras = load_weights(self.net, last, "davs")
        for k, o in self.optimizers.items():
            if k in extras.get("optimizers", {}):
                o.load_state_dict(extras["optimizers"][k])
        return int(extras.get("global_step", 0))


# ------------------------------------------------------------------------------- the loop


def dataset_sizes(data: str) -> tuple[int, int]:
    """(word classes, person classes) of a words-layout folder: words.txt, and the train persons."""
    return WordClips(data, "train", 64, 1).class_counts()


def train_davs(cfg: DavsTrainConfig, progress: Callable[[int, int, dict], None] | None = None) -> dict:
    run = loop.start_run(cfg, "davs")
    train_data = WordClips(cfg.data, "train", cfg.size, cfg.clip_frames, seed=cfg.seed)
    words, persons = train_data.class_counts()  # the train split's labels, read once
    val_data = WordClips(cfg.data, "val", cfg.size, cfg.clip_frames, seed=10_000 + cfg.seed)
    trainer = DavsTrainer(cfg, words, persons, run.device, run.dtype, run.ddp, val_data)
    return loop.train(trainer, run, train_data, progress)
