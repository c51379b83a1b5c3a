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
    # What was chosen on held-out data (embedding: feature set, head, C), kept in the version's config.
    choice: dict = field(default_factory=dict)


# --- Input pipeline ---------------------------------------------------------------------------------
#
# Crops and chips stream from storage: a pipeline holds the files' storage paths and the label
# array (a few dozen bytes a face), never the files' bytes nor the decoded images, so a job's
# memory does not grow with the number of faces. Each file is read by `read(path) -> bytes` (the
# services pass Django's default_storage, so any storage backend works), in READ_PARALLELISM
# threads, decoded in parallel, batched, and at most PREFETCH_BATCHES batches are read ahead.
# Descriptor rows (embedding model, finetune's head) stay in memory: 128 float32 a face, 512 MB at
# a million faces.

READ_PARALLELISM = 8  # files read at once (storage may be remote: latency, not CPU, bounds a read)
PREFETCH_BATCHES = 2  # batches read ahead of the model; fixed, so the files in flight are bounded


def resize_batch(crops: np.ndarray, size: int) -> np.ndarray:
    """Float pixels 0..255 at size x size, resized exactly as the training pipeline does."""
    images = tf.image.resize(tf.cast(crops, tf.float32), (size, size), antialias=True)
    return images.numpy()


def file_dataset(paths: list[str], labels: np.ndarray, *, read, shuffle: bool, seed: int):
    """(file bytes, label) of each path, read through `read` in parallel threads, in order or
    shuffled. The shuffle is a full one at bounded memory: a seeded permutation of the index array
    (8 bytes a face), drawn anew each epoch, and the files read in that order. (tf.data's own
    shuffle with a buffer of every index would hold each index as a tensor, about 200 bytes a
    face: 200 MB at a million faces, measured with bench/train_stream.py.)"""
    paths = list(paths)
    label_table = tf.constant(labels)
    if shuffle:
        rng = np.random.default_rng(seed)

        def order():
            # Called once per pass over the dataset (each epoch): the next permutation of the job's seeded sequence.
            yield from rng.permutation(len(paths))

        indices = tf.data.Dataset.from_generator(order, output_signature=tf.TensorSpec((), tf.int64))
        # Keras counts the batches of an epoch from this (a generator's length is unknown to tf.data).
        indices = indices.apply(tf.data.experimental.assert_cardinality(len(paths)))
    else:
        indices = tf.data.Dataset.range(len(paths))

    def read_index(index) -> bytes:
        return read(paths[int(index)])

    def load(index):
        blob = tf.py_function(read_index, [index], tf.string)
        blob.set_shape(())
        return blob, tf.gather(label_table, index)

    return indices.map(load, num_parallel_calls=READ_PARALLELISM)


def image_dataset(paths: list[str], labels: np.ndarray, *, read, size: int, batch_size: int, shuffle: bool, seed: int):
    """Crop files -> decoded, resized float images in parallel, shuffled, batched and prefetched,
    read again each epoch (no cache: a cache of the decoded images is what grew with the faces).
    Augmentation is inside the model."""

    def decode(blob, label):
        image = tf.io.decode_image(blob, channels=3, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (size, size), antialias=True)
        image.set_shape((size, size, 3))
        return image, label

    ds = file_dataset(paths, labels, read=read, shuffle=shuffle, seed=seed)
    ds = ds.map(decode, num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size).prefetch(PREFETCH_BATCHES)


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
        # Stronger than a face crop seems to need: with 3,000 faces the network memorised the
        # training split by epoch 30 (LFW photos, framed differently, 0.877). On raw 0-255 pixels:
        # RandomContrast and RandomBrightness clip to their value_range, (0, 255).
        x = layers.RandomFlip("horizontal")(x)
        x = layers.RandomRotation(0.06, fill_mode="nearest")(x)
        x = layers.RandomZoom((-0.15, 0.15), fill_mode="nearest")(x)
        x = layers.RandomTranslation(0.08, 0.08, fill_mode="nearest")(x)
        x = layers.RandomContrast(0.3)(x)
        x = layers.RandomBrightness(0.2, value_range=(0, 255))(x)
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


