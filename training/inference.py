"""Load a ModelVersion and classify faces with it, whatever its architecture.

    model = load_model_version(version)                     # cached per process, keyed by version id
    probabilities = model.predict(crops=..., features=..., chips=...)  # float32 [N, n_classes], rows sum to 1

What a model needs of a face depends on its architecture: the CNNs take the aligned crops (uint8
RGB [N, H, W, 3], resized inside the graph the way training resized them), the embedding and
pretrained models take embeddings.features.FaceFeatures of the original photo, `finetune` takes
dlib's 150-px chips of the original photo (uint8 [N, 150, 150, 3]), an ensemble takes whatever its
members take (`needs_crops`, `needs_features`, `needs_chips`). A `finetune` version is served by
onnxruntime: its fine-tuned weights and head are read from the .keras file once and built into
the same ONNX graph as the face network (embeddings.network), so it costs what a descriptor costs. Keras forward passes are compiled
once per model as a tf.function with a fixed input signature: calling a Keras model eagerly
costs ~40 ms per call for the CNN here, the compiled graph ~8 ms, and `model.predict` adds its
own ~50 ms per call. TensorFlow is imported on first use, only in processes that predict."""

from __future__ import annotations

import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from django.core.files.storage import default_storage

from training.models import Architecture, ModelVersion

_cache: dict[tuple[int, str], LoadedModel] = {}
_lock = threading.RLock()


class ModelUnavailable(RuntimeError):
    """The version cannot be loaded (artifact or member gone, classes that no longer fit)."""


class LoadedModel:
    needs_crops = False
    needs_features = False
    needs_chips = False
    # Whether its features must include dlib's descriptor (the costly part of a prediction).
    needs_descriptor = False
    # Whether predict() accepts `features` as a function to call, so that it can compute them
    # alongside its other work (EnsembleModel).
    computes_features_alongside = False

    def __init__(self, version: ModelVersion):
        self.version_id = version.pk
        self.number = version.number
        self.architecture = version.architecture
        self.classes = list(version.classes)

    def predict(
        self, *, crops: np.ndarray | None = None, features: list | None = None, chips: np.ndarray | None = None
    ) -> np.ndarray:
        raise NotImplementedError

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """Probabilities of aligned crops (CNN models; kept for callers that only have crops)."""
        return self.predict(crops=np.asarray(crops))

    def _empty(self) -> np.ndarray:
        return np.zeros((0, len(self.classes)), dtype=np.float32)


def outputs_to_probabilities(out: np.ndarray, output: str) -> np.ndarray:
    if output == "logit":
        # One logit of the second class (binary cross-entropy on logits, as the seed scripts had it).
        p = 1.0 / (1.0 + np.exp(-out.reshape(-1)))
        return np.stack([1.0 - p, p], axis=1).astype(np.float32)
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


class KerasModel(LoadedModel):
    """A .keras artifact: the CNNs on crops, or the embedding head on feature rows."""

    def __init__(self, version: ModelVersion):
        super().__init__(version)
        self.output = version.config.get("output", "softmax")
        self.input_size = int(version.config.get("input_size") or 150)
        self.keras_model = load_keras_file(version.artifact)
        self._forward = None
        self._compile_lock = threading.Lock()

    def forward(self, batch: np.ndarray) -> np.ndarray:
        if self._forward is None:
            with self._compile_lock:
                if self._forward is None:
                    self._forward = self._compile()
        return outputs_to_probabilities(np.asarray(self._forward(batch), dtype=np.float64), self.output)

    def _compile(self):
        raise NotImplementedError


class CropModel(KerasModel):
    needs_crops = True

    def _compile(self):
        import tensorflow as tf

        keras_model, size = self.keras_model, self.input_size

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
        def forward(crops):
            # The same op and antialiasing as the training pipeline (training.engine.image_dataset).
            images = tf.image.resize(tf.cast(crops, tf.float32), (size, size), antialias=True)
            return keras_model(images, training=False)

        return forward

    def predict(self, *, crops=None, features=None, chips=None, batch_size: int = 64) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"crops must be an [N, H, W, 3] RGB array, not shape {crops.shape}")
        if len(crops) == 0:
            return self._empty()
        crops = np.ascontiguousarray(crops, dtype=np.uint8)
        return np.concatenate([self.forward(crops[i : i + batch_size]) for i in range(0, len(crops), batch_size)])


