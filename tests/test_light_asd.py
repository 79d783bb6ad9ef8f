"""Light-ASD, the active speaker detector: the shipped weights fit the network exactly, its inputs
are prepared as the reference prepares them, and on a real clip the speaking face scores above a
still one. (The per-frame equality with the reference code is recorded in
benchmarks/light_asd_reference.md; it needs the reference and is not run here.)"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
import torch

from lipsync_cli import media, weights
from lipsync_cli.audio import load_audio, mfcc_100hz
from lipsync_cli.errors import CheckpointError
from lipsync_cli.models import light_asd as la

from conftest import EXAMPLES

# The face in examples/talk.mp4 (RetinaFace's box, which moves by a few pixels over the 2 s).
TALK_BOX = (70, 72, 187, 226)


@pytest.fixture(scope="module")
def net() -> la.LightASD:
    return la.LightASD.from_file()


def test_the_shipped_file_holds_exactly_the_network(net):
    state = torch.load(la.SHIPPED_WEIGHTS, map_location="cpu", weights_only=True)
    assert len(state) == la.TENSOR_COUNT == 192
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in la.LightASD().state_dict().items()}
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert la.parameter_count(net) == 1_021_120  # "1.02 M"
    assert {k.split(".")[0] for k in state} == {"model", "lossAV", "lossV"}
    for key in la.SIGNATURE_KEYS:
        assert key in state
    # the BatchNorm statistics came from the file, not from an initialisation
    bn = net.model.visualEncoder.block1.bn_s_3
    assert torch.equal(bn.running_var, state["model.visualEncoder.block1.bn_s_3.running_var"])
    assert not torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    assert bn.eps == 1e-3 and not net.training


def test_the_shipped_file_is_the_registered_one_with_its_license():
    entry = weights.entry("light_asd_talkset")
    assert entry.kind == "light_asd" and entry.file == la.SHIPPED_WEIGHTS.name
    assert la.SHIPPED_WEIGHTS.stat().st_size == entry.size
    assert weights.sha256_of(la.SHIPPED_WEIGHTS) == entry.sha256
    assert "MIT License" in (la.SHIPPED_WEIGHTS.parent / "LICENSE.light-asd").read_text()
    assert weights.entry("light_asd_ava").kind == "light_asd"


def test_another_network_s_file_is_refused(tmp_path):
    bad = tmp_path / "other.model"
    state = la.LightASD().state_dict()
    del state["lossV.FC.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="does not match .*1 missing keys.*1 unexpected keys"):
        la.LightASD.from_file(bad)
    generator = tmp_path / "generator.pth"
    weights.write_random_generator(generator)
    with pytest.raises(CheckpointError, match="not the Light-ASD active speaker detector"):
        la.LightASD.from_file(generator)


def test_the_shipped_file_is_listed_present_and_verifies(tmp_path, monkeypatch, capsys):
    """Without anything in the weights folder, the registry finds the package's own copy, and
    `weights verify` checks its checksum and its keys and shapes against the network."""
    from lipsync_cli.cli import main

    monkeypatch.setenv("LIPSYNC_WEIGHTS", str(tmp_path / "empty"))
    assert weights.local_path(weights.entry("light_asd_talkset")) == la.SHIPPED_WEIGHTS
    assert main(["weights", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["weights"]}
    assert rows["light_asd_talkset"]["present"] and not rows["light_asd_ava"]["present"]
    assert main(["weights", "verify", "light_asd_talkset"]) == 0
    assert "OK" in capsys.readouterr().err
    broken = tmp_path / "broken.model"
    state = torch.load(la.SHIPPED_WEIGHTS, map_location="cpu", weights_only=True)
    state["lossAV.FC.weight"] = torch.zeros(3, 128)
    torch.save(state, broken)
    assert main(["weights", "verify", str(broken)]) != 0
    assert "wrong shapes (e.g. lossAV.FC.weight)" in capsys.readouterr().err


def test_crop_is_the_reference_s_padded_frame_slice():
    """crop_face cuts only the window it needs; the reference pads the whole frame with grey 110
    by 2.8 half-sizes and slices it. Same pixels, inside the frame and across its edges."""
    import cv2

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for cx, cy, half in [(80.3, 60.7, 20.2), (5.5, 100.9, 31.0), (150.2, 3.1, 12.6), (80.0, 60.0, 70.4)]:
        pad = int(half * 1.8)
        padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), constant_values=110)
        my, mx = cy + pad, cx + pad
        window = padded[int(my - half):int(my + half * 1.8), int(mx - half * 1.4):int(mx + half * 1.4)]
        grey = cv2.cvtColor(cv2.resize(window, (224, 224)), cv2.COLOR_BGR2GRAY)[56:168, 56:168]
        np.testing.assert_array_equal(la.crop_face(frame, cx, cy, half), grey)


def test_crop_geometry_smooths_each_track_coordinate_with_a_13_frame_median():
    boxes = np.tile([100.0, 50.0, 140.0, 110.0], (30, 1))  # 40 wide, 60 tall: half-size 30
    boxes[15] += 40  # one jump: the median removes it
    geo = la.crop_geometry(boxes)
    np.testing.assert_allclose(geo[6:24], np.tile([120.0, 80.0, 30.0], (18, 1)))
    with pytest.raises(ValueError, match="at least 7 frames"):
        la.crop_geometry(boxes[:6])


def test_mfcc_rows_per_frame_and_padding():
    samples = np.random.default_rng(1).normal(0, 0.1, 16000).astype(np.float32)  # 1 s: 25 frames
    plain = mfcc_100hz(np.round(samples * 32768) / 32768).T
    assert len(plain) == 99  # python_speech_features' framing: one row short of 4 per frame
    rows = la.mfcc_for(samples)
    assert rows.shape == (100, 13) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[:99], plain)  # padding the end leaves the earlier rows
    assert la.mfcc_for(samples, frames=10).shape == (40, 13)
    assert la.mfcc_for(samples, frames=30).shape == (120, 13)


@pytest.mark.slow
def test_windows_are_scored_alone_and_averaged(net):
    """Windows of 1 s and 2 s over 50 frames, as the reference scores them: each window alone
    (the network sees no frame outside it), the two lengths averaged. Encoding the track once and
    the windows' edges apart (what speaking_scores does here) gives the same numbers."""
    rng = np.random.default_rng(2)
    crops = rng.integers(0, 256, (50, 112, 112), dtype=np.uint8)
    mfcc = rng.normal(0, 5, (200, 13)).astype(np.float32)
    got = la.speaking_scores(net, crops, mfcc, durations=(1, 2))

    def alone(first, last):
        with torch.inference_mode():
            return net(torch.from_numpy(mfcc[4 * first:4 * last])[None],
                       torch.from_numpy(crops[first:last]).float()[None])[0].numpy()

    one = np.concatenate([alone(0, 25), alone(25, 50)])
    two = alone(0, 50)
    assert np.abs(one - two)[19:31].max() > 1e-2  # near the 1 s windows' edge, they differ
    np.testing.assert_allclose(got, (one + two) / 2, atol=1e-5)
    with pytest.raises(ValueError, match="mfcc must be"):
        la.speaking_scores(net, crops, mfcc[:196])
    with pytest.raises(ValueError, match="crops must be"):
        la.speaking_scores(net, crops[:, :100], mfcc)


