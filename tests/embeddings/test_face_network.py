"""The face network (embeddings.network): dlib's descriptor ResNet read from dlib's own file and run
as our own model (onnxruntime for descriptors, Keras for fine-tuning) gives dlib's descriptors, and
a missing, truncated or foreign file is one clear error."""

from pathlib import Path

import dlib
import numpy as np
import pytest
from PIL import Image

from curator.faces import chips
from curator.faces.model_files import FACE_DESCRIPTOR_RESNET, SHAPE_PREDICTOR_5, model_path
from embeddings import network
from embeddings.network import architecture as arch
from embeddings.network.dlib_file import read_dlib_network

# The bar for "equal": stored FaceDescriptor rows stay valid when both hold.
MIN_COSINE = 0.9999
MAX_ABS_DIFFERENCE = 1e-3


def dlib_descriptors(face_chips: list[np.ndarray]) -> np.ndarray:
    net = dlib.face_recognition_model_v1(model_path(FACE_DESCRIPTOR_RESNET))
    rows = net.compute_face_descriptor([np.ascontiguousarray(c) for c in face_chips])
    return np.array([np.asarray(r) for r in rows], dtype=np.float32)


def assert_equal_to_dlib(ours: np.ndarray, theirs: np.ndarray) -> None:
    cosine = (ours * theirs).sum(axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() >= MIN_COSINE, cosine.min()
    assert np.abs(ours - theirs).max() <= MAX_ABS_DIFFERENCE, np.abs(ours - theirs).max()


def face_chip_variants(paths: list[Path], *, variants: bool = True) -> list[np.ndarray]:
    """Five real chips a face: dlib's 150-px chip, its mirror, two other paddings and one of dlib's
    own jitters (rotated, scaled, shifted); only the first with `variants=False`."""
    out = []
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        detections = dlib.get_frontal_face_detector()(rgb, 1)
        box = (0, 0, rgb.shape[1], rgb.shape[0])
        if detections:
            d = max(detections, key=lambda r: r.area())
            box = (d.left(), d.top(), d.right() + 1, d.bottom() + 1)
        shape = chips.five_point_shape(rgb, box)
        chip = chips.chip(shape, 150, 0.25)
        if not variants:
            out.append(chip)
            continue
        jittered = np.asarray(dlib.jitter_image(chip, num_jitters=1)[0])
        out += [chip, chips.flipped(chip), chips.chip(shape, 150, 0.15), chips.chip(shape, 150, 0.35), jittered]
    return out


def test_descriptors_equal_dlibs_on_200_real_face_chips(fixture_faces):
    paths = sorted(fixture_faces.rglob("*.jpg"))
    face_chips = face_chip_variants(paths)
    assert len(face_chips) >= 200
    assert_equal_to_dlib(network.descriptors(face_chips), dlib_descriptors(face_chips))


def test_descriptors_equal_dlibs_on_the_development_set(dev_dataset):
    lfw = sorted((dev_dataset / "lfw_wild").rglob("*.jpg"))[:150]
    utk = sorted((dev_dataset / "utkface_cropped").rglob("*.jpg"))[::40][:100]
    face_chips = face_chip_variants(lfw + utk, variants=False)
    assert len(face_chips) == 250
    assert_equal_to_dlib(network.descriptors(face_chips), dlib_descriptors(face_chips))


def test_batches_give_the_rows_one_at_a_time_gives(fixture_faces):
    face_chips = face_chip_variants(sorted(fixture_faces.rglob("*.jpg"))[:8])
    together = network.descriptors(face_chips)
    alone = np.vstack([network.descriptors([c]) for c in face_chips])
    assert np.abs(together - alone).max() < 1e-5


def test_keras_model_gives_dlibs_descriptors_and_survives_saving(fixture_faces, tmp_path):
    import keras

    from embeddings.network.keras_model import build_face_network, weights_assign, weights_of

    face_chips = face_chip_variants(sorted(fixture_faces.rglob("*.jpg"))[:6])
    model = build_face_network()
    weights_assign(model, network.dlib_weights())
    ours = np.asarray(model(np.stack(face_chips).astype(np.float32), training=False))
    assert_equal_to_dlib(ours, dlib_descriptors(face_chips))
    model.save(tmp_path / "face_network.keras")
    reloaded = keras.saving.load_model(tmp_path / "face_network.keras")  # safe_mode: no lambdas
    assert np.array_equal(np.asarray(reloaded(np.stack(face_chips).astype(np.float32))), ours)
    round_trip = weights_of(reloaded)
    assert all(
        np.array_equal(round_trip[n][k], v) for n, arrays in network.dlib_weights().items() for k, v in arrays.items()
    )


def test_weights_have_the_architectures_shapes():
    weights = network.dlib_weights()
    shapes = arch.weight_shapes()
    assert set(weights) == set(shapes)
    for name, arrays in shapes.items():
        assert {k: weights[name][k].shape for k in arrays} == arrays


# --- A file that is not the network -------------------------------------------------------------


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(network.FaceNetworkError, match="is missing"):
        read_dlib_network(tmp_path / "nowhere.dat")


def test_a_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "truncated.dat"
    path.write_bytes(Path(model_path(FACE_DESCRIPTOR_RESNET)).read_bytes()[:5_000_000])
    with pytest.raises(network.FaceNetworkError, match="corrupt.*ends too early"):
        read_dlib_network(path)


def test_a_corrupt_file_is_a_clear_error(tmp_path):
    data = bytearray(Path(model_path(FACE_DESCRIPTOR_RESNET)).read_bytes())
    data[0x150:0x155] = b"xxx_4"  # the first layer's name
    path = tmp_path / "corrupt.dat"
    path.write_bytes(bytes(data))
    with pytest.raises(network.FaceNetworkError, match="layer stem_conv is 'xxx_4', expected 'con_4'"):
        read_dlib_network(path)
    path.write_bytes(b"\x00" * 1000)
    with pytest.raises(network.FaceNetworkError, match="corrupt or not dlib's face descriptor network"):
        read_dlib_network(path)


def test_another_dlib_model_is_refused(tmp_path):
    with pytest.raises(network.FaceNetworkError, match="not dlib's face descriptor network"):
        read_dlib_network(model_path(SHAPE_PREDICTOR_5))


def test_the_configured_file_is_used_and_its_error_reaches_the_caller(settings, tmp_path):
    settings.CURATOR_FACE_NETWORK_FILE = str(tmp_path / "gone.dat")
    with pytest.raises(network.FaceNetworkError, match="gone.dat is missing"):
        network.descriptors(np.zeros((1, 150, 150, 3), dtype=np.uint8))


def test_chips_of_the_wrong_size_are_refused():
    with pytest.raises(ValueError, match=r"chips must be \[N, 150, 150, 3\]"):
        network.descriptors(np.zeros((2, 100, 100, 3), dtype=np.uint8))
