"""DAVS: the networks' shapes, each loss on hand-checked cases, which parameters each update moves,
a short training run that lowers the losses, the alignment, and `lipsync animate` / `lipsync eval
davs` end to end on the real portrait of examples/."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lipsync_cli.checkpoints import load_davs, save_davs
from lipsync_cli.cli import main
from lipsync_cli.eval.davs import retrieval
from lipsync_cli.models.davs import Davs, DavsConfig
from lipsync_cli.models.loading import read_state_dict
from lipsync_cli.datasets import WordClips
from lipsync_cli.train.davs import (DavsTrainConfig, DavsTrainer, contrastive_loss, dataset_sizes, train_davs,
                                    uniform_target_loss)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="session")
def words(words_corpus) -> Path:
    return words_corpus


def small(words: Path, out: Path, **kw) -> DavsTrainConfig:
    """A quick CPU run: 64 px faces, sixteenth-width networks (8 to 32 channels) and four-frame clips
    (two generated): every network, loss and stage of the published configuration, only smaller."""
    values = dict(data=str(words), out=str(out), size=64, width=0.0625, clip_frames=4, gen_frames=2, batch_size=4,
                  eval_every=1000, eval_batches=1, checkpoint_every=1000, workers=0, amp="off", disentangle_from=0,
                  generate_from=0)
    values.update(kw)
    return DavsTrainConfig(**values)


@pytest.fixture(scope="module")
def random_davs(words, tmp_path_factory) -> Path:
    """A seeded random-init DAVS checkpoint for the corpus (what `animate` loads); its four-frame
    clips keep `eval davs` quick (the word probe reads a clip's T frames)."""
    torch.manual_seed(0)
    n_words, n_persons = dataset_sizes(str(words))
    trainer = DavsTrainer(small(words, tmp_path_factory.mktemp("r")), n_words, n_persons, torch.device("cpu"))
    path = tmp_path_factory.mktemp("ckpt") / "davs.pth"
    save_davs(trainer.net, path)
    return path


# ------------------------------------------------------------------------------- networks and losses


@pytest.mark.parametrize("size", [64, 128])
def test_forward_shapes(size):
    cfg = DavsConfig(size=size, words=7, persons=5, clip_frames=12, width=0.25)
    net = Davs(cfg).eval()
    frames = torch.rand(2, 12, 3, size, size)
    mfcc = torch.randn(2, 12, 1, 12, 20)
    f_v, f_a = net.video_words(frames), net.audio_words(mfcc)
    f_p = net.person_encoder(frames[:, 0])
    assert f_v.shape == f_a.shape == (2, 12, 256) and f_p.shape == (2, 256)
    assert net.classify_words(f_v, audio=False).shape == (2, 7) and net.person_classifier(f_p).shape == (2, 5)
    f_p_seq = net.person_sequence(frames)
    assert f_p_seq.shape == (2, 12, 256) and torch.allclose(f_p_seq[:, 0], f_p, atol=1e-5)
    assert net.word_from_person(f_p_seq).shape == (2, 7) and net.person_from_word(f_v[:, 0]).shape == (2, 5)
    with torch.no_grad():
        clip = net.generate(f_p, f_a[:, :6])
    assert clip.shape == (2, 3, 6, size, size) and 0 <= float(clip.min()) and float(clip.max()) <= 1
    assert net.sequence_discriminator(clip).shape[0] == 2
    convs = [m for m in net.decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 10 and len(net.decoder.stages) == 6  # 10 convolutions, 6 bilinear upsamplings
    with pytest.raises(ValueError):
        DavsConfig(size=96)


def test_uniform_target_loss_by_hand():
    assert float(uniform_target_loss(torch.zeros(3, 10))) == pytest.approx(0.0, abs=1e-9)  # uniform softmax
    # softmax (1, 0) with N = 2: (1 - 1/2)^2 + (0 - 1/2)^2 = 0.5
    assert float(uniform_target_loss(torch.tensor([[100.0, -100.0]]))) == pytest.approx(0.5, abs=1e-6)
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax (1/4, 3/4): 2 * (1/4)^2 = 0.125
    assert float(uniform_target_loss(logits)) == pytest.approx(0.125, abs=1e-6)


def test_contrastive_loss_on_known_distances():
    e1, e2 = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 0.5]])  # normalised: distance sqrt(2)
    one, zero = torch.ones(1), torch.zeros(1)
    assert float(contrastive_loss(e1, e2, one)) == pytest.approx(math.sqrt(2), abs=1e-6)  # a pair: d
    assert float(contrastive_loss(e1, e2, zero)) == pytest.approx(0.0, abs=1e-6)  # not a pair, d > margin 1
    assert float(contrastive_loss(e1, 2 * e1, zero)) == pytest.approx(1.0, abs=1e-6)  # not a pair at d = 0
    near = torch.tensor([[1.0, 0.0]]), torch.tensor([[math.cos(0.5), math.sin(0.5)]])  # d = 2 sin(0.25)
    d = 2 * math.sin(0.25)
    assert float(contrastive_loss(*near, zero)) == pytest.approx(1 - d, abs=1e-6)
    both = contrastive_loss(torch.cat([e1, near[0]]), torch.cat([e2, near[1]]), torch.tensor([1.0, 0.0]))
    assert float(both) == pytest.approx((math.sqrt(2) + 1 - d) / 2, abs=1e-6)