@pytest.mark.slow
def test_the_speaking_face_scores_above_a_still_one(net):
    """examples/talk.mp4 with its own speech: the talking face scores above 0 on every frame; the
    same face held still (its first frame repeated) under the same speech, below 0 on every frame."""
    info = media.probe(str(EXAMPLES / "talk.mp4"))
    frames = np.concatenate(list(media.FrameReader(info, fps=Fraction(la.FPS))))
    boxes = np.tile(TALK_BOX, (len(frames), 1))
    mfcc = la.mfcc_for(load_audio(str(EXAMPLES / "talk.mp4")).samples, frames=len(frames))
    # One 2 s window (the clip's length; the reference's longer windows are the same one), to keep it quick.
    talking = la.speaking_scores(net, la.track_crops(frames, boxes), mfcc, durations=(2,))
    still = la.speaking_scores(net, la.track_crops([frames[0]] * len(frames), boxes), mfcc, durations=(2,))
    assert len(talking) == len(frames) == 50
    assert talking.min() > 0 > still.max()


@pytest.mark.slow
def test_the_shipped_onnx_visual_encoder_computes_what_the_network_does(net):
    """The visual encoder that ships exported beside the weights (run by ONNX Runtime on the CPU)
    gives the PyTorch module's embeddings, and so its scores, on a real clip's crops."""
    info = media.probe(str(EXAMPLES / "talk.mp4"))
    frames = np.concatenate(list(media.FrameReader(info, fps=Fraction(la.FPS))))
    crops = la.track_crops(frames, np.tile(TALK_BOX, (len(frames), 1)))
    mfcc = la.mfcc_for(load_audio(str(EXAMPLES / "talk.mp4")).samples, frames=len(frames))
    fast = la.LightASD.from_file()
    assert la.use_onnx_visual(fast, la.SHIPPED_WEIGHTS) and fast.onnx_visual is not None
    grey = torch.from_numpy(crops[:30]).float()[None]
    with torch.inference_mode():
        reference = net.model.visualEncoder(grey)
    assert torch.allclose(fast.onnx_visual(grey), reference, atol=1e-4)
    scores = la.speaking_scores(net, crops, mfcc, durations=(1,))
    assert np.abs(la.speaking_scores(fast, crops, mfcc, durations=(1,)) - scores).max() < 1e-4
    # weights other than the shipped ones: exported on the spot when the onnx package is there, else PyTorch
    other = la.LightASD.from_file()
    try:
        import onnx  # noqa: F401
    except ImportError:
        assert not la.use_onnx_visual(other, "elsewhere.model") and other.onnx_visual is None