def linear_head_model(*, mean: np.ndarray, variance: np.ndarray, coef: np.ndarray, intercept: np.ndarray):
    """A fitted scikit-learn logistic regression (on standardised inputs) as a Keras model that
    takes raw feature rows, so it is saved, loaded and served like every other version."""
    n_features = coef.shape[1]
    if coef.shape[0] == 1:  # binary: softmax over [0, z] is [1 - sigmoid(z), sigmoid(z)]
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    inputs = keras.Input((n_features,), name="descriptor")
    x = layers.Normalization(mean=mean, variance=variance)(inputs)
    dense = layers.Dense(coef.shape[0], activation="softmax", name="probabilities")
    outputs = dense(x)
    model = keras.Model(inputs, outputs, name="linear_head")
    dense.set_weights([coef.T.astype(np.float32), intercept.astype(np.float32)])
    return model


@dataclass
class LinearFit:
    model: Any
    C: float
    cv_accuracy: float
    seconds: float


def linear_head_fit(*, x: np.ndarray, y: np.ndarray, seed: int, balanced: bool, folds: int = 5) -> LinearFit:
    """Logistic regression on standardised features, C chosen by stratified k-fold cross-validation
    over these rows (the job passes train+val), then refitted on all of them. The cross-validated
    accuracy at the chosen C is the held-out estimate the head is compared by."""
    from training.linear import logistic_cv_fit

    started = time.monotonic()
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    search, cv_accuracy = logistic_cv_fit((x - mean) / std, y, seed=seed, balanced=balanced, folds=folds)
    model = linear_head_model(mean=mean, variance=std**2, coef=search.coef_, intercept=search.intercept_)
    return LinearFit(model=model, C=float(search.C_[0]), cv_accuracy=cv_accuracy, seconds=time.monotonic() - started)


def fit_embedding(
    *,
    config: dict,
    classes: list[str],
    inputs: dict[bool, tuple[np.ndarray, np.ndarray]],
    train_labels: np.ndarray,
    val_labels: np.ndarray,
    reporter: Reporter,
) -> FitResult:
    """The embedding model with its choices made on held-out data. `inputs` maps "with the
    pretrained network's logit" (True/False) to (train rows, validation rows); only the options the
    job allows are present. The feature set is chosen by the linear head's cross-validated accuracy,
    then (head "auto") the linear head is compared with the dense head on that feature set."""
    seed = int(config.get("seed", 0))
    balanced = bool(config.get("class_weights"))
    started = time.monotonic()
    linear: dict[bool, LinearFit] = {}
    for use_pretrained, (train_x, val_x) in inputs.items():
        fit_ = linear_head_fit(
            x=np.vstack([train_x, val_x]), y=np.concatenate([train_labels, val_labels]), seed=seed, balanced=balanced
        )
        linear[use_pretrained] = fit_
        reporter.log(
            f"Linear head on the descriptor{' + pretrained logit' if use_pretrained else ''}: cross-validated "
            f"accuracy {fit_.cv_accuracy:.4f} (C={fit_.C:.3g}, {fit_.seconds:.1f} s)."
        )
    # Ties go to fewer features.
    use_pretrained = max(linear, key=lambda option: (round(linear[option].cv_accuracy, 4), not option))
    choice = {
        "features": "descriptor+pretrained" if use_pretrained else "descriptor",
        "linear_cv_accuracy": round(linear[use_pretrained].cv_accuracy, 4),
        "C": linear[use_pretrained].C,
    }
    head = config.get("head", "auto")
    result = FitResult(model=linear[use_pretrained].model, output="softmax")
    if head in ("dense", "auto"):
        train_x, val_x = inputs[use_pretrained]
        dense = fit(
            architecture=Architecture.EMBEDDING,
            config=config,
            classes=classes,
            train_inputs=train_x,
            train_labels=train_labels,
            val_inputs=val_x,
            val_labels=val_labels,
            reporter=reporter,
        )
        probabilities = np.asarray(dense.model(val_x, training=False))
        choice["dense_val_accuracy"] = round(float((probabilities.argmax(axis=1) == val_labels).mean()), 4)
        if head == "dense" or dense.stopped == "cancelled":
            result = dense
        else:
            # Like for like: the dense head scored on the linear head's folds of train+val, trained
            # on each fold's rest for as many epochs as early stopping kept (its validation-split
            # score is not comparable: early stopping chose its epoch on that split).
            dense_cv = dense_head_cv_accuracy(
                config=config,
                n_classes=len(classes),
                x=np.vstack([train_x, val_x]),
                y=np.concatenate([train_labels, val_labels]),
                epochs=max(1, dense.best_epoch),
            )
            choice["dense_cv_accuracy"] = round(dense_cv, 4)
            reporter.log(
                f"Dense head: cross-validated accuracy {dense_cv:.4f} on the same folds "
                f"(linear {linear[use_pretrained].cv_accuracy:.4f})."
            )
            if dense_cv > linear[use_pretrained].cv_accuracy:
                result = dense
    choice["head"] = "linear" if result.model is linear[use_pretrained].model else "dense"
    reporter.log(f"Chosen: {choice['head']} head on the {choice['features'].replace('+', ' + ')}.")
    result.choice = choice
    result.seconds = time.monotonic() - started
    return result


