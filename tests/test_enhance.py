"""`dub --enhance gfpgan`: GFPGAN v1.4 (models/gfpgan.py) loads the published layout and computes
what the reference architecture computes; the alignment to its template; the stage changes only
the regenerated mouth of a real clip; the missing-weights message; the legacy format."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from lipsync_cli.checkpoints import CheckpointError, published_keys, structure_problems
from lipsync_cli.cli import main
from lipsync_cli.faces.align import RESTORE_TEMPLATE, five_point_alignment
from lipsync_cli.faces.paste import FEATHER_FROM
from lipsync_cli.models import gfpgan as g
from lipsync_cli.pipelines.enhance import FaceRestorer

from conftest import EXAMPLES, decode_frames, ffmpeg, made_once

TALK_BOX = (70, 72, 187, 226)  # x1, y1, x2, y2 of the face in examples/talk.mp4 (RetinaFace's box)

# The reference architecture (TencentARC/GFPGAN gfpganv1_clean_arch.py at 7552a77, run in a scratch
# venv with randomize_noise=False) on the weights of random_gfpgan(0) and the input below: the output
# at (channel, y, x), its mean and its standard deviation.
PINNED = {(0, 0, 0): 0.855555, (1, 100, 200): 0.318854, (2, 256, 256): 1.313055, (0, 511, 511): 0.218826,
          (1, 300, 50): 1.291949, (2, 64, 448): 1.637953}
PINNED_MEAN, PINNED_STD = 0.625684, 0.871470


def seeded_gfpgan(narrow: float = 1.0, seed: int = 0) -> g.GFPGAN:
    return g.random_gfpgan(seed, narrow)


def save_legacy_gfpgan(model: g.GFPGAN, path):
    """As the published GFPGANv1.4.pth is: {"params_ema": state_dict}, torch's legacy format."""
    tmp = path.with_name(f".{path.name}.partial")
    torch.save({"params_ema": model.state_dict()}, tmp, _use_new_zipfile_serialization=False)
    tmp.rename(path)


@pytest.fixture(scope="module")
def narrow_gfpgan(tmp_path_factory):
    """A seeded GFPGAN at an eighth of the width (7.6 M parameters, same keys, narrower shapes)."""
    return made_once(tmp_path_factory, "ckpt", "gfpgan_narrow_legacy.pth",
                     lambda p: save_legacy_gfpgan(seeded_gfpgan(0.125), p))


def test_the_network_is_the_published_one():
    with torch.device("meta"):
        model = g.GFPGAN()
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == published_keys()["gfpgan"]  # 285 tensors, the 15 noise maps among them
    assert len(shapes) == 285 and g.parameter_count(model) == 86_444_252


def test_outputs_equal_the_reference_architecture():
    model = seeded_gfpgan()
    x = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        y = model(x)[0]
    assert y.shape == (3, 512, 512)
    for where, value in PINNED.items():
        assert y[where].item() == pytest.approx(value, abs=1e-4)
    assert y.mean().item() == pytest.approx(PINNED_MEAN, abs=1e-4)
    assert y.std().item() == pytest.approx(PINNED_STD, abs=1e-4)