def test_retrieval_ranks_and_word_hits_on_known_features():
    # gallery on the unit circle at 0, 90, 180 and 270 degrees; the clips say words 0, 0, 1, 1
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    # query 0 sits on its own clip; query 1 nearest clip 0 (same word), then its own; query 2 nearest
    # clip 1 (another word), then its own; query 3 on its own clip
    query = torch.tensor([[2.0, 0.0], [1.0, 0.4], [-0.4, 1.0], [0.0, -3.0]])
    r = retrieval(query, gallery, torch.tensor([0, 0, 1, 1]))
    assert r["r1"] == pytest.approx(0.5) and r["r10"] == pytest.approx(1.0)
    assert r["median_rank"] == pytest.approx(1.0)  # ranks 1, 2, 2, 1: torch's median takes the lower middle
    assert r["word_r1"] == pytest.approx(0.75)  # only query 2's nearest clip says another word
    assert "word_r1" not in retrieval(query, gallery)


# ------------------------------------------------------------------------------- updates


def _snapshot(modules) -> list[torch.Tensor]:
    return [p.detach().clone() for m in modules for p in m.parameters()]


def _moved(before, modules) -> bool:
    after = [p.detach() for m in modules for p in m.parameters()]
    return any(not torch.equal(a, b) for a, b in zip(before, after))


@pytest.mark.slow
def test_each_update_moves_only_its_own_parameters(words, tmp_path):
    torch.manual_seed(0)
    n_words, n_persons = dataset_sizes(str(words))
    cfg = small(words, tmp_path)
    trainer = DavsTrainer(cfg, n_words, n_persons, torch.device("cpu"))
    net = trainer.net
    ds = WordClips(words, "train", 64, cfg.clip_frames)
    batch = tuple(torch.stack(x) for x in zip(*[ds[i] for i in range(4)]))
    encoders = [net.person_encoder, net.video_word_encoder, net.audio_word_encoder, net.decoder, net.word_classifier,
                net.person_classifier]
    critics = {"domain": net.domain_classifier, "word_from_person": net.word_from_person,
               "person_from_word": net.person_from_word, "sequence": net.sequence_discriminator}

    enc_before, critic_before = _snapshot(encoders), {k: _snapshot([m]) for k, m in critics.items()}
    logs, cache = trainer.encoder_step(batch, step=0)
    assert {"word_ce", "contrastive", "domain_adv", "uniform", "l1", "gen_adv"} <= set(logs)
    for name, module in critics.items():  # the encoders' update leaves every critic alone
        assert not _moved(critic_before[name], [module]), name
    for module in encoders:  # and moves every part of the encoder side
        assert _moved(_snapshot_at(enc_before, encoders, module), [module]), type(module).__name__

    enc_before = _snapshot(encoders)
    critic_logs = trainer.critic_steps(cache, step=0)
    assert set(critic_logs) == set(critics)
    assert not _moved(enc_before, encoders)  # the critics' updates leave the encoders alone
    for name, module in critics.items():
        assert _moved(critic_before[name], [module]), name


def _snapshot_at(snapshot, modules, module):
    """The slice of a snapshot of `modules` that belongs to `module`."""
    start = 0
    for m in modules:
        n = len(list(m.parameters()))
        if m is module:
            return snapshot[start:start + n]
        start += n
    raise KeyError(module)