def dense_head_cv_accuracy(*, config: dict, n_classes: int, x: np.ndarray, y: np.ndarray, epochs: int) -> float:
    """Mean held-out accuracy of the dense head over training.linear.cv_folds, a fixed number of
    epochs per fold."""
    from training.linear import cv_folds

    seed = int(config.get("seed", 0))
    scores = []
    for train_rows, held_rows in cv_folds(y, seed=seed).split(x, y):
        keras.utils.set_random_seed(seed)
        model, _ = build_embedding_head(n_classes=n_classes, config=config, train_vectors=x[train_rows])
        optimizer_class = keras.optimizers.AdamW if config.get("weight_decay") else keras.optimizers.Adam
        kwargs = {"weight_decay": float(config["weight_decay"])} if config.get("weight_decay") else {}
        model.compile(
            optimizer=optimizer_class(learning_rate=float(config["learning_rate"]), **kwargs),
            loss=keras.losses.SparseCategoricalCrossentropy(),
        )
        weights = class_weights(y[train_rows], n_classes) if config.get("class_weights") else None
        model.fit(
            x[train_rows].astype(np.float32),
            y[train_rows],
            batch_size=int(config["batch_size"]),
            epochs=epochs,
            class_weight=weights,
            verbose=0,
        )
        predicted = np.asarray(model(x[held_rows].astype(np.float32), training=False)).argmax(axis=1)
        scores.append(float((predicted == y[held_rows]).mean()))
    return float(np.mean(scores))


# --- finetune: the face network fine-tuned -----------------------------------------------------


def build_finetune(*, n_classes: int, config: dict, head: LinearFit, descriptor_mean, descriptor_std):
    """dlib's face network (embeddings.network, its weights) with a softmax head on its descriptor.
    The head starts as the logistic regression fitted on the frozen network's descriptors, so
    fine-tuning starts from the linear model's accuracy instead of from chance; only the last
    `unfreeze_stages` stages and the embedding layer train."""
    from embeddings.network import dlib_weights
    from embeddings.network.architecture import top_stage_layers
    from embeddings.network.keras_model import build_face_network, weights_assign

    network = build_face_network()
    weights_assign(network, dlib_weights())
    trainable = top_stage_layers(int(config["unfreeze_stages"]))
    for layer in network.layers:
        layer.trainable = layer.name in trainable
    x = layers.Normalization(mean=descriptor_mean, variance=descriptor_std**2, name="descriptor_scale")(network.output)
    x = layers.Dropout(float(config.get("dropout", 0.0)), name="head_dropout")(x)
    dense = layers.Dense(n_classes, activation="softmax", name="probabilities")
    outputs = dense(x)
    model = keras.Model(network.input, outputs, name="finetune")
    coef, intercept = head_coefficients(head, n_classes)
    dense.set_weights([coef.T.astype(np.float32), intercept.astype(np.float32)])
    return model, "softmax"