@pytest.mark.slow
def test_the_int8_visual_encoder_keeps_the_scores(net):
    """The int8 copy of the shipped encoder (what `--precision auto` runs on the CPU): on a real
    clip with its own speech, the speaking scores within 0.3 of fp32 and of the same sign on 98%
    of frames; the talking face still scores above the same face held still. `--precision fp32`
    keeps the fp32 encoder."""
    from lipsync_cli.faces.speakers import load_detector

    assert la.SHIPPED_VISUAL_INT8.exists() and la.SHIPPED_VISUAL_INT8.stat().st_size < 2_000_000
    fast, exact = load_detector("light_asd_talkset"), load_detector("light_asd_talkset", precision="fp32")
    assert fast.onnx_int8 and not exact.onnx_int8 and exact.onnx_visual is not None
    info = media.probe(str(EXAMPLES / "talk2.mp4"))
    frames = np.concatenate(list(media.FrameReader(info, fps=Fraction(la.FPS))))
    from lipsync_cli.faces.speakers import SpeakerOptions, find_speakers

    track = find_speakers(str(EXAMPLES / "talk2.mp4"), None, SpeakerOptions(), score=False).tracks[0]
    crops = la.track_crops(frames[track.first:track.first + len(track.boxes)], track.boxes)
    mfcc = la.mfcc_for(load_audio(str(EXAMPLES / "talk2.mp4")).samples, frames=track.first + len(crops))[4 * track.first:]
    a = la.speaking_scores(exact, crops, mfcc, durations=(1,))
    b = la.speaking_scores(fast, crops, mfcc, durations=(1,))
    assert np.abs(a - b).max() < 0.3
    assert ((a > 0) == (b > 0)).mean() >= 0.98
    still = la.speaking_scores(fast, np.repeat(crops[:1], len(crops), axis=0), mfcc, durations=(1,))
    assert b.mean() > 0 > still.mean()
