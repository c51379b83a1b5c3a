"""Per-face quality measures, all cheap and stored so faces can be sorted by them: sharpness,
head pose (yaw, roll) from the landmarks, how well the landmarks fit the template after the warp,
and a 64-bit perceptual hash of the crop for finding near-duplicates."""

from __future__ import annotations

import math

import cv2
import numpy as np


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the grey crop: low for blurred faces."""
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def roll_degrees(landmarks: np.ndarray) -> float:
    """Angle of the line between the eye centres against the horizontal; positive when the
    face's right side (image left) is higher, i.e. clockwise in the image."""
    right_eye = landmarks[36:42].mean(axis=0)  # the subject's right eye, on the image's left
    left_eye = landmarks[42:48].mean(axis=0)
    dx, dy = left_eye - right_eye
    return math.degrees(math.atan2(dy, dx))


def yaw_degrees(landmarks: np.ndarray) -> float:
    """Rough left-right turn of the head, from where the nose tip sits between the two sides of
    the jaw (measured along the eye line, so roll does not count). 0 is frontal; positive means
    the nose points to the image's right. A frontal face projects the nose midway; a head turned
    by angle a moves it by about sin(a) of the half-width."""
    roll = math.radians(roll_degrees(landmarks))
    axis = np.array([math.cos(roll), math.sin(roll)])
    nose = float(landmarks[30] @ axis)
    right_side = float(landmarks[0:3].mean(axis=0) @ axis)
    left_side = float(landmarks[14:17].mean(axis=0) @ axis)
    half = (left_side - right_side) / 2.0
    if half <= 1e-6:
        return 0.0
    offset = (nose - (left_side + right_side) / 2.0) / half
    return math.degrees(math.asin(max(-1.0, min(1.0, offset))))


def landmark_fit(aligned_landmarks: np.ndarray, template: np.ndarray) -> float:
    """Mean distance in crop pixels between the warped 68 landmarks and the template: small for
    a typical frontal face, large for odd poses, expressions or bad landmark fits."""
    return float(np.linalg.norm(aligned_landmarks - template, axis=1).mean())


def phash(crop: np.ndarray) -> int:
    """64-bit DCT perceptual hash (low 8x8 frequencies against their median) as a signed
    int64, so it fits a BigIntegerField; compare two with bin(a ^ b).count("1")."""
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :8].flatten()
    # The median leaves out the DC term, which says only how bright the crop is.
    bits = low > np.median(low[1:])
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value - (1 << 64) if value >= (1 << 63) else value


def hamming(a: int, b: int) -> int:
    """Bits that differ between two stored hashes."""
    return bin((a ^ b) & ((1 << 64) - 1)).count("1")
