"""The training job form (dataset page and admin action). Blank fields take the architecture's
default; every value is checked by training.config so the form and the API agree."""

from django import forms

from training import guidance
from training.config import DEFAULTS, PARAMS, ConfigError, config_build
from training.models import Architecture, ModelVersion

TRI_STATE = [("", "default"), ("true", "yes"), ("false", "no")]


def _defaults_text(key: str) -> str:
    values = [f"{arch} {DEFAULTS[arch][key]}" for arch in DEFAULTS if key in DEFAULTS[arch]]
    return f"{PARAMS[key].help} Default: {', '.join(values)}."


def _choices(key: str) -> list[tuple[str, str]]:
    return [("", "default"), *((c, c) for c in PARAMS[key].choices)]


def applies_to(key: str) -> list[str]:
    """The architectures a setting belongs to (the others refuse it)."""
    return [str(arch) for arch in DEFAULTS if key in DEFAULTS[arch]]


class TrainingJobForm(forms.Form):
    architecture = forms.ChoiceField(choices=Architecture.choices, initial=Architecture.EMBEDDING)
    head = forms.ChoiceField(required=False, choices=_choices("head"), help_text=_defaults_text("head"))
    pretrained_feature = forms.ChoiceField(
        required=False, choices=_choices("pretrained_feature"), help_text=_defaults_text("pretrained_feature")
    )
    members = forms.MultipleChoiceField(
        required=False,
        choices=[],
        widget=forms.CheckboxSelectMultiple,
        help_text=PARAMS["members"].help + " Versions of this dataset only (ensembles excluded).",
    )
    combine = forms.ChoiceField(required=False, choices=_choices("combine"), help_text=_defaults_text("combine"))
    epochs = forms.IntegerField(required=False, help_text=_defaults_text("epochs"))
    batch_size = forms.IntegerField(required=False, help_text=_defaults_text("batch_size"))
    learning_rate = forms.FloatField(required=False, help_text=_defaults_text("learning_rate"))
    lr_schedule = forms.ChoiceField(
        required=False, choices=_choices("lr_schedule"), help_text=_defaults_text("lr_schedule")
    )
    patience = forms.IntegerField(required=False, help_text=_defaults_text("patience"))
    input_size = forms.IntegerField(required=False, help_text=_defaults_text("input_size"))
    dropout = forms.FloatField(required=False, help_text=_defaults_text("dropout"))
    weight_decay = forms.FloatField(required=False, help_text=_defaults_text("weight_decay"))
    hidden_units = forms.IntegerField(required=False, help_text=_defaults_text("hidden_units"))
    seed = forms.IntegerField(required=False, help_text=_defaults_text("seed"))
    class_weights = forms.ChoiceField(required=False, choices=TRI_STATE, help_text=_defaults_text("class_weights"))
    augment = forms.ChoiceField(required=False, choices=TRI_STATE, help_text=_defaults_text("augment"))
    unfreeze_stages = forms.IntegerField(required=False, help_text=_defaults_text("unfreeze_stages"))
    tta = forms.ChoiceField(required=False, choices=_choices("tta"), help_text=_defaults_text("tta"))
    keep_best_on_cancel = forms.BooleanField(
        required=False,
        initial=False,
        help_text="When cancelled, register the best epoch so far as a version (off: a cancelled job registers nothing).",
    )

    CONFIG_FIELDS = tuple(PARAMS)

    def __init__(self, *args, dataset=None, **kwargs):
        """`dataset`: the dataset the job is for; it offers its versions as ensemble members and
        refuses architectures its classes cannot use. None when the form serves several datasets
        (the admin action), where ensembles are refused."""
        super().__init__(*args, **kwargs)
        self.dataset = dataset
        # An ensemble cannot be a member (training.services.architecture_check): combine its members instead.
        versions = (
            ModelVersion.objects.filter(dataset=dataset).exclude(architecture=Architecture.ENSEMBLE).order_by("-number")
            if dataset
            else []
        )
        self.fields["members"].choices = [(str(v.pk), self._version_label(v)) for v in versions]
        self._versions = {str(v.pk): v for v in versions}
        # Read by static/training/job_form.js to dim the settings the chosen architecture ignores.
        for key in self.CONFIG_FIELDS:
            if key in self.fields:
                self.fields[key].widget.attrs["data-architectures"] = " ".join(applies_to(key))

    @staticmethod
    def _version_label(version: ModelVersion) -> str:
        accuracy = (version.metrics or {}).get("accuracy")
        shown = f", test accuracy {accuracy:.3f}" if isinstance(accuracy, (int, float)) else ""
        return f"v{version.number} ({version.architecture}{shown})"

    def clean(self):
        cleaned = super().clean()
        architecture = cleaned.get("architecture")
        if not architecture:
            return cleaned
        if self.dataset is not None:
            why = guidance.architecture_unavailable(architecture=architecture, classes=list(self.dataset.classes))
            if why:
                self.add_error("architecture", why)
                return cleaned
        overrides = {}
        for key in self.CONFIG_FIELDS:
            value = cleaned.get(key)
            if value in (None, "", []):
                continue
            if key not in DEFAULTS[architecture]:
                self.add_error(key, f"Not a setting of the {architecture} model; leave it blank.")
                continue
            overrides[key] = value
        if architecture == Architecture.ENSEMBLE:
            self._check_members(cleaned.get("members") or [])
        if (
            self.dataset is not None
            and overrides.get("pretrained_feature") == "yes"
            and not guidance.is_gender_pair(list(self.dataset.classes))
        ):
            self.add_error("pretrained_feature", "The pretrained network answers female/male only; leave it blank.")
        try:
            cleaned["config"] = config_build(architecture, overrides)
            cleaned["overrides"] = overrides
        except ConfigError as exc:
            for key, message in exc.errors.items():
                self.add_error(key if key in self.fields else None, message.capitalize() + ".")
        return cleaned

    def _check_members(self, members: list[str]) -> None:
        if self.dataset is None:
            self.add_error(
                "architecture",
                "An ensemble combines versions of one dataset: train it from that dataset's page, or select only "
                "that dataset.",
            )
            return
        if len(members) < 2:
            self.add_error("members", "Choose two or more versions of this dataset to combine.")
            return
        classes = {tuple(self._versions[pk].classes) for pk in members if pk in self._versions}
        if len(classes) > 1:
            self.add_error(
                "members", "The versions were trained on different classes; choose versions of the same ones."
            )
