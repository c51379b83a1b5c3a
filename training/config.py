"""Training configuration: the defaults of each architecture and the allowed range of every value.

Pure Python (no TensorFlow) so the web process can validate a job's form before queueing it."""

import math
from dataclasses import dataclass
from typing import Any

from training.models import Architecture


@dataclass(frozen=True)
class Param:
    kind: type  # int, float, str, bool, or list (of version ids)
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""


PARAMS: dict[str, Param] = {
    "epochs": Param(int, 1, 500, help="Maximum number of epochs (early stopping may end sooner)."),
    "batch_size": Param(int, 2, 1024, help="Faces per batch."),
    "learning_rate": Param(float, 1e-6, 1.0, help="Initial learning rate of Adam."),
    "lr_schedule": Param(
        str, choices=("cosine", "plateau", "constant"), help="Cosine decay, halve on plateau, or constant."
    ),
    "patience": Param(int, 1, 100, help="Epochs without a better validation loss before stopping."),
    "input_size": Param(int, 32, 256, help="Side in pixels the crops are resized to (CNN models)."),
    "dropout": Param(float, 0.0, 0.9, help="Dropout before the classifier."),
    "weight_decay": Param(float, 0.0, 0.1, help="AdamW weight decay (0 for plain Adam)."),
    "hidden_units": Param(int, 0, 2048, help="Hidden units of the embedding model's dense head (0 for none)."),
    "seed": Param(int, 0, 2**31 - 1, help="Seed for the split, the weights and the shuffling."),
    "class_weights": Param(bool, help="Weight classes inversely to their frequency."),
    "augment": Param(
        bool, help="Random flips, rotations, zooms, shifts and colour changes while training (CNN and finetune)."
    ),
    "unfreeze_stages": Param(
        int, 0, 5, help="finetune: how many of the face network's last stages train (0: the head and embedding only)."
    ),
    "tta": Param(
        str,
        choices=("auto", "none", "mirror", "mirror+jitter"),
        help="finetune: test-time augmentation, the probabilities of the chip, its mirror and 4 % zooms averaged; "
        "auto keeps what the validation split says pays.",
    ),
    "head": Param(
        str,
        choices=("auto", "linear", "dense"),
        help="Embedding model's classifier: logistic regression (C chosen by cross-validation), a small dense "
        "network, or whichever scores better on the validation split.",
    ),
    "pretrained_feature": Param(
        str,
        choices=("auto", "yes", "no"),
        help="Give the embedding model the pretrained gender network's output as one more feature (female/male "
        "datasets only); auto keeps it when the validation split says it helps.",
    ),
    "members": Param(list, help="Ensemble: ids of the model versions to combine (two or more, same classes)."),
    "combine": Param(
        str,
        choices=("auto", "average", "stacked"),
        help="Ensemble: average the members' probabilities, or stack them with a logistic regression fitted on "
        "the validation split; auto stacks only when that scores higher there (stacking cross-validated).",
    ),
}

COMMON = {
    "seed": 0,
    "class_weights": True,
    "lr_schedule": "plateau",
}

# Per-architecture defaults; a key absent here does not apply to that architecture.
DEFAULTS: dict[str, dict[str, Any]] = {
    Architecture.SEED_CNN: {
        **COMMON,
        "epochs": 30,
        "batch_size": 32,
        "learning_rate": 1e-3,
        "patience": 5,
        "input_size": 150,
        "dropout": 0.2,
        "augment": True,
    },
    Architecture.CNN: {
        **COMMON,
        # Made to generalise rather than memorise (bench/quality.py; see the README): a smaller
        # input, stronger augmentation (training.engine.build_cnn), more dropout and weight decay.
        "epochs": 40,
        "batch_size": 64,
        "learning_rate": 2e-3,
        "lr_schedule": "cosine",
        "patience": 10,
        "input_size": 64,
        "dropout": 0.5,
        "weight_decay": 5e-4,
        "augment": True,
    },
    Architecture.EMBEDDING: {
        **COMMON,
        # Measured on the dev set (bench/quality.py): a logistic regression on dlib's descriptor of its own
        # chip plus the pretrained network's logit beats the dense head; "auto" still tries both.
        "head": "auto",
        "pretrained_feature": "auto",
        # The dense head's settings (used when head is dense, or auto tries it).
        "epochs": 150,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "patience": 15,
        "hidden_units": 128,
        "dropout": 0.3,
        "weight_decay": 1e-4,
    },
    Architecture.FINETUNE: {
        **COMMON,
        # The head starts as the logistic regression on the frozen descriptors; then the last two
        # stages (level1, level0: 2.4 M of 5.6 M weights) and the embedding train at a low rate.
        # Measured on the dev set's validation split (bench/quality.py; README): Adam 1e-4 lost 1.5
        # points to the frozen network by epoch 1, 1e-5 gained 1.2 by epoch 2; three stages at
        # 3e-5, or a wider chip (padding 0.5), did no better.
        "epochs": 8,
        "batch_size": 32,
        "learning_rate": 1e-5,
        "lr_schedule": "cosine",
        "patience": 3,
        "unfreeze_stages": 2,
        "dropout": 0.0,
        "weight_decay": 1e-4,
        "augment": True,
        "tta": "auto",
    },
    # No training: the split seed still decides which faces it is evaluated on.
    Architecture.PRETRAINED: {"seed": 0},
    Architecture.ENSEMBLE: {"seed": 0, "members": [], "combine": "auto"},
}


class ConfigError(ValueError):
    """A configuration value is unknown or out of range; `errors` maps the key to the message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{key}: {message}" for key, message in errors.items()))


def _coerce(key: str, param: Param, value: Any) -> Any:
    if param.kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off", ""}:
            return value.lower() in {"1", "true", "yes", "on"}
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError("must be true or false")
    if param.kind is list:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError("must be a list of model version ids")
        try:
            ids = [int(str(item).strip()) for item in items if str(item).strip()]
        except ValueError:
            raise ValueError("must be a list of model version ids") from None
        return sorted(set(ids), key=ids.index)
    if param.kind is str:
        value = str(value)
        if param.choices and value not in param.choices:
            raise ValueError(f"must be one of {', '.join(param.choices)}")
        return value
    try:
        if isinstance(value, bool):  # True is 1 to Python, not to a person filling in a number
            raise ValueError
        number = param.kind(value)
        if param.kind is int and isinstance(value, float) and value != int(value):
            raise ValueError
    except (TypeError, ValueError, OverflowError):  # int(1e400) overflows: JSON reads 1e400 as inf
        raise ValueError(f"must be {'an integer' if param.kind is int else 'a number'}") from None
    if not math.isfinite(number):  # float("nan") passes every range check, and JSON cannot store it
        raise ValueError("must be a finite number")
    if (param.low is not None and number < param.low) or (param.high is not None and number > param.high):
        raise ValueError(f"must be between {param.low:g} and {param.high:g}")
    return number


def config_build(architecture: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full configuration of a job: the architecture's defaults updated with `overrides`,
    every value checked. Raises ConfigError listing every bad value."""
    if architecture not in DEFAULTS:
        raise ConfigError({"architecture": f"unknown architecture {architecture!r}"})
    config = dict(DEFAULTS[architecture])
    errors: dict[str, str] = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        param = PARAMS.get(key)
        if param is None or key not in config:
            errors[key] = f"not a setting of the {architecture} model"
            continue
        try:
            config[key] = _coerce(key, param, value)
        except ValueError as exc:
            errors[key] = str(exc)
    if errors:
        raise ConfigError(errors)
    return config
