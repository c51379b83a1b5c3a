"""The shape of dlib's face descriptor network (`dlib_face_recognition_resnet_model_v1`, the
`anet_type` of dlib's dnn_face_recognition_ex.cpp), written down once for the three things that
need it: reading dlib's file (dlib_file), the Keras model (keras_model) and the ONNX graph
(onnx_graph).

    input: 150x150 RGB chip, (pixel - channel mean) / 256
    stem:  conv 7x7/2 (32), affine, relu, max pool 3x3/2
    level4: 3 blocks of 32   level3: 4 blocks of 64   level2: 3 of 128   level1: 3 of 256   level0: 1 of 256
    block: conv 3x3, affine, relu, conv 3x3, affine, + shortcut, relu
    the first block of level3..level0 is a "down" block: its first conv has stride 2 and no
           padding, and its shortcut is a 2x2/2 average pool of its input; the two are added the
           dlib way (zero-extended to the larger height, width and channel count, top-left aligned)
    head:  average over all positions, fully connected 256 -> 128 without bias: the descriptor

"affine" is dlib's frozen batch norm: y = gamma * x + beta per channel. Convolutions with stride 1
pad by 1 ("same"), with stride 2 not at all ("valid"), as dlib's con_ does by default.

Layer names (shared by the Keras layers, the ONNX nodes and the weights dictionary):
`stem_conv`, `stem_affine`, `<stage>_block<i>_conv<j>` / `_affine<j>` (i from 1, j in 1, 2) and
`embedding`. Weights: conv {"kernel": [kh, kw, in, out], "bias": [out]}, affine {"gamma", "beta"},
embedding {"kernel": [256, 128]}.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INPUT_SIZE = 150
CHANNEL_MEANS = np.array([122.782, 117.001, 104.298], dtype=np.float32)
INPUT_SCALE = 256.0
DESCRIPTOR_SIZE = 128
STEM_FILTERS = 32

Weights = dict[str, dict[str, np.ndarray]]


@dataclass(frozen=True)
class Stage:
    name: str
    filters: int
    blocks: int
    downsamples: bool  # its first block halves the resolution


STAGES = (
    Stage("level4", 32, 3, False),
    Stage("level3", 64, 4, True),
    Stage("level2", 128, 3, True),
    Stage("level1", 256, 3, True),
    Stage("level0", 256, 1, True),
)


@dataclass(frozen=True)
class Block:
    stage: str
    index: int  # from 1
    filters: int
    in_filters: int
    down: bool

    def layer(self, kind: str, j: int) -> str:
        return f"{self.stage}_block{self.index}_{kind}{j}"


def blocks() -> list[Block]:
    """Every residual block, input side first."""
    out, channels = [], STEM_FILTERS
    for stage in STAGES:
        for i in range(1, stage.blocks + 1):
            out.append(Block(stage.name, i, stage.filters, channels, stage.downsamples and i == 1))
            channels = stage.filters
    return out


def conv_layers() -> list[tuple[str, int, int, int, int]]:
    """(name, kernel side, in channels, out channels, stride) of every convolution, input first."""
    out = [("stem_conv", 7, 3, STEM_FILTERS, 2)]
    for block in blocks():
        out.append((block.layer("conv", 1), 3, block.in_filters, block.filters, 2 if block.down else 1))
        out.append((block.layer("conv", 2), 3, block.filters, block.filters, 1))
    return out


def affine_of(conv_name: str) -> str:
    return conv_name.replace("conv", "affine")


def weight_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    """The shape of every weight, by layer name (to check a file or a model against)."""
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, side, c_in, c_out, _stride in conv_layers():
        shapes[name] = {"kernel": (side, side, c_in, c_out), "bias": (c_out,)}
        shapes[affine_of(name)] = {"gamma": (c_out,), "beta": (c_out,)}
    shapes["embedding"] = {"kernel": (STAGES[-1].filters, DESCRIPTOR_SIZE)}
    return shapes


def top_stage_layers(stages: int) -> set[str]:
    """Names of the layers of the last `stages` stages and the embedding: what fine-tuning
    unfreezes (the stages nearest the output hold the most task-specific features)."""
    names = {stage.name for stage in STAGES[len(STAGES) - stages :]} if stages else set()
    layers = {"embedding"}
    for block in blocks():
        if block.stage in names:
            layers |= {block.layer(kind, j) for kind in ("conv", "affine") for j in (1, 2)}
    return layers
