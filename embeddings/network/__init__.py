"""dlib's 128-D face descriptor ResNet as our own model: its weights read from dlib's file
(`dlib_file`), the architecture written once (`architecture`), run for descriptors and predictions
through onnxruntime (`onnx_graph`, `runtime`) and fine-tuned with Keras (`keras_model`).

The network is Davis E. King's `dlib_face_recognition_resnet_model_v1`, which its author put in
the public domain (CC0), shipped by the face-recognition-models package."""

from embeddings.network.errors import FaceNetworkError
from embeddings.network.runtime import descriptors, dlib_weights, warm

__all__ = ["FaceNetworkError", "descriptors", "dlib_weights", "warm"]