class EmbeddingModel(KerasModel):
    needs_features = True
    needs_descriptor = True

    def __init__(self, version: ModelVersion):
        super().__init__(version)
        self.use_pretrained = version.config.get("features") == "descriptor+pretrained"

    def _compile(self):
        import tensorflow as tf

        keras_model = self.keras_model
        width = int(keras_model.inputs[0].shape[-1])

        @tf.function(input_signature=[tf.TensorSpec([None, width], tf.float32)])
        def forward(rows):
            return keras_model(rows, training=False)

        return forward

    def predict(self, *, crops=None, features=None, chips=None) -> np.ndarray:
        from embeddings.features import model_inputs

        if not features:
            return self._empty()
        return self.forward(model_inputs(features, use_pretrained=self.use_pretrained))


class PretrainedModel(LoadedModel):
    """The pretrained network's female/male probabilities, in the version's class order."""

    needs_features = True

    def __init__(self, version: ModelVersion):
        from embeddings import pretrained

        super().__init__(version)
        if not pretrained.classes_supported(self.classes):
            raise ModelUnavailable(
                f"Version v{version.number} is the pretrained gender network, which predicts female/male only; "
                f"its classes are {', '.join(self.classes)}."
            )
        pretrained.session()  # a missing or corrupt file fails here, once, with its reason
        self.order = [pretrained.CLASSES.index(name) for name in self.classes]

    def predict(self, *, crops=None, features=None, chips=None) -> np.ndarray:
        from embeddings import pretrained

        if not features:
            return self._empty()
        if any(f.pretrained is None for f in features):
            raise pretrained.PretrainedModelError("The pretrained gender network is not available.")
        return np.stack([f.pretrained for f in features])[:, self.order].astype(np.float32)


class FinetuneModel(LoadedModel):
    """The fine-tuned face network and its head, run by onnxruntime on dlib's chips with the
    version's test-time augmentation (embeddings.network.tta)."""

    needs_chips = True

    def __init__(self, version: ModelVersion):
        from embeddings.network.runtime import OnnxModel, network_threads

        super().__init__(version)
        self.tta = version.config.get("tta", "none")
        graph = finetune_graph(load_keras_file(version.artifact))
        self.session = OnnxModel(graph, threads=network_threads(), what=f"Version v{version.number}")

    def predict(self, *, crops=None, features=None, chips=None) -> np.ndarray:
        from embeddings.network.runtime import chips_array
        from embeddings.network.tta import tta_views

        if chips is None or not len(chips):
            return self._empty()
        views = tta_views(chips_array(chips), self.tta)
        flat = views.reshape(-1, *views.shape[2:])
        probabilities = self.session.run(flat)["probabilities"].reshape(len(views), len(chips), -1)
        return probabilities.mean(axis=0).astype(np.float32)


def finetune_graph(keras_model) -> bytes:
    """The ONNX graph of a fine-tuned Keras model (training.engine.build_finetune): the network's
    weights and its standardise-then-softmax head."""
    from embeddings.network.keras_model import weights_of
    from embeddings.network.onnx_graph import Dense, Normalize, face_network_graph

    scale = keras_model.get_layer("descriptor_scale")
    mean = np.asarray(scale.mean, dtype=np.float32).reshape(-1)
    std = np.sqrt(np.asarray(scale.variance, dtype=np.float32).reshape(-1))
    kernel, bias = keras_model.get_layer("probabilities").get_weights()
    head = [Normalize(mean=mean, std=std), Dense(kernel=kernel, bias=bias, activation="softmax")]
    return face_network_graph(weights_of(keras_model), head=head)


