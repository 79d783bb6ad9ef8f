"""lipsync's GFPGAN (models/gfpgan.py) against the reference architecture, on identical weights.

    python benchmarks/gfpgan_reference.py prepare DIR    # seeded weights, inputs, lipsync's outputs
    (run the reference on DIR/state_seed*.pt and DIR/inputs.pt -> DIR/reference_seed*.pt)
    python benchmarks/gfpgan_reference.py compare DIR    # the differences, as a markdown table

The reference (TencentARC/GFPGAN, gfpgan/archs/gfpganv1_clean_arch.py and stylegan2_clean_arch.py)
runs in a scratch venv outside this repository: GFPGANv1Clean(out_size=512, num_style_feat=512,
channel_multiplier=2, num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True),
load_state_dict(strict=True), forward(x, return_rgb=False, randomize_noise=False)[0]; see
benchmarks/enhance.md for the set-up. Nothing of it is in this repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lipsync_cli.models.gfpgan import random_gfpgan  # noqa: E402

SEEDS = (0, 1)


def inputs() -> torch.Tensor:
    """Three faces in [-1, 1]: two of uniform noise, one smooth (a blurred, stretched noise)."""
    x = torch.rand(3, 3, 512, 512, generator=torch.Generator().manual_seed(1)) * 2 - 1
    x[2] = torch.nn.functional.avg_pool2d(x[2:3], 31, stride=1, padding=15)[0] * 4
    return x.clamp(-1, 1)


def prepare(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    x = inputs()
    torch.save(x, folder / "inputs.pt")
    for seed in SEEDS:
        model = random_gfpgan(seed)
        torch.save(model.state_dict(), folder / f"state_seed{seed}.pt")
        with torch.inference_mode():
            torch.save(model(x), folder / f"ours_seed{seed}.pt")
        print(f"seed {seed}: {folder / f'state_seed{seed}.pt'}, {folder / f'ours_seed{seed}.pt'}")


def compare(folder: Path) -> None:
    print("| weights | face | max \\|diff\\| | max \\|diff\\| clamped to [-1, 1] | output range |")
    print("| --- | --- | --- | --- | --- |")
    for seed in SEEDS:
        ours = torch.load(folder / f"ours_seed{seed}.pt")
        ref = torch.load(folder / f"reference_seed{seed}.pt")
        for i in range(len(ours)):
            d = (ours[i] - ref[i]).abs().max().item()
            dc = (ours[i].clamp(-1, 1) - ref[i].clamp(-1, 1)).abs().max().item()
            print(f"| random_gfpgan({seed}) | {i} | {d:.2e} | {dc:.2e} | {ref[i].min():.2f} .. {ref[i].max():.2f} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("prepare", "compare"))
    ap.add_argument("folder", type=Path)
    a = ap.parse_args(argv)
    (prepare if a.what == "prepare" else compare)(a.folder)


if __name__ == "__main__":
    main()
