"""Checkpoint loading (published layouts, safety, wrong networks) and the weights registry."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from conftest import REFERENCE_KEYS, seeded_generator, tone
from lipsync_cli import checkpoints, outputs, weights
from lipsync_cli.checkpoints import load_generator, save_published, structure_problems
from lipsync_cli.errors import CheckpointError, InputError, LipsyncError
from lipsync_cli.models.loading import read_state_dict

PUBLISHED = json.loads(Path(REFERENCE_KEYS).read_text())
DESCRIPTIONS = {
    "wav2lip_visual_quality_discriminator": "visual-quality discriminator",
    "wav2lip_syncnet_expert_color": "lip-sync expert",
    "syncnet_v2_evaluation": "evaluation SyncNet",
}


def fake_published(kind: str, path: Path, alter=None) -> Path:
    """A checkpoint with exactly the published keys and shapes of `kind`, saved as the published
    files are ({"state_dict": {"module.<key>": ...}, ...}). The values are zeros; each tensor is a
    broadcast view of one element, so the file stays small whatever the network's size."""
    state = {}
    for key, shape in PUBLISHED[kind].items():
        dtype = torch.long if key.endswith("num_batches_tracked") else torch.float32
        state[key] = torch.zeros(1, dtype=dtype).reshape([1] * len(shape)).expand(shape) if shape else torch.zeros((), dtype=dtype)
    if alter is not None:
        alter(state)
    payload = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "optimizer": None,
               "global_step": 1000, "global_epoch": 3}
    torch.save(payload, path)
    return path


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def reference_net():
    return seeded_generator("wav2lip")


# ---------------------------------------------------------------------------------------------
# The layouts a generator checkpoint comes in


def test_load_generator_every_layout_gives_the_same_weights(checkpoint, legacy_checkpoint, tmp_path, reference_net):
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert all(k.startswith("module.") for k in raw["state_dict"])
    bare = {k[len("module."):]: v for k, v in raw["state_dict"].items()}
    torch.save(bare, tmp_path / "bare.pth")  # a bare state_dict, as `lipsync==0.1.0` loads
    torch.save({"state_dict": bare, "global_step": 5}, tmp_path / "unwrapped.pth")  # no DataParallel prefix

    loaded = {}
    assert legacy_checkpoint.read_bytes()[:2] == b"\x80\x02"  # the published files' legacy (pre-zip) format
    for path in (checkpoint, legacy_checkpoint, tmp_path / "bare.pth", tmp_path / "unwrapped.pth"):
        net, name = load_generator(path)
        assert name == "wav2lip", path
        assert not net.training
        loaded[path] = net
    for net in loaded.values():
        assert same_weights(net, reference_net)


def test_attnwav2lip_checkpoint_is_recognised_from_its_keys(attn_checkpoint):
    net, name = load_generator(attn_checkpoint)
    assert name == "attnwav2lip"
    assert len(net.face_encoder_attention) == 7
    assert same_weights(net, seeded_generator("attnwav2lip"))
    # Asking for it by name works too.
    assert load_generator(attn_checkpoint, model="attnwav2lip")[1] == "attnwav2lip"


@pytest.mark.parametrize("variant", ["attnwav2lip-spatial", "attnwav2lip-channel"])
def test_ablation_checkpoints_are_recognised(variant, tmp_path):
    path = tmp_path / f"{variant}.pth"
    save_published(seeded_generator(variant), path)
    assert load_generator(path)[1] == variant
    assert structure_problems(path) == []


def test_attnwav2lip_requested_on_a_plain_wav2lip_checkpoint(checkpoint):
    with pytest.raises(CheckpointError, match="missing") as err:
        load_generator(checkpoint, model="attnwav2lip")
    assert "face_encoder_attention" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="unknown model"):
        load_generator(checkpoint, model="wav2lip-hq")


def test_wav2lip_requested_on_an_attnwav2lip_checkpoint(attn_checkpoint):
    with pytest.raises(CheckpointError, match="unexpected"):
        load_generator(attn_checkpoint, model="wav2lip")


