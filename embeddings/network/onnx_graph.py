"""The face network (and the small dense heads of trained versions) as ONNX graphs for
onnxruntime, built from the same weights dictionary the Keras model uses.

Why onnxruntime and not the Keras model for inference (measured on this 2-core machine, one
thread, 150-px chips): a batch of 2 (a chip and its mirror, the predict path) 5.9 ms against
9.2 ms for the Keras model compiled as a tf.function, a batch of 32 81 ms against 91 ms; and
onnxruntime imports in 0.02 s where TensorFlow takes seconds and hundreds of MB in every web and
embed process. dlib's affine layers are folded into the convolution before them (exact up to
float rounding), which TensorFlow cannot do for us.

    graph = face_network_graph(weights)                       # pixels uint8 [N,150,150,3] -> descriptor
    graph = face_network_graph(weights, head=[Normalize(...), Dense(...)])   # + probabilities
    graph = head_graph(width, [Normalize(...), Dense(...)])    # feature rows -> probabilities
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embeddings.network import architecture as arch

OPSET = 17
IR_VERSION = 8


@dataclass
class Normalize:
    """(x - mean) / std per column (Keras' Normalization layer)."""

    mean: np.ndarray
    std: np.ndarray


@dataclass
class Dense:
    kernel: np.ndarray  # [in, out]
    bias: np.ndarray | None
    activation: str = "linear"  # linear | relu | softmax


HeadLayer = Normalize | Dense


class GraphBuilder:
    """Nodes and initialisers of one ONNX graph, each value named after the layer it comes from."""

    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.initializers: list = []
        self.names: set[str] = set()

    def _name(self, base: str) -> str:
        name, i = base, 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def constant(self, name: str, value, dtype=np.float32) -> str:
        name = self._name(name)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, output: str | None = None, **attributes) -> str:
        out = output or self._name(name)
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=self._name(f"{name}/{op}"), **attributes))
        return out

    def conv_affine(self, x: str, name: str, weights: arch.Weights, stride: int) -> str:
        """dlib's convolution followed by its affine layer, folded into one convolution."""
        conv, affine = weights[name], weights[arch.affine_of(name)]
        gamma, beta = affine["gamma"].astype(np.float64), affine["beta"].astype(np.float64)
        kernel = conv["kernel"].astype(np.float64) * gamma  # [kh, kw, in, out] * [out]
        bias = conv["bias"].astype(np.float64) * gamma + beta
        side = kernel.shape[0]
        pad = 0 if stride > 1 else side // 2
        return self.node(
            "Conv",
            [x, self.constant(f"{name}/kernel", kernel.transpose(3, 2, 0, 1)), self.constant(f"{name}/bias", bias)],
            name,
            kernel_shape=[side, side],
            strides=[stride, stride],
            pads=[pad] * 4,
        )

    def zero_extend(self, x: str, name: str, *, channels: int = 0, rows: int = 0) -> str:
        """Zeros after the last channels / rows and columns of an NCHW map (dlib's add_prev_)."""
        if not channels and not rows:
            return x
        pads = self.constant(f"{name}/pads", [0, 0, 0, 0, 0, channels, rows, rows], dtype=np.int64)
        return self.node("Pad", [x, pads], name)

    def head(self, x: str, layers: list[HeadLayer], output: str) -> str:
        for i, layer in enumerate(layers):
            last = i == len(layers) - 1
            if isinstance(layer, Normalize):
                x = self.node("Sub", [x, self.constant(f"head{i}/mean", layer.mean)], f"head{i}")
                x = self.node(
                    "Div", [x, self.constant(f"head{i}/std", layer.std)], f"head{i}", output if last else None
                )
                continue
            x = self.node("MatMul", [x, self.constant(f"head{i}/kernel", layer.kernel)], f"head{i}")
            if layer.bias is not None:
                x = self.node("Add", [x, self.constant(f"head{i}/bias", layer.bias)], f"head{i}")
            if layer.activation == "relu":
                x = self.node("Relu", [x], f"head{i}")
            elif layer.activation == "softmax":
                x = self.node("Softmax", [x], f"head{i}", axis=-1)
            elif layer.activation != "linear":
                raise ValueError(f"activation {layer.activation!r} has no ONNX form here")
            if last:
                x = self.node("Identity", [x], f"head{i}", output)
        return x

    def model_bytes(self, inputs: list, outputs: list, name: str) -> bytes:
        import onnx

        graph = self.helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = self.helper.make_model(graph, opset_imports=[self.helper.make_opsetid("", OPSET)])
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model.SerializeToString()


