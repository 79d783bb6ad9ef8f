"""DAVS's measures on a held-out split of the words layout.

- Reconstruction: each clip's frames generated from the person-ID feature of its first frame and
  the word-ID features of its audio (and, separately, of its video): PSNR and SSIM against the
  real frames.
- Word accuracy of the shared classifier from video features, audio features and both (the sum
  of the two logits).
- Retrieval: every clip's audio feature against every clip's video feature (L2-normalised clip
  features, Euclidean distance): R@1, R@10 and the median rank of the true match, both ways, and
  word R@1 (the nearest clip says the same word).
- How much speech the person-ID space still holds: a logistic-regression probe trained on the
  person-ID features of the train split's clips (each clip's T frames in order, as C_p^w reads
  them) to predict the word, tested on the held-out split.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ..datasets import WordClips


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image (N, C, H, W) in [0, 1] -> (N,) dB."""
    mse = ((a - b) ** 2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per image (N, C, H, W) in [0, 1] -> (N,): the Gaussian-window SSIM of Wang et al. (2004),
    constants K1 = 0.01, K2 = 0.03, averaged over channels and positions."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    x = torch.arange(window, dtype=torch.float32) - window // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = (g / g.sum()).to(a.device)
    kernel = (g[:, None] * g[None, :]).expand(a.size(1), 1, window, window)

    def blur(t):
        return F.conv2d(t, kernel, groups=a.size(1))

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return value.flatten(1).mean(dim=1)


def retrieval(query: torch.Tensor, gallery: torch.Tensor, words: torch.Tensor | None = None) -> dict:
    """Query i's true match is gallery i. Features (N, D), compared L2-normalised. With the clips'
    words, also `word_r1`: how often the nearest gallery clip says the query's word (any clip of
    it), which separates knowing the word from matching the exact clip."""
    d = torch.cdist(F.normalize(query.float(), dim=1), F.normalize(gallery.float(), dim=1))
    true = d.diagonal()[:, None]
    ranks = (d < true).sum(dim=1) + 1  # 1 = the true match is nearest
    res = {"r1": float((ranks <= 1).float().mean()), "r10": float((ranks <= 10).float().mean()),
           "median_rank": float(ranks.float().median())}
    if words is not None:
        res["word_r1"] = float((words[d.argmin(dim=1)] == words).float().mean())
    return res


@torch.no_grad()
def _features(net, ds: WordClips, samples, batch_size: int, device, dtype) -> dict:
    """Run the encoders (and the decoder) over `samples` of a WordClips: clip features, logits
    and reconstruction scores, concatenated. (The probe's person-ID features: `_person_features`.)"""
    from ..device import autocast

    out: dict[str, list] = {k: [] for k in ("f_v", "f_a", "logit_v", "logit_a", "word", "person",
                                            "psnr_audio", "psnr_video", "ssim_audio", "ssim_video")}
    net.eval()
    for s in range(0, len(samples), batch_size):
        items = [samples[i] for i in range(s, min(len(samples), s + batch_size))]
        frames, mfcc, identity, word, person = (torch.stack(x).to(device) for x in zip(*items))
        with autocast(torch.device(device), dtype):
            f_v = net.video_words(frames).float()
            f_a = net.audio_words(mfcc).float()
            f_p = net.person_encoder(identity).float()
            gen_a = net.generate(f_p, f_a).float()
            gen_v = net.generate(f_p, f_v).float()
            out["logit_v"].append(net.classify_words(f_v, audio=False).float())
            out["logit_a"].append(net.classify_words(f_a, audio=True).float())
        real = frames.flatten(0, 1)
        for name, gen in (("audio", gen_a), ("video", gen_v)):
            g = gen.transpose(1, 2).flatten(0, 1).clamp(0, 1)
            out[f"psnr_{name}"].append(psnr(g, real))
            out[f"ssim_{name}"].append(ssim(g, real))
        out["f_v"].append(f_v.flatten(1))
        out["f_a"].append(f_a.flatten(1))
        out["word"].append(word)
        out["person"].append(person)
    net.train()
    return {k: torch.cat(v).cpu() for k, v in out.items()}


@torch.no_grad()
def _person_features(net, ds: WordClips, batch_size: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The probe's inputs from a split, without running the other networks: the person-ID features
    of each clip's first T frames (what `_OnePerClip` gives the encoders), concatenated in order as
    C_p^w reads them, and the clips' words."""
    from ..device import autocast

    feats, words = [], []
    net.eval()
    for s in range(0, len(ds.data), batch_size):
        ks = range(s, min(len(ds.data), s + batch_size))
        frames = torch.stack([_clip_frames(ds, k) for k in ks]).to(device)
        with autocast(torch.device(device), dtype):
            feats.append(net.person_sequence(frames).float().flatten(1).cpu())
        words += [ds.labels[k][0] for k in ks]
    net.train()
    return torch.cat(feats), torch.tensor(words)


def _scores(f: dict) -> dict:
    word = f["word"]
    res = {
        "word_acc_video": float((f["logit_v"].argmax(1) == word).float().mean()),
        "word_acc_audio": float((f["logit_a"].argmax(1) == word).float().mean()),
        "word_acc_both": float(((f["logit_v"].softmax(1) + f["logit_a"].softmax(1)).argmax(1) == word).float().mean()),
        "psnr_audio": float(f["psnr_audio"].mean()), "psnr_video": float(f["psnr_video"].mean()),
        "ssim_audio": float(f["ssim_audio"].mean()), "ssim_video": float(f["ssim_video"].mean()),
    }
    for name, (q, g) in (("a2v", (f["f_a"], f["f_v"])), ("v2a", (f["f_v"], f["f_a"]))):
        res.update({f"{name}_{k}": v for k, v in retrieval(q, g, word).items()})
    return res


def evaluate_batches(net, ds: WordClips, batches: int, batch_size: int, device, dtype) -> dict:
    """The quick evaluation of the training loop: at most `batches` x `batch_size` clips of a split,
    one fixed sample each (spread over the split), so retrieval never ranks a clip against itself."""
    clips = len(ds.data)
    n = min(batches * batch_size, clips)
    chosen = [round(i * clips / n) for i in range(n)]
    every_clip = _OnePerClip(ds)

    class _Chosen:
        def __len__(self):
            return n

        def __getitem__(self, i):
            return every_clip[chosen[i]]

    return _scores(_features(net, ds, _Chosen(), batch_size, device, dtype))


def _clip_frames(ds: WordClips, k: int) -> torch.Tensor:
    """Clip k's first T faces, (T, 3, S, S) in [0, 1]."""
    return torch.from_numpy(ds.faces(k, 0, ds.t)).permute(0, 3, 1, 2).float().div_(255.0)


class _OnePerClip:
    """Clip k's first T frames, its first frame as the identity: one fixed sample per clip."""

    def __init__(self, ds: WordClips):
        self.ds = ds

    def __len__(self):
        return len(self.ds.data)

    def __getitem__(self, k):
        ds = self.ds
        frames = _clip_frames(ds, k)
        mfcc = torch.from_numpy(ds.clip_mfcc(k)[:ds.t]).unsqueeze(1)
        word, person = ds.labels[k]
        return frames, mfcc, frames[0].clone(), torch.tensor(word), torch.tensor(person)


def word_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
               classes: int, steps: int = 300, seed: int = 0) -> float:
    """Accuracy on the test set of a multinomial logistic regression (standardised features, L2
    weight 1e-3, full-batch L-BFGS) fitted on the train set."""
    g = torch.Generator().manual_seed(seed)
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    xtr, xte = (train_x - mean) / std, (test_x - mean) / std
    w = (torch.randn(xtr.size(1), classes, generator=g) * 0.01).requires_grad_(True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xtr @ w + b, train_y) + 1e-3 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xte @ w + b).argmax(1) == test_y).float().mean())


