"""probe() of a prefetched file takes the prefetch's answer: the same VideoInfo, the same errors, and never a
stale one for a file changed since. Real ffmpeg, real files."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from clips import make_clip

from vidcam.errors import InputError
from vidcam.media import probe as probe_module
from vidcam.media.probe import prefetch, probe


def _fields(info) -> dict:
    out = {}
    for f in dataclasses.fields(info):
        v = getattr(info, f.name)
        out[f.name] = v.tolist() if isinstance(v, np.ndarray) else v
    return out


def test_a_prefetched_probe_answers_as_probe_does(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", seconds=0.5)
    prefetch(clip)
    got = probe(clip)
    assert not probe_module._prefetched  # taken
    assert _fields(got) == _fields(probe(clip))
    assert got.frames == 13 and got.audio is not None


def test_a_prefetched_error_is_raised_by_probe(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    prefetch(bad)
    with pytest.raises(InputError, match="not a video ffmpeg can read"):
        probe(bad)


def test_a_file_changed_after_its_prefetch_is_probed_again(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", seconds=0.5)
    prefetch(clip)
    make_clip(clip, seconds=1.0)  # rewritten: other size and time
    assert probe(clip).frames == 25
    probe_module._prefetched.clear()


def test_a_missing_file_is_not_prefetched(tmp_path):
    prefetch(tmp_path / "nothing.mp4")
    assert not probe_module._prefetched
    with pytest.raises(InputError, match="no such file"):
        probe(tmp_path / "nothing.mp4")
