from django import forms
from django.conf import settings

from curator.models import Dataset


class DatasetForm(forms.ModelForm):
    classes_text = forms.CharField(
        label="Classes",
        initial=lambda: ",".join(settings.CURATOR_DEFAULT_CLASSES),
        help_text="Comma-separated class names, e.g. female,male.",
    )

    class Meta:
        model = Dataset
        fields = [
            "name",
            "description",
            "crop_size",
            "crop_margin",
            "detector",
            "upsample",
            "detect_max_side",
            "landmark_set",
            "keep_undetected_crops",
            "min_faces_per_class",
        ]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}
        # What each alignment option does to the result, and what it costs.
        help_texts = {
            "crop_size": "Side of the aligned face crops in pixels (32-1024); models are trained on these.",
            "crop_margin": "Space kept around the face in the crop, as a fraction of the face's size (0-1).",
            "detector": "HOG is fast on a CPU; the MMOD CNN finds more turned and small faces but is several "
            "times slower.",
            "upsample": "How many times the detector doubles the photo before searching (0-3): each step finds "
            "smaller faces (73 px and more at the detection size without, 37 px with 1) and costs about four "
            "times the time. Large photos whose faces are big are settled by cheaper passes first (512 px, then "
            "the detection size, without upsampling); only the others pay for it.",
            "detect_max_side": "Detection runs on a copy of the photo shrunk to at most this many pixels on its "
            "long side (0: the original): smaller is faster but misses small faces. Landmarks and the crop use "
            "pixels at which the face has at least 1.25 crop sides (up to the full photo).",
            "landmark_set": "Which landmarks the alignment maps onto the template: inner eyes and bottom lip "
            "(OpenFace's default) or outer eyes and nose.",
            "keep_undetected_crops": "A photo that already is a face crop but where no face is detected keeps the "
            "whole photo as its face (for datasets of crops, e.g. UTKFace) instead of none, if a face check "
            "passes (a relaxed HOG candidate and dlib's CNN detector); the decision is shown with its outcome.",
            "min_faces_per_class": "The curation page's “minimum per class” rule excludes the faces of a class "
            "with fewer included faces than this; training refuses a class below it.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["classes_text"].initial = ",".join(self.instance.classes)
        else:  # a new dataset starts from the deployment's alignment defaults
            self.fields["crop_size"].initial = settings.CURATOR_ALIGN_CROP_SIZE
            self.fields["detect_max_side"].initial = settings.CURATOR_DETECT_MAX_SIDE
            self.fields["upsample"].initial = settings.CURATOR_DETECT_UPSAMPLE

    def clean_classes_text(self) -> list[str]:
        names = [c.strip() for c in self.cleaned_data["classes_text"].split(",") if c.strip()]
        if len(names) < 2:
            raise forms.ValidationError("Give at least two classes.")
        if len(set(names)) != len(names):
            raise forms.ValidationError("Class names must be different.")
        for name in names:
            if len(name) > 64 or not all(ch.isalnum() or ch in "-_ " for ch in name):
                raise forms.ValidationError(f"“{name}” is not a valid class name (letters, digits, - and _).")
        return names

    def clean_crop_size(self) -> int:
        size = self.cleaned_data["crop_size"]
        if not 32 <= size <= 1024:
            raise forms.ValidationError("Crop size must be between 32 and 1024 pixels.")
        return size

    def clean_upsample(self) -> int:
        value = self.cleaned_data["upsample"]
        if value > 3:
            raise forms.ValidationError("Upsampling more than 3 times is too slow to be useful.")
        return value

    def clean_crop_margin(self) -> float:
        value = self.cleaned_data["crop_margin"]
        if not 0.0 <= value <= 1.0:
            raise forms.ValidationError("The margin is a fraction between 0 and 1.")
        return value


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        files = [f for f in (data if isinstance(data, list | tuple) else [data]) if f]
        if not files:
            if self.required:
                raise forms.ValidationError(self.error_messages["required"], code="required")
            return []
        # An empty file is not a form error: the import reports it per file and goes on.
        return [f if f.size == 0 else super(MultipleFileField, self).clean(f, initial) for f in files]


class UploadForm(forms.Form):
    files = MultipleFileField(
        label="Photos or .zip archives",
        help_text="Any image format Pillow reads; zips are unpacked. Labels come from folder names, "
        "UTKFace file names or a labels.csv.",
    )


class FolderImportForm(forms.Form):
    path = forms.CharField(label="Server folder", help_text="A folder under one of CURATOR_IMPORT_ROOTS.")