# ---------------------------------------------------------------------------------------------
# Other published networks: recognised and refused by `dub`, verified by structure


@pytest.mark.parametrize("kind", sorted(DESCRIPTIONS))
def test_other_published_networks_are_refused_by_name(kind, tmp_path):
    path = fake_published(kind, tmp_path / f"{kind}.pth")
    state, extras = read_state_dict(path)
    assert checkpoints.identify(state) == kind
    assert extras["global_step"] == 1000
    with pytest.raises(CheckpointError, match=DESCRIPTIONS[kind]) as err:
        load_generator(path)
    assert "not a generator" in str(err.value)


@pytest.mark.parametrize("kind", sorted(PUBLISHED))
def test_structure_problems_of_each_published_kind(kind, tmp_path):
    good = fake_published(kind, tmp_path / "good.pth")
    assert structure_problems(good) == []
    assert structure_problems(good, kind) == []

    keys = list(PUBLISHED[kind])
    victim = next(k for k in keys if k.endswith("weight") and len(PUBLISHED[kind][k]) == 4)
    last = keys[-1]

    def reshape(state):
        shape = list(state[victim].shape)
        shape[0] += 1
        state[victim] = torch.zeros(shape)

    wrong = fake_published(kind, tmp_path / "wrong.pth", alter=reshape)
    problems = structure_problems(wrong)
    assert len(problems) == 1 and "wrong shapes" in problems[0] and victim in problems[0]

    missing = fake_published(kind, tmp_path / "missing.pth", alter=lambda s: s.pop(last))
    problems = structure_problems(missing)
    assert len(problems) == 1 and "missing keys" in problems[0] and last in problems[0]

    extra = fake_published(kind, tmp_path / "extra.pth", alter=lambda s: s.update(stray=torch.zeros(2)))
    problems = structure_problems(extra)
    assert len(problems) == 1 and "unexpected keys" in problems[0] and "stray" in problems[0]


def test_structure_problems_for_the_wrong_kind(tmp_path, checkpoint):
    expert = fake_published("wav2lip_syncnet_expert_color", tmp_path / "expert.pth")
    problems = structure_problems(expert, "wav2lip_generator")
    assert problems and "lip-sync expert" in problems[0] and "generator" in problems[0]
    assert structure_problems(checkpoint, "wav2lip_generator") == []
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert structure_problems(text) and "not a PyTorch checkpoint" in structure_problems(text)[0]


def test_a_generator_with_a_wrong_shape_is_refused_by_load_generator(checkpoint, tmp_path):
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    key = "module.output_block.1.weight"
    raw["state_dict"][key] = torch.zeros(4, 32, 1, 1)  # 4 output channels instead of 3
    torch.save(raw, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="wrong shape") as err:
        load_generator(tmp_path / "bad.pth")
    assert "output_block.1.weight" in str(err.value)


def _one_of_each_network(tmp_path) -> dict[str, Path]:
    """A seeded checkpoint of every network the package knows, each in the layout its trainer writes."""
    from lipsync_cli.models.davs import Davs, DavsConfig
    from lipsync_cli.models.discriminator import VisualQualityDiscriminator
    from lipsync_cli.models.syncnet import SyncNetColor
    from lipsync_cli.models.syncnet_v2 import EvalSyncNet

    torch.manual_seed(0)
    paths = {}
    for kind, net in (("wav2lip_generator", seeded_generator()), ("wav2lip_syncnet_expert_color", SyncNetColor()),
                      ("wav2lip_visual_quality_discriminator", VisualQualityDiscriminator()),
                      ("syncnet_v2_evaluation", EvalSyncNet())):
        paths[kind] = tmp_path / f"{kind}.pth"
        save_published(net, paths[kind])
    paths["davs"] = tmp_path / "davs.pth"
    checkpoints.save_davs(Davs(DavsConfig(size=64, words=5, persons=3, width=0.25)), paths["davs"], 7)
    from lipsync_cli.models.light_asd import LightASD

    paths["light_asd"] = tmp_path / "light_asd.model"  # as published: the training module's bare state_dict
    torch.save(LightASD().state_dict(), paths["light_asd"])
    from lipsync_cli.models.gfpgan import random_gfpgan

    paths["gfpgan"] = tmp_path / "GFPGANv1.4.pth"  # as published: {"params_ema": ...}, full size (348 MB)
    torch.save({"params_ema": random_gfpgan().state_dict()}, paths["gfpgan"], _use_new_zipfile_serialization=False)
    return paths


