"""LSE-D / LSE-C: the evaluation SyncNet's published layout, the offset statistics on known
features, the MFCC front end, the face-crop geometry, and `lipsync eval sync` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import REFERENCE_KEYS
from lipsync_cli.cli import main
from lipsync_cli.audio import mfcc_100hz
from lipsync_cli.eval.lse import crops_224, offset_distances, sync_scores
from lipsync_cli.models.syncnet_v2 import EvalSyncNet


def test_eval_syncnet_has_the_published_keys_and_shapes():
    keys = json.loads(REFERENCE_KEYS.read_text())["syncnet_v2_evaluation"]
    net = EvalSyncNet().eval()
    assert {k: list(v.shape) for k, v in net.state_dict().items()} == keys
    assert net.audio_features(torch.randn(2, 1, 13, 20)).shape == (2, 1024)
    assert net.lip_features(torch.rand(2, 3, 5, 224, 224) * 255).shape == (2, 1024)


def test_offset_statistics_by_hand():
    # vshift 1, two frames, 1-d features: dists[i, k] = |lip[i] - aud[i + k - 1]| (0 past the ends)
    lip = torch.tensor([[1.0], [2.0]])
    aud = torch.tensor([[2.0], [5.0]])
    d = offset_distances(lip, aud, vshift=1)
    assert torch.allclose(d, torch.tensor([[1.0, 1.0, 4.0], [0.0, 3.0, 2.0]]), atol=1e-5)
    lse_d, lse_c, offset = sync_scores(d, vshift=1)  # means 0.5, 2.0, 3.0
    assert lse_d == pytest.approx(0.5, abs=1e-5) and lse_c == pytest.approx(1.5, abs=1e-5) and offset == 1


def test_a_shifted_copy_is_found_at_its_offset():
    torch.manual_seed(0)
    aud = torch.randn(60, 32)
    lip = torch.cat([aud[3:], torch.randn(3, 32)])  # the lips show what the audio says 3 frames later
    lse_d, lse_c, offset = sync_scores(offset_distances(lip, aud))
    assert offset == -3 and lse_c > 1.0
    lse_d0, lse_c0, offset0 = sync_scores(offset_distances(aud, aud))
    assert offset0 == 0 and lse_d0 < 1e-3 and lse_c0 > lse_c * 0.9


def test_mfcc_is_13_coefficients_at_100_hz():
    samples = (np.sin(np.arange(16000) / 16000 * 2 * np.pi * 220) * 0.3).astype(np.float32)
    mfcc = mfcc_100hz(samples)
    assert mfcc.shape[0] == 13 and 98 <= mfcc.shape[1] <= 100 and np.isfinite(mfcc).all()


def test_crop_geometry_is_the_published_one():
    y, x = np.mgrid[0:200, 0:240]
    frame = np.stack([x % 256, y % 256, (x + y) % 256], axis=2).astype(np.uint8)
    box = (70, 50, 170, 150)  # x1, y1, x2, y2: a 100 px face centred at (120, 100)
    crops = crops_224([frame] * 13, [box] * 13)
    # half-size 50: rows 100-50 .. 100+50*1.8, columns 120-50*1.4 .. 120+50*1.4
    expected = cv2_resize(frame[50:190, 50:190])
    assert np.abs(crops[6].astype(int) - expected.astype(int)).max() <= 1
    edge = crops_224([frame] * 13, [(0, 0, 100, 100)] * 13)[0]
    assert (edge[:20, :20] == 110).all()  # outside the frame: the grey padding


def cv2_resize(img):
    import cv2

    return cv2.resize(img, (224, 224))


@pytest.mark.slow
def test_eval_sync_command(tmp_path, capsys, example_video, narrow_checkpoint):
    from conftest import ffmpeg

    torch.manual_seed(0)
    v2 = tmp_path / "syncnet_v2.model"
    torch.save(EvalSyncNet().state_dict(), v2)  # the published file is a bare state_dict
    clip = tmp_path / "clip.mp4"
    ffmpeg("-i", str(example_video), "-t", "0.4", str(clip))  # the first 10 frames, with their sound
    assert main(["eval", "sync", str(clip), str(clip), "--syncnet", str(v2), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "syncnet_v2_evaluation" and len(report["videos"]) == 2
    first = report["videos"][0]
    assert first["frames"] == 5  # 0.4 s at 25 fps, less the last 5-frame window
    assert np.isfinite(first["lse_d"]) and first["lse_c"] >= 0 and -15 <= first["offset"] <= 15

    from lipsync_cli.checkpoints import save_published
    from lipsync_cli.models.syncnet import SyncNetColor

    expert = tmp_path / "expert.pth"
    save_published(SyncNetColor(), expert)
    assert main(["eval", "sync", str(clip), "--syncnet", str(expert), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "wav2lip_syncnet_expert_color"
    assert main(["eval", "sync", str(clip), "--syncnet", str(narrow_checkpoint)]) == 2  # a generator
    assert "neither the evaluation SyncNet" in capsys.readouterr().err


class _CopyReference(torch.nn.Module):
    """A 'generator' that returns the reference frame: it does not listen."""

    def forward(self, mels, faces):
        return faces[:, 3:]


@pytest.mark.slow
def test_generator_scores_on_a_held_out_split(train_corpus):
    from lipsync_cli.eval.generator import score_split, summarise
    from lipsync_cli.models.syncnet import SyncNetColor
    from lipsync_cli.datasets import PreprocessedData

    test = PreprocessedData(train_corpus, "test")
    torch.manual_seed(0)
    judge = SyncNetColor(width=0.25).eval()  # what is tested is the scoring, not the judge
    scores = score_split(_CopyReference(), judge, test, max_clips=3)
    assert len(scores) == 3
    for s in scores:
        # copying the reference leaves the crops as they were: the same scores as undubbed faces
        assert s.lse_d == pytest.approx(s.undubbed_lse_d, abs=1e-4) and s.sync == pytest.approx(s.undubbed_sync)
        assert s.l1 > 0.005  # the reference half a clip away has another mouth than the target
        assert -1.0 <= s.sync <= 1.0
    summary = summarise(scores)
    assert summary["clips"] == 3 and summary["l1"] == pytest.approx(np.mean([s.l1 for s in scores]))