def test_a_legacy_format_checkpoint_loads_strictly(narrow_gfpgan, tmp_path):
    model = g.load_gfpgan(str(narrow_gfpgan))
    assert model.narrow == 0.125
    reference = seeded_gfpgan(0.125).state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())
    # the same face in, the same face out: the stored noise, never fresh noise
    x = torch.rand(2, 3, 512, 512, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(model(x), model(x))
        assert model(x).shape == (2, 3, 512, 512)
    # `lipsync weights verify` holds a file to the published shapes: a narrow copy is not GFPGAN v1.4
    [problem] = structure_problems(narrow_gfpgan, "gfpgan")
    assert "wrong shapes" in problem and "conv_body_first.weight" in problem
    # one tensor missing: refused, in one line
    state = torch.load(narrow_gfpgan, weights_only=True)["params_ema"]
    del state["stylegan_decoder.noises.noise3"]
    broken = tmp_path / "broken.pth"
    torch.save({"params_ema": state}, broken)
    with pytest.raises(CheckpointError, match=r"1 missing keys \(e.g. stylegan_decoder.noises.noise3\)"):
        g.load_gfpgan(str(broken))


def similarity_matrix(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def test_alignment_puts_the_landmarks_on_the_template_and_back():
    # a face in a frame: the template moved by a known similarity, its landmarks 0.2 px off
    to_frame = similarity_matrix(12.0, 0.45, 300.0, 140.0)
    landmarks = RESTORE_TEMPLATE @ to_frame[:, :2].T + to_frame[:, 2]
    landmarks += np.random.default_rng(0).uniform(-0.2, 0.2, landmarks.shape)
    m = five_point_alignment(landmarks)
    aligned = landmarks @ m[:, :2].T + m[:, 2]
    assert np.abs(aligned - RESTORE_TEMPLATE).max() < 1.0
    # pixels: dots at the landmarks land on the template in the 512x512 face and come back
    frame = np.zeros((480, 640), np.uint8)
    for x, y in np.round(landmarks).astype(int):
        cv2.circle(frame, (int(x), int(y)), 3, 255, -1)
    face = cv2.warpAffine(frame, m, (512, 512), flags=cv2.INTER_LINEAR)
    for (x, y) in RESTORE_TEMPLATE:
        patch = face[int(y) - 12:int(y) + 13, int(x) - 12:int(x) + 13].astype(float)
        ys, xs = np.mgrid[-12:13, -12:13]
        cy, cx = (patch * ys).sum() / patch.sum() + int(y), (patch * xs).sum() / patch.sum() + int(x)
        assert abs(cx - x) < 3 and abs(cy - y) < 3  # 3 px here is under 1.4 px in the frame (scale 0.45)
    back = cv2.warpAffine(face, cv2.invertAffineTransform(m), (640, 480), flags=cv2.INTER_LINEAR)
    for x, y in landmarks:
        patch = back[int(y) - 5:int(y) + 6, int(x) - 5:int(x) + 6].astype(float)
        ys, xs = np.mgrid[-5:6, -5:6]
        cy, cx = (patch * ys).sum() / patch.sum() + int(y), (patch * xs).sum() / patch.sum() + int(x)
        assert abs(cx - round(x)) < 1 and abs(cy - round(y)) < 1


def test_restoring_a_still_face_is_the_same_every_frame(narrow_gfpgan):
    frame = cv2.imread(str(EXAMPLES / "portrait.png"))
    h, w = frame.shape[:2]
    box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
    restorer = FaceRestorer(g.load_gfpgan(str(narrow_gfpgan)), "cpu")
    first, second = restorer.enhance([(frame, frame, (box,)), (frame, frame, (box,))])
    assert np.array_equal(first, second)  # no fresh noise, no landmark drift on a still
    x1, y1, x2, y2 = box
    outside = np.ones((h, w), bool)
    outside[y1:y2, x1:x2] = False
    assert np.array_equal(first[outside], frame[outside])


@pytest.fixture(scope="module")
def short_speech(tmp_path_factory):
    path = tmp_path_factory.mktemp("enhance") / "speech.wav"
    ffmpeg("-i", str(EXAMPLES / "speech.wav"), "-t", "0.4", str(path))
    return path


def dub_frames(tmp_path, name, checkpoint, speech, *extra):
    out = tmp_path / f"{name}.mp4"
    y1, x1, x2, y2 = TALK_BOX[1], TALK_BOX[0], TALK_BOX[2], TALK_BOX[3]
    assert main(["dub", str(EXAMPLES / "talk.mp4"), str(speech), "-o", str(out), "-c", str(checkpoint),
                 "--box", str(y1), str(y2), str(x1), str(x2), "--crf", "0", "--precision", "fp32", "--quiet",
                 *extra]) == 0
    return decode_frames(out).astype(np.int16)


def test_enhance_changes_only_the_regenerated_mouth(narrow_checkpoint, narrow_gfpgan, short_speech, tmp_path):
    plain = dub_frames(tmp_path, "plain", narrow_checkpoint, short_speech)
    mouth = dub_frames(tmp_path, "mouth", narrow_checkpoint, short_speech, "--enhance", "gfpgan",
                       "--enhance-weights", str(narrow_gfpgan))
    face = dub_frames(tmp_path, "face", narrow_checkpoint, short_speech, "--enhance", "gfpgan",
                      "--enhance-weights", str(narrow_gfpgan), "--enhance-region", "face")
    assert plain.shape == mouth.shape == face.shape and len(plain) == 10
    x1, y1, x2, y2 = TALK_BOX
    top = y1 + int(FEATHER_FROM * (y2 - y1))  # the blend mask starts here (nothing above is pasted)
    untouched = np.ones(plain.shape[1:3], bool)
    untouched[top:y2, x1:x2] = False
    # lossless (crf 0): outside the mask every pixel is the plain dub's, but for the chroma of the
    # 2x2 blocks on the mask's edge
    edge = cv2.dilate((~untouched).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert np.array_equal(mouth[:, ~edge], plain[:, ~edge])
    inside = np.zeros_like(untouched)
    inside[top + (y2 - top) // 3:y2 - 4, x1 + 16:x2 - 16] = True
    assert np.abs(mouth[:, inside] - plain[:, inside]).mean() > 5  # the restored mouth (random weights here)
    # the whole face: the eyes change too
    eyes = np.zeros_like(untouched)
    eyes[y1 + 20:top - 4, x1 + 16:x2 - 16] = True
    assert np.array_equal(mouth[:, eyes], plain[:, eyes]) and np.abs(face[:, eyes] - plain[:, eyes]).mean() > 5


def test_missing_weights_say_what_to_download(narrow_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LIPSYNC_WEIGHTS", str(tmp_path / "weights"))
    out = tmp_path / "out.mp4"
    assert main(["dub", str(EXAMPLES / "talk.mp4"), str(EXAMPLES / "speech.wav"), "-o", str(out),
                 "-c", str(narrow_checkpoint), "--enhance", "gfpgan"]) == 2
    message = capsys.readouterr().err
    assert "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth" in message
    assert str(tmp_path / "weights" / "GFPGANv1.4.pth") in message and "--enhance-weights" in message
    assert "Traceback" not in message and not out.exists()
    assert main(["dub", str(EXAMPLES / "talk.mp4"), str(EXAMPLES / "speech.wav"), "-o", str(out),
                 "-c", str(narrow_checkpoint), "--enhance", "codeformer"]) == 2
    assert "--enhance codeformer: choose none or gfpgan" in capsys.readouterr().err
    entry = json.loads((EXAMPLES.parent / "weights" / "registry.json").read_text())
    [gfpgan] = [e for e in entry["weights"] if e["name"] == "gfpgan_v1.4"]
    assert gfpgan["size"] == 348_632_874 and gfpgan["sha256"].startswith("e2cd4703")


def test_batch_takes_the_enhance_stage(narrow_checkpoint, narrow_gfpgan, short_speech, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    ffmpeg("-i", str(EXAMPLES / "talk.mp4"), "-t", "0.4", str(videos / "a.mp4"))
    assert main(["batch", str(videos), "--audio", str(short_speech), "-o", str(tmp_path / "out"),
                 "-c", str(narrow_checkpoint), "--enhance", "gfpgan", "--enhance-weights", str(narrow_gfpgan),
                 "--precision", "fp32", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["enhance"] == "gfpgan (fp32, mouth)" and summary["done"] == 1
    assert len(decode_frames(tmp_path / "out" / "a.mp4")) == 10