def _tensor(builder: GraphBuilder, name: str, elem: int, shape: list):
    return builder.helper.make_tensor_value_info(name, elem, shape)


def face_network_graph(weights: arch.Weights, *, head: list[HeadLayer] | None = None) -> bytes:
    """The network on uint8 RGB chips [N, 150, 150, 3] (NHWC, as images come): output
    `descriptor` [N, 128], and `probabilities` when a head is given (a fine-tuned version)."""
    from onnx import TensorProto

    g = GraphBuilder()
    x = g.node("Cast", ["pixels"], "dlib_input", to=TensorProto.FLOAT)
    x = g.node("Transpose", [x], "dlib_input", perm=[0, 3, 1, 2])
    x = g.node("Sub", [x, g.constant("dlib_input/mean", arch.CHANNEL_MEANS.reshape(1, 3, 1, 1))], "dlib_input")
    x = g.node("Mul", [x, g.constant("dlib_input/scale", np.float32(1.0 / arch.INPUT_SCALE))], "dlib_input")
    x = g.conv_affine(x, "stem_conv", weights, 2)
    x = g.node("Relu", [x], "stem_relu")
    x = g.node("MaxPool", [x], "stem_pool", kernel_shape=[3, 3], strides=[2, 2])
    size = (arch.INPUT_SIZE - 7) // 2 + 1
    size = (size - 3) // 2 + 1
    for block in arch.blocks():
        y = g.conv_affine(x, block.layer("conv", 1), weights, 2 if block.down else 1)
        y = g.node("Relu", [y], block.layer("relu", 1))
        y = g.conv_affine(y, block.layer("conv", 2), weights, 1)
        shortcut = x
        if block.down:
            shortcut = g.node("AveragePool", [x], block.layer("pool", 0), kernel_shape=[2, 2], strides=[2, 2])
            strided, pooled = (size - 3) // 2 + 1, (size - 2) // 2 + 1
            y = g.zero_extend(y, block.layer("add", 0), rows=pooled - strided)
            shortcut = g.zero_extend(shortcut, block.layer("add", 0), channels=block.filters - block.in_filters)
            size = pooled
        x = g.node("Add", [y, shortcut], block.layer("add", 0))
        x = g.node("Relu", [x], block.layer("relu", 2))
    x = g.node("GlobalAveragePool", [x], "average")
    x = g.node("Flatten", [x], "average")
    descriptor = g.node("MatMul", [x, g.constant("embedding/kernel", weights["embedding"]["kernel"])], "embedding")
    g.node("Identity", [descriptor], "embedding", "descriptor")
    outputs = [_tensor(g, "descriptor", TensorProto.FLOAT, ["N", arch.DESCRIPTOR_SIZE])]
    if head:
        g.head(descriptor, head, "probabilities")
        outputs.append(_tensor(g, "probabilities", TensorProto.FLOAT, ["N", head[-1].kernel.shape[1]]))
    inputs = [_tensor(g, "pixels", TensorProto.UINT8, ["N", arch.INPUT_SIZE, arch.INPUT_SIZE, 3])]
    return g.model_bytes(inputs, outputs, "face_network")


def head_graph(width: int, head: list[HeadLayer]) -> bytes:
    """A dense head alone: feature rows float32 [N, width] -> `probabilities`."""
    from onnx import TensorProto

    g = GraphBuilder()
    g.head("features", head, "probabilities")
    inputs = [_tensor(g, "features", TensorProto.FLOAT, ["N", width])]
    outputs = [_tensor(g, "probabilities", TensorProto.FLOAT, ["N", head[-1].kernel.shape[1]])]
    return g.model_bytes(inputs, outputs, "head")
