"""Generator-only floor: milliseconds per 96x96 frame on each CPU backend we tried.

    python benchmarks/bench_generator.py [--batch 16] [--reps 5] [--threads N] [--emulate-avx2]

Backends: eager PyTorch as loaded; batchnorm folded; folded + channels_last (what `dub` uses on
the CPU in fp32); the same with bf16 weights (what `dub` uses on a CPU with AMX) and with bf16
autocast; only the rows the feathered paste shows (Wav2LipGenerator.lower_rows); the int8 network
(lipsync_cli.models.int8) whole and on those rows; two batches side by side on one thread each
(dub's CPU pipeline); ONNX Runtime on the folded graph (needs `pip install onnx` for the export;
ONNX Runtime has no switch to keep it off AVX-512, so --emulate-avx2 does not apply to it). The input is
a seeded random-init Wav2Lip generator with non-trivial batchnorm statistics; the cost does not
depend on the weights' values. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import statistics
import subprocess
import sys
import threading
import time

import torch

from lipsync_cli.device import cpu_has_amx_bf16
from lipsync_cli.models.inference import fold_batchnorm
from lipsync_cli.models.wav2lip import build_generator


def timed(fn, reps: int) -> list[float]:
    fn()  # warm-up (allocations, oneDNN primitive creation)
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--model", default="wav2lip")
    ap.add_argument("--emulate-avx2", action="store_true", help="rerun in a process that acts as an AVX2-only CPU")
    args = ap.parse_args()
    if args.emulate_avx2 and os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2":
        from bench_dub import EMULATE_AVX2

        argv = [a for a in sys.argv[1:] if a != "--emulate-avx2"]
        raise SystemExit(subprocess.call([sys.executable, __file__, *argv], env={**os.environ, **EMULATE_AVX2}))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = build_generator(args.model).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.75, 1.25)
    b = args.batch
    faces = torch.rand(b, 6, 96, 96)
    mel = torch.randn(b, 1, 80, 16)
    rows = []

    folded = fold_batchnorm(net)
    cl = copy.deepcopy(folded).to(memory_format=torch.channels_last)
    faces_cl = faces.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        rows.append(("eager PyTorch (as loaded)", timed(lambda: net(mel, faces), args.reps)))
        rows.append(("batchnorm folded", timed(lambda: folded(mel, faces), args.reps)))
        rows.append(("folded + channels_last (dub's fp32 CPU path)", timed(lambda: cl(mel, faces_cl), args.reps)))
        bf = copy.deepcopy(cl).to(torch.bfloat16)
        faces_bf, mel_bf = faces_cl.to(torch.bfloat16), mel.to(torch.bfloat16)
        amx = cpu_has_amx_bf16()  # without AMX, bf16 is emulated: a second a frame, not worth the wait
        rows.append(("folded + channels_last, bf16 weights (dub's CPU path with AMX)",
                     timed(lambda: bf(mel_bf, faces_bf), args.reps) if amx else []))

        def autocast_bf16():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return cl(mel, faces_cl)

        rows.append(("folded + channels_last, bf16 autocast", timed(autocast_bf16, args.reps) if amx else []))
        rows.append(("folded + channels_last, rows 36.. only (dub's feathered paste)",
                     timed(lambda: cl.lower_rows(mel, faces_cl, 36), args.reps)))
        from lipsync_cli.models.int8 import quantize_generator

        q = quantize_generator(cl, mel[:8], faces_cl[:8])
        rows.append(("int8 (PyTorch's kernels), whole face", timed(lambda: q(mel, faces_cl), args.reps)))
        rows.append(("int8, rows 36.. only (dub's CPU path without AMX)",
                     timed(lambda: q.lower_rows(mel, faces_cl, 36), args.reps)))

        def side_by_side(net, n=2):  # n batches at once, one thread each: the time per batch
            def work():
                with torch.inference_mode():
                    net.lower_rows(mel if net is not bf else mel_bf, faces_cl if net is not bf else faces_bf, 36)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                def both():
                    ts = [threading.Thread(target=work) for _ in range(n)]
                    for t in ts:
                        t.start()
                    for t in ts:
                        t.join()
                return [t / n for t in timed(both, args.reps)]
            finally:
                torch.set_num_threads(threads)

        rows.append(("int8, rows 36.., 2 batches side by side x 1 thread", side_by_side(q)))
        rows.append(("bf16 weights, rows 36.. only", timed(lambda: bf.lower_rows(mel_bf, faces_bf, 36), args.reps)
                     if amx else []))
        rows.append(("bf16 weights, rows 36.., 2 batches side by side x 1 thread (dub's CPU path with AMX)",
                     side_by_side(bf) if amx else []))
    try:
        import onnxruntime as ort

        buf = io.BytesIO()
        torch.onnx.export(folded, (mel, faces), buf, input_names=["mel", "face"], output_names=["out"],
                          dynamic_axes={"mel": {0: "b"}, "face": {0: "b"}, "out": {0: "b"}}, opset_version=17,
                          dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
        feed = {"mel": mel.numpy(), "face": faces.numpy()}
        rows.append(("ONNX Runtime (folded graph)", timed(lambda: sess.run(None, feed), args.reps)))
    except Exception as exc:  # onnx not installed, or export unsupported
        rows.append((f"ONNX Runtime: not run ({type(exc).__name__})", []))

    from bench_dub import machine

    emulated = " (emulated AVX2: ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2)" \
        if os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2" else ""
    print(f"machine: {machine()}{emulated}; {torch.get_num_threads()} threads, batch {b}, {args.model}\n")
    print("| backend | ms / frame (median) | ms / frame (min) |")
    print("| --- | --- | --- |")
    for name, ts in rows:
        if ts:
            print(f"| {name} | {statistics.median(ts) / b * 1000:.1f} | {min(ts) / b * 1000:.1f} |")
        else:
            print(f"| {name} | - | - |")


if __name__ == "__main__":
    main()
