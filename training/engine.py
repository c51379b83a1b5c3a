"""The Keras side of training: the tf.data input pipeline, the three architectures and the fit
loop with progress, cancellation, early stopping and a learning-rate schedule.

Only the `train` worker (and the bench) import this module: it imports TensorFlow. It knows
nothing of Django; a Reporter carries progress out and the cancel request in."""

import os
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from training.models import Architecture

AUTOTUNE = tf.data.AUTOTUNE


class Reporter(Protocol):
    def log(self, message: str) -> None: ...
    def batch(self, *, epoch: int, epochs: int, batch: int, batches: int) -> None: ...
    def epoch_end(self, row: dict[str, float]) -> None: ...
    def cancel_requested(self) -> bool: ...


class ConsoleReporter:
    """For the bench and the shell: prints epochs, never cancels."""

    def __init__(self, prefix: str = "", verbose: bool = True):
        self.prefix = prefix
        self.verbose = verbose

    def log(self, message: str) -> None:
        if self.verbose:
            print(f"{self.prefix}{message}", flush=True)

    def batch(self, **kwargs) -> None:
        pass

    def epoch_end(self, row: dict[str, float]) -> None:
        self.log(
            "epoch {epoch}: loss {loss:.4f} acc {accuracy:.4f} val_loss {val_loss:.4f} val_acc {val_accuracy:.4f} "
            "({seconds:.1f}s)".format(**row)
        )

    def cancel_requested(self) -> bool:
        return False


@dataclass
class FitResult:
    model: Any
    output: str
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    stopped: str = "completed"  # completed | early_stopping | cancelled
    seconds: float = 0.0


# --- Input pipeline ---------------------------------------------------------------------------------


def resize_batch(crops: np.ndarray, size: int) -> np.ndarray:
    """Float pixels 0..255 at size x size, resized exactly as the training pipeline does."""
    images = tf.image.resize(tf.cast(crops, tf.float32), (size, size), antialias=True)
    return images.numpy()


