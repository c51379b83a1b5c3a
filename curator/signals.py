"""Signals the dataset core sends, so the apps above it can follow new faces without curator
knowing them (embeddings computes each new face's descriptor this way; see embeddings/apps.py)."""

from django.dispatch import Signal

# Sent inside the alignment transaction, once per committed chunk of photos, with keyword
# arguments `dataset_ids` (set of ints) and `face_ids` (list of ints: faces created or re-aligned).
# Receivers queue their work with transaction.on_commit and must not fail the alignment.
faces_aligned = Signal()
