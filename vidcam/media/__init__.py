"""Media in and out, without TensorFlow: ffmpeg argument lists (the only user of ffmpeg-python), ffmpeg child
processes, probing, images, rendering, charts and atomic outputs."""
