"""Pixel preprocessing per model family, in the graph (the caller's uint8 buffer is never written over)."""

from __future__ import annotations

__all__ = ["preprocess_pixels"]


def preprocess_pixels(x, kind: str):
    """RGB pixel values (any dtype, 0..255) -> the float32 input the model family expects."""
    import tensorflow as tf

    x = tf.cast(x, tf.float32)
    if kind == "lite":
        return (x - 127.0) / 128.0
    if kind == "tf":
        return x / 127.5 - 1.0
    if kind == "caffe":
        return x[..., ::-1] - tf.constant([103.939, 116.779, 123.68])
    if kind == "torch":
        return (x / 255.0 - tf.constant([0.485, 0.456, 0.406])) / tf.constant([0.229, 0.224, 0.225])
    if kind == "unit":
        return x / 255.0
    return x
