"""Training: the published layouts of the expert and the discriminator, the data reader on the
synthetic corpus as written, and the expert's loop (loss goes down, resume is exact, the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REFERENCE_KEYS, torchrun
from lipsync_cli import outputs
from lipsync_cli.cli import main
from lipsync_cli.models.discriminator import VisualQualityDiscriminator, perceptual_loss
from lipsync_cli.models.syncnet import SyncNetColor, lower_half_stack, sync_loss, sync_probability
from lipsync_cli.datasets import GeneratorWindows, PreprocessedData, SyncPairs
from lipsync_cli.train.config import TrainConfig
from lipsync_cli.train.syncnet import train_syncnet


@pytest.fixture(scope="session")
def corpus(train_corpus) -> Path:
    return train_corpus


def test_expert_and_discriminator_have_the_published_keys():
    keys = json.loads(REFERENCE_KEYS.read_text())
    for kind, net in (("wav2lip_syncnet_expert_color", SyncNetColor()),
                      ("wav2lip_visual_quality_discriminator", VisualQualityDiscriminator())):
        assert {k: list(v.shape) for k, v in net.state_dict().items()} == keys[kind]


@pytest.mark.slow
def test_expert_and_discriminator_forward():
    torch.manual_seed(0)
    net = SyncNetColor().eval()
    a, v = net(torch.randn(3, 1, 80, 16), torch.rand(3, 15, 48, 96))
    assert a.shape == v.shape == (3, 512)
    assert torch.allclose(a.norm(dim=1), torch.ones(3), atol=1e-5)
    p = sync_probability(a, v)
    assert ((p > 0) & (p < 1)).all()
    # BCE on P_sync: the published loss, checked by hand on one pair
    label = torch.tensor([1.0, 0.0, 1.0])
    expected = -(label * p.log() + (1 - label) * (1 - p).log()).mean()
    assert torch.allclose(sync_loss(a, v, label), expected, atol=1e-6)
    frames = torch.rand(2, 3, 5, 96, 96)
    stacked = lower_half_stack(frames)
    assert stacked.shape == (2, 15, 48, 96) and torch.equal(stacked[:, 3:6], frames[:, :, 1, 48:])
    d = VisualQualityDiscriminator()
    assert d(torch.rand(2, 3, 5, 96, 96)).shape == (10, 1)
    assert perceptual_loss(d, torch.rand(4, 3, 96, 96)).item() > 0


def test_data_reads_the_synthetic_layout_as_written(corpus):
    data = PreprocessedData(corpus, "train")
    lines = (corpus / "filelists" / "train.txt").read_text().splitlines()
    assert len(data) == len(lines)
    truth = json.loads((corpus / lines[0] / "truth.json").read_text())
    assert data.clips[0].frames == truth["frames"]
    assert data.mel_window(0, 3).shape == (80, 16)

    pairs = SyncPairs(data, seed=1)
    faces, mel, label = pairs[7]
    assert faces.shape == (15, 48, 96) and mel.shape == (1, 80, 16) and 0 <= faces.min() <= faces.max() <= 1
    again = pairs[7]
    assert torch.equal(faces, again[0]) and torch.equal(mel, again[1]) and label == again[2]  # index -> sample
    labels = [float(pairs[i][2]) for i in range(200)]
    assert 0.35 < np.mean(labels) < 0.65

    windows = GeneratorWindows(data, seed=2)
    faces_in, mels, sync_mel, target = windows[3]
    assert faces_in.shape == (6, 5, 96, 96) and mels.shape == (5, 1, 80, 16) and sync_mel.shape == (1, 80, 16)
    assert target.shape == (3, 5, 96, 96)
    assert faces_in[:3, :, 48:].abs().max() == 0 and torch.equal(faces_in[:3, :, :48], target[:, :, :48])
    assert not torch.equal(faces_in[3:], target)  # the reference is another window
    assert torch.equal(mels[0], sync_mel)  # the span's window is its first frame's


@pytest.mark.slow
def test_expert_learns_a_batch():
    """The loss and the optimiser move the expert: 10 steps on one fixed batch of the synthetic
    corpus's kind of input bring its loss well below chance (a quarter-width expert: the same
    layers, 16 times less work)."""
    torch.manual_seed(0)
    net = SyncNetColor(width=0.25)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    faces, mel = torch.rand(8, 15, 48, 96), torch.randn(8, 1, 80, 16)
    label = torch.tensor([1.0, 0.0] * 4)
    first = None
    for _ in range(10):
        loss = sync_loss(*net(mel, faces), label)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 0.6 and loss.item() < 0.4


def _params(path: Path) -> dict:
    from lipsync_cli.models.loading import read_state_dict

    return read_state_dict(path)[0]


def assert_same_updates(before: Path, straight: Path, resumed: Path, tolerance: float = 0.01):
    """The resumed run made the same update as the straight one. CPU kernels reduce in parallel,
    so two identical runs can differ in the last bits (seen: 1e-8 on weights); a resume that lost
    the optimiser state or the schedule changes the whole update instead."""
    p0, pa, pb = _params(before), _params(straight), _params(resumed)
    keys = [k for k in p0 if p0[k].is_floating_point()]
    ua = torch.cat([(pa[k] - p0[k]).flatten().double() for k in keys])
    ub = torch.cat([(pb[k] - p0[k]).flatten().double() for k in keys])
    assert ua.norm() > 0
    assert (ua - ub).norm() / ua.norm() < tolerance


@pytest.mark.slow
def test_training_resumes_where_it_stopped(corpus, tmp_path):
    def cfg(out, steps):
        return TrainConfig(data=str(corpus), out=str(out), steps=steps, batch_size=4, eval_every=2, eval_batches=1,
                           checkpoint_every=2, workers=0, amp="off", width=0.25)  # the loop is tested, not the net

    straight = train_syncnet(cfg(tmp_path / "a", 4))
    train_syncnet(cfg(tmp_path / "b", 2))
    resumed = train_syncnet(cfg(tmp_path / "b", 4))
    assert straight["step"] == resumed["step"] == 4
    assert_same_updates(tmp_path / "a" / "syncnet_step000002.pth", tmp_path / "a" / "last.pth",
                        tmp_path / "b" / "last.pth")  # the same batches, the same updates
    assert straight["val_loss"] == pytest.approx(resumed["val_loss"], rel=1e-3)
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "train_loss" in r] == [1, 2, 3, 4]


def _steps_logged(out: Path) -> list[int]:
    return [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "train_loss" in r]


def test_ctrl_c_keeps_the_steps_done_and_the_run_goes_on_from_them(corpus, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(corpus), out=str(out), steps=5, batch_size=2, eval_every=100, eval_batches=1,
                      checkpoint_every=100, workers=0, amp="off", width=0.25)

    def ctrl_c_after_step_3(step, total, logs):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_syncnet(cfg, progress=ctrl_c_after_step_3)
    assert torch.load(out / "last.pth", weights_only=True)["global_step"] == 3  # no checkpoint was due: Ctrl-C saved
    assert (out / "syncnet_step000003.pth").exists() and _steps_logged(out) == [1, 2, 3]
    assert train_syncnet(cfg)["step"] == 5
    assert _steps_logged(out) == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_train_syncnet_command(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    (tmp_path / "cfg.toml").write_text("steps = 2\nbatch_size = 2\neval_every = 1\neval_batches = 1\nworkers = 0\n")
    code = main(["train", "syncnet", str(corpus), "-o", str(out), "--config", str(tmp_path / "cfg.toml"), "-q"])
    assert code == 0, capsys.readouterr().err
    assert (out / "syncnet_step000002.pth").exists() and (out / "last.pth").exists()
    assert (out / "syncnet_step000002.pth").samefile(out / "last.pth")  # one copy on disk, not two
    assert not [p for p in out.iterdir() if outputs.PARTIAL_MARK in p.name]
    assert json.loads((out / "config.json").read_text())["steps"] == 2
    assert main(["weights", "verify", str(out / "last.pth")]) == 0  # the published expert layout
    capsys.readouterr()
    (tmp_path / "bad.toml").write_text("stpes = 2\n")
    assert main(["train", "syncnet", str(corpus), "-o", str(out), "--config", str(tmp_path / "bad.toml")]) == 2
    assert "unknown setting 'stpes'" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()  # not a data folder (and not one holding the run folder, refused for that)
    assert main(["train", "syncnet", str(tmp_path / "empty"), "-o", str(out), "-q"]) == 2


# ------------------------------------------------------------------------------- the generator


def test_generator_loss_weights_and_schedule():
    from lipsync_cli.train.wav2lip import Wav2LipConfig, loss_weights

    gan = Wav2LipConfig(data="d", out="o")
    plain = Wav2LipConfig(data="d", out="o", gan=False)
    assert (gan.sync_weight, gan.gan_weight, gan.sync_switch, gan.lr, gan.t) == (0.03, 0.07, 0.75, 1e-4, 5)
    assert loss_weights(gan, sync_on=False) == pytest.approx((0.93, 0.0, 0.07))
    assert loss_weights(gan, sync_on=True) == pytest.approx((0.90, 0.03, 0.07))
    assert loss_weights(plain, sync_on=False) == pytest.approx((1.0, 0.0, 0.0))
    assert loss_weights(plain, sync_on=True) == pytest.approx((0.97, 0.03, 0.0))


@pytest.mark.slow
def test_generator_learns_a_window():
    """Adam on the L1 term moves the generator towards one fixed window's (flat dark) faces (an
    eighth-width generator, which learns it at a higher rate in as few steps)."""
    from lipsync_cli.models.wav2lip import build_generator

    torch.manual_seed(0)
    gen = build_generator(width=0.125)
    opt = torch.optim.Adam(gen.parameters(), lr=1e-2)
    faces, mels, target = torch.rand(1, 6, 5, 96, 96), torch.randn(1, 5, 1, 80, 16), torch.full((1, 3, 5, 96, 96), 0.1)
    losses = []
    for _ in range(6):
        loss = torch.nn.functional.l1_loss(gen(mels, faces), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0] and all(b < a for a, b in zip(losses[1:], losses[2:]))


@pytest.mark.slow
def test_generator_training_schedule_resume_and_dub(corpus, random_expert, tmp_path, example_video):
    from lipsync_cli.train.wav2lip import Wav2LipConfig, train_wav2lip

    def cfg(out, steps, **kw):  # eighth-width networks: the loop is tested, not what it learns
        return Wav2LipConfig(data=str(corpus), out=str(out), expert=str(random_expert), steps=steps, batch_size=1,
                             eval_every=1, eval_batches=1, checkpoint_every=1, workers=0, amp="off", width=0.125, **kw)

    # sync_switch above any BCE value: a switches on after the first evaluation
    straight = train_wav2lip(cfg(tmp_path / "a", 2, sync_switch=100.0, model="attnwav2lip"))
    train_wav2lip(cfg(tmp_path / "b", 1, sync_switch=100.0, model="attnwav2lip"))
    resumed = train_wav2lip(cfg(tmp_path / "b", 2, sync_switch=100.0, model="attnwav2lip"))
    assert straight["step"] == resumed["step"] == 2 and straight["sync_on"] == 1.0
    a = _params(tmp_path / "a" / "last.pth")
    assert_same_updates(tmp_path / "a" / "attnwav2lip_step000001.pth", tmp_path / "a" / "last.pth",
                        tmp_path / "b" / "last.pth")
    assert_same_updates(tmp_path / "a" / "disc_step000001.pth", tmp_path / "a" / "disc_last.pth",
                        tmp_path / "b" / "disc_last.pth")
    weights = [json.loads(x).get("sync_weight") for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [w for w in weights if w is not None] == [0.0, 0.03]

    # TensorBoard: the scalars and a grid of targets over generated faces at every evaluation
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "a" / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert {"train_l1", "train_sync", "val_l1", "val_sync", "sync_weight"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("val_l1")] == [1, 2]
    grids = events.Images("target_top_generated_bottom")
    assert [g.step for g in grids] == [1, 2] and (grids[0].height, grids[0].width) == (192, 96)

    # --init: a new run that starts from a trained generator's weights (one Adam step away from them)
    # (and --sync-switch inf: the sync loss from the first step)
    train_wav2lip(cfg(tmp_path / "c", 1, model="attnwav2lip", gan=False, init=str(tmp_path / "a" / "last.pth"),
                      sync_switch=float("inf")))
    assert json.loads((tmp_path / "c" / "metrics.jsonl").read_text().splitlines()[0])["sync_weight"] == 0.03
    c = _params(tmp_path / "c" / "last.pth")
    learned = [k for k in a if "running" not in k and "num_batches" not in k]
    assert max(float((c[k] - a[k]).abs().max()) for k in learned) < 1e-3  # Adam's first step: about lr
    torch.manual_seed(123)
    from lipsync_cli.models.wav2lip import build_generator

    other = build_generator("attnwav2lip", width=0.125).state_dict()
    assert max(float((other[k] - a[k]).abs().max()) for k in learned) > 1e-2  # a fresh start would be far
    # the batch-norm statistics follow the fine-tuning batches, unless frozen (the finetune recipe's
    # freeze_norm): then they stay as --init brought them, while the weights still learn
    stats = [k for k in a if k.endswith(("running_mean", "running_var"))]
    assert stats and max(float((c[k] - a[k]).abs().max()) for k in stats) > 1e-3
    train_wav2lip(cfg(tmp_path / "d", 2, model="attnwav2lip", gan=False, init=str(tmp_path / "a" / "last.pth"),
                      sync_switch=float("inf"), freeze_norm=True))
    d = _params(tmp_path / "d" / "last.pth")
    assert all(torch.equal(d[k], a[k]) for k in stats)
    assert max(float((d[k] - a[k]).abs().max()) for k in learned) > 1e-5

    # the generator checkpoint is a published-layout AttnWav2Lip (at an eighth of the width) that
    # `dub` loads and runs
    from conftest import tone
    from lipsync_cli import media
    from lipsync_cli.checkpoints import load_generator

    net, name = load_generator(tmp_path / "a" / "last.pth")
    assert name == "attnwav2lip" and net.config.width == 0.125
    out = tmp_path / "dubbed.mp4"
    assert main(["dub", str(example_video), str(tone(tmp_path / "a.wav", 0.4)), "-o", str(out),
                 "-c", str(tmp_path / "a" / "last.pth"), "--box", "100", "250", "50", "200", "-q"]) == 0
    assert media.probe(out).video.frame_count == 10


def test_train_wav2lip_needs_an_expert(corpus, tmp_path, capsys, checkpoint):
    assert main(["train", "wav2lip", str(corpus), "-o", str(tmp_path / "r"), "--steps", "1", "-q"]) == 2
    assert "--expert" in capsys.readouterr().err
    assert main(["train", "wav2lip", str(corpus), "-o", str(tmp_path / "r"), "--expert", str(checkpoint), "-q"]) == 2
    assert "not a lip-sync expert" in capsys.readouterr().err


# ------------------------------------------------------------------------------- preprocess


@pytest.mark.slow
def test_preprocess_lrs2_layout_resume_and_report(tmp_path, example_video, example_audio, capsys):
    from conftest import ffmpeg, tone, write_frames

    src = tmp_path / "lrs2"
    (src / "main" / "spk1").mkdir(parents=True)
    (src / "main" / "spk2").mkdir(parents=True)
    ffmpeg("-i", str(example_video), "-t", "1", str(src / "main" / "spk1" / "00001.mp4"))
    ffmpeg("-i", str(example_video), "-t", "1", "-r", "30", str(src / "main" / "spk2" / "00002.mp4"))  # 30 fps
    blank = write_frames(tmp_path / "blank.mp4", np.full((10, 64, 64, 3), 90, np.uint8))
    ffmpeg("-i", str(blank), "-i", str(tone(tmp_path / "t.wav", 0.4)), "-shortest", str(src / "main" / "spk1" / "00003.mp4"))
    ffmpeg("-i", str(example_video), "-an", "-t", "1", str(src / "main" / "spk2" / "00004.mp4"))
    (src / "train.txt").write_text("spk1/00001\nspk1/00003\nspk2/00004\n")
    (src / "val.txt").write_text("spk2/00002\n")
    data = tmp_path / "data"
    assert main(["preprocess", str(src), str(data), "-q"]) == 0
    lines = [json.loads(x) for x in (data / "preprocess_report.jsonl").read_text().splitlines()]
    report = {r["video"]: r for r in lines if "video" in r}
    assert report["spk1/00001"]["state"] == report["spk2/00002"]["state"] == "done"
    for key in ("spk1/00001", "spk2/00002"):  # one clip each, the whole second, resampled to 25 fps
        assert [(c["clip"], c["start"], c["end"], c["frames"]) for c in report[key]["clips"]] == [(f"{key}/000", 0, 1, 25)]
    assert "no usable clip (left out: no face 0.4 s)" in report["spk1/00003"]["reason"]
    assert "no audio" in report["spk2/00004"]["reason"]
    assert lines[-1]["split"] == "lrs2 lists" and lines[-1]["val"] == {"clips": 1, "seconds": 1.0}
    assert (data / "filelists" / "train.txt").read_text() == "spk1/00001/000\n"
    assert (data / "filelists" / "val.txt").read_text() == "spk2/00002/000\n"
    assert not list(data.rglob(".*partial*"))
    train = PreprocessedData(data, "train")
    assert train.clips[0].frames == 25 and cv2_shape(data / "spk1" / "00001" / "000" / "0.jpg") == (96, 96, 3)
    assert SyncPairs(train, seed=0)[0][0].shape == (15, 48, 96)

    before = (data / "spk1" / "00001" / "000" / "0.jpg").stat().st_mtime_ns
    assert main(["preprocess", str(src), str(data)]) == 0
    assert "2 kept from before" in capsys.readouterr().err
    assert (data / "spk1" / "00001" / "000" / "0.jpg").stat().st_mtime_ns == before


def cv2_shape(path: Path):
    import cv2

    return cv2.imread(str(path)).shape


def test_speaker_split_keeps_a_speaker_together():
    from lipsync_cli.pipelines.preprocess import speaker_split

    keys = [f"spk{s}/{c:05d}" for s in range(200) for c in range(3)]
    split = {k: speaker_split(k, 0.1) for k in keys}
    for s in range(200):
        assert len({split[f"spk{s}/{c:05d}"] for c in range(3)}) == 1
    val = sum(v == "val" for v in split.values()) / len(split)
    assert 0.04 < val < 0.18 and split == {k: speaker_split(k, 0.1) for k in keys}


# ------------------------------------------------------------------------------- torchrun


def test_step_sampler_splits_each_step_among_ranks():
    from lipsync_cli.errors import InputError
    from lipsync_cli.train.loop import StepSampler

    whole = list(StepSampler(range(3, 6), 8))
    assert whole == list(range(24, 48))  # step s holds samples s*B .. s*B+B-1
    parts = [list(StepSampler(range(3, 6), 8, rank=r, world=2)) for r in range(2)]
    assert sorted(parts[0] + parts[1]) == whole and not set(parts[0]) & set(parts[1])
    assert parts[1][:4] == [28, 29, 30, 31]  # rank 1 takes the second half of step 3
    with pytest.raises(InputError, match="divide evenly"):
        StepSampler(range(2), 5, rank=0, world=2)


@pytest.mark.slow
def test_torchrun_trains_the_expert_and_the_generator_data_parallel(corpus, random_expert, tmp_path):
    # two CPU processes (Gloo): each takes half of every batch; the loops check at the end that
    # both ranks hold the same weights (so gradients were averaged), and only rank 0 writes.
    run = torchrun("train", "syncnet", corpus, "-o", tmp_path / "expert", "--steps", 3, "--batch-size", 4,
                    "--eval-every", 3, "--eval-batches", 1, "--workers", 0, "--amp", "off", "-q")
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(x) for x in (tmp_path / "expert" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "train_loss" in r] == [1, 2, 3]  # one writer
    assert [r["step"] for r in lines if "val_accuracy" in r] == [3]
    assert main(["weights", "verify", str(tmp_path / "expert" / "syncnet_step000003.pth")]) == 0

    run = torchrun("train", "wav2lip", corpus, "-o", tmp_path / "gen", "--expert", random_expert, "--steps", 2,
                    "--batch-size", 2, "--eval-every", 1, "--eval-batches", 1, "--sync-switch", 100, "--workers", 0,
                    "--amp", "off", "--width", 0.25, "-q")
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(x) for x in (tmp_path / "gen" / "metrics.jsonl").read_text().splitlines()]
    # rank 0's evaluation switched the sync loss on for both ranks (else their weights would differ)
    assert [r["sync_weight"] for r in lines if "sync_weight" in r] == [0.0, 0.03]
    assert (tmp_path / "gen" / "wav2lip_step000002.pth").exists() and (tmp_path / "gen" / "disc_last.pth").exists()
