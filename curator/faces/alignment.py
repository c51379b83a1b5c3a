"""OpenFace's alignment: a 3-point affine transform that puts three of the 68 dlib landmarks
(inner eyes + bottom lip, or outer eyes + nose) where they sit on a mean face, then a square crop.

The mean face is OpenFace's `TEMPLATE`: the mean position of the 68 dlib landmarks over its
training faces, published in `openface/align_dlib.py` of https://github.com/cmusatyalab/openface
(Apache License 2.0, Carnegie Mellon University). The numbers below are that published constant;
like OpenFace we min-max normalise it so the 68 points span exactly [0, 1] on both axes.
"""

from __future__ import annotations

import cv2
import numpy as np

# fmt: off
TEMPLATE = np.array([
    (0.0792396913815, 0.339223741112), (0.0829219487236, 0.456955367943),
    (0.0967927109165, 0.575648016728), (0.122141515615, 0.691921601066),
    (0.168687863544, 0.800341263616), (0.239789390707, 0.895732504778),
    (0.325662452515, 0.977068762493), (0.422318282013, 1.04329000149),
    (0.531777802068, 1.06080371126), (0.641296298053, 1.03981924107),
    (0.738105872266, 0.972268833998), (0.824444363295, 0.889624082279),
    (0.894792677532, 0.792494155836), (0.939395486253, 0.681546643421),
    (0.96111933829, 0.562238253072), (0.970579841181, 0.441758925744),
    (0.971193274221, 0.322118743967), (0.163846223133, 0.249151738053),
    (0.21780354657, 0.204255863861), (0.291299351124, 0.192367318323),
    (0.367460241458, 0.203582210627), (0.4392945113, 0.233135599851),
    (0.586445962425, 0.228141644834), (0.660152671635, 0.195923841854),
    (0.737466449096, 0.182360984545), (0.813236546239, 0.192828009114),
    (0.8707571886, 0.235293377042), (0.51534533827, 0.31863546193),
    (0.516221448289, 0.396200446263), (0.517118861835, 0.473797687758),
    (0.51816430343, 0.553157797772), (0.433701156035, 0.604054457668),
    (0.475501237769, 0.62076344024), (0.520712933176, 0.634268222208),
    (0.565874114041, 0.618796581487), (0.607054002672, 0.60157671656),
    (0.252418718401, 0.331052263829), (0.298663015648, 0.302646354002),
    (0.355749724218, 0.303020650651), (0.403718978315, 0.33867711083),
    (0.352507175597, 0.349987615384), (0.296791759886, 0.350478978225),
    (0.631326076346, 0.334136672344), (0.679073381078, 0.29645404267),
    (0.73597236153, 0.294721285802), (0.782865376271, 0.321305281656),
    (0.740312274764, 0.341849376713), (0.68499850091, 0.343734332172),
    (0.353167761422, 0.746189164237), (0.414587777921, 0.719053835073),
    (0.477677654595, 0.706835892494), (0.522732900812, 0.717092275768),
    (0.569832064287, 0.705414478982), (0.635195811927, 0.71565572516),
    (0.69951672331, 0.739419187253), (0.639447159575, 0.805236879972),
    (0.576410514055, 0.835436670169), (0.525398405766, 0.841706377792),
    (0.47641545769, 0.837505914975), (0.41379548902, 0.810045601727),
    (0.380084785646, 0.749979603086), (0.477955996282, 0.74513234612),
    (0.523389793327, 0.748924302636), (0.571057789237, 0.74332894691),
    (0.672409137852, 0.744177032192), (0.572539621444, 0.776609286626),
    (0.5240106503, 0.783370783245), (0.477561227414, 0.778476346951),
], dtype=np.float64)
# fmt: on

MINMAX_TEMPLATE = (TEMPLATE - TEMPLATE.min(axis=0)) / (TEMPLATE.max(axis=0) - TEMPLATE.min(axis=0))

INNER_EYES_AND_BOTTOM_LIP = (39, 42, 57)
OUTER_EYES_AND_NOSE = (36, 45, 33)
LANDMARK_SETS = {
    "inner_eyes_and_bottom_lip": INNER_EYES_AND_BOTTOM_LIP,
    "outer_eyes_and_nose": OUTER_EYES_AND_NOSE,
}


def template_points(crop_size: int, margin: float = 0.0) -> np.ndarray:
    """The 68 template points in the pixels of a crop_size square. With a margin m the template
    spans the middle 1/(1+2m) of the crop, leaving m template-widths of border on each side
    (more hair, chin and background for the classifier)."""
    return crop_size * (MINMAX_TEMPLATE + margin) / (1.0 + 2.0 * margin)


def alignment_matrix(
    landmarks: np.ndarray, *, crop_size: int, margin: float = 0.0, landmark_set: str = "inner_eyes_and_bottom_lip"
) -> np.ndarray:
    """The 2x3 affine matrix taking photo pixels to crop pixels."""
    indices = list(LANDMARK_SETS[landmark_set])
    source = np.asarray(landmarks, dtype=np.float32)[indices]
    target = template_points(crop_size, margin)[indices].astype(np.float32)
    return cv2.getAffineTransform(source, target)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp(rgb: np.ndarray, matrix: np.ndarray, crop_size: int) -> np.ndarray:
    """The aligned crop. When the face is much larger than the crop (a face of 1500 px in a big
    photo into 160 px), warping directly would alias, so the face's region is first shrunk with
    area averaging and the matrix adjusted; the result is the same geometry, without moiré."""
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        inverse = cv2.invertAffineTransform(matrix)
        corners = np.array([(0, 0), (crop_size, 0), (0, crop_size), (crop_size, crop_size)], dtype=np.float64)
        source_corners = apply_affine(inverse, corners)
        height, width = rgb.shape[:2]
        x0 = int(np.clip(np.floor(source_corners[:, 0].min()) - 2, 0, width - 1))
        y0 = int(np.clip(np.floor(source_corners[:, 1].min()) - 2, 0, height - 1))
        x1 = int(np.clip(np.ceil(source_corners[:, 0].max()) + 2, x0 + 1, width))
        y1 = int(np.clip(np.ceil(source_corners[:, 1].max()) + 2, y0 + 1, height))
        region = rgb[y0:y1, x0:x1]
        # Shrink so the remaining warp scales by about 1 (never below one pixel).
        shrink = scale * 1.25
        new_w, new_h = max(1, round((x1 - x0) * shrink)), max(1, round((y1 - y0) * shrink))
        small = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
        sx, sy = new_w / (x1 - x0), new_h / (y1 - y0)
        # small = S @ (p - offset); so p = S^-1 @ small + offset.
        to_region = np.array([[1 / sx, 0, x0], [0, 1 / sy, y0], [0, 0, 1]], dtype=np.float64)
        matrix = (np.vstack([matrix, (0, 0, 1)]) @ to_region)[:2]
        rgb = small
    return cv2.warpAffine(
        rgb, matrix, (crop_size, crop_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
