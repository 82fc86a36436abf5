"""The CAM engine: one compiled, batched step per (model, layer, method), the methods behind a registry, and
the faithfulness metrics. Works on model-sized uint8 frames; knows nothing of files, videos or the CLI."""
