"""Training streams its faces from storage (training.engine.file_dataset): a pipeline over many
faces holds their paths and labels, reads a file only a few batches before the model needs it,
reads every file once an epoch in a full order reshuffled each epoch (the job's seed gives the
same orders again), through any storage backend; finetune's chips are cut once into
lossless PNG files that decode to exactly the chips cut from the photos."""

import threading

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from embeddings import descriptors
from embeddings.descriptors import chip_files_for_faces, chips_for_faces
from training.data import read_storage_file

pytestmark = pytest.mark.slow

SEED = 3


class CountingReads:
    """read_storage_file, counting the files read (from the pipeline's reader threads)."""

    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, path: str) -> bytes:
        with self.lock:
            self.count += 1
        return read_storage_file(path)


def stored_crops(fixture_faces, n: int) -> list[str]:
    files = sorted((fixture_faces / "utkface").glob("*.jpg"))[:n]
    return [default_storage.save(f"crops/{i}.jpg", ContentFile(path.read_bytes())) for i, path in enumerate(files)]


def test_a_batch_reads_only_a_few_batches_of_files(fixture_faces):
    from training import engine

    crops = stored_crops(fixture_faces, 10)
    n, batch_size = 4000, 8
    paths = [crops[i % len(crops)] for i in range(n)]  # the real files, reused across many faces
    reads = CountingReads()
    ds = engine.image_dataset(
        paths, np.zeros(n, np.int64), read=reads, size=32, batch_size=batch_size, shuffle=True, seed=SEED
    )
    iterator = iter(ds)
    images, labels = next(iterator)
    assert images.shape == (batch_size, 32, 32, 3)
    # However long the pipeline runs ahead, it stops at its buffers: the batch taken, the batches
    # prefetched, the one being assembled, and the reads and decodes in flight.
    bound = batch_size * (engine.PREFETCH_BATCHES + 2) + 2 * engine.READ_PARALLELISM + 64
    next(iterator)
    assert 2 * batch_size <= reads.count <= bound < n // 10


def test_an_epoch_reads_every_file_once_in_the_seeded_full_shuffle(fixture_faces):
    import tensorflow as tf

    from training import engine

    crops = stored_crops(fixture_faces, 25)
    labels = np.arange(len(crops), dtype=np.int64)  # a face's label is its index: the order is visible

    def epochs(ds, count):
        return [np.concatenate([y.numpy() for _, y in ds]) for _ in range(count)]

    reads = CountingReads()
    ds = engine.image_dataset(crops, labels, read=reads, size=40, batch_size=4, shuffle=True, seed=SEED)
    first, second = epochs(ds, 2)
    assert reads.count == 2 * len(crops)
    assert sorted(first) == sorted(second) == list(labels)  # every face once an epoch
    assert list(first) != list(second)  # reshuffled each epoch

    # The job's seed gives the same sequence of orders again; another seed, another one.
    again = engine.image_dataset(crops, labels, read=read_storage_file, size=40, batch_size=4, shuffle=True, seed=SEED)
    np.testing.assert_array_equal(np.stack(epochs(again, 2)), np.stack([first, second]))
    other = engine.image_dataset(crops, labels, read=read_storage_file, size=40, batch_size=4, shuffle=True, seed=4)
    assert list(epochs(other, 1)[0]) != list(first)

    # Unshuffled (validation), the images are the files decoded (by TensorFlow's decoder, as
    # before) and resized as before.
    ds = engine.image_dataset(crops, labels, read=read_storage_file, size=40, batch_size=4, shuffle=False, seed=0)
    streamed = np.concatenate([x.numpy() for x, _ in ds])
    decoded = [tf.io.decode_image(read_storage_file(p), channels=3).numpy() for p in crops]
    expected = np.concatenate([engine.resize_batch(image[None], 40) for image in decoded])
    np.testing.assert_allclose(streamed, expected, atol=1e-3)


def test_the_stream_reads_through_object_storage(s3_storage, fixture_faces, media_root):
    from training import engine

    crops = stored_crops(fixture_faces, 6)
    assert not any(media_root.iterdir())  # the files are in the bucket only
    ds = engine.image_dataset(crops, np.arange(6), read=read_storage_file, size=32, batch_size=4, shuffle=False, seed=0)
    assert sum(len(y) for _, y in ds) == 6


def test_finetune_chips_are_cut_once_into_lossless_files(dataset, training_faces, monkeypatch):
    from training import engine

    faces = training_faces[:5]
    ids = [f.pk for f in faces]
    files = chip_files_for_faces(ids, dataset_id=dataset.pk)
    assert set(files) == set(ids)
    assert all(path.startswith(f"datasets/{dataset.pk}/chips/") for path in files.values())

    # The streamed chips are exactly the chips cut from the photos.
    cut = chips_for_faces(ids)
    ds = engine.chip_batches(
        [files[i] for i in ids], np.arange(5), read=read_storage_file, size=150, batch_size=2, shuffle=False, seed=0
    )
    streamed = np.concatenate([x.numpy() for x, _ in ds])
    np.testing.assert_array_equal(streamed, np.stack([cut[i] for i in ids]))

    # A second job reuses them: no photo is cut again.
    def no_cutting(*args, **kwargs):
        raise AssertionError("a kept chip was cut again")

    monkeypatch.setattr(descriptors, "cut_chips", no_cutting)
    assert chip_files_for_faces(ids, dataset_id=dataset.pk) == files


def test_a_file_gone_while_streaming_fails_with_a_plain_message(fixture_faces):
    """A crop deleted (its face aligned again, say) after the job checked its files: the error
    TensorFlow raises from the reader thread carries read_storage_file's message, and the job's
    error is that message alone (training.services), not TensorFlow's traceback."""
    import tensorflow as tf

    from training import engine
    from training.data import streamed_file_gone

    crops = stored_crops(fixture_faces, 4)
    default_storage.delete(crops[2])
    ds = engine.image_dataset(
        crops, np.zeros(len(crops), np.int64), read=read_storage_file, size=32, batch_size=2, shuffle=False, seed=SEED
    )
    with pytest.raises(tf.errors.OpError) as raised:
        for _ in ds:
            pass
    message = streamed_file_gone(raised.value)
    assert message == (
        f"The file {crops[2]} is no longer in storage: its face was deleted or aligned again while the job ran. "
        "Start the job again."
    )
    assert streamed_file_gone(ValueError("something else")) is None
