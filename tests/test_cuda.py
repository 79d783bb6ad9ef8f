"""The CUDA paths, proven on a GPU: dub in fp16 against fp32, the batch that halves itself when
the GPU runs out of memory, fp16 training with loss scaling in each loop, DDP over NCCL under
torchrun, and `batch` under torchrun on LOCAL_RANK's GPU.

Marked `cuda`: they skip on a machine without a CUDA GPU (CI's), and benchmarks/gpu_check.sh
runs them (`python -m pytest -m cuda`) where there is one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import EXAMPLES, decode_frames, ffmpeg, real_face_crops, seeded_generator
from lipsync_cli.cli import main

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh runs these)"),
]


def test_the_generator_in_fp16_stays_within_a_grey_level_of_fp32():
    from lipsync_cli.models.inference import GeneratorRunner

    net = seeded_generator("wav2lip")
    crops, windows = real_face_crops(48)
    fp32 = GeneratorRunner(net, device="cuda", precision="fp32")(windows, crops, first_row=36).astype(np.int16)
    runner = GeneratorRunner(net, device="cuda")
    assert runner.precision == "fp16" and runner.isa == "CUDA"
    fp16 = runner(windows, crops, first_row=36).astype(np.int16)
    diff = np.abs(fp16 - fp32)[:, 36:]
    assert fp32[:, 36:].std() > 1 and diff.mean() <= 1.0 and diff.max() <= 6
    # and the rows a feathered paste shows equal the whole output's
    whole = GeneratorRunner(net, device="cuda", precision="fp32")(windows, crops).astype(np.int16)
    assert np.abs(whole[:, 36:] - fp32[:, 36:]).max() <= 1


def test_dub_on_the_gpu_writes_the_clip_and_says_fp16(tmp_path, checkpoint, capsys):
    speech = tmp_path / "speech.wav"
    ffmpeg("-i", str(EXAMPLES / "speech.wav"), "-t", "2", str(speech))
    out = tmp_path / "gpu.mp4"
    assert main(["dub", str(EXAMPLES / "talk.mp4"), str(speech), "-o", str(out), "-c", str(checkpoint),
                 "--device", "cuda", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["device"].startswith("cuda") and result["precision"] == "fp16" and result["isa"] == "CUDA"
    assert result["frames"] == 50 and len(decode_frames(out)) == 50


def test_out_of_memory_halves_the_batch_until_it_fits():
    from lipsync_cli.models.inference import GeneratorRunner

    net = seeded_generator("wav2lip")
    crops, windows = real_face_crops(8)
    n = 1024
    faces, mels = np.repeat(crops, n // 8, axis=0), np.repeat(windows, n // 8, axis=0)
    expected = GeneratorRunner(net, device="cuda", precision="fp16", batch_size=64)(mels[:8], faces[:8])
    free, total = torch.cuda.mem_get_info()
    torch.cuda.empty_cache()
    # about 1.5 GB for this process: a batch of 1024 frames needs several times that
    torch.cuda.set_per_process_memory_fraction(min(1.0, 1.5e9 / total))
    try:
        runner = GeneratorRunner(net, device="cuda", precision="fp16", batch_size=n)
        out = runner(mels, faces)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert runner.batch_size < n and out.shape == (n, 96, 96, 3)
    assert np.abs(out[:8].astype(np.int16) - expected.astype(np.int16)).max() <= 1


def test_the_loss_scaler_is_on_under_fp16_and_off_elsewhere():
    from lipsync_cli.train.loop import Update

    net = torch.nn.Linear(4, 1).cuda()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    update = Update(opt, torch.device("cuda"), torch.float16)
    assert update.scaler.is_enabled()
    with torch.autocast("cuda", dtype=torch.float16):
        loss = net(torch.randn(8, 4, device="cuda")).float().pow(2).mean()
    update(loss)
    assert update.scaler.get_scale() > 1  # the loss was scaled up for fp16 gradients
    assert not Update(opt, torch.device("cuda"), torch.bfloat16).scaler.is_enabled()


@pytest.mark.parametrize("loop", ["syncnet", "wav2lip", "davs"])
def test_a_few_fp16_training_steps_of_each_loop(loop, train_corpus, words_corpus, tmp_path, capsys):
    from lipsync_cli.checkpoints import save_published
    from lipsync_cli.models.syncnet import SyncNetColor

    out = tmp_path / "run"
    common = ["--steps", "3", "--batch-size", "4", "--eval-every", "3", "--eval-batches", "1", "--workers", "0",
              "--device", "cuda", "--amp", "on", "-q"]
    if loop == "syncnet":
        args = ["train", "syncnet", str(train_corpus), "-o", str(out), *common]
    elif loop == "wav2lip":
        expert = tmp_path / "expert.pth"
        torch.manual_seed(1)
        save_published(SyncNetColor(width=0.25), expert)
        args = ["train", "wav2lip", str(train_corpus), "-o", str(out), "--expert", str(expert), "--width", "0.25",
                "--sync-switch", "100", *common]
    else:
        settings = tmp_path / "quick.json"
        settings.write_text(json.dumps({"clip_frames": 4, "gen_frames": 2}))
        args = ["train", "davs", str(words_corpus), "-o", str(out), "--config", str(settings), "--size", "64",
                "--width", "0.0625", "--disentangle-from", "0", "--generate-from", "1", *common]
    assert main(args) == 0, capsys.readouterr().err
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in lines if "train_loss" in r]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert json.loads((out / "config.json").read_text())["amp"] == "on"
    assert (out / "last.pth").exists()


def _torchrun(*args, nproc: int = 1) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(nproc), "-m", "lipsync_cli.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "2"})


def test_torchrun_trains_data_parallel_over_nccl(train_corpus, tmp_path):
    run = _torchrun("train", "syncnet", train_corpus, "-o", tmp_path / "run", "--steps", 2, "--batch-size", 4,
                    "--eval-every", 2, "--eval-batches", 1, "--workers", 0, "--device", "auto", "--amp", "on", "-q")
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "train_loss" in r] == [1, 2]
    assert (tmp_path / "run" / "syncnet_step000002.pth").exists()


def test_batch_under_torchrun_takes_local_rank_gpu(tmp_path, checkpoint):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in "ab":
        ffmpeg("-i", str(EXAMPLES / "talk.mp4"), "-t", "1", str(videos / f"{name}.mp4"))
    speech = tmp_path / "speech.wav"
    ffmpeg("-i", str(EXAMPLES / "speech.wav"), "-t", "1", str(speech))
    run = _torchrun("batch", videos, "--audio", speech, "-o", tmp_path / "out", "-c", checkpoint, "--json")
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert [it["item"] for it in summary["items"]] == ["a.mp4", "b.mp4"]
    assert summary["device"] == "cuda:0" and summary["precision"] == "fp16"  # LOCAL_RANK 0's GPU
    assert sorted(p.name for p in Path(tmp_path / "out").glob("*.mp4")) == ["a.mp4", "b.mp4"]


def test_gfpgan_in_fp16_batches_stays_close_to_fp32():
    """--enhance on a GPU: GFPGAN in fp16, eight faces per call, against fp32 on the same faces."""
    import time

    import cv2

    from lipsync_cli.faces.align import box_landmarks, five_point_alignment
    from lipsync_cli.models.gfpgan import random_gfpgan
    from lipsync_cli.pipelines.enhance import FaceRestorer

    frame = cv2.imread(str(EXAMPLES / "portrait.png"))
    h, w = frame.shape[:2]
    faces = []
    for k in range(8):  # the face shifted a little each time: eight different inputs
        box = (w // 4 + 2 * k, h // 4, 3 * w // 4 + 2 * k, 3 * h // 4)
        faces.append(cv2.warpAffine(frame, five_point_alignment(box_landmarks(box)), (512, 512)))
    net = random_gfpgan(0)
    fp32 = np.stack(FaceRestorer(net, "cuda", "fp32").restore(faces)).astype(np.int16)
    half = FaceRestorer(random_gfpgan(0), "cuda", "fp16")
    assert half.batch_size == 8 and half.describe() == "gfpgan (fp16, mouth)"
    half.restore(faces)  # warm-up
    torch.cuda.synchronize()
    t = time.perf_counter()
    fp16 = np.stack(half.restore(faces)).astype(np.int16)
    per_face = (time.perf_counter() - t) / len(faces)
    diff = np.abs(fp16 - fp32)
    print(f"GFPGAN fp16 on {torch.cuda.get_device_name(0)}: {per_face * 1000:.1f} ms per face (8 per call); "
          f"fp16 - fp32: mean {diff.mean():.2f}, max {diff.max()} grey levels")
    assert fp32.std() > 10 and diff.mean() <= 2.0