def head_coefficients(head: LinearFit, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The fitted logistic regression's (coef [classes, features], intercept) as a softmax layer's:
    binary [1 - sigmoid(z), sigmoid(z)] is softmax over [0, z]."""
    dense = head.model.get_layer("probabilities")
    kernel, bias = dense.get_weights()
    assert kernel.shape[1] == n_classes
    return kernel.T, bias


def augment_chips(config: dict, seed: int):
    """Random flip, small rotation and scale, a small shift and colour changes on float 0-255
    chips: the faces of one person vary this much between photos. A tf.data map (not layers of
    the model), so the saved network is exactly the one served."""
    if not config.get("augment", True):
        return None
    pipeline = keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.025, fill_mode="nearest", seed=seed),  # about ±9°
            layers.RandomZoom((-0.08, 0.08), fill_mode="nearest", seed=seed),
            layers.RandomTranslation(0.03, 0.03, fill_mode="nearest", seed=seed),
            layers.RandomContrast(0.2, seed=seed),
            layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed),
        ],
        name="augment",
    )

    def apply(images, labels):
        images = pipeline(images, training=True)
        # Saturation: faces under warm and cold light, greyscale photos.
        grey = tf.reduce_mean(images, axis=-1, keepdims=True)
        amount = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], 0.6, 1.3, seed=seed)
        return tf.clip_by_value(grey + (images - grey) * amount, 0.0, 255.0), labels

    return apply


def chip_batches(paths: list[str], labels: np.ndarray, *, read, size: int, batch_size: int, shuffle: bool, seed: int):
    """uint8 batches of the chips' PNG files (embeddings.descriptors.chip_files_for_faces; PNG is
    lossless, so these are exactly the chips cut from the photos), streamed like image_dataset."""

    def decode(blob, label):
        chip = tf.io.decode_png(blob, channels=3)
        chip.set_shape((size, size, 3))  # the face network's input, dlib's chip
        return chip, label

    ds = file_dataset(paths, labels, read=read, shuffle=shuffle, seed=seed)
    return ds.map(decode, num_parallel_calls=AUTOTUNE).batch(batch_size)


def chip_dataset(
    paths: list[str], labels: np.ndarray, *, read, size: int, batch_size: int, shuffle: bool, seed: int, augment=None
):
    ds = chip_batches(paths, labels, read=read, size=size, batch_size=batch_size, shuffle=shuffle, seed=seed)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    if augment is not None:
        ds = ds.map(augment, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(PREFETCH_BATCHES)


def fit_finetune(
    *,
    config: dict,
    classes: list[str],
    train_chips: list[str],
    train_descriptors: np.ndarray,
    train_labels: np.ndarray,
    val_chips: list[str],
    val_labels: np.ndarray,
    read,
    reporter: Reporter,
    time_limit_s: float | None = None,
) -> FitResult:
    """Head first: a logistic regression on the frozen network's descriptors of the training
    chips and of their mirrors (`train_descriptors`: [2N, 128], the chips' then the mirrors'),
    C by cross-validation. Then the top stages and the head are trained
    together at a low learning rate on augmented chips, with early stopping on the validation
    split. Last, the test-time augmentation is chosen on the validation split (config "tta":
    auto) among embeddings.network.tta.MODES: the cheapest, unless a costlier one's gain there beats
    its noise (tta_choose). The chips are storage paths of their PNG files,
    read through `read` (see file_dataset)."""
    from embeddings.network.tta import MODES, tta_choose

    seed = int(config.get("seed", 0))
    keras.utils.set_random_seed(seed)
    n_classes = len(classes)
    both = np.concatenate([train_labels, train_labels])
    head = linear_head_fit(x=train_descriptors, y=both, seed=seed, balanced=bool(config.get("class_weights")))
    reporter.log(
        f"Head first: logistic regression on the frozen network's descriptors, cross-validated accuracy "
        f"{head.cv_accuracy:.4f} (C={head.C:.3g}, {head.seconds:.1f} s)."
    )
    mean, std = train_descriptors.mean(axis=0), train_descriptors.std(axis=0)
    std[std == 0] = 1.0
    model, output = build_finetune(
        n_classes=n_classes, config=config, head=head, descriptor_mean=mean, descriptor_std=std
    )
    batch_size = int(config["batch_size"])
    size = int(model.input_shape[1])
    train_ds = chip_dataset(
        train_chips,
        train_labels,
        read=read,
        size=size,
        batch_size=batch_size,
        shuffle=True,
        seed=seed,
        augment=augment_chips(config, seed),
    )
    val_ds = chip_dataset(val_chips, val_labels, read=read, size=size, batch_size=batch_size, shuffle=False, seed=seed)
    if tf.config.list_physical_devices("GPU"):
        reporter.log("TensorFlow sees a GPU: training on it.")
    result = _fit_loop(
        model=model,
        output=output,
        architecture=Architecture.FINETUNE,
        config=config,
        train_ds=train_ds,
        val_ds=val_ds,
        train_labels=train_labels,
        n_val=len(val_labels),
        n_classes=n_classes,
        reporter=reporter,
        time_limit_s=time_limit_s,
    )
    result.choice = {"head_cv_accuracy": round(head.cv_accuracy, 4), "head_C": head.C}
    wanted = config.get("tta", "auto")
    if result.stopped == "cancelled" or not len(val_labels):
        result.choice["tta"] = "none" if wanted == "auto" else wanted
        return result
    val_batches = chip_batches(
        val_chips, val_labels, read=read, size=size, batch_size=TTA_CHIPS, shuffle=False, seed=seed
    )
    right = tta_correct(model, val_batches.prefetch(PREFETCH_BATCHES), MODES)
    accuracies = {mode: float(r.mean()) for mode, r in right.items()}
    result.choice["tta_val_accuracy"] = {mode: round(a, 4) for mode, a in accuracies.items()}
    result.choice["tta"] = tta_choose(right) if wanted == "auto" else wanted
    reporter.log(
        "Test-time augmentation on the validation split: "
        + ", ".join(f"{mode} {a:.4f}" for mode, a in accuracies.items())
        + f"; serving with {result.choice['tta']}"
        + (" (a costlier mode only when its gain beats the paired difference's noise)." if wanted == "auto" else ".")
    )
    return result


TTA_CHIPS = 256  # validation chips per step of tta_correct (times each mode's views)


def tta_correct(model, batches, modes) -> dict[str, np.ndarray]:
    """Per chip, whether each test-time augmentation mode gets it right, over (uint8 chips, labels)
    batches, one pass over the files for all modes: a chip's probabilities are the mean over its
    views. Bool arrays in the batches' order (embeddings.network.tta.tta_choose pairs them)."""
    from embeddings.network.tta import tta_views

    right: dict[str, list[np.ndarray]] = {mode: [] for mode in modes}
    for chips, labels in batches:
        chips, labels = chips.numpy(), labels.numpy()
        for mode in modes:
            views = tta_views(chips, mode)
            flat = views.reshape(-1, *views.shape[2:]).astype(np.float32)
            probabilities = model.predict(flat, batch_size=64, verbose=0).reshape(len(views), len(chips), -1)
            right[mode].append(probabilities.mean(axis=0).argmax(axis=1) == labels)
    return {mode: np.concatenate(parts) if parts else np.zeros(0, dtype=bool) for mode, parts in right.items()}