def test_schedule_turns_stages_on_by_step(words, tmp_path):
    n_words, n_persons = dataset_sizes(str(words))
    cfg = small(words, tmp_path, disentangle_from=10, generate_from=20)
    trainer = DavsTrainer(cfg, n_words, n_persons, torch.device("cpu"))
    assert trainer.stages(0) == (False, False) and trainer.stages(10) == (True, False)
    assert trainer.stages(25) == (True, True)
    off = DavsTrainer(small(words, tmp_path, disentangle=False), n_words, n_persons, torch.device("cpu"))
    assert off.stages(100) == (False, True)


@pytest.mark.slow
def test_ctrl_c_saves_the_davs_run_where_it_stopped(words, tmp_path):
    out = tmp_path / "run"

    def ctrl_c_after_step_2(step, total, logs):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_davs(small(words, out, steps=4), progress=ctrl_c_after_step_2)
    assert read_state_dict(out / "last.pth")[1]["global_step"] == 2
    assert train_davs(small(words, out, steps=4))["step"] == 4


@pytest.mark.slow
def test_short_training_lowers_the_losses_and_resumes(words, tmp_path):
    out = tmp_path / "run"
    result = train_davs(small(words, out, steps=24, batch_size=8, eval_every=24, eval_batches=1, checkpoint_every=12,
                              generate_from=0, disentangle_from=0, lr=1e-3))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "train_loss" in r]

    def mean(key, part):
        values = [r[key] for r in part]
        return sum(values) / len(values)

    for key in ("train_word_ce", "train_person_ce", "train_l1"):
        assert mean(key, train[-8:]) < 0.9 * mean(key, train[:8]), key
    assert result["step"] == 24 and "val_a2v_r1" in result
    assert (out / "davs_step000012.pth").exists() and (out / "last.pth").exists()
    # a resumed run continues from the last checkpoint's step
    result = train_davs(small(words, out, steps=26, batch_size=8, eval_every=1000, checkpoint_every=1000))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train_loss" in r][-2:] == [25, 26]


# ------------------------------------------------------------------------------- alignment


def test_alignment_maps_key_points_to_the_template_and_pastes_back():
    from lipsync_cli.faces import align
    from lipsync_cli.faces.paste import AlignedPaster, soft_mask

    rng = np.random.default_rng(0)
    angle, scale, shift = 0.2, 1.7, np.array([40.0, 25.0])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    template = align.TEMPLATE * 64
    points = (template - 32) @ rot.T * scale + 32 + shift  # the template, moved by a known similarity
    m = align.alignment(points, 64)
    mapped = points @ m[:, :2].T + m[:, 2]
    assert np.abs(mapped - template).max() < 1e-6

    image = (rng.random((200, 220, 3)) * 255).astype(np.uint8)
    image = cv2.GaussianBlur(image, (9, 9), 0)  # smooth content: warping it twice loses little
    paster = AlignedPaster(image, m, 64)
    face = align.align(image, m, 64)
    back = paster.paste(face)
    inside = cv2.warpAffine(np.ones((64, 64), np.float32) * (soft_mask(64) > 0.99), paster.inverse,
                            (220, 200)) > 0.99
    assert inside.sum() > 500
    assert np.abs(back.astype(int) - image.astype(int))[inside].mean() < 6  # the face returns where it was
    outside = cv2.warpAffine(np.ones((64, 64), np.float32), paster.inverse, (220, 200)) == 0
    assert np.array_equal(back[outside], image[outside])  # nothing outside the face changes


# ------------------------------------------------------------------------------- animate and eval


