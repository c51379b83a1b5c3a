"""Reading dlib's serialised face descriptor network (`dlib_face_recognition_resnet_model_v1.dat`)
into our weights dictionary (embeddings.network.architecture), without dlib.

dlib writes a network as nested objects, outermost layer first: each `add_layer` writes its
version, then the layer below it, then its own details; tag and skip layers write their version and
the layer below. So the file holds the versions of all 130 layers (2 for a layer with details, 1
for a tag or skip, 3 for the bottom layer), the input layer, and then the details of each layer
from the input up. Integers are dlib's variable-length encoding (a byte with the length and sign,
then little-endian bytes), floats a (mantissa, exponent) pair of such integers, strings a length
and bytes, booleans one character '0' or '1', and tensors a version, four dimensions and raw
little-endian float32.

Everything read is checked against the architecture (layer kinds and order, shapes, strides,
padding, the input's size and means), so a truncated, corrupt or different file is refused with
the reason instead of giving wrong descriptors.

    weights = read_dlib_network(path)     # {"stem_conv": {"kernel": ..., "bias": ...}, ...}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embeddings.network import architecture as arch
from embeddings.network.errors import FaceNetworkError


class _Reader:
    def __init__(self, data: bytes, name: str):
        self.data = data
        self.pos = 0
        self.name = name

    def fail(self, what: str) -> FaceNetworkError:
        return FaceNetworkError(
            f"The face network file {self.name} is corrupt or not dlib's face descriptor network "
            f"(at byte {self.pos:,} of {len(self.data):,}: {what}). Reinstall face-recognition-models."
        )

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail("the file ends too early")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        head = self.take(1)[0]
        size = head & 0x0F
        if size > 8:
            raise self.fail("an integer of more than 8 bytes")
        value = int.from_bytes(self.take(size), "little")
        return -value if head & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        return float(np.ldexp(float(mantissa), exponent))

    def string(self) -> str:
        size = self.int()
        if not 0 <= size <= 256:
            raise self.fail(f"a string of {size} bytes")
        return self.take(size).decode("latin-1")

    def bool(self) -> bool:
        char = self.take(1)
        if char not in (b"0", b"1"):
            raise self.fail(f"{char!r} where a boolean was expected")
        return char == b"1"

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise self.fail(f"a tensor of version {version}")
        dims = [self.int() for _ in range(4)]
        if min(dims) < 0:
            raise self.fail(f"a tensor of shape {dims}")
        count = int(np.prod(dims))
        return np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32).reshape(dims)

    def expect(self, value, wanted, what: str) -> None:
        if value != wanted:
            raise self.fail(f"{what} is {value!r}, expected {wanted!r}")


def _layer_versions() -> str:
    """The version of every layer, outermost first, as dlib writes them for our architecture."""
    bottom_up = ["3", "2", "2", "2"]  # stem conv (the bottom layer), affine, relu, max pool
    for block in arch.blocks():
        bottom_up += ["1", "2", "2", "2", "2", "2"]  # tag1, conv, affine, relu, conv, affine
        if block.down:
            bottom_up += ["1", "1", "2"]  # tag2, skip1, average pool
        bottom_up += ["2", "2"]  # add_prev, relu
    bottom_up += ["2", "2"]  # average over everything, fully connected
    return "".join(reversed(bottom_up))


def _conv(r: _Reader, name: str, side: int, c_in: int, c_out: int, stride: int) -> dict[str, np.ndarray]:
    r.expect(r.string(), "con_4", f"layer {name}")
    params = r.tensor().reshape(-1)
    r.expect(params.size, c_out * c_in * side * side + c_out, f"the parameter count of {name}")
    r.expect(
        [r.int() for _ in range(7)],
        [c_out, side, side, stride, stride, 0 if stride > 1 else side // 2, 0 if stride > 1 else side // 2],
        f"filters, size, stride and padding of {name}",
    )
    r.expect([r.int() for _ in range(5)], [1, c_out, c_in, side, side], f"the filter shape of {name}")
    r.expect([r.int() for _ in range(5)], [1, 1, c_out, 1, 1], f"the bias shape of {name}")
    for _ in range(4):  # learning-rate and weight-decay multipliers: training settings only
        r.float()
    filters = params[: c_out * c_in * side * side].reshape(c_out, c_in, side, side)
    return {"kernel": np.ascontiguousarray(filters.transpose(2, 3, 1, 0)), "bias": params[-c_out:].copy()}


def _affine(r: _Reader, name: str, channels: int) -> dict[str, np.ndarray]:
    r.expect(r.string(), "affine_", f"layer {name}")
    params = r.tensor().reshape(-1)
    r.expect(params.size, 2 * channels, f"the parameter count of {name}")
    r.expect([r.int() for _ in range(5)], [1, 1, channels, 1, 1], f"the gamma shape of {name}")
    r.expect([r.int() for _ in range(5)], [1, 1, channels, 1, 1], f"the beta shape of {name}")
    r.expect(r.int(), 0, f"the mode of {name} (per channel)")
    return {"gamma": params[:channels].copy(), "beta": params[channels:].copy()}


def _pool(r: _Reader, kind: str, size: int, stride: int, what: str) -> None:
    r.expect(r.string(), kind, what)
    r.expect([r.int() for _ in range(6)], [size, size, stride, stride, 0, 0], f"size, stride and padding of {what}")


def _plain(r: _Reader, kind: str, what: str) -> None:
    r.expect(r.string(), kind, what)


def _layer_state(r: _Reader, *, bottom: bool = False) -> None:
    """What add_layer writes after a layer's details: three flags and three (empty) tensors of
    training state; the bottom layer adds its sample expansion factor."""
    for _ in range(3):
        r.bool()
    for _ in range(3):
        r.tensor()
    if bottom:
        r.expect(r.int(), 1, "the sample expansion factor")


def read_dlib_network(path: str | Path) -> arch.Weights:
    """The weights of dlib's face descriptor network file, checked against the architecture.
    Raises FaceNetworkError when the file is missing, truncated or another network."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FaceNetworkError(
            f"The face network file {path} is missing (pip install -r requirements.txt installs "
            "face-recognition-models, which ships it)."
        ) from None
    except OSError as exc:
        raise FaceNetworkError(f"The face network file {path} cannot be read: {exc}.") from exc
    r = _Reader(data, str(path))
    r.expect(r.int(), 1, "the loss layer's version")
    r.expect(r.string(), "loss_metric_2", "the loss layer")
    r.float(), r.float()  # the metric loss's margin and distance threshold: training settings
    expected = _layer_versions()
    versions = ""
    while len(versions) < len(expected):
        versions += str(r.int())
    r.expect(versions, expected, "the layer structure")
    r.expect(r.string(), "input_rgb_image_sized", "the input layer")
    means = np.array([r.float() for _ in range(3)], dtype=np.float32)
    if not np.allclose(means, arch.CHANNEL_MEANS, atol=1e-3):
        raise r.fail(f"the input's channel means are {means.tolist()}, expected {arch.CHANNEL_MEANS.tolist()}")
    r.expect([r.int(), r.int()], [arch.INPUT_SIZE, arch.INPUT_SIZE], "the input size")

    weights: arch.Weights = {}
    convs = iter(arch.conv_layers())

    def conv_affine(*, bottom: bool = False) -> None:
        name, side, c_in, c_out, stride = next(convs)
        weights[name] = _conv(r, name, side, c_in, c_out, stride)
        _layer_state(r, bottom=bottom)
        weights[arch.affine_of(name)] = _affine(r, arch.affine_of(name), c_out)
        _layer_state(r)

    def relu(what: str) -> None:
        _plain(r, "relu_", what)
        _layer_state(r)

    conv_affine(bottom=True)
    relu("the stem's relu")
    _pool(r, "max_pool_2", 3, 2, "the stem's max pool")
    _layer_state(r)
    for block in arch.blocks():
        where = f"block {block.index} of {block.stage}"
        conv_affine()
        relu(where)
        conv_affine()
        if block.down:
            _pool(r, "avg_pool_2", 2, 2, f"the shortcut of {where}")
            _layer_state(r)
        _plain(r, "add_prev_", f"the sum of {where}")
        _layer_state(r)
        relu(where)
    _pool(r, "avg_pool_2", 0, 1, "the average over all positions")
    _layer_state(r)
    r.expect(r.string(), "fc_2", "the descriptor layer")
    r.expect([r.int(), r.int()], [arch.DESCRIPTOR_SIZE, arch.STAGES[-1].filters], "the descriptor layer's size")
    kernel = r.tensor()
    r.expect(kernel.shape, (arch.STAGES[-1].filters, arch.DESCRIPTOR_SIZE, 1, 1), "the descriptor weights' shape")
    r.expect([r.int() for _ in range(10)], [1, 256, 128, 1, 1, 1, 0, 0, 0, 0], "the descriptor layer's aliases")
    r.expect(r.int(), 1, "the descriptor layer's bias mode (none)")
    for _ in range(4):
        r.float()
    weights["embedding"] = {"kernel": np.ascontiguousarray(kernel[:, :, 0, 0])}
    _layer_state(r)
    if r.pos != len(data):
        raise r.fail(f"{len(data) - r.pos:,} bytes after the network")
    for name, arrays in weights.items():
        if not all(np.isfinite(a).all() for a in arrays.values()):
            raise r.fail(f"weights of {name} that are not finite numbers")
    return weights
