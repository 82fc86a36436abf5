"""The jobs: image, compare, video, frames, train, evaluate (and the dataset reader and label writers they share).

A job composes models, the CAM engine and media parts; it reports progress through callbacks and never prints.
"""
