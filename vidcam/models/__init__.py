"""Classifiers: the model zoo, EfficientNet-Lite built from offline weights, the torch weight reader, preprocessing.

Depends only on :mod:`vidcam.media` (atomic files) and :mod:`vidcam.errors`; knows nothing of CAMs or jobs.
"""
