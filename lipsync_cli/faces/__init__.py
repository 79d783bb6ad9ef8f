"""Faces: finding them, following them through a video, and putting generated ones back.

- base.py: the detector interface (Detection, FaceDetector, DetectorUnavailable) and what every
  detector does around its network; retinaface.py (ONNX, built in) and s3fd.py (face-alignment)
  implement it; detectors.py builds them by name (make_detector, DetectorPool).
- shots.py: shot boundaries (cuts, fades) as a clip streams, with PySceneDetect.
- track.py: following one face (FaceTracker) or every face (MultiFaceTracker) by track id,
  smoothing (BoxSmoother), padding (pad_box).
- speakers.py: the one face pipeline of a video: its shots, every face tracked within its shot,
  who speaks when (Light-ASD and synchrony), and FacePlan, the faces to dub per frame under
  --speaker / --face-index.
- synchrony.py: how well a face's lower-face motion follows the speech (the cue beside Light-ASD).
- boxes.py: FaceBoxes, the streaming per-frame boxes of a still image or a fixed --box, and of
  preprocess.
- paste.py: dub's feathered / hard paste into a box, DAVS's paste through the inverse alignment.
- align.py: DAVS's template alignment.

Boxes are (x1, y1, x2, y2) throughout. Detectors load onnxruntime or torch only when one is built.
"""

from .base import Detection, DetectorUnavailable, FaceDetector, detection_size
from .boxes import FaceBoxes
from .detectors import DETECTOR_NAMES, DetectorPool, make_detector
from .paste import PASTE_MODES, AlignedPaster, BoxPaster, first_blended_row
from .track import (
    DEFAULT_PADS,
    SMOOTH_WINDOW,
    BoxSmoother,
    FaceTracker,
    MultiFaceTracker,
    iou,
    pad_box,
    select_face,
    smooth_boxes,
)

__all__ = [
    "DETECTOR_NAMES",
    "DEFAULT_PADS",
    "PASTE_MODES",
    "SMOOTH_WINDOW",
    "AlignedPaster",
    "BoxPaster",
    "BoxSmoother",
    "Detection",
    "DetectorPool",
    "DetectorUnavailable",
    "FaceBoxes",
    "FaceDetector",
    "FaceTracker",
    "MultiFaceTracker",
    "detection_size",
    "first_blended_row",
    "iou",
    "make_detector",
    "pad_box",
    "select_face",
    "smooth_boxes",
]