@pytest.mark.slow
def test_one_loader_for_every_network(tmp_path):
    paths = _one_of_each_network(tmp_path)
    assert {sig.kind for sig in checkpoints.NETWORKS} == set(paths)
    for kind, path in paths.items():
        state, _ = read_state_dict(path)
        assert checkpoints.identify(state) == kind
        loaded = checkpoints.load_network(path, [kind])
        assert loaded.kind == kind and not loaded.net.training
        ours = loaded.net.state_dict()
        assert list(ours) == list(state) and all(torch.equal(ours[k], state[k]) for k in state)
        assert structure_problems(path) == [] and structure_problems(path, kind) == []
    assert checkpoints.load_network(paths["davs"], ["davs"]).extras["global_step"] == 7
    assert checkpoints.load_davs(paths["davs"]).cfg.words == 5

    # asked for another network: the message says what the file holds instead
    with pytest.raises(CheckpointError, match="this checkpoint is a Wav2Lip-family generator, not a DAVS model"):
        checkpoints.load_davs(paths["wav2lip_generator"])
    with pytest.raises(CheckpointError, match="DAVS model, neither the evaluation SyncNet .* nor a Wav2Lip lip-sync"):
        checkpoints.load_network(paths["davs"], ["syncnet_v2_evaluation", "wav2lip_syncnet_expert_color"])
    with pytest.raises(CheckpointError, match="not a lip-sync expert"):
        checkpoints.load_weights(torch.nn.Linear(2, 2), paths["davs"], "wav2lip_syncnet_expert_color",
                                 "not a lip-sync expert")
    # the right kind with other sizes: the same key and shape check as every loader
    from lipsync_cli.models.davs import Davs, DavsConfig

    other = Davs(DavsConfig(size=64, words=6, persons=3, width=0.25))
    with pytest.raises(CheckpointError, match="does not fit this network .*wrong shapes"):
        checkpoints.load_weights(other, paths["davs"], "davs")
    raw = torch.load(paths["davs"], weights_only=True)
    del raw["davs_config"]
    torch.save(raw, tmp_path / "no_config.pth")
    with pytest.raises(CheckpointError, match="no davs_config"):
        checkpoints.load_davs(tmp_path / "no_config.pth")


# ---------------------------------------------------------------------------------------------
# Safety: weights only, never code


