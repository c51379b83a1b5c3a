"""Test-time augmentation of the face network's 150-px chips: the views a fine-tuned model is run
on, whose probabilities are averaged. Numpy and OpenCV only, so training (to choose the mode on
the validation split) and serving (onnxruntime, no TensorFlow) cut exactly the same views.

    views = tta_views(chips, "mirror+jitter")   # [V, N, 150, 150, 3] uint8
    mode = tta_choose({"none": right_none, "mirror": right_mirror, ...})  # per-chip correctness
"""

from __future__ import annotations

import cv2
import numpy as np

# Cheapest first: a tie on validation accuracy goes to the earlier mode.
MODES = ("none", "mirror", "mirror+jitter")
# Jitters of scale the detector's box varies by between photos of one face: 4 % in and out.
ZOOMS = (1.04, 1 / 1.04)
# A costlier mode serves when its validation gain is more than this many standard errors (one: 84 %
# one-sided). Not two: the costs are unequal. A needless view adds a few ms to a prediction; a
# missed gain loses accuracy on every one. (Measured on the dev set's 646 validation faces: mirror
# gained 8 chips and lost 4 over none, z 1.15, so it serves; jitter then gained 3 and lost 1 over
# mirror, z 1.0, so it does not.)
PAYS_Z = 1.0


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


def tta_choose(right: dict[str, np.ndarray]) -> str:
    """The mode to serve with, from each mode's per-chip correctness on the validation split (bool
    arrays over the same chips, keys among MODES). A costlier mode must pay for its extra views: it
    replaces the mode chosen so far only when the chips it gets right and that one got wrong outnumber
    the reverse by more than PAYS_Z standard errors of that paired difference (sqrt of the chips where
    the two disagree: McNemar's sign test). A gain of a chip or two on a few hundred faces is noise,
    and every prediction would pay for it (each view costs about as much as a descriptor)."""
    modes = [mode for mode in MODES if mode in right]
    chosen = modes[0]
    for mode in modes[1:]:
        wins = int(np.sum(right[mode] & ~right[chosen]))
        losses = int(np.sum(right[chosen] & ~right[mode]))
        if wins - losses > PAYS_Z * np.sqrt(wins + losses):
            chosen = mode
    return chosen
