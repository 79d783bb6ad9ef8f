"""Generator-only floor: milliseconds per 96x96 frame on each CPU backend we tried.

    python benchmarks/bench_generator.py [--batch 16] [--reps 5] [--threads N]

Backends: eager PyTorch as loaded; batchnorm folded; folded + channels_last (what `dub` uses on
the CPU in fp32); the same with bf16 weights (what `dub` uses on a CPU with AMX) and with bf16
autocast; ONNX Runtime on the folded graph (needs `pip install onnx` for the export). The input is
a seeded random-init Wav2Lip generator with non-trivial batchnorm statistics; the cost does not
depend on the weights' values. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import io
import statistics
import time

import torch

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
    args = ap.parse_args()
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
        rows.append(("folded + channels_last, bf16 weights (dub's CPU path with AMX)",
                     timed(lambda: bf(mel_bf, faces_bf), args.reps)))

        def autocast_bf16():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return cl(mel, faces_cl)

        rows.append(("folded + channels_last, bf16 autocast", timed(autocast_bf16, args.reps)))
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

    print(f"machine: {machine()}; {torch.get_num_threads()} threads, batch {b}, {args.model}\n")
    print("| backend | ms / frame (median) | ms / frame (min) |")
    print("| --- | --- | --- |")
    for name, ts in rows:
        if ts:
            print(f"| {name} | {statistics.median(ts) / b * 1000:.1f} | {min(ts) / b * 1000:.1f} |")
        else:
            print(f"| {name} | - | - |")


if __name__ == "__main__":
    main()
