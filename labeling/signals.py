"""Signals labeling sends, so the apps above it can follow label changes without labeling
knowing them (training keeps `Prediction.disagrees` in step this way; see training/apps.py)."""

from django.dispatch import Signal

# Sent inside the labeling transaction, right after faces got a new label (one send per distinct
# new label): keyword arguments `dataset_id`, `face_ids` (list of ints) and `label` ("" when the
# label was cleared). Receivers write only their own tables; an exception rolls the change back.
labels_changed = Signal()
