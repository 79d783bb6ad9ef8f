"""The Wav2Lip / AttnWav2Lip generators and the inference runner (batchnorm folding, devices)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import REFERENCE_KEYS, real_face_crops, seeded_generator
from lipsync_cli.errors import LipsyncError
from lipsync_cli.models.blocks import AttentionBlock, ChannelAttention, SpatialAttention
from lipsync_cli.models.inference import GeneratorRunner, fold_batchnorm
from lipsync_cli.models import GENERATOR_NAMES
from lipsync_cli.models.wav2lip import build_generator

ENCODER = (16, 32, 64, 128, 256, 512, 512)
DECODER = (512, 512, 512, 384, 256, 128, 64)
ENCODER_SIZES = (96, 48, 24, 12, 6, 3, 1)
DECODER_SIZES = (1, 3, 6, 12, 24, 48, 96)


@pytest.fixture(scope="module")
def published() -> dict[str, list[int]]:
    return json.loads(Path(REFERENCE_KEYS).read_text())["wav2lip_generator"]


@pytest.fixture(scope="module")
def wav2lip():
    return seeded_generator("wav2lip")


@pytest.fixture(scope="module")
def attnwav2lip():
    return seeded_generator("attnwav2lip")


def inputs(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    mel = torch.rand(batch, 1, 80, 16, generator=gen) * 8 - 4
    faces = torch.rand(batch, 6, 96, 96, generator=gen)
    faces[:, :3, 48:] = 0  # masked lower half, as at inference
    return mel, faces


# ---------------------------------------------------------------------------------------------
# The published Wav2Lip layout


def test_wav2lip_state_dict_matches_the_published_keys_and_shapes(published):
    state = build_generator("wav2lip").state_dict()
    ours = {k: list(v.shape) for k, v in state.items()}
    assert list(ours) == list(published)  # same keys, same order
    assert ours == published


def test_wav2lip_parameter_counts(published):
    net = build_generator("wav2lip")
    state = net.state_dict()
    bn_counters = [k for k in state if k.endswith("num_batches_tracked")]
    without_counters = sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))
    json_without = sum(math.prod(s) for k, s in published.items() if not k.endswith("num_batches_tracked"))
    assert without_counters == json_without
    assert len(bn_counters) == sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 50
    # The paper's 36,320,837 counts every state element, one num_batches_tracked per batchnorm.
    assert sum(v.numel() for v in state.values()) == 36_320_837
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 36_298_035


# ---------------------------------------------------------------------------------------------
# Forward


def test_forward_shape_and_range(wav2lip):
    mel, faces = inputs(2)
    with torch.no_grad():
        out = wav2lip(mel, faces)
    assert out.shape == (2, 3, 96, 96)
    assert out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float(out.std()) > 1e-3  # not a constant image
    assert (out[0] - out[1]).abs().max() > 1e-3  # each sample from its own face


@pytest.mark.slow
def test_timed_input_equals_per_frame_calls(wav2lip):
    b, t = 2, 2
    gen = torch.Generator().manual_seed(5)
    mel = torch.rand(b, t, 1, 80, 16, generator=gen) * 8 - 4
    faces = torch.rand(b, 6, t, 96, 96, generator=gen)
    with torch.no_grad():
        out = wav2lip(mel, faces)
        assert out.shape == (b, 3, t, 96, 96)
        for i in range(t):
            per_frame = wav2lip(mel[:, i], faces[:, :, i])
            torch.testing.assert_close(out[:, :, i], per_frame, atol=1e-5, rtol=0)
    # Frames are not all the same image (the time axis was not collapsed).
    assert (out[:, :, 0] - out[:, :, 1]).abs().max() > 1e-4


# ---------------------------------------------------------------------------------------------
# AttnWav2Lip


def _attention_inputs(net, mel, faces):
    seen = {"encoder": [], "decoder": []}
    hooks = []
    for part in ("encoder", "decoder"):
        for mod in getattr(net, f"face_{part}_attention"):
            hooks.append(mod.register_forward_hook(lambda m, a, o, part=part: seen[part].append(tuple(a[0].shape))))
    try:
        with torch.no_grad():
            out = net(mel, faces)
    finally:
        for h in hooks:
            h.remove()
    return seen, out


def test_attnwav2lip_attention_after_every_encoder_and_decoder_block(attnwav2lip):
    net = attnwav2lip
    assert len(net.face_encoder_attention) == 7 and len(net.face_decoder_attention) == 7
    for mods, channels in ((net.face_encoder_attention, ENCODER), (net.face_decoder_attention, DECODER)):
        for mod, c in zip(mods, channels):
            assert isinstance(mod.cam, ChannelAttention) and isinstance(mod.sam, SpatialAttention)
            assert mod.cam.mlp[0].in_channels == c and mod.cam.mlp[2].out_channels == c
            assert mod.sam.conv.in_channels == 2 and mod.sam.conv.out_channels == 1
    # What each attention block actually receives in a forward pass, and the output it gives.
    seen, out = _attention_inputs(net, *inputs(2))
    assert seen["encoder"] == [(2, c, s, s) for c, s in zip(ENCODER, ENCODER_SIZES)]
    assert seen["decoder"] == [(2, c, s, s) for c, s in zip(DECODER, DECODER_SIZES)]
    assert out.shape == (2, 3, 96, 96)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0 and float(out.std()) > 1e-3
    # Nothing attends to the raw 6-channel input: the first attention sees the first block's output,
    # and these 14 are all the attention there is.
    assert seen["encoder"][0][1] == 16
    assert sum(isinstance(m, AttentionBlock) for m in net.modules()) == 14
    assert all(m.mlp[0].in_channels != 6 for m in net.modules() if isinstance(m, ChannelAttention))


def test_attention_residual_formula_with_zero_weights():
    block = AttentionBlock(32)
    with torch.no_grad():
        for p in block.parameters():
            p.zero_()
    f = torch.randn(2, 32, 6, 6, generator=torch.Generator().manual_seed(1))
    # CAM(F) = sigmoid(0) = 0.5 -> F' = 1.5 F; SAM(F') = 0.5 -> F'' = 1.5 F' = 2.25 F.
    torch.testing.assert_close(block.cam(f), torch.full((2, 32, 1, 1), 0.5))
    torch.testing.assert_close(block.sam(f), torch.full((2, 1, 6, 6), 0.5))
    torch.testing.assert_close(block(f), 2.25 * f)
    cam_only = AttentionBlock(32, spatial=False)
    with torch.no_grad():
        for p in cam_only.parameters():
            p.zero_()
    torch.testing.assert_close(cam_only(f), 1.5 * f)


def test_attention_modules_match_cbam_by_hand():
    torch.manual_seed(3)
    f = torch.randn(1, 32, 5, 7)
    cam = ChannelAttention(32)
    w1 = cam.mlp[0].weight[:, :, 0, 0]  # (2, 32)
    w2 = cam.mlp[2].weight[:, :, 0, 0]  # (32, 2)
    assert w1.shape == (2, 32)  # reduction 16
    avg = f.mean(dim=(2, 3))[0]
    mx = f.amax(dim=(2, 3))[0]
    expected = torch.sigmoid(w2 @ torch.relu(w1 @ avg) + w2 @ torch.relu(w1 @ mx))
    with torch.no_grad():
        torch.testing.assert_close(cam(f)[0, :, 0, 0], expected)

    sam = SpatialAttention(7)
    with torch.no_grad():
        sam.conv.weight.zero_()
        sam.conv.weight[0, 1, 3, 3] = 2.0  # centre tap on the channel-max map only
        torch.testing.assert_close(sam(f), torch.sigmoid(2.0 * f.amax(dim=1, keepdim=True)))


def test_spatial_only_and_channel_only_variants():
    spatial = build_generator("attnwav2lip-spatial")
    channel = build_generator("attnwav2lip-channel")
    for mod in list(spatial.face_encoder_attention) + list(spatial.face_decoder_attention):
        assert mod.cam is None and isinstance(mod.sam, SpatialAttention)
    for mod in list(channel.face_encoder_attention) + list(channel.face_decoder_attention):
        assert mod.sam is None and isinstance(mod.cam, ChannelAttention)
    skeys, ckeys = set(spatial.state_dict()), set(channel.state_dict())
    assert not any(".cam." in k for k in skeys) and any(".sam." in k for k in skeys)
    assert not any(".sam." in k for k in ckeys) and any(".cam." in k for k in ckeys)
    assert build_generator("wav2lip").face_encoder_attention is None
    assert set(GENERATOR_NAMES) == {"wav2lip", "attnwav2lip", "attnwav2lip-spatial", "attnwav2lip-channel"}
    with pytest.raises(ValueError):
        build_generator("attnwav2lip-both")


def test_attnwav2lip_keys_are_a_superset_of_the_published_wav2lip_keys(published, attnwav2lip):
    state = attnwav2lip.state_dict()
    assert set(published) < set(state)
    for k, shape in published.items():
        assert list(state[k].shape) == shape
    extra = set(state) - set(published)
    assert extra and all(k.startswith(("face_encoder_attention.", "face_decoder_attention.")) for k in extra)


# ---------------------------------------------------------------------------------------------
# Inference: batchnorm folding and the runner


@pytest.mark.parametrize("name", ["wav2lip", "attnwav2lip"])
def test_fold_batchnorm_matches_the_unfolded_net(name, wav2lip, attnwav2lip):
    net = wav2lip if name == "wav2lip" else attnwav2lip
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 50  # the original is untouched
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    mel, faces = inputs(1, seed=7)
    with torch.no_grad():
        ref = net.eval()(mel, faces)
        out = folded(mel, faces)
    assert (ref - out).abs().max() <= 1e-5
    assert float(ref.std()) > 1e-3


@pytest.mark.parametrize("first_row", [1, 36, 70, 95])
def test_lower_rows_equal_the_whole_output_below_the_first_row(first_row, wav2lip):
    """The decoder on slices of its maps: the rows it returns are forward()'s, in a quarter less work."""
    folded = fold_batchnorm(wav2lip)
    mel, faces = inputs(2, seed=3)
    with torch.no_grad():
        whole = folded(mel, faces)
        rows, top = folded.lower_rows(mel, faces, first_row)
    assert top <= first_row and rows.shape == (2, 3, 96 - top, 96)
    assert (rows - whole[:, :, top:]).abs().max() <= 1e-5
    assert float(rows.std()) > 1e-3


