"""Where the networks run and in what precision: one policy for dubbing, training and evaluation.

- `resolve_device`: auto / cpu / cuda / cuda:N. Under `torchrun` (LOCAL_RANK set) `auto` and
  `cuda` mean this process's own GPU, so N processes on one machine use N GPUs.
- `auto_precision`: what `--precision auto` means for inference: fp16 on CUDA; bf16 on a CPU with
  AMX (Intel Sapphire Rapids and later), where it runs several times faster than fp32; fp32 on
  other CPUs, where bf16 is emulated and slower.
- `autocast_dtype` / `autocast`: the same choice for training and evaluation (`--amp`), as an
  autocast context that does nothing when mixed precision is off.

torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import os

from .errors import InputError, LipsyncError

DEVICE_NAMES = ("auto", "cpu", "cuda")  # and cuda:N


def resolve_device(name: str):
    """A device name -> torch.device. Raises InputError for an unknown name, LipsyncError when
    CUDA is asked for and there is none."""
    import torch

    if name not in DEVICE_NAMES and not name.startswith("cuda:"):
        raise InputError(f"--device {name}: choose auto, cpu, cuda or cuda:N")
    cuda = torch.cuda.is_available()
    if name in ("auto", "cuda") and "LOCAL_RANK" in os.environ and cuda:
        return torch.device(f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}")
    if name == "auto":
        return torch.device("cuda" if cuda else "cpu")
    if name.startswith("cuda") and not cuda:
        raise LipsyncError(f"--device {name}: no CUDA GPU is available to PyTorch here")
    return torch.device(name)


def cpu_has_amx_bf16() -> bool:
    """True when the CPU multiplies bf16 matrices in hardware (AMX), where oneDNN's bf16
    convolutions beat fp32 several times over. Read from Linux's CPU flags; False elsewhere,
    and False when oneDNN is kept off AMX (ONEDNN_MAX_CPU_ISA=AVX2 and the like, which makes a
    machine behave as an AVX2-only CPU) or LIPSYNC_NO_AMX=1 is set: bf16 would then be emulated."""
    if os.environ.get("LIPSYNC_NO_AMX", "") not in ("", "0"):
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if isa and "AMX" not in isa and isa not in ("ALL", "DEFAULT"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def auto_precision(device) -> str:
    """What `--precision auto` means on this device: "fp16", "bf16" or "fp32"."""
    if device.type == "cuda":
        return "fp16"
    return "bf16" if cpu_has_amx_bf16() else "fp32"


def autocast_dtype(device, amp: str):
    """The mixed-precision dtype for `--amp auto|on|off` on this device, or None for fp32:
    fp16 on CUDA, bf16 on a CPU with AMX, none on other CPUs (bf16 would be emulated)."""
    import torch

    if amp == "off":
        return None
    if amp not in ("auto", "on"):
        raise InputError(f"--amp {amp}: choose auto, on or off")
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if cpu_has_amx_bf16() else None


def autocast(device, dtype):
    """Mixed precision for a forward pass, or nothing when dtype is None."""
    import torch

    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
