"""Signals the embeddings app sends, so the apps above it can follow new descriptors without
embeddings knowing them (training predicts new faces with the active version this way; see
training/apps.py)."""

from django.dispatch import Signal

# Sent by the embed worker once a batch of faces' descriptors is computed (or the batch failed,
# so that whoever follows still gets a chance: their own call computes what is missing), with
# keyword arguments `dataset_ids` (list of ints) and `face_ids` (list of ints). Receivers queue
# their work and must not fail the batch.
descriptors_computed = Signal()
