"""The video job's frame source reuses batch memory a consumer gives back, and never while it is still held:
checked frame by frame against ffmpeg's own decode of real clips."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from clips import ffmpeg, make_clip

from vidcam.media.ffmpeg_cmd import ffmpeg_exe
from vidcam.media.probe import probe
from vidcam.media.source import BufferPool, VideoSource


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    # testsrc2 moves every frame: a frame read into the wrong memory, or overwritten, shows.
    return make_clip(tmp_path_factory.mktemp("source") / "clip.mp4", seconds=1.0, audio=None)


def _reference(path) -> np.ndarray:
    """Every frame as ffmpeg decodes it to RGB by itself (BT.601, as untagged SD is read)."""
    raw = subprocess.run([ffmpeg(), "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:V:0",
                          "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 120, 160, 3)


def test_recycled_batches_are_read_into_again_and_every_frame_is_right(clip):
    source = VideoSource(probe(clip), ffmpeg_exe(None), batch_size=4)
    got, memory = [], set()
    try:
        for batch in source:
            got.extend(f.copy() for f in batch.pixels)
            memory.add(batch.pixels.__array_interface__["data"][0])
            source.recycle(batch)
    finally:
        source.kill()  # closes its pipes
    assert np.array_equal(np.stack(got), _reference(clip))  # 25 frames, the last batch short
    assert len(got) == 25 and source.pool.made == 1 and len(memory) == 1


def test_batches_not_given_back_are_never_overwritten(clip):
    source = VideoSource(probe(clip), ffmpeg_exe(None), batch_size=4)
    try:
        held = list(source)  # nothing recycled: every batch keeps its own memory
    finally:
        source.kill()
    assert source.pool.made == len(held) == 7
    assert np.array_equal(np.concatenate([b.pixels for b in held]), _reference(clip))


def test_pool_keeps_a_bounded_number_of_distinct_arrays():
    pool = BufferPool((2, 3), keep=2)
    a, b, c = pool.take(), pool.take(), pool.take()
    for x in (a, a, b, c):  # the same array twice is kept once; a third is dropped (keep=2)
        pool.give(x)
    assert pool.made == 3
    again = {id(pool.take()), id(pool.take())}
    assert again == {id(a), id(b)} and pool.made == 3
    assert pool.take() is not a and pool.made == 4
    with pytest.raises(ValueError, match="shape"):
        pool.give(np.zeros((3, 2), np.uint8))