@pytest.mark.slow
def test_animate_a_real_portrait_end_to_end(random_davs, tmp_path, capsys):
    from lipsync_cli import media

    photo, speech = EXAMPLES / "portrait.png", EXAMPLES / "speech.wav"
    out = tmp_path / "animated.mp4"
    assert main(["animate", str(photo), str(speech), "-o", str(out), "-c", str(random_davs), "-q"]) == 0
    info, sound = media.probe(str(out)), media.probe(str(speech))
    image = cv2.imread(str(photo))
    assert info.audio is not None and (info.video.width, info.video.height) == (image.shape[1], image.shape[0])
    seconds = len(__import__("lipsync_cli.audio", fromlist=["x"]).load_audio(str(speech)).samples) / 16000
    assert info.video.frame_count == math.ceil(seconds * 25 - 1e-6)
    assert abs(info.video.duration - seconds) < 1 / 25 + 1e-3
    frames = np.concatenate(list(media.FrameReader(media.probe(str(out)), chunk=100)))
    # the corners of the photo are outside the pasted face: they stay the photo (up to H.264)
    corner = np.abs(frames[:, :20, :20].astype(int) - image[None, :20, :20].astype(int)).mean()
    assert corner < 4
    assert sound.audio is not None

    crop = tmp_path / "crop.mp4"
    assert main(["animate", str(photo), str(speech), "-o", str(crop), "-c", str(random_davs), "--crop", "-q"]) == 0
    assert (media.probe(str(crop)).video.width, media.probe(str(crop)).video.height) == (64, 64)

    # a video drives it: as many frames as the driver has at 25 fps, with the driver's sound
    driven = tmp_path / "driven.mp4"
    talk = EXAMPLES / "talk.mp4"
    assert main(["animate", str(photo), "-o", str(driven), "-c", str(random_davs), "--driver", str(talk), "-q"]) == 0
    expected = round(media.probe(str(talk)).video.duration * 25)
    assert abs(media.probe(str(driven)).video.frame_count - expected) <= 1

    capsys.readouterr()
    bad = tmp_path / "bad.mp4"
    assert main(["animate", str(photo), str(speech), "-o", str(bad), "-c", str(speech)]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err and not bad.exists()
    assert main(["animate", str(speech), str(speech), "-o", str(bad), "-c", str(random_davs)]) == 2
    assert "not an image" in capsys.readouterr().err and not bad.exists()
    assert main(["animate", str(photo), str(speech), "-o", str(out), "-c", str(random_davs)]) == 2  # exists
    assert list(tmp_path.glob("*.partial*")) == []


def test_word_probe_finds_a_word_in_the_features_and_none_in_noise():
    from lipsync_cli.eval.davs import word_probe

    g = torch.Generator().manual_seed(0)
    classes, dim = 5, 40
    centres = torch.randn(classes, dim, generator=g) * 3
    train_y, test_y = torch.arange(100) % classes, torch.arange(50) % classes
    train_x = centres[train_y] + torch.randn(100, dim, generator=g) * 2
    test_x = centres[test_y] + torch.randn(50, dim, generator=g) * 2
    # (50 L-BFGS iterations: these features need no more, and each costs little)
    assert word_probe(train_x, train_y, test_x, test_y, classes, steps=50) == pytest.approx(1.0)
    noise = torch.randn(100, dim, generator=g), torch.randn(50, dim, generator=g)
    assert word_probe(noise[0], train_y, noise[1], test_y, classes, steps=50) < 0.5  # chance: 0.2


@pytest.mark.slow
def test_eval_davs_command(words, random_davs, capsys, monkeypatch):
    import functools

    from lipsync_cli.eval import davs as davs_eval

    # the probe (tested above) with 30 L-BFGS iterations instead of 300: most of the command's time
    monkeypatch.setattr(davs_eval, "word_probe", functools.partial(davs_eval.word_probe, steps=30))
    assert main(["eval", "davs", str(words), "-c", str(random_davs), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("psnr_audio", "ssim_video", "word_acc_video", "word_acc_audio", "word_acc_both", "a2v_r1",
                "v2a_r10", "a2v_median_rank", "probe_word_acc_person_features"):
        assert key in result
    assert 0 <= result["a2v_r1"] <= result["a2v_r10"] <= 1 and result["clips"] >= 2
    assert 0 < result["ssim_audio"] < 1 and result["psnr_audio"] > 5


class _StandIn(torch.nn.Module):
    """What mouth_sync calls of a DAVS model, drawing the synthetic face with a known mouth: its
    audio encoder looks each MFCC window up (by value) among the split's windows and answers the
    mouth of that frame in the truth file, and its decoder renders it (`mouth=None`: a constant
    mouth, whatever the speech)."""

    def __init__(self, words: Path, split: str, cfg: DavsConfig, mouth: tuple | None = None):
        super().__init__()
        from lipsync_cli.synth.face import crop_placement, make_identity

        self.cfg, self.constant = cfg, mouth
        self.identity, self.placement = make_identity(np.random.default_rng(0)), crop_placement(cfg.size)
        clips = WordClips(words, split, cfg.size, cfg.clip_frames)
        self.mouths = {}
        for k, clip in enumerate(clips.data.clips):
            truth = json.loads((clip.folder / "truth.json").read_text())["mouth"]
            for window, m in zip(clips.clip_mfcc(k), truth):
                self.mouths[window.tobytes()] = m

    def audio_word_encoder(self, mfcc: torch.Tensor) -> torch.Tensor:
        return torch.tensor([self.mouths[w[0].numpy().tobytes()] for w in mfcc])

    def person_encoder(self, identity: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(identity), 1)

    def decoder(self, f_p: torch.Tensor, mouths: torch.Tensor) -> torch.Tensor:
        from lipsync_cli.synth.face import render

        size = (self.cfg.size, self.cfg.size)
        faces = [render(self.identity, tuple(self.constant or m.tolist()), 0.0, size, *self.placement) for m in mouths]
        return torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() / 255


def test_mouth_sync_scores_generated_mouths_against_the_driving_speech(words, random_davs):
    from lipsync_cli.eval.davs import mouth_sync

    cfg = DavsConfig(size=64)
    # mouths that follow the speech driving them: in sync with it, much less with another clip's
    # speech (one-word clips all open and close once, so theirs still correlate, ~0.5)
    follows = mouth_sync(_StandIn(words, "test", cfg), str(words), "test")
    assert follows["clips"] >= 4
    assert follows["driving_speech_median"] > 0.9 and follows["driving_speech_mean"] > 0.9
    assert follows["other_speech_median"] < follows["driving_speech_median"] - 0.3
    assert follows["other_speech_mean"] < follows["driving_speech_mean"] - 0.3
    # a mouth that never moves follows no speech
    still = mouth_sync(_StandIn(words, "test", cfg, mouth=(0.5, 0.6, 0.1)), str(words), "test")
    for key in ("driving_speech_median", "driving_speech_mean", "other_speech_median", "other_speech_mean"):
        assert still[key] == pytest.approx(0.0, abs=1e-9), key
    # a real (untrained) model goes through the same path
    r = mouth_sync(load_davs(random_davs), str(words), "test")
    assert r["clips"] == follows["clips"]
    for key in ("driving_speech_median", "other_speech_median"):
        assert -1.0 <= r[key] <= 1.0  # a correlation, also for an untrained model's nearly still mouth


@pytest.mark.slow
def test_davs_trains_under_mixed_precision(words, tmp_path):
    # bf16 autocast on the CPU (fp16 on CUDA) with channels-last 2-D convolutions beside the 3-D
    # sequence discriminator: every stage runs, the losses are finite, and the checkpoint stays fp32
    result = train_davs(small(words, tmp_path / "run", steps=2, amp="on", eval_every=2))
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "train_loss" in r]
    losses = [v for r in train for k, v in r.items() if k.startswith("train_")]
    assert len(train) == 2 and all(v == v and abs(v) < 1e6 for v in losses)
    assert "train_l1" in train[-1] and "val_a2v_r1" in result
    state = torch.load(tmp_path / "run" / "last.pth", weights_only=True)["state_dict"]
    assert all(t.dtype == torch.float32 for t in state.values() if t.is_floating_point())


@pytest.mark.slow
def test_torchrun_trains_davs_data_parallel(words, tmp_path):
    # two CPU processes average every optimiser's gradients; the loop checks that both end with the
    # same weights, and only rank 0 writes
    from conftest import torchrun

    settings = tmp_path / "quick.json"  # four-frame clips (no flag of their own)
    settings.write_text(json.dumps({"clip_frames": 4, "gen_frames": 2}))
    run = torchrun("train", "davs", words, "-o", tmp_path / "run", "--config", settings, "--size", 64,
                   "--width", 0.0625, "--steps", 2, "--batch-size", 4, "--disentangle-from", 0, "--generate-from", 1,
                   "--eval-every", 2, "--eval-batches", 1, "--workers", 0, "--amp", "off", "--uniform-weight", 30,
                   "--contrastive-weight", 5, "-q")
    assert run.returncode == 0, run.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["uniform_weight"] == 30 and config["contrastive_weight"] == 5 and config["clip_frames"] == 4
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "train_loss" in r] == [1, 2]
    assert "train_l1" in lines[1] and (tmp_path / "run" / "davs_step000002.pth").exists()