# --- Fitting -------------------------------------------------------------------------------------


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Inverse class frequency, normalised so a balanced dataset gets weight 1 everywhere."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    counts[counts == 0] = 1
    return {i: float(len(labels) / (n_classes * counts[i])) for i in range(n_classes)}


class _JobCallback(keras.callbacks.Callback):
    """Progress out, cancel in, the time limit; early stopping is Keras' own (_EarlyStopping)."""

    def __init__(self, reporter: Reporter, epochs: int, batches: int, time_limit_s=None):
        super().__init__()
        self.time_limit_s = time_limit_s
        self.fit_started = time.monotonic()
        self.reporter = reporter
        self.epochs = epochs
        self.batches = batches
        self.history: list[dict[str, float]] = []
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
        if self.reporter.cancel_requested():
            self.stopped = "cancelled"
            self.model.stop_training = True
        elif self.time_limit_s and time.monotonic() - self.fit_started > self.time_limit_s:
            self.stopped = "time_limit"
            self.model.stop_training = True


class _EarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' early stopping on validation loss, the best epoch's weights restored at the end
    (also after a cancel or the time limit), except that an epoch a cancel cut short is never
    a candidate."""

    def __init__(self, job: _JobCallback, patience: int):
        super().__init__(monitor="val_loss", mode="min", patience=patience, restore_best_weights=True)
        self.job = job

    def on_epoch_end(self, epoch, logs=None):
        if self.job.stopped != "cancelled":
            super().on_epoch_end(epoch, logs)


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
    read=None,
) -> FitResult:
    """Train a model. Inputs are the crops' storage paths for the CNNs, read through `read`
    (streamed: see file_dataset), and descriptors ([N, 128] float32) for the embedding model. `time_limit_s` (benchmarks) stops after the
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
        train_ds = image_dataset(
            train_inputs, train_labels, read=read, size=size, batch_size=batch_size, shuffle=True, seed=seed
        )
        val_ds = image_dataset(
            val_inputs, val_labels, read=read, size=size, batch_size=batch_size, shuffle=False, seed=seed
        )

    return _fit_loop(
        model=model,
        output=output,
        architecture=architecture,
        config=config,
        train_ds=train_ds,
        val_ds=val_ds,
        train_labels=train_labels,
        n_val=len(val_labels),
        n_classes=n_classes,
        reporter=reporter,
        time_limit_s=time_limit_s,
    )


