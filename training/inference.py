"""Load a ModelVersion's `.keras` artifact and classify aligned crops with it.

    model = load_model_version(version)          # cached per process, keyed by version id
    probabilities = model.predict_crops(crops)   # uint8 [N, H, W, 3] RGB -> float [N, n_classes]

Crops may be any size: CNN models resize them to their input size the way training did, and the
embedding model computes dlib's descriptor from each crop first. TensorFlow is imported on first
use, only in the processes that predict (workers), never at Django start-up."""

import os
import tempfile
import threading
from dataclasses import dataclass

import numpy as np
from django.core.files.storage import default_storage

from training.models import Architecture, ModelVersion

_cache: dict[int, "LoadedModel"] = {}
_lock = threading.Lock()


@dataclass
class LoadedModel:
    version_id: int
    architecture: str
    classes: list[str]
    input_size: int
    output: str  # "softmax" (probabilities) or "logit" (one binary logit)
    keras_model: object

    def predict_crops(self, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Probabilities per class (rows sum to 1) of RGB uint8 crops [N, H, W, 3]."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"crops must be an [N, H, W, 3] RGB array, not shape {crops.shape}")
        if len(crops) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        if self.architecture == Architecture.EMBEDDING:
            from training.descriptors import descriptors_of_crops

            return self.predict_descriptors(descriptors_of_crops(crops))
        from training.engine import resize_batch

        rows = []
        for start in range(0, len(crops), batch_size):
            batch = resize_batch(crops[start : start + batch_size], self.input_size)
            rows.append(self._outputs(batch))
        return np.concatenate(rows)

    def predict_descriptors(self, descriptors: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Probabilities of dlib descriptors [N, 128] (embedding models only)."""
        if self.architecture != Architecture.EMBEDDING:
            raise ValueError("only embedding models take descriptors")
        descriptors = np.asarray(descriptors, dtype=np.float32)
        rows = [self._outputs(descriptors[i : i + batch_size]) for i in range(0, len(descriptors), batch_size)]
        return np.concatenate(rows) if rows else np.zeros((0, len(self.classes)), dtype=np.float32)

    def _outputs(self, batch: np.ndarray) -> np.ndarray:
        # Calling the model directly (not .predict) avoids building a tf.function per batch size.
        out = np.asarray(self.keras_model(batch, training=False), dtype=np.float64)
        return outputs_to_probabilities(out, self.output)


def outputs_to_probabilities(out: np.ndarray, output: str) -> np.ndarray:
    if output == "logit":
        # One logit of the second class (binary cross-entropy on logits, as the seed scripts had it).
        p = 1.0 / (1.0 + np.exp(-out.reshape(-1)))
        return np.stack([1.0 - p, p], axis=1).astype(np.float32)
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


def load_keras_file(path: str):
    """A Keras model from a storage path (copied to a local temporary file: Keras needs one)."""
    import keras

    fd, local = tempfile.mkstemp(suffix=".keras")
    try:
        with os.fdopen(fd, "wb") as out, default_storage.open(path, "rb") as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                out.write(chunk)
        return keras.saving.load_model(local, compile=False)
    finally:
        os.unlink(local)


def load_model_version(model_version: ModelVersion | int) -> LoadedModel:
    """The version's model, loaded once per process."""
    version_id = model_version if isinstance(model_version, int) else model_version.pk
    with _lock:
        loaded = _cache.get(version_id)
        if loaded is None:
            version = ModelVersion.objects.get(pk=version_id) if isinstance(model_version, int) else model_version
            loaded = LoadedModel(
                version_id=version.pk,
                architecture=version.architecture,
                classes=list(version.classes),
                input_size=int(version.config.get("input_size") or 150),
                output=version.config.get("output", "softmax"),
                keras_model=load_keras_file(version.artifact),
            )
            _cache[version_id] = loaded
        return loaded


def clear_cache() -> None:
    with _lock:
        _cache.clear()
