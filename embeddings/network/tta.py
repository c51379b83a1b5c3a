"""Test-time augmentation of the face network's 150-px chips: the views a fine-tuned model is run
on, whose probabilities are averaged. Numpy and OpenCV only, so training (to choose the mode on
the validation split) and serving (onnxruntime, no TensorFlow) cut exactly the same views.

    views = tta_views(chips, "mirror+jitter")   # [V, N, 150, 150, 3] uint8
"""

from __future__ import annotations

import cv2
import numpy as np

# Cheapest first: a tie on validation accuracy goes to the earlier mode.
MODES = ("none", "mirror", "mirror+jitter")
# Jitters of scale the detector's box varies by between photos of one face: 4 % in and out.
ZOOMS = (1.04, 1 / 1.04)


def view_count(mode: str) -> int:
    return {"none": 1, "mirror": 2, "mirror+jitter": 2 * (1 + len(ZOOMS))}[mode]


def _zoomed(chip: np.ndarray, factor: float) -> np.ndarray:
    """The chip scaled by `factor` about its centre, the same size, edges replicated."""
    side = chip.shape[0]
    matrix = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), 0.0, factor)
    return cv2.warpAffine(chip, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def tta_views(chips: np.ndarray, mode: str) -> np.ndarray:
    """uint8 [V, N, H, W, 3] views of uint8 [N, H, W, 3] chips for the mode (see MODES)."""
    if mode not in MODES:
        raise ValueError(f"unknown test-time augmentation {mode!r}; one of {', '.join(MODES)}")
    chips = np.asarray(chips, dtype=np.uint8)
    views = [chips]
    if mode == "mirror+jitter":
        views += [np.stack([_zoomed(c, z) for c in chips]) if len(chips) else chips for z in ZOOMS]
    if mode != "none":
        views += [v[:, :, ::-1] for v in list(views)]
    return np.ascontiguousarray(np.stack(views))
