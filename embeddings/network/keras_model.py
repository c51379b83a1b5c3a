"""dlib's face descriptor network as a Keras 3 functional model, so it can be batched, fine-tuned
and put on a GPU (built the KerasHub way: a plain functional backbone, named layers, weights
copied in by name from the converted file).

    network = build_face_network()          # float pixels [N, 150, 150, 3] -> descriptor [N, 128]
    weights_assign(network, dlib_weights())  # embeddings.network.runtime.dlib_weights()

Only processes that train import this module (it imports Keras and TensorFlow); descriptors and
predictions run the same graph through onnxruntime (embeddings.network.onnx_graph)."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from embeddings.network import architecture as arch


@keras.saving.register_keras_serializable(package="curator")
class ChannelAffine(layers.Layer):
    """dlib's affine_ layer (batch norm frozen after training): gamma * x + beta per channel."""

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

    def call(self, x):
        return x * self.gamma + self.beta


@keras.saving.register_keras_serializable(package="curator")
class ZeroExtendAdd(layers.Layer):
    """dlib's add_prev_: the sum of two feature maps of possibly different height, width and
    channel count, each zero-extended to the larger of each (aligned at the top-left corner, as
    dlib's tt::add does). A down block's strided branch can be one row and column smaller than
    its average-pooled shortcut (8 -> 3 against 8 -> 4), and has more channels."""

    def call(self, inputs):
        a, b = inputs
        target = [max(a.shape[i], b.shape[i]) for i in (1, 2, 3)]
        return self._extend(a, target) + self._extend(b, target)

    @staticmethod
    def _extend(x, target):
        missing = [t - s for t, s in zip(target, x.shape[1:], strict=True)]
        if not any(missing):
            return x
        return ops.pad(x, [[0, 0], [0, missing[0]], [0, missing[1]], [0, missing[2]]])

    def compute_output_shape(self, input_shapes):
        a, b = input_shapes
        return (a[0], *(max(a[i], b[i]) for i in (1, 2, 3)))


def _conv(x, name: str, filters: int, side: int, stride: int):
    padding = "valid" if stride > 1 else "same"
    x = layers.Conv2D(filters, side, strides=stride, padding=padding, name=name)(x)
    return ChannelAffine(name=arch.affine_of(name))(x)


def build_face_network(*, name: str = "face_network") -> keras.Model:
    """The architecture with untrained weights: float RGB pixels 0..255 in, the 128-D descriptor
    out. dlib's input normalisation, (pixel - mean) / 256, is its first layer."""
    pixels = keras.Input((arch.INPUT_SIZE, arch.INPUT_SIZE, 3), name="pixels")
    x = layers.Normalization(
        mean=arch.CHANNEL_MEANS, variance=np.full(3, arch.INPUT_SCALE**2, np.float32), name="dlib_input"
    )(pixels)
    x = _conv(x, "stem_conv", arch.STEM_FILTERS, 7, 2)
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_pool")(x)
    for block in arch.blocks():
        shortcut = x
        y = _conv(x, block.layer("conv", 1), block.filters, 3, 2 if block.down else 1)
        y = layers.ReLU(name=block.layer("relu", 1))(y)
        y = _conv(y, block.layer("conv", 2), block.filters, 3, 1)
        if block.down:
            shortcut = layers.AveragePooling2D(2, strides=2, padding="valid", name=block.layer("pool", 0))(x)
        x = ZeroExtendAdd(name=block.layer("add", 0))([y, shortcut])
        x = layers.ReLU(name=block.layer("relu", 2))(x)
    x = layers.GlobalAveragePooling2D(name="average")(x)
    descriptor = layers.Dense(arch.DESCRIPTOR_SIZE, use_bias=False, name="embedding")(x)
    return keras.Model(pixels, descriptor, name=name)


def weights_assign(network: keras.Model, weights: arch.Weights) -> None:
    """Copy converted weights into the network layer by layer, by name, checking every shape."""
    for name, arrays in weights.items():
        layer = network.get_layer(name)
        if isinstance(layer, ChannelAffine):
            values = [arrays["gamma"], arrays["beta"]]
        elif name == "embedding":
            values = [arrays["kernel"]]
        else:
            values = [arrays["kernel"], arrays["bias"]]
        current = layer.get_weights()
        for have, new in zip(current, values, strict=True):
            if have.shape != new.shape:
                raise ValueError(f"{name}: weight of shape {new.shape} for a layer of shape {have.shape}")
        layer.set_weights(values)


def weights_of(network: keras.Model) -> arch.Weights:
    """The network's weights in the converted form (for the ONNX graph of a fine-tuned network)."""
    out: arch.Weights = {}
    for name in arch.weight_shapes():
        values = network.get_layer(name).get_weights()
        if name == "embedding":
            out[name] = {"kernel": values[0]}
        elif "affine" in name:
            out[name] = {"gamma": values[0], "beta": values[1]}
        else:
            out[name] = {"kernel": values[0], "bias": values[1]}
    return out