def evaluate_split(net, data: str, split: str = "test", batch_size: int = 16, device="cpu",
                   dtype: torch.dtype | None = None) -> dict:
    """Every measure on one split (each clip once), and the person-ID word probe fitted on train."""
    cfg = net.cfg
    held_out = WordClips(data, split, cfg.size, cfg.clip_frames)
    f = _features(net, held_out, _OnePerClip(held_out), batch_size, device, dtype)
    res = _scores(f)
    train_x, train_y = _person_features(net, WordClips(data, "train", cfg.size, cfg.clip_frames), batch_size,
                                        device, dtype)
    test_x, test_y = _person_features(net, held_out, batch_size, device, dtype)
    res["probe_word_acc_person_features"] = word_probe(train_x, train_y, test_x, test_y, cfg.words)
    res["chance_word_acc"] = 1.0 / cfg.words
    res["clips"] = len(held_out.data)
    return res


@torch.no_grad()
def mouth_sync(net, data: str, split: str = "test", device="cpu") -> dict:
    """Do generated mouths follow the driving speech? (Synthetic corpus only: its truth.json.)
    Each clip's person (its first frame) is driven by the next clip's speech; the mouth opening
    read from the generated faces (synth.sync) is correlated with the opening that speech implies,
    and, as a control, with the opening of the clip after it (speech that did not drive them)."""
    import json

    from ..synth.corpus import truth_opening
    from ..synth.sync import mouth_opening, sync_score

    cfg = net.cfg
    clips = WordClips(data, split, cfg.size, cfg.clip_frames)
    n_clips = len(clips.data)
    driven, control = [], []
    net.eval()
    for k in range(n_clips):
        drv, other = (k + 1) % n_clips, (k + 2) % n_clips
        truth_drv = truth_opening(json.loads((clips.data.clips[drv].folder / "truth.json").read_text()))
        truth_other = truth_opening(json.loads((clips.data.clips[other].folder / "truth.json").read_text()))
        n = min(len(truth_drv), len(truth_other))
        identity = torch.from_numpy(clips.faces(k, 0, 1)[0]).permute(2, 0, 1)[None].float().div(255).to(device)
        mfcc = clips.clip_mfcc(drv)[:n]  # the driving clip's windows, computed once per clip
        f_w = net.audio_word_encoder(torch.from_numpy(mfcc[:, None]).to(device))
        faces = net.decoder(net.person_encoder(identity).expand(n, -1), f_w).clamp(0, 1)
        crops = (faces * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        opening = mouth_opening(crops)
        driven.append(sync_score(opening, truth_drv[:n], max_offset=0).correlation)
        control.append(sync_score(opening, truth_other[:n], max_offset=0).correlation)
    net.train()
    return {"clips": n_clips, "driving_speech_median": float(np.median(driven)),
            "driving_speech_mean": float(np.mean(driven)), "other_speech_median": float(np.median(control)),
            "other_speech_mean": float(np.mean(control))}
