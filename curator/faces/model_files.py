"""Where dlib's model files are: shipped by the `face-recognition-models` package. Its own
`pkg_resources` import breaks on setuptools 82+, so we locate the package without importing it."""

import importlib.util
from functools import cache
from pathlib import Path

SHAPE_PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
SHAPE_PREDICTOR_5 = "shape_predictor_5_face_landmarks.dat"
MMOD_DETECTOR = "mmod_human_face_detector.dat"
FACE_DESCRIPTOR_RESNET = "dlib_face_recognition_resnet_model_v1.dat"


@cache
def models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The face-recognition-models package is not installed (pip install -r requirements.txt).")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_path(name: str) -> str:
    path = models_dir() / name
    if not path.exists():
        raise RuntimeError(f"dlib model file {name} is missing from {models_dir()}.")
    return str(path)