def image_dataset(blobs: list[bytes], labels: np.ndarray, *, size: int, batch_size: int, shuffle: bool, seed: int):
    """Encoded crops -> decoded, resized float images in parallel, cached, shuffled, batched and
    prefetched. Decoding happens once (cache); augmentation is inside the model."""

    def decode(blob, label):
        image = tf.io.decode_image(blob, channels=3, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (size, size), antialias=True)
        image.set_shape((size, size, 3))
        return image, label

    ds = tf.data.Dataset.from_tensor_slices((tf.constant(blobs, dtype=tf.string), labels))
    ds = ds.map(decode, num_parallel_calls=AUTOTUNE).cache()
    if shuffle:
        ds = ds.shuffle(len(blobs), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def vector_dataset(vectors: np.ndarray, labels: np.ndarray, *, batch_size: int, shuffle: bool, seed: int):
    ds = tf.data.Dataset.from_tensor_slices((vectors.astype(np.float32), labels))
    if shuffle:
        ds = ds.shuffle(len(vectors), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


# --- Architectures ------------------------------------------------------------------------------


def _head(x, n_classes: int, *, binary_logit: bool):
    if binary_logit and n_classes == 2:
        return layers.Dense(1, name="logit")(x), "logit"
    return layers.Dense(n_classes, activation="softmax", name="probabilities")(x), "softmax"


def build_seed_cnn(*, n_classes: int, config: dict):
    """The original scripts' small CNN: 3x3 conv 16-32-64 with max pooling, dropout 0.2, dense 512,
    one logit, with their augmentation (rotation 45°, shifts 0.15, zoom 0.5, horizontal flip)."""
    size = config["input_size"]
    inputs = keras.Input((size, size, 3), name="pixels")
    x = layers.Rescaling(1.0 / 255)(inputs)
    if config.get("augment", True):
        x = layers.RandomRotation(45 / 360, fill_mode="nearest")(x)
        x = layers.RandomTranslation(0.15, 0.15, fill_mode="nearest")(x)
        x = layers.RandomZoom(0.5, fill_mode="nearest")(x)
        x = layers.RandomFlip("horizontal")(x)
    for filters in (16, 32, 64):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Dropout(config.get("dropout", 0.2))(x)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu")(x)
    outputs, output = _head(x, n_classes, binary_logit=True)
    return keras.Model(inputs, outputs, name="seed_cnn"), output


def build_cnn(*, n_classes: int, config: dict):
    """A small batch-norm CNN: strided stem, four conv blocks, global average pooling. Raw pixels
    in: scaling and augmentation are layers of the model (augmentation is off at inference)."""
    size = config["input_size"]
    inputs = keras.Input((size, size, 3), name="pixels")
    x = inputs
    if config.get("augment", True):
        # On raw 0-255 pixels: RandomContrast clips to its value_range, (0, 255) by default.
        x = layers.RandomFlip("horizontal")(x)
        x = layers.RandomRotation(0.04, fill_mode="nearest")(x)
        x = layers.RandomZoom((-0.1, 0.1), fill_mode="nearest")(x)
        x = layers.RandomTranslation(0.06, 0.06, fill_mode="nearest")(x)
        x = layers.RandomContrast(0.2)(x)
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(x)

    def conv(x, filters, strides=1):
        x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
        # Faster-moving statistics than Keras' 0.99: a small dataset has few batches per epoch.
        x = layers.BatchNormalization(momentum=0.9)(x)
        return layers.ReLU()(x)

    x = conv(x, 32, strides=2)
    for filters, repeats in ((32, 1), (64, 2), (128, 2), (256, 2)):
        for _ in range(repeats):
            x = conv(x, filters)
        if filters != 256:
            x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(config.get("dropout", 0.3))(x)
    outputs, output = _head(x, n_classes, binary_logit=False)
    return keras.Model(inputs, outputs, name="cnn"), output


def build_embedding_head(*, n_classes: int, config: dict, train_vectors: np.ndarray):
    """A small dense head on dlib's 128-D descriptors, standardised by a Normalization layer
    adapted on the training split (so the saved model takes raw descriptors)."""
    inputs = keras.Input((train_vectors.shape[1],), name="descriptor")
    norm = layers.Normalization()
    norm.adapt(train_vectors.astype(np.float32))
    x = norm(inputs)
    if config.get("hidden_units", 0):
        x = layers.Dense(config["hidden_units"], activation="relu")(x)
        x = layers.Dropout(config.get("dropout", 0.3))(x)
    outputs, output = _head(x, n_classes, binary_logit=False)
    return keras.Model(inputs, outputs, name="embedding_head"), output


# --- Fitting -------------------------------------------------------------------------------------


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Inverse class frequency, normalised so a balanced dataset gets weight 1 everywhere."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    counts[counts == 0] = 1
    return {i: float(len(labels) / (n_classes * counts[i])) for i in range(n_classes)}


class _JobCallback(keras.callbacks.Callback):
    """Progress out, cancel in, best weights kept (for early stopping and a cancel that keeps them)."""

    def __init__(self, reporter: Reporter, epochs: int, batches: int, patience: int, time_limit_s=None):
        super().__init__()
        self.time_limit_s = time_limit_s
        self.fit_started = time.monotonic()
        self.reporter = reporter
        self.epochs = epochs
        self.batches = batches
        self.patience = patience
        self.history: list[dict[str, float]] = []
        self.best_loss = np.inf
        self.best_weights = None
        self.best_epoch = 0
        self.wait = 0
        self.stopped = "completed"
        self.epoch_started = time.monotonic()
        self.current_epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current_epoch = epoch + 1
        self.epoch_started = time.monotonic()
        self.reporter.batch(epoch=epoch + 1, epochs=self.epochs, batch=0, batches=self.batches)

    def on_train_batch_end(self, batch, logs=None):
        self.reporter.batch(epoch=self.current_epoch, epochs=self.epochs, batch=batch + 1, batches=self.batches)
        if self.reporter.cancel_requested():
            self.stopped = "cancelled"
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.stopped == "cancelled":
            # The epoch was cut short: its validation figures describe a half-trained state.
            return
        lr = self.model.optimizer.learning_rate
        row = {
            "epoch": epoch + 1,
            "loss": float(logs.get("loss", np.nan)),
            "accuracy": float(logs.get("accuracy", np.nan)),
            "val_loss": float(logs.get("val_loss", np.nan)),
            "val_accuracy": float(logs.get("val_accuracy", np.nan)),
            "lr": float(np.asarray(lr.numpy() if hasattr(lr, "numpy") else lr)),
            "seconds": round(time.monotonic() - self.epoch_started, 2),
        }
        self.history.append(row)
        self.reporter.epoch_end(row)
        if row["val_loss"] < self.best_loss:
            self.best_loss = row["val_loss"]
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch + 1
            self.wait = 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped = "early_stopping"
                self.model.stop_training = True
        if self.reporter.cancel_requested():
            self.stopped = "cancelled"
            self.model.stop_training = True
        elif self.time_limit_s and time.monotonic() - self.fit_started > self.time_limit_s:
            self.stopped = "time_limit"
            self.model.stop_training = True


def fit(
    *,
    architecture: str,
    config: dict,
    classes: list[str],
    train_inputs,
    train_labels: np.ndarray,
    val_inputs,
    val_labels: np.ndarray,
    reporter: Reporter,
    time_limit_s: float | None = None,
) -> FitResult:
    """Train a model. Inputs are encoded crops (list of bytes) for the CNNs and descriptors
    ([N, 128] float32) for the embedding model. `time_limit_s` (benchmarks) stops after the
    epoch that crosses it, keeping the best epoch as usual."""
    seed = int(config.get("seed", 0))
    keras.utils.set_random_seed(seed)
    n_classes = len(classes)
    batch_size = int(config["batch_size"])
    if architecture == Architecture.EMBEDDING:
        model, output = build_embedding_head(n_classes=n_classes, config=config, train_vectors=train_inputs)
        train_ds = vector_dataset(train_inputs, train_labels, batch_size=batch_size, shuffle=True, seed=seed)
        val_ds = vector_dataset(val_inputs, val_labels, batch_size=batch_size, shuffle=False, seed=seed)
    else:
        build = build_seed_cnn if architecture == Architecture.SEED_CNN else build_cnn
        model, output = build(n_classes=n_classes, config=config)
        size = int(config["input_size"])
        if output == "logit":
            train_labels = train_labels.astype(np.float32)
            val_labels = val_labels.astype(np.float32)
        train_ds = image_dataset(train_inputs, train_labels, size=size, batch_size=batch_size, shuffle=True, seed=seed)
        val_ds = image_dataset(val_inputs, val_labels, size=size, batch_size=batch_size, shuffle=False, seed=seed)

    epochs = int(config["epochs"])
    steps = int(np.ceil(len(train_labels) / batch_size))
    lr: Any = float(config["learning_rate"])
    callbacks: list[keras.callbacks.Callback] = []
    if config.get("lr_schedule") == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, epochs * steps), alpha=0.01)
    elif config.get("lr_schedule") == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=max(1, int(config["patience"]) // 3), min_lr=1e-6
            )
        )
    weight_decay = float(config.get("weight_decay") or 0.0)
    optimizer = (
        keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay)
        if weight_decay
        else keras.optimizers.Adam(learning_rate=lr)
    )
    if output == "logit":
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)

    job_callback = _JobCallback(reporter, epochs, steps, int(config["patience"]), time_limit_s)
    reporter.log(
        f"Training {architecture} on {len(train_labels)} faces, validating on {len(val_labels)}; "
        f"{model.count_params():,} parameters, {steps} batches per epoch."
    )
    started = time.monotonic()
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        class_weight=class_weights(train_labels.astype(np.int64), n_classes) if config.get("class_weights") else None,
        callbacks=[job_callback, *callbacks],
        shuffle=False,  # the tf.data pipeline shuffles
        verbose=0,
    )
    seconds = time.monotonic() - started
    if job_callback.best_weights is not None:
        model.set_weights(job_callback.best_weights)
    return FitResult(
        model=model,
        output=output,
        history=job_callback.history,
        best_epoch=job_callback.best_epoch,
        stopped=job_callback.stopped,
        seconds=seconds,
    )


def save_model(model, local_path: str) -> None:
    model.save(local_path)


def versions() -> dict[str, str]:
    return {"tensorflow": tf.__version__, "keras": keras.__version__}
