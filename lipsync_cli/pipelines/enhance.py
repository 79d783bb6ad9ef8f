"""`dub --enhance gfpgan`: GFPGAN v1.4 restores the dubbed faces, and only what the generator
regenerated takes the restored pixels.

For each dubbed face of a frame:

1. Landmarks: RetinaFace's five points, found on the source frame around the face's box (the eyes
   and nose anchor the alignment; the generator does not move them), kept relative to the box and
   smoothed over time per face (an exponential mean: the box is smoothed already, so the aligned
   face moves with it and does not jitter with each frame's landmark noise). A face without
   landmarks (no RetinaFace hit in its box) takes where an upright face has them in its box.
2. The dubbed frame warped onto GFPGAN's 512x512 template (faces.align.five_point_alignment),
   restored in batches (fp16 on CUDA), with the checkpoint's stored noise (deterministic).
3. The restored face warped back into the face's box and blended under a mask: by default
   (`region` "mouth") the feathered lower-face mask with which dub pasted the generated mouth
   (faces.paste.feather_mask), so every pixel the generator left alone (eyes, identity, the rest
   of the frame) is exactly the dubbed frame's; "face": the whole aligned face under a soft edge.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..faces import paste
from ..faces.align import RESTORE_SIZE, box_landmarks, five_point_alignment

ENHANCE_MODES = ("none", "gfpgan")
ENHANCE_REGIONS = ("mouth", "face")
# GFPGAN's seconds per face on a 2-core CPU (AMD EPYC, benchmarks/enhance.md; 4.8 s in fp32 on another)
CPU_SECONDS_PER_FACE = {"fp32": 2.6, "bf16": 1.3}
LANDMARK_SMOOTHING = 0.35  # weight of a frame's own landmarks in the running mean
LANDMARK_SEARCH = 0.35  # RetinaFace looks this far (of the box's size) around the box
SAME_FACE = 0.5  # a face within this share of its box's width of a face of the last frame is that face


class LandmarkTracker:
    """Per face (matched from frame to frame by its box's centre), the five landmarks relative to
    its box, smoothed over time."""

    def __init__(self, smoothing: float = LANDMARK_SMOOTHING):
        self.smoothing = smoothing
        self._faces: list[tuple[np.ndarray, np.ndarray]] = []  # (box centre, relative landmarks)

    def update(self, found: list[tuple[tuple[int, int, int, int], np.ndarray]]) -> list[np.ndarray]:
        """[(box, landmarks (5, 2) in pixels)] of one frame -> the smoothed landmarks in pixels."""
        out, now = [], []
        for box, points in found:
            x1, y1, x2, y2 = map(float, box)
            size = np.array([max(x2 - x1, 1.0), max(y2 - y1, 1.0)])
            origin = np.array([x1, y1])
            centre = origin + size / 2
            rel = (np.asarray(points, np.float64) - origin) / size
            near = [(np.linalg.norm(c - centre), r) for c, r in self._faces]
            near = [(d, r) for d, r in near if d < SAME_FACE * size[0]]
            if near:
                previous = min(near, key=lambda p: p[0])[1]
                rel = self.smoothing * rel + (1 - self.smoothing) * previous
            now.append((centre, rel))
            out.append(origin + rel * size)
        self._faces = now
        return out


def _face_mask(size: int) -> np.ndarray:
    """The whole aligned face, its edge faded over a tenth of the side."""
    mask = np.zeros((size, size), np.float32)
    edge = size // 10
    mask[edge:-edge, edge:-edge] = 1.0
    k = (2 * edge) | 1
    return cv2.GaussianBlur(mask, (k, k), 0)


class FaceRestorer:
    """GFPGAN on the dubbed faces of frames. `enhance(pairs)`: [(source frame, dubbed frame,
    boxes)] in display order -> the enhanced frames (new arrays; the inputs are not changed)."""

    def __init__(self, model, device, precision: str = "fp32", region: str = "mouth",
                 batch_size: int | None = None, detector=None, smoothing: float = LANDMARK_SMOOTHING):
        import torch

        if region not in ENHANCE_REGIONS:
            raise ValueError(f"enhance region {region!r}: choose {' or '.join(ENHANCE_REGIONS)}")
        self.device = torch.device(device)
        self.half = precision == "fp16" and self.device.type == "cuda"
        self.bf16 = precision == "bf16" and self.device.type == "cpu"  # autocast: fp32 weights, bf16 maths
        self.model = model.to(self.device).eval()
        if self.half:
            self.model.half()
        self.region = region
        self.batch_size = batch_size or (8 if self.device.type == "cuda" else 1)
        self.detector = detector
        self.tracker = LandmarkTracker(smoothing)  # 1: each frame's own landmarks
        self._masks: dict[tuple[int, int], np.ndarray] = {}
        self._face_mask = _face_mask(RESTORE_SIZE)
        self.faces_done = 0

    def describe(self) -> str:
        precision = "fp16" if self.half else "bf16" if self.bf16 else "fp32"
        return f"gfpgan ({precision}, {self.region})"

    # -- landmarks -----------------------------------------------------------------------------

    def landmarks(self, source: np.ndarray, box) -> np.ndarray:
        """(5, 2) landmarks of the face in `box` of the source frame (RetinaFace around the box)."""
        if self.detector is None:
            return box_landmarks(box)
        h, w = source.shape[:2]
        x1, y1, x2, y2 = box
        mx, my = int((x2 - x1) * LANDMARK_SEARCH), int((y2 - y1) * LANDMARK_SEARCH)
        cx1, cy1, cx2, cy2 = max(0, x1 - mx), max(0, y1 - my), min(w, x2 + mx), min(h, y2 + my)
        [found] = self.detector.detect([np.ascontiguousarray(source[cy1:cy2, cx1:cx2])])
        centre = np.array([(x1 + x2) / 2 - cx1, (y1 + y2) / 2 - cy1])
        hits = [d for d in found if d.landmarks is not None and len(d.landmarks) == 5]
        if not hits:
            return box_landmarks(box)
        best = min(hits, key=lambda d: np.linalg.norm(np.array(d.center) - centre))
        return best.landmarks.astype(np.float64) + (cx1, cy1)

    # -- the network ---------------------------------------------------------------------------

    def restore(self, faces: list[np.ndarray]) -> list[np.ndarray]:
        """512x512 uint8 BGR aligned faces -> restored ones (uint8 BGR), in batches."""
        import torch

        out = []
        for lo in range(0, len(faces), self.batch_size):
            chunk = np.stack(faces[lo:lo + self.batch_size])[..., ::-1]  # BGR -> RGB
            x = torch.from_numpy(np.ascontiguousarray(chunk)).to(self.device).permute(0, 3, 1, 2)
            x = x.to(torch.float16 if self.half else torch.float32) / 127.5 - 1.0
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                y = self.model(x).float().clamp_(-1, 1)
            y = ((y + 1) * 127.5).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()[..., ::-1]
            out.extend(np.ascontiguousarray(f) for f in y)
        self.faces_done += len(faces)
        return out

    # -- blending ------------------------------------------------------------------------------

    def _mouth_mask(self, h: int, w: int) -> np.ndarray:
        if (h, w) not in self._masks:
            self._masks[(h, w)] = paste.feather_mask(h, w)
        return self._masks[(h, w)]

    def _blend(self, frame: np.ndarray, box, matrix: np.ndarray, restored: np.ndarray) -> None:
        """Warp the restored face back into the frame (in place) under the region's mask."""
        h, w = frame.shape[:2]
        inverse = cv2.invertAffineTransform(matrix)
        if self.region == "mouth":
            x1, y1, x2, y2 = box
        else:  # the aligned square's corners, back in the frame
            corners = np.array([[0, 0, 1], [RESTORE_SIZE, 0, 1], [0, RESTORE_SIZE, 1], [RESTORE_SIZE, RESTORE_SIZE, 1]],
                               np.float64) @ inverse.T
            x1, y1 = np.floor(corners.min(axis=0)).astype(int)
            x2, y2 = np.ceil(corners.max(axis=0)).astype(int)
        x1, y1, x2, y2 = max(0, int(x1)), max(0, int(y1)), min(w, int(x2)), min(h, int(y2))
        if x2 <= x1 or y2 <= y1:
            return
        shift = inverse.copy()
        shift[:, 2] -= (x1, y1)  # warp straight into the region that changes
        size = (x2 - x1, y2 - y1)
        back = cv2.warpAffine(restored, shift, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if self.region == "mouth":
            mask = self._mouth_mask(y2 - y1, x2 - x1)
        else:
            mask = cv2.warpAffine(self._face_mask, shift, size, flags=cv2.INTER_LINEAR)
        region = frame[y1:y2, x1:x2]
        frame[y1:y2, x1:x2] = cv2.blendLinear(back, region, mask, 1.0 - mask)

    def enhance(self, pairs: list[tuple[np.ndarray, np.ndarray, tuple]]) -> list[np.ndarray]:
        frames, jobs = [], []
        for source, dubbed, boxes in pairs:
            frame = dubbed.copy()
            found = [(box, self.landmarks(source, box)) for box in boxes]
            for box, points in zip(boxes, self.tracker.update(found)):
                matrix = five_point_alignment(points)
                aligned = cv2.warpAffine(frame, matrix, (RESTORE_SIZE, RESTORE_SIZE), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_REFLECT)
                jobs.append((len(frames), box, matrix, aligned))
            frames.append(frame)
        restored = self.restore([job[3] for job in jobs])
        for (k, box, matrix, _), face in zip(jobs, restored):
            self._blend(frames[k], box, matrix, face)
        return frames


def restore_precision(device: str, requested: str = "auto") -> str:
    """The restoration network's precision on `device` for dub's --precision: fp16 on CUDA; on a
    CPU bf16 where it has bf16 instructions (AMX, AVX-512 BF16: twice as fast as fp32, within half
    a grey level of it on average), else fp32."""
    from ..device import cpu_has_bf16

    if str(device).startswith("cuda"):
        return "fp16" if requested in ("auto", "fp16") else "fp32"
    return "bf16" if requested == "bf16" or (requested == "auto" and cpu_has_bf16()) else "fp32"


def cpu_estimate(faces: int, precision: str) -> str:
    """'about N min' for restoring `faces` faces on the CPU in `precision`."""
    seconds = faces * CPU_SECONDS_PER_FACE.get(precision, CPU_SECONDS_PER_FACE["fp32"])
    return f"about {seconds / 60:.0f} min" if seconds >= 90 else f"about {seconds:.0f} s"
