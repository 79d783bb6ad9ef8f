"""S3FD (what Wav2Lip uses) through the ``face_alignment`` package.

Colour order: face_alignment's ``batch_detect`` takes an **RGB** N x 3 x H x W tensor and flips
it to BGR itself before subtracting the BGR mean (104, 117, 123). Our frames are BGR, so we flip
them to RGB before handing them over (flipping twice, but S3FD's VGG16 dwarfs that cost).

Weights: s3fd-619a316812.pth, a bare state_dict that face_alignment loads with
``torch.load(path, weights_only=True)`` when given ``path_to_detector``, and otherwise downloads
into the torch hub cache. Offline, a missing file becomes :class:`DetectorUnavailable`.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np

from .base import Detection, DetectorUnavailable, detect_downscaled

S3FD_FILENAME = "s3fd-619a316812.pth"
S3FD_URL = "https://www.adrianbulat.com/downloads/python-fan/" + S3FD_FILENAME


def default_weights_path() -> Path:
    """Where face_alignment (torch hub) caches the S3FD weights."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / S3FD_FILENAME


def _how_to_get() -> str:
    return (
        f"download {S3FD_URL} and put it at {default_weights_path()} "
        f"or pass --s3fd-weights PATH"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class S3FDDetector:
    """S3FD via face_alignment's SFDDetector. See :func:`lipsync_cli.faces.detectors.make_detector`."""

    name = "s3fd"

    def __init__(
        self,
        device: str = "cpu",
        *,
        max_side: int | None = 480,
        weights: str | Path | None = None,
        score_threshold: float = 0.8,
    ):
        import torch
        from face_alignment.detection.sfd.sfd_detector import SFDDetector

        self.max_side = max_side
        self.score_threshold = float(score_threshold)
        device = str(device)
        if device.startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"
        self.device = device

        path: Path | None = Path(weights).expanduser() if weights is not None else None
        users_file = path is not None  # a file the user named: a wrong one is their mistake (exit 2)
        if path is None and default_weights_path().is_file():
            path = default_weights_path()
        if path is not None and not path.is_file():
            raise DetectorUnavailable(
                f"S3FD weights not found at {path}: {S3FD_FILENAME} is needed; {_how_to_get()}",
                users_file=users_file,
            )
        try:
            self._sfd = SFDDetector(
                device,
                path_to_detector=str(path) if path is not None else None,
                filter_threshold=self.score_threshold,
            )
        except (urllib.error.URLError, OSError) as exc:
            if path is not None:
                raise DetectorUnavailable(
                    f"cannot read S3FD weights {path}: {_first_line(exc)}", users_file=users_file
                ) from exc
            raise DetectorUnavailable(
                f"S3FD weights {S3FD_FILENAME} are not available offline "
                f"({_first_line(exc)}): {_how_to_get()}"
            ) from exc
        except Exception as exc:  # corrupt / wrong file: unpickling or state_dict mismatch
            where = path if path is not None else default_weights_path()
            raise DetectorUnavailable(
                f"{where} is not a valid S3FD state_dict ({type(exc).__name__}: "
                f"{_first_line(exc)}); {_how_to_get()}",
                users_file=users_file,
            ) from exc

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        return detect_downscaled(frames, self.max_side, self._run)

    def _run(self, small: list[np.ndarray]):
        import torch

        batch = torch.from_numpy(np.stack(small)).to(self.device)
        batch = batch.permute(0, 3, 1, 2).flip(1)  # NHWC BGR -> NCHW RGB, what face_alignment wants
        for bboxlist in self._sfd.detect_from_batch(batch):
            # x1, y1, x2, y2, score; below the threshold (or NaN) is no face
            yield [(*(float(v) for v in b[:4]), float(b[4]), None) for b in bboxlist
                   if float(b[4]) >= self.score_threshold]
