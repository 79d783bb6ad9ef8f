"""Where the networks run and in what precision: one policy for dubbing, training and evaluation.

- `resolve_device`: auto / cpu / cuda / cuda:N. Under `torchrun` (LOCAL_RANK set) `auto` and
  `cuda` mean this process's own GPU, so N processes on one machine use N GPUs.
- `auto_precision`: what `--precision auto` means for inference: fp16 on CUDA; bf16 on a CPU with
  AMX (Intel Sapphire Rapids and later), where it runs several times faster than fp32; int8 on
  other CPUs (AVX2, AVX-512, AVX-512 VNNI), where bf16 is emulated and slower and the generator's
  int8 kernels are 1.5x (AVX2) to 3x (VNNI) faster than fp32 (benchmarks/README.md).
- `cpu_isa`: the CPU's best matrix instructions as those choices see them, for the summary line;
  `cpu_flags` / CPU_INSTRUCTIONS: which of them the CPU has (`lipsync doctor`).
- `autocast_dtype` / `autocast`: the same choice for training and evaluation (`--amp`), as an
  autocast context that does nothing when mixed precision is off.

torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import os
import sys

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


def cpu_info(field: str) -> str | None:
    """A field of the first CPU in Linux's /proc/cpuinfo ("flags", "model name"); None elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == field:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (avx2, avx512f, amx_bf16...); empty elsewhere."""
    return set((cpu_info("flags") or "").split())


# The instructions the choices below depend on: their names, and the flag that says a CPU has them.
CPU_INSTRUCTIONS = {"AVX2": "avx2", "AVX-512": "avx512f", "AVX-512 VNNI": "avx512_vnni", "AVX-512 BF16": "avx512_bf16",
                    "AMX": "amx_bf16"}


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
    return "amx_bf16" in cpu_flags()


def cpu_has_bf16() -> bool:
    """True when the CPU has bf16 instructions of any kind: AMX, or AVX-512 BF16 (AMD Zen 4 and
    later, Intel Cooper Lake), where oneDNN's bf16 convolutions run about twice as fast as fp32
    (GFPGAN, benchmarks/enhance.md). ONEDNN_MAX_CPU_ISA below AVX-512 or LIPSYNC_NO_AMX=1: False."""
    if cpu_has_amx_bf16():
        return True
    if os.environ.get("LIPSYNC_NO_AMX", "") not in ("", "0"):
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if isa and not isa.startswith("AVX512") and isa not in ("ALL", "DEFAULT"):
        return False
    return "avx512_bf16" in cpu_flags()


def cpu_isa() -> str:
    """"AMX", "AVX-512 VNNI", "AVX-512", "AVX2" or "baseline": the best matrix instructions of this
    CPU that the libraries will use (ONEDNN_MAX_CPU_ISA=AVX2 / LIPSYNC_NO_AMX count, as above)."""
    if cpu_has_amx_bf16():
        return "AMX"
    flags = cpu_flags()
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if isa.startswith("AVX2") or isa in ("SSE41", "AVX"):
        flags -= {f for f in flags if f.startswith("avx512")}
    if "avx512_vnni" in flags:
        return "AVX-512 VNNI"
    if "avx512f" in flags:
        return "AVX-512"
    return "AVX2" if "avx2" in flags else "baseline"


def auto_precision(device) -> str:
    """What `--precision auto` means on this device: "fp16" (CUDA), "bf16" (a CPU with AMX),
    "int8" (other CPUs, where PyTorch has int8 kernels) or "fp32"."""
    if device.type == "cuda":
        return "fp16"
    if cpu_has_amx_bf16():
        return "bf16"
    return "int8" if cpu_int8_kernels() else "fp32"


def cpu_int8_kernels() -> bool:
    """Whether this PyTorch build has CPU int8 convolutions (FBGEMM or oneDNN)."""
    import torch

    return any(e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm", "onednn"))


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


def give_back_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim; nothing elsewhere).
    glibc keeps what a long analysis freed: each freed block over its mmap threshold raises the
    threshold, later arrays of a few MB come from the heap, and its holes stay resident; an hour
    of edited footage left 130 MB more behind than ten minutes did (benchmarks/edits.md). Called
    once the analysis is done: a few milliseconds, against a per-allocation cost for the whole
    dub had the threshold been fixed instead."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(ctypes.c_size_t(0))
    except (OSError, AttributeError):
        pass