class Payload:
    """Unpickling this creates the marker file: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class Plain:
    def __init__(self):
        self.note = "a custom object"


def test_checkpoint_with_code_is_refused_and_the_code_never_runs(tmp_path, reference_net):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    state = {k: v for k, v in reference_net.state_dict().items()}
    torch.save({"state_dict": state, "evil": Payload(marker)}, evil)
    assert not marker.exists()

    with pytest.raises(CheckpointError, match="refused") as err:
        load_generator(evil)
    assert "weights_only" in str(err.value)
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        read_state_dict(evil)
    assert structure_problems(evil) and not marker.exists()

    # The payload is real: an unsafe load would have run it.
    torch.load(evil, map_location="cpu", weights_only=False)
    assert marker.exists()


def test_checkpoint_with_a_custom_class_is_refused(tmp_path, reference_net):
    path = tmp_path / "custom.pth"
    torch.save({"state_dict": reference_net.state_dict(), "config": Plain()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_generator(path)


def test_files_that_are_not_checkpoints(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    wav = tone(tmp_path / "speech.wav", 0.2)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    folder = tmp_path / "folder.pth"
    folder.mkdir()
    tensors_only = tmp_path / "list.pth"
    torch.save([torch.zeros(3)], tensors_only)
    empty_dict = tmp_path / "empty_dict.pth"
    torch.save({}, empty_dict)
    for path in (text, wav, empty, folder, tensors_only, empty_dict, tmp_path / "missing.pth"):
        with pytest.raises(CheckpointError) as err:
            load_generator(path)
        assert str(path) in str(err.value)
        assert "\n" not in str(err.value)
    unknown = tmp_path / "unknown.pth"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2, 2)}}, unknown)
    with pytest.raises(CheckpointError, match="not a Wav2Lip-family generator"):
        load_generator(unknown)


# ---------------------------------------------------------------------------------------------
# Saving


@pytest.mark.slow
def test_save_published_round_trip(tmp_path, reference_net):
    opt = torch.optim.Adam(reference_net.parameters(), lr=1e-4)
    path = tmp_path / "ours.pth"
    save_published(reference_net, path, optimizer=opt, global_step=1234, global_epoch=7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours.pth"]  # no .partial left behind
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {"state_dict", "optimizer", "global_step", "global_epoch"}
    assert raw["global_step"] == 1234 and raw["global_epoch"] == 7
    assert raw["optimizer"]["param_groups"][0]["lr"] == 1e-4
    keys = list(raw["state_dict"])
    assert all(k.startswith("module.") for k in keys)
    assert [k[len("module."):] for k in keys] == list(PUBLISHED["wav2lip_generator"])
    net, name = load_generator(path)
    assert name == "wav2lip" and same_weights(net, reference_net)


def test_a_failed_save_leaves_the_old_checkpoint_and_no_partial_file(tmp_path, reference_net, monkeypatch):
    path = tmp_path / "g.pth"
    save_published(reference_net, path, global_step=1)
    before = path.read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 trunc")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 359034944 vs 359034832")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(LipsyncError, match="could not write .*g.pth .is the disk full"):
        save_published(reference_net, path, global_step=2)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["g.pth"]


def test_link_or_copy_gives_an_independent_name_for_the_same_bytes(tmp_path, reference_net, monkeypatch):
    step1, last = tmp_path / "step1.pth", tmp_path / "last.pth"
    save_published(reference_net, step1, global_step=1)
    outputs.link_or_copy(step1, last)
    assert read_state_dict(last)[1]["global_step"] == 1
    save_published(reference_net, tmp_path / "step2.pth", global_step=2)  # a later save never touches step1
    outputs.link_or_copy(tmp_path / "step2.pth", last)
    assert read_state_dict(step1)[1]["global_step"] == 1 and read_state_dict(last)[1]["global_step"] == 2

    def no_links(*args):
        raise OSError("links not supported")

    monkeypatch.setattr(outputs.os, "link", no_links)  # e.g. some network filesystems
    outputs.link_or_copy(step1, last)
    assert not step1.samefile(last) and read_state_dict(last)[1]["global_step"] == 1


def test_save_published_unwraps_data_parallel(tmp_path, reference_net):
    wrapped = torch.nn.DataParallel(reference_net)
    path = tmp_path / "dp.pth"
    save_published(wrapped, path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert all(k.startswith("module.") and not k.startswith("module.module.") for k in raw["state_dict"])
    assert raw["optimizer"] is None


# ---------------------------------------------------------------------------------------------
# The weights registry


@pytest.fixture
def weights_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("LIPSYNC_WEIGHTS", str(folder))
    return folder


def test_registry_names_the_known_checkpoints():
    entries = {e.name: e for e in weights.registry()}
    assert {"wav2lip_gan", "wav2lip", "lipsync_expert", "visual_quality_disc", "s3fd"} <= set(entries)
    assert entries["wav2lip_gan"].file == "wav2lip_gan.pth"
    assert entries["wav2lip_gan"].kind == "wav2lip_generator"
    assert entries["lipsync_expert"].kind == "wav2lip_syncnet_expert_color"
    assert entries["visual_quality_disc"].kind == "wav2lip_visual_quality_discriminator"
    assert entries["s3fd"].sha256_prefix == "619a316812"
    assert weights.entry("wav2lip_gan.pth").name == "wav2lip_gan"  # by file name too
    with pytest.raises(InputError, match="wav2lip_gan"):
        weights.entry("nosuch")


def test_resolve_checkpoint_missing_says_what_and_where(weights_dir):
    with pytest.raises(InputError) as err:
        weights.resolve_checkpoint("wav2lip_gan")
    msg = str(err.value)
    assert "wav2lip_gan.pth" in msg
    assert str(weights_dir / "wav2lip_gan.pth") in msg
    assert "huggingface.co" in msg  # where to download it
    with pytest.raises(InputError, match="wav2lip_gan.pth"):
        weights.resolve_checkpoint(None)  # the default is wav2lip_gan
    with pytest.raises(InputError) as err:
        weights.resolve_checkpoint("lipsync_expert")  # no URL recorded: says where it comes from
    assert "lipsync_expert.pth" in str(err.value) and str(weights_dir) in str(err.value)


def test_resolve_checkpoint_present(weights_dir, checkpoint):
    shutil.copy(checkpoint, weights_dir / "wav2lip_gan.pth")
    assert weights.resolve_checkpoint("wav2lip_gan") == str(weights_dir / "wav2lip_gan.pth")
    assert weights.resolve_checkpoint(None) == str(weights_dir / "wav2lip_gan.pth")
    assert load_generator(weights.resolve_checkpoint(None))[1] == "wav2lip"
    # A path is passed through untouched.
    assert weights.resolve_checkpoint(str(checkpoint)) == str(checkpoint)


def test_verify_file(checkpoint, tmp_path):
    gan = weights.entry("wav2lip_gan")
    assert weights.verify_file(checkpoint, gan) == []
    expert = fake_published("wav2lip_syncnet_expert_color", tmp_path / "expert.pth")
    problems = weights.verify_file(expert, gan)
    assert problems and "lip-sync expert" in problems[0]
    assert weights.verify_file(expert, weights.entry("lipsync_expert")) == []


def test_fetch_offline_fails_cleanly(weights_dir, monkeypatch):
    calls = []

    def offline(url, *a, **kw):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    gan = weights.entry("wav2lip_gan")
    with pytest.raises(LipsyncError) as err:
        weights.fetch("wav2lip_gan")
    msg = str(err.value)
    assert calls == [gan.url]
    assert gan.url in msg and str(weights_dir / "wav2lip_gan.pth") in msg
    assert list(weights_dir.iterdir()) == []  # neither the file nor a .partial


class FakeResponse:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.headers = {"Content-Length": str(len(data))}

    def read(self, n=-1):
        chunk = self.data[self.pos:self.pos + n] if n >= 0 else self.data[self.pos:]
        self.pos += len(chunk)
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_fetch_downloads_verifies_and_refuses_to_overwrite(weights_dir, monkeypatch, checkpoint):
    data = Path(checkpoint).read_bytes()
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, *a, **kw: FakeResponse(data))
    seen = []
    dest = weights.fetch("wav2lip_gan", progress=lambda done, total: seen.append((done, total)))
    assert dest == weights_dir / "wav2lip_gan.pth"
    assert dest.read_bytes() == data
    assert seen and seen[-1] == (len(data), len(data))
    assert sorted(p.name for p in weights_dir.iterdir()) == ["wav2lip_gan.pth"]
    with pytest.raises(InputError, match="already exists"):
        weights.fetch("wav2lip_gan")


def test_fetch_of_something_that_does_not_verify(weights_dir, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, *a, **kw: FakeResponse(b"<html>Not Found</html>"))
    with pytest.raises(LipsyncError, match="does not verify"):
        weights.fetch("wav2lip")
    assert list(weights_dir.iterdir()) == []


def test_fetch_without_a_url(weights_dir):
    with pytest.raises(InputError, match="lipsync_expert.pth"):
        weights.fetch("lipsync_expert")
