"""Running the face network in this process: dlib's weights read from the installed file at first
use (0.1 s) and kept, the ONNX graph built and one onnxruntime session opened per process and
thread setting, descriptors computed in batches.

    vectors = descriptors(chips)    # uint8 RGB [N, 150, 150, 3] -> float32 [N, 128], as dlib's own call
    warm()                          # read, build and run once now (worker and web start)

Pool processes without Django settings pass the file and the thread count themselves."""

from __future__ import annotations

import threading
from functools import cache

import numpy as np

from embeddings.network import architecture as arch
from embeddings.network.dlib_file import read_dlib_network
from embeddings.network.errors import FaceNetworkError

BATCH_SIZE = 32
_lock = threading.Lock()


def network_file() -> str:
    """CURATOR_FACE_NETWORK_FILE when set, else the file the face-recognition-models package ships."""
    from django.conf import settings

    configured = getattr(settings, "CURATOR_FACE_NETWORK_FILE", "")
    if configured:
        return str(configured)
    from curator.faces.model_files import FACE_DESCRIPTOR_RESNET, models_dir

    try:
        return str(models_dir() / FACE_DESCRIPTOR_RESNET)
    except RuntimeError as exc:
        raise FaceNetworkError(str(exc)) from exc


def network_threads() -> int:
    from django.conf import settings

    return int(getattr(settings, "CURATOR_NETWORK_THREADS", 1))


@cache
def _dlib_weights(path: str) -> arch.Weights:
    return read_dlib_network(path)


def dlib_weights(path: str | None = None) -> arch.Weights:
    """The converted weights of dlib's network (read once per process and file)."""
    return _dlib_weights(path or network_file())


class OnnxModel:
    """One onnxruntime session over a graph, fed in batches."""

    def __init__(self, graph: bytes, *, threads: int, what: str):
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Web and worker processes run one per core: one thread each keeps them from fighting.
        options.intra_op_num_threads = max(0, threads)
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise FaceNetworkError(f"{what} could not be loaded by onnxruntime: {exc}") from exc
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, rows: np.ndarray, *, batch_size: int = BATCH_SIZE) -> dict[str, np.ndarray]:
        """Every output for all rows, computed batch_size rows at a time."""
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.outputs}
        for start in range(0, len(rows), batch_size):
            values = self.session.run(self.outputs, {self.input: rows[start : start + batch_size]})
            for name, value in zip(self.outputs, values, strict=True):
                parts[name].append(np.asarray(value, dtype=np.float32))
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}


@cache
def _descriptor_model(path: str, threads: int) -> OnnxModel:
    from embeddings.network.onnx_graph import face_network_graph

    return OnnxModel(face_network_graph(_dlib_weights(path)), threads=threads, what=f"The face network {path}")


def descriptor_model(*, path: str | None = None, threads: int | None = None) -> OnnxModel:
    path = path or network_file()
    threads = network_threads() if threads is None else threads
    with _lock:  # two threads of one process must not build it twice
        return _descriptor_model(path, threads)


def chips_array(chips) -> np.ndarray:
    """uint8 [N, 150, 150, 3] from a list or array of RGB chips, checked."""
    batch = np.ascontiguousarray(np.asarray(chips), dtype=np.uint8) if len(chips) else np.zeros((0, 150, 150, 3))
    if batch.ndim != 4 or batch.shape[1:] != (arch.INPUT_SIZE, arch.INPUT_SIZE, 3):
        raise ValueError(f"chips must be [N, {arch.INPUT_SIZE}, {arch.INPUT_SIZE}, 3] RGB, not {batch.shape}")
    return batch.astype(np.uint8, copy=False)


def descriptors(chips, *, path: str | None = None, threads: int | None = None) -> np.ndarray:
    """The 128-D descriptors of dlib's 150-px chips, float32 [N, 128], in batches: equal to dlib's
    compute_face_descriptor within float rounding (tests/embeddings/test_face_network.py)."""
    batch = chips_array(chips)
    if not len(batch):
        return np.zeros((0, arch.DESCRIPTOR_SIZE), dtype=np.float32)
    return descriptor_model(path=path, threads=threads).run(batch)["descriptor"]


def warm(*, path: str | None = None, threads: int | None = None) -> None:
    """Read the weights, build the graph, open the session and run it once, so the first real
    call costs what every call costs."""
    descriptors(np.zeros((2, arch.INPUT_SIZE, arch.INPUT_SIZE, 3), dtype=np.uint8), path=path, threads=threads)