def test_lower_rows_of_a_generator_with_decoder_attention_are_the_whole_output(attnwav2lip):
    mel, faces = inputs(1, seed=4)
    with torch.no_grad():
        rows, top = attnwav2lip.eval().lower_rows(mel, faces, 36)
        assert top == 0 and torch.equal(rows, attnwav2lip(mel, faces))


def test_the_runner_generates_only_the_rows_asked_for(wav2lip):
    faces, mel = _faces_and_mel(2, seed=5)
    runner = GeneratorRunner(wav2lip, device="cpu", precision="fp32")
    whole = runner(mel, faces).astype(np.int16)
    lower = runner(mel, faces, first_row=36).astype(np.int16)
    assert np.abs(lower[:, 36:] - whole[:, 36:]).max() <= 1
    assert np.array_equal(lower[:, :36], faces[:, :36])  # above: the input face, untouched


def _faces_and_mel(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
    mel = (rng.random((n, 80, 16), dtype=np.float32) * 8 - 4).astype(np.float32)
    return faces, mel


def _reference_output(net, mel: np.ndarray, faces: np.ndarray) -> np.ndarray:
    face = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255.0
    masked = face.clone()
    masked[:, :, 48:] = 0
    with torch.no_grad():
        out = net.eval()(torch.from_numpy(mel).unsqueeze(1), torch.cat([masked, face], dim=1))
    return (out * 255.0).permute(0, 2, 3, 1).numpy()


@pytest.mark.slow
def test_generator_runner_on_cpu_matches_the_model(wav2lip):
    faces, mel = _faces_and_mel(3)
    runner = GeneratorRunner(wav2lip, device="cpu", precision="fp32", batch_size=2)  # 2 batches, last partial
    out = runner(mel, faces)
    assert out.shape == (3, 96, 96, 3) and out.dtype == np.uint8
    ref = _reference_output(wav2lip, mel, faces)
    assert np.abs(out.astype(np.int16) - np.round(ref).astype(np.int16)).max() <= 1
    assert out.std() > 1

    truncated = runner(mel, faces, round_output=False)
    diff = out.astype(np.int16) - truncated.astype(np.int16)
    assert set(np.unique(diff)) <= {0, 1}
    assert 0.2 < diff.mean() < 0.8  # about half the values round up
    assert np.abs(truncated.astype(np.int16) - np.floor(ref).astype(np.int16)).max() <= 1

    empty = runner(mel[:0], faces[:0])
    assert empty.shape == (0, 96, 96, 3) and empty.dtype == np.uint8


def test_fp16_on_cpu_is_refused(wav2lip):
    with pytest.raises(LipsyncError, match="fp16"):
        GeneratorRunner(wav2lip, device="cpu", precision="fp16")


@pytest.mark.slow
def test_bf16_on_cpu_stays_close_to_fp32():
    """bf16 weights on the CPU (the `auto` choice where AMX makes it fast): within a few grey
    levels of fp32, and the caller's fp32 network is left as it was. A quarter-width generator:
    the same layers and casts, and bf16 without AMX (emulated by oneDNN) is slow at full width."""
    wav2lip = seeded_generator("wav2lip", width=0.25)
    faces, mel = _faces_and_mel(4, seed=1)
    fp32 = GeneratorRunner(wav2lip, device="cpu", precision="fp32")(mel, faces).astype(np.int16)
    runner = GeneratorRunner(wav2lip, device="cpu", precision="bf16", batch_size=3)
    assert runner.precision == "bf16" and next(runner.net.parameters()).dtype == torch.bfloat16
    assert next(wav2lip.parameters()).dtype == torch.float32
    out = runner(mel, faces).astype(np.int16)
    assert out.shape == fp32.shape and out.std() > 1
    diff = np.abs(out - fp32)
    assert diff.mean() < 1.0 and diff.max() <= 6


def test_auto_precision_follows_the_cpu(wav2lip, monkeypatch):
    from lipsync_cli import device

    monkeypatch.setattr(device, "cpu_has_amx_bf16", lambda: True)
    runner = GeneratorRunner(wav2lip, device="cpu")
    assert (runner.precision, runner.isa) == ("bf16", "AMX")
    monkeypatch.setattr(device, "cpu_has_amx_bf16", lambda: False)
    runner = GeneratorRunner(wav2lip, device="cpu")
    assert runner.precision == "int8" and runner.isa in ("AVX-512 VNNI", "AVX-512", "AVX2", "baseline")
    monkeypatch.setattr(device, "cpu_int8_kernels", lambda: False)
    monkeypatch.setattr("lipsync_cli.models.inference.cpu_int8_kernels", lambda: False)
    assert GeneratorRunner(wav2lip, device="cpu").precision == "fp32"
    with pytest.raises(LipsyncError, match="int8 kernels"):
        GeneratorRunner(wav2lip, device="cpu", precision="int8")


def test_the_isa_follows_the_environment(monkeypatch):
    from lipsync_cli.device import cpu_isa

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert cpu_isa() in ("AVX2", "baseline")  # an AVX-512 or AMX machine made to act as AVX2 only


@pytest.mark.slow
def test_int8_on_the_cpu_stays_within_a_grey_level_of_fp32(wav2lip):
    """The int8 generator (`auto` on CPUs without AMX), calibrated on the first faces it is given,
    against fp32 on the rows a feathered paste shows, over real face crops: the bounds of
    benchmarks/README.md (mean at most 1 grey level, no pixel more than 6 away)."""
    crops, windows = real_face_crops(40)
    fp32 = GeneratorRunner(wav2lip, device="cpu", precision="fp32")(windows, crops, first_row=36).astype(np.int16)
    runner = GeneratorRunner(wav2lip, device="cpu", precision="int8", batch_size=16)
    out = runner(windows, crops, first_row=36).astype(np.int16)
    assert runner.quantized and any(type(m).__name__ == "Int8Conv2d" for m in runner.net.modules())
    assert next(wav2lip.parameters()).dtype == torch.float32  # the caller's network is left as it was
    diff = np.abs(out - fp32)[:, 36:]
    assert fp32[:, 36:].std() > 1 and diff.mean() <= 1.0 and diff.max() <= 6


def test_unknown_precision_and_device_are_refused(wav2lip):
    with pytest.raises(LipsyncError, match="fp8"):
        GeneratorRunner(wav2lip, device="cpu", precision="fp8")
    with pytest.raises(LipsyncError, match="tpu"):
        GeneratorRunner(wav2lip, device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused(wav2lip):
    with pytest.raises(LipsyncError, match="cuda"):
        GeneratorRunner(wav2lip, device="cuda")
    runner = GeneratorRunner(wav2lip, device="auto")
    assert runner.device.type == "cpu" and runner.precision in ("fp32", "bf16", "int8")


# --------------------------------------------------------------------------- the device policy


def test_amx_probe_is_switched_off_by_the_environment(monkeypatch):
    from lipsync_cli import device

    import io

    # a CPU with AMX, as /proc/cpuinfo reads there (and no switch set by the caller's environment)
    monkeypatch.delenv("LIPSYNC_NO_AMX", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(device, "open", lambda *a, **k: io.StringIO("flags\t: fpu avx2 amx_bf16\n"), raising=False)
    assert device.cpu_has_amx_bf16()
    for name, value in (("LIPSYNC_NO_AMX", "1"), ("ONEDNN_MAX_CPU_ISA", "AVX2"), ("ONEDNN_MAX_CPU_ISA", "avx512_core")):
        with monkeypatch.context() as m:
            m.setenv(name, value)
            assert not device.cpu_has_amx_bf16(), (name, value)
            assert device.auto_precision(torch.device("cpu")) == "int8"  # bf16 would be emulated
            assert device.cpu_isa() == "AVX2"
            assert device.autocast_dtype(torch.device("cpu"), "auto") is None
    for value in ("AVX512_CORE_AMX", "ALL"):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", value)
        assert device.cpu_has_amx_bf16()
        assert device.autocast_dtype(torch.device("cpu"), "on") == torch.bfloat16


def test_autocast_dtype_and_context(monkeypatch):
    from lipsync_cli import device
    from lipsync_cli.errors import InputError

    assert device.autocast_dtype(torch.device("cuda"), "auto") == torch.float16
    assert device.autocast_dtype(torch.device("cuda"), "off") is None
    with pytest.raises(InputError, match="--amp fast"):
        device.autocast_dtype(torch.device("cpu"), "fast")
    monkeypatch.setattr(device, "cpu_has_amx_bf16", lambda: True)
    assert device.auto_precision(torch.device("cpu")) == "bf16"
    assert device.auto_precision(torch.device("cuda")) == "fp16"
    lin = nn.Linear(4, 4)
    with device.autocast(torch.device("cpu"), torch.bfloat16):
        assert lin(torch.ones(1, 4)).dtype == torch.bfloat16
    with device.autocast(torch.device("cpu"), None):
        assert lin(torch.ones(1, 4)).dtype == torch.float32


def test_resolve_device_under_torchrun_takes_the_local_gpu(monkeypatch):
    from lipsync_cli import device
    from lipsync_cli.errors import InputError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device.resolve_device("auto") == torch.device("cuda")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert device.resolve_device("auto") == torch.device("cuda:1")
    assert device.resolve_device("cuda") == torch.device("cuda:1")
    assert device.resolve_device("cuda:0") == torch.device("cuda:0")  # an explicit GPU stays
    assert device.resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.resolve_device("auto") == torch.device("cpu")  # CPU processes under torchrun
    with pytest.raises(LipsyncError, match="cuda:1"):
        device.resolve_device("cuda:1")
    with pytest.raises(InputError, match="tpu"):
        device.resolve_device("tpu")