class EnsembleModel(LoadedModel):
    """Members' probabilities averaged, or stacked: a logistic regression on the members' log
    probabilities, fitted on the validation split (coefficients in the version's config)."""

    def __init__(self, version: ModelVersion):
        super().__init__(version)
        member_ids = list(version.config.get("members") or [])
        versions = {v.pk: v for v in ModelVersion.objects.filter(pk__in=member_ids, dataset_id=version.dataset_id)}
        missing = [str(pk) for pk in member_ids if pk not in versions]
        if missing:
            raise ModelUnavailable(
                f"Ensemble v{version.number} cannot be used: its member version(s) {', '.join(missing)} "
                "were deleted. Train a new ensemble from the versions that exist."
            )
        self.members = [load_model_version(versions[pk]) for pk in member_ids]
        for member in self.members:
            if member.classes != self.classes:
                raise ModelUnavailable(
                    f"Ensemble v{version.number}: member v{member.number} predicts {', '.join(member.classes)}, "
                    f"the ensemble {', '.join(self.classes)}."
                )
        self.needs_crops = any(m.needs_crops for m in self.members)
        self.needs_features = any(m.needs_features for m in self.members)
        self.needs_descriptor = any(m.needs_descriptor for m in self.members)
        self.needs_chips = any(m.needs_chips for m in self.members)
        self.computes_features_alongside = self.needs_features and any(not m.needs_features for m in self.members)
        self.combine = version.config.get("combine", "average")
        self.stacker = version.config.get("stacker")

    def member_probabilities(self, *, crops=None, features=None, chips=None) -> list[np.ndarray]:
        """Each member's probabilities, in member order. `features` may also be a function that
        computes them (serving.image_predict passes one): it then runs on a second thread while the
        members that read only crops or chips run on this one. onnxruntime and TensorFlow release
        the GIL, so on two cores a prediction costs about its slower half (the descriptor or the
        fine-tuned network) instead of both one after the other."""
        if not callable(features):
            return [m.predict(crops=crops, features=features, chips=chips) for m in self.members]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ensemble-features") as pool:
            pending = pool.submit(features)
            without_features = {
                i: m.predict(crops=crops, chips=chips) for i, m in enumerate(self.members) if not m.needs_features
            }
            features = pending.result()
        return [
            without_features[i] if i in without_features else m.predict(crops=crops, features=features, chips=chips)
            for i, m in enumerate(self.members)
        ]

    def predict(self, *, crops=None, features=None, chips=None) -> np.ndarray:
        parts = self.member_probabilities(crops=crops, features=features, chips=chips)
        if not len(parts[0]):
            return self._empty()
        if self.combine == "stacked" and self.stacker:
            return stack_probabilities(parts, self.stacker)
        return np.mean(parts, axis=0).astype(np.float32)


def stacking_inputs(parts: list[np.ndarray]) -> np.ndarray:
    return np.hstack([np.log(np.clip(p.astype(np.float64), 1e-6, 1.0)) for p in parts])


def stack_probabilities(parts: list[np.ndarray], stacker: dict) -> np.ndarray:
    x = stacking_inputs(parts)
    coef, intercept = np.asarray(stacker["coef"]), np.asarray(stacker["intercept"])
    z = x @ coef.T + intercept
    if z.shape[1] == 1:
        p = 1.0 / (1.0 + np.exp(-z[:, 0]))
        return np.stack([1.0 - p, p], axis=1).astype(np.float32)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def load_keras_file(path: str):
    """A Keras model from a storage path (copied to a local temporary file: Keras needs one)."""
    import keras

    import embeddings.network.keras_model  # noqa: F401  (registers the face network's layers for loading)

    fd, local = tempfile.mkstemp(suffix=".keras")
    try:
        with os.fdopen(fd, "wb") as out, default_storage.open(path, "rb") as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                out.write(chunk)
        return keras.saving.load_model(local, compile=False)
    finally:
        os.unlink(local)


KINDS = {
    Architecture.CNN: CropModel,
    Architecture.SEED_CNN: CropModel,
    Architecture.EMBEDDING: EmbeddingModel,
    Architecture.PRETRAINED: PretrainedModel,
    Architecture.ENSEMBLE: EnsembleModel,
    Architecture.FINETUNE: FinetuneModel,
}


def load_model_version(model_version: ModelVersion | int) -> LoadedModel:
    """The version's model, loaded once per process (keyed by id and artifact)."""
    version = model_version if isinstance(model_version, ModelVersion) else ModelVersion.objects.get(pk=model_version)
    key = (version.pk, version.artifact)
    with _lock:
        loaded = _cache.get(key)
        if loaded is None:
            loaded = KINDS[version.architecture](version)
            _cache[key] = loaded
        return loaded


def clear_cache() -> None:
    with _lock:
        _cache.clear()
