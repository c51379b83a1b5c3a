"""The training job form (dataset page and admin action). Blank fields take the architecture's
default; every value is checked by training.config so the form and the API agree."""

from django import forms

from training.config import DEFAULTS, PARAMS, ConfigError, config_build
from training.models import Architecture

TRI_STATE = [("", "default"), ("true", "yes"), ("false", "no")]


def _defaults_text(key: str) -> str:
    values = [f"{arch} {DEFAULTS[arch][key]}" for arch in DEFAULTS if key in DEFAULTS[arch]]
    return f"{PARAMS[key].help} Default: {', '.join(values)}."


class TrainingJobForm(forms.Form):
    architecture = forms.ChoiceField(choices=Architecture.choices, initial=Architecture.CNN)
    epochs = forms.IntegerField(required=False, help_text=_defaults_text("epochs"))
    batch_size = forms.IntegerField(required=False, help_text=_defaults_text("batch_size"))
    learning_rate = forms.FloatField(required=False, help_text=_defaults_text("learning_rate"))
    lr_schedule = forms.ChoiceField(
        required=False,
        choices=[("", "default"), *((c, c) for c in PARAMS["lr_schedule"].choices)],
        help_text=_defaults_text("lr_schedule"),
    )
    patience = forms.IntegerField(required=False, help_text=_defaults_text("patience"))
    input_size = forms.IntegerField(required=False, help_text=_defaults_text("input_size"))
    dropout = forms.FloatField(required=False, help_text=_defaults_text("dropout"))
    weight_decay = forms.FloatField(required=False, help_text=_defaults_text("weight_decay"))
    hidden_units = forms.IntegerField(required=False, help_text=_defaults_text("hidden_units"))
    seed = forms.IntegerField(required=False, help_text=_defaults_text("seed"))
    class_weights = forms.ChoiceField(required=False, choices=TRI_STATE, help_text=_defaults_text("class_weights"))
    augment = forms.ChoiceField(required=False, choices=TRI_STATE, help_text=_defaults_text("augment"))
    keep_best_on_cancel = forms.BooleanField(
        required=False, initial=True, help_text="When cancelled, keep the best epoch so far as a version."
    )

    CONFIG_FIELDS = tuple(PARAMS)

    def clean(self):
        cleaned = super().clean()
        architecture = cleaned.get("architecture")
        if not architecture:
            return cleaned
        overrides = {}
        for key in self.CONFIG_FIELDS:
            value = cleaned.get(key)
            if value in (None, ""):
                continue
            if key not in DEFAULTS[architecture]:
                self.add_error(key, f"Not a setting of the {architecture} model; leave it blank.")
                continue
            overrides[key] = value
        try:
            cleaned["config"] = config_build(architecture, overrides)
            cleaned["overrides"] = overrides
        except ConfigError as exc:
            for key, message in exc.errors.items():
                self.add_error(key if key in self.fields else None, message.capitalize() + ".")
        return cleaned
