"""Run the reference inference design (PyPI `lipsync==0.1.0`, MIT) on one clip with a fixed face box.

This file only *drives* the reference package; it imports nothing from lipsync_cli and the package is
not vendored here. Set it up once in its own venv (torch first so pip keeps the CPU build):

    python3 -m venv /work/refvenv
    /work/refvenv/bin/pip install torch==2.13.0
    /work/refvenv/bin/pip install --only-binary av lipsync==0.1.0 imageio-ffmpeg
    # the package shells out to `ffmpeg` from PATH; this script falls back to imageio-ffmpeg's binary
    # when none is on PATH (or: mkdir /work/refbin && ln -s "$(python -c 'import imageio_ffmpeg as i;
    # print(i.get_ffmpeg_exe())')" /work/refbin/ffmpeg && export PATH=/work/refbin:$PATH)

Run:

    /work/refvenv/bin/python benchmarks/run_reference.py --video V.mp4 --audio A.wav \
        --checkpoint wav2lip.pth --box 150 650 200 650 --out out.mp4

--box is y1 y2 x1 x2 (the package's `box` order); passing it makes the package skip face detection
(which would otherwise download the S3FD + FAN weights). Prints one JSON line.

Checkpoint layout: `lipsync` calls `model.load_state_dict(torch.load(path, weights_only=True))`
(strict), so it only accepts a bare state_dict with un-prefixed keys. A published-layout checkpoint
`{"state_dict": {"module.<key>": tensor}, ...}` is therefore rewritten to a bare state_dict (prefix
stripped) in a temp dir before the run. That is a format adaptation only: same tensors, same keys.
"""

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

T0 = time.perf_counter()


def bare_state_dict(src: str, dst_dir: str) -> str:
    import torch

    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    if not any(k.startswith("module.") for k in sd) and sd is ckpt:
        return src  # already what the package wants
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    dst = os.path.join(dst_dir, "wav2lip_bare.pth")
    torch.save(sd, dst)
    return dst


def ensure_ffmpeg(tmp: str) -> None:
    if shutil.which("ffmpeg"):
        return
    import imageio_ffmpeg

    bindir = os.path.join(tmp, "bin")
    os.makedirs(bindir)
    os.symlink(imageio_ffmpeg.get_ffmpeg_exe(), os.path.join(bindir, "ffmpeg"))
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--box", type=int, nargs=4, required=True, metavar=("Y1", "Y2", "X1", "X2"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=128, help="package default: 128")
    args = ap.parse_args()

    from lipsync import LipSync  # imports torch, librosa, face_alignment, av, cv2

    t_import = time.perf_counter() - T0
    with tempfile.TemporaryDirectory() as tmp:
        ensure_ffmpeg(tmp)
        tempfile.tempdir = tmp  # the package leaves its mkstemp()/.avi temp files behind; keep them in here
        t = time.perf_counter()
        ckpt = bare_state_dict(args.checkpoint, tmp)
        t_convert = time.perf_counter() - t

        lip = LipSync(
            model="wav2lip",
            checkpoint_path=ckpt,
            device=args.device,
            box=list(args.box),
            nosmooth=True,  # unused with a fixed box
            save_cache=False,  # the cache is only consulted by the detection path anyway
            wav2lip_batch_size=args.batch_size,
            ffmpeg_loglevel="error",  # verbosity only; the ffmpeg command is otherwise unchanged
        )
        t = time.perf_counter()
        lip.sync(args.video, args.audio, args.out)
        t_sync = time.perf_counter() - t

    kb = 1024 if sys.platform != "darwin" else 1
    print(json.dumps({
        "tool": "lipsync==0.1.0",
        "wall_s": round(time.perf_counter() - T0, 3),  # whole process from script start
        "sync_s": round(t_sync, 3),  # LipSync.sync(): decode, mel, model load, inference, ffmpeg mux
        "import_s": round(t_import, 3),
        "convert_s": round(t_convert, 3),
        "peak_rss_mb": round(  # this process only (ffmpeg children excluded)
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kb / 2**20, 1),
        "out": args.out,
    }))


if __name__ == "__main__":
    main()
