"""High-resolution AttnWav2Lip (models/wav2lip.py, FACE_SIZES): the generator family at 96, 192
and 288 pixels; 96 is the published network unchanged; a 192 checkpoint dubs a real clip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lipsync_cli.checkpoints import load_network, published_keys, save_published, structure_problems
from lipsync_cli.cli import main
from lipsync_cli.models.inference import GeneratorRunner
from lipsync_cli.models.wav2lip import build_generator, size_of

from conftest import EXAMPLES, decode_frames, ffmpeg

# parameters per size (the 96 ones are the published Wav2Lip's and AttnWav2Lip's)
PARAMETERS = {("wav2lip", 96): 36_298_035, ("wav2lip", 192): 36_331_803, ("wav2lip", 288): 36_333_851,
              ("attnwav2lip", 96): 36_503_343, ("attnwav2lip", 192): 36_537_451, ("attnwav2lip", 288): 36_539_499}


@pytest.mark.parametrize("name,size", sorted(PARAMETERS))
def test_each_size_maps_its_faces_and_counts_its_parameters(name, size):
    torch.manual_seed(0)
    net = build_generator(name, width=0.25, size=size).eval()  # a quarter of the width: the shapes, fast
    with torch.no_grad():
        out = net(torch.rand(2, 1, 80, 16), torch.rand(2, 6, size, size))
    assert out.shape == (2, 3, size, size) and 0 <= out.min() and out.max() <= 1
    with torch.device("meta"):
        full = build_generator(name, size=size)
    assert sum(p.numel() for p in full.parameters()) == PARAMETERS[(name, size)]
    assert size_of(full.state_dict()) == size
    # AttnWav2Lip: attention after every block, the outer ones included
    if name == "attnwav2lip":
        assert len(full.face_encoder_attention) == len(full.face_encoder_blocks) == (7 if size == 96 else 8)
        assert len(full.face_decoder_attention) == len(full.face_decoder_blocks)


def test_96_is_still_the_published_network():
    with torch.device("meta"):
        net = build_generator("wav2lip")
    shapes = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert shapes == published_keys()["wav2lip_generator"]


def test_only_the_rows_the_paste_shows_at_192():
    torch.manual_seed(1)
    net = build_generator("wav2lip", width=0.25, size=192).eval()
    mel, faces = torch.rand(2, 1, 80, 16), torch.rand(2, 6, 192, 192)
    with torch.no_grad():
        whole = net(mel, faces)
        rows, top = net.lower_rows(mel, faces, first_row=72)
    assert top <= 72 and torch.allclose(rows, whole[:, :, top:], atol=1e-5)


def test_a_192_checkpoint_dubs_a_clip_and_says_its_size(tmp_path, capsys):
    ckpt = tmp_path / "g192.pth"
    torch.manual_seed(0)
    save_published(build_generator("attnwav2lip", width=0.25, size=192), ckpt)
    assert structure_problems(ckpt) == []  # a larger face is checked against the network built to fit it
    loaded = load_network(ckpt, ["wav2lip_generator"])
    assert loaded.net.config.size == 192 and loaded.net.config.name == "attnwav2lip"
    speech = tmp_path / "speech.wav"
    ffmpeg("-i", str(EXAMPLES / "speech.wav"), "-t", "0.4", str(speech))
    out = tmp_path / "out.mp4"
    assert main(["dub", str(EXAMPLES / "talk.mp4"), str(speech), "-o", str(out), "-c", str(ckpt), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["face_size"] == 192 and result["frames"] == 10 and len(decode_frames(out)) == 10
    assert main(["dub", str(EXAMPLES / "talk.mp4"), str(speech), "-o", str(tmp_path / "b.mp4"), "-c", str(ckpt)]) == 0
    assert "attnwav2lip 192x192 on cpu" in capsys.readouterr().err


def test_faces_of_another_size_are_refused():
    runner = GeneratorRunner(build_generator("wav2lip", width=0.25, size=192), device="cpu", precision="fp32")
    assert runner.face_size == 192
    with pytest.raises(ValueError, match="faces of 96x96 for a 192x192 generator"):
        runner(np.zeros((1, 80, 16), np.float32), np.zeros((1, 96, 96, 3), np.uint8))
    with pytest.raises(ValueError, match="face size 128"):
        build_generator("wav2lip", size=128)


@pytest.mark.parametrize("size", [96, 192, 288])
def test_the_expert_and_the_discriminator_at_each_size(size):
    from lipsync_cli.models.discriminator import VisualQualityDiscriminator
    from lipsync_cli.models.discriminator import size_of as disc_size
    from lipsync_cli.models.syncnet import SyncNetColor, lower_half_stack
    from lipsync_cli.models.syncnet import size_of as expert_size

    torch.manual_seed(0)
    expert, disc = SyncNetColor(0.25, size).eval(), VisualQualityDiscriminator(0.25, size).eval()
    frames = torch.rand(2, 3, 5, size, size)  # five frames, as the expert reads them
    with torch.no_grad():
        audio, face = expert(torch.rand(2, 1, 80, 16), lower_half_stack(frames))  # the lower halves at their size
        real = disc(frames)
    assert audio.shape == face.shape == (2, 128) and real.shape == (10, 1)
    assert expert_size(expert.state_dict()) == disc_size(disc.state_dict()) == size
    if size == 96:  # the published layouts
        assert {k: list(v.shape) for k, v in SyncNetColor().state_dict().items()} == \
            published_keys()["wav2lip_syncnet_expert_color"]
        assert {k: list(v.shape) for k, v in VisualQualityDiscriminator().state_dict().items()} == \
            published_keys()["wav2lip_visual_quality_discriminator"]


@pytest.mark.slow
def test_a_short_training_at_192_lowers_the_loss_and_resumes(train_corpus, tmp_path, capsys):
    """The whole recipe at 192: the expert, then the generator with it and the discriminator, on the
    synthetic corpus's crops resized to 192 (eighth-width networks: the loop at that size is tested)."""
    from lipsync_cli.checkpoints import load_network
    from lipsync_cli.train.wav2lip import Wav2LipConfig, train_wav2lip

    common = ["--batch-size", "2", "--workers", "0", "--amp", "off", "--width", "0.125", "--size", "192",
              "--eval-batches", "2", "-q"]
    assert main(["train", "syncnet", str(train_corpus), "-o", str(tmp_path / "expert"), "--steps", "2",
                 "--eval-every", "2", *common]) == 0
    expert = tmp_path / "expert" / "last.pth"
    assert load_network(expert, ["wav2lip_syncnet_expert_color"]).net.size == 192

    def cfg(steps):
        return Wav2LipConfig(data=str(train_corpus), out=str(tmp_path / "gen"), expert=str(expert), steps=steps,
                             batch_size=2, lr=2e-3, eval_every=4, eval_batches=2, checkpoint_every=4, workers=0,
                             amp="off", width=0.125, size=192, model="attnwav2lip", sync_switch=100.0)

    train_wav2lip(cfg(4))
    resumed = train_wav2lip(cfg(8))  # from last.pth at step 4
    assert resumed["step"] == 8
    rows = [json.loads(x) for x in (tmp_path / "gen" / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_l1"] for r in rows if "val_l1" in r]
    assert len(val) == 2 and val[1] < 0.9 * val[0]  # the same fixed val windows, step 4 then step 8
    gen = load_network(tmp_path / "gen" / "last.pth", ["wav2lip_generator"]).net
    assert gen.config.size == 192 and gen.config.name == "attnwav2lip"

    # an expert of another size: one clear line
    with pytest.raises(Exception, match="an expert for 192-pixel faces; this generator trains at 96"):
        train_wav2lip(Wav2LipConfig(data=str(train_corpus), out=str(tmp_path / "g96"), expert=str(expert), steps=1,
                                    batch_size=1, workers=0, amp="off", width=0.125))
    assert main(["train", "wav2lip", str(train_corpus), "-o", str(tmp_path / "g96b"), "--expert", str(expert),
                 "--steps", "1", "--batch-size", "1", "--workers", "0", "--width", "0.125", "-q"]) == 2
    assert "train syncnet --size 96" in capsys.readouterr().err
