"""ffmpeg children's frame pipes (vidcam.media.process): 1 MiB where Linux allows it, and frames still arrive
whole through them. Real ffmpeg."""

from __future__ import annotations

import fcntl

import numpy as np
import pytest

from vidcam.media.ffmpeg_cmd import ffmpeg_exe
from vidcam.media.process import FFmpegProcess, read_exact


def _max_pipe() -> int:
    with open("/proc/sys/fs/pipe-max-size") as f:
        return int(f.read())


@pytest.mark.skipif(_max_pipe() < 1 << 20, reason="this machine caps pipes below 1 MiB")
def test_frame_pipes_are_one_mib_and_carry_whole_frames():
    import subprocess

    w, h, n = 320, 240, 5
    args = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=5",
            "-frames:v", str(n), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    p = FFmpegProcess(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, what="ffmpeg (test)")
    try:
        assert fcntl.fcntl(p.proc.stdout.fileno(), fcntl.F_GETPIPE_SZ) == 1 << 20  # Linux's default is 64 KiB
        frames = np.empty((n + 1, h, w, 3), np.uint8)
        got = [read_exact(p.proc.stdout, memoryview(frames[i]).cast("B")) for i in range(n + 1)]
        p.check()
    finally:
        p.kill()
    assert got == [w * h * 3] * n + [0]
    assert len({frames[i].tobytes() for i in range(n)}) == n  # testsrc2 moves: five different frames