def _fit_loop(
    *,
    model,
    output: str,
    architecture: str,
    config: dict,
    train_ds,
    val_ds,
    train_labels: np.ndarray,
    n_val: int,
    n_classes: int,
    reporter: Reporter,
    time_limit_s: float | None = None,
) -> FitResult:
    """Compile and fit with the job's callbacks: progress, cancel, early stopping on validation
    loss (best weights restored), the learning-rate schedule and class weights."""
    batch_size = int(config["batch_size"])
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

    job_callback = _JobCallback(reporter, epochs, steps, time_limit_s)
    early_stopping = _EarlyStopping(job_callback, int(config["patience"]))
    reporter.log(
        f"Training {architecture} on {len(train_labels)} faces, validating on {n_val}; "
        f"{model.count_params():,} parameters, {steps} batches per epoch."
    )
    started = time.monotonic()
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        class_weight=class_weights(train_labels.astype(np.int64), n_classes) if config.get("class_weights") else None,
        callbacks=[job_callback, early_stopping, *callbacks],
        shuffle=False,  # the tf.data pipeline shuffles
        verbose=0,
    )
    seconds = time.monotonic() - started
    stopped = job_callback.stopped
    if stopped == "completed" and early_stopping.stopped_epoch > 0:
        stopped = "early_stopping"
    return FitResult(
        model=model,
        output=output,
        history=job_callback.history,
        best_epoch=early_stopping.best_epoch + 1 if early_stopping.best_weights is not None else 0,
        stopped=stopped,
        seconds=seconds,
    )


def versions() -> dict[str, str]:
    return {"tensorflow": tf.__version__, "keras": keras.__version__}
