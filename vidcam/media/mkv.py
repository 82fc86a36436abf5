"""A minimal Matroska writer for frames with exact timestamps: how vidcam hands frames to the encoder (raw I420)
and the encoder's H.264 to the muxer.

A raw pipe carries pixels only, so the encoder would have to re-time every frame onto a constant grid. Matroska
carries each frame's presentation time and duration, so the encoder keeps them as they are: a variable-frame-rate
source stays variable, a frozen screen stays frozen exactly as long, a constant rate keeps its exact fraction.

One track: ``V_UNCOMPRESSED`` with the FourCC ``I420`` (:func:`header`), or ``V_MPEG4/ISO/AVC`` with its
decoder configuration (:func:`avc_header`, length-prefixed NAL units in each block);
``TimestampScale`` 1 ns, so timestamps are exact to the nanosecond (well below any source time base); one
Cluster per frame (each holds a BlockGroup with the frame's duration), so the 16-bit relative block time is
always 0. The Segment has an unknown size, as in any live stream.
"""

from __future__ import annotations

import struct
from fractions import Fraction

__all__ = ["header", "avc_header", "frame_cluster"]

_UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"


def _vint(n: int) -> bytes:
    """EBML variable-size integer (a length marker in the first byte); all-ones values are reserved."""
    for length in range(1, 9):
        if n < (1 << (7 * length)) - 1:
            return (n | (1 << (7 * length))).to_bytes(length, "big")
    raise ValueError(f"EBML size too large: {n}")


def _element(eid: bytes, data: bytes) -> bytes:
    return eid + _vint(len(data)) + data


def _uint(eid: bytes, value: int) -> bytes:
    return _element(eid, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _header(width: int, height: int, codec: bytes, codec_private: bytes, video_extra: bytes) -> bytes:
    ebml = _element(b"\x1a\x45\xdf\xa3", _uint(b"\x42\x86", 1) + _uint(b"\x42\xf7", 1) + _uint(b"\x42\xf2", 4)
                    + _uint(b"\x42\xf3", 8) + _element(b"\x42\x82", b"matroska") + _uint(b"\x42\x87", 4)
                    + _uint(b"\x42\x85", 2))
    info = _element(b"\x15\x49\xa9\x66", _uint(b"\x2a\xd7\xb1", 1) + _element(b"\x4d\x80", b"vidcam")
                    + _element(b"\x57\x41", b"vidcam"))
    video = _element(b"\xe0", _uint(b"\xb0", width) + _uint(b"\xba", height) + video_extra)
    private = _element(b"\x63\xa2", codec_private) if codec_private else b""
    track = _element(b"\xae", _uint(b"\xd7", 1) + _uint(b"\x73\xc5", 1) + _uint(b"\x83", 1)
                     + _element(b"\x86", codec) + private + video)
    return ebml + b"\x18\x53\x80\x67" + _UNKNOWN_SIZE + info + _element(b"\x16\x54\xae\x6b", track)


def header(width: int, height: int, fourcc: bytes = b"I420") -> bytes:
    """EBML header, the open Segment, Info (1 ns timestamps) and Tracks (one raw video track)."""
    return _header(width, height, b"V_UNCOMPRESSED", b"", _element(b"\x2e\xb5\x24", fourcc))


def avc_header(width: int, height: int, avcc: bytes, sar: Fraction | None = None) -> bytes:
    """As :func:`header`, for one H.264 track: ``avcc`` is its AVCDecoderConfigurationRecord (SPS and PPS, 4-byte
    NAL lengths); each frame is then its access unit's NAL units, each after its length. Non-square pixels (``sar``)
    are given as the display size (``width * sar`` by ``height``, as numerator and denominator multiples), which is
    where a demuxer reads a track's pixel aspect from."""
    display = b""
    if sar is not None and sar != 1:
        display = _uint(b"\x54\xb0", width * sar.numerator) + _uint(b"\x54\xba", height * sar.denominator)
    return _header(width, height, b"V_MPEG4/ISO/AVC", avcc, display)


def frame_cluster(pts_ns: int, duration_ns: int, size: int, *, key: bool = True) -> bytes:
    """The bytes of a Cluster holding one frame of ``size`` bytes, up to where the frame's data starts.

    Write these, then exactly ``size`` bytes of the frame (so the frame is never copied into a bigger buffer).
    ``pts_ns`` may not be negative (Matroska cluster timestamps are unsigned). A frame that is not ``key`` (one
    decoded from the frames before it) says so with a ReferenceBlock (to the frame before).
    """
    if pts_ns < 0:
        raise ValueError(f"negative timestamp {pts_ns} ns")
    block_head = b"\x81" + struct.pack(">h", 0) + b"\x00"  # track 1, relative time 0, no lacing
    duration = _uint(b"\x9b", max(0, duration_ns))
    if not key:
        duration += _element(b"\xfb", b"\xff")  # ReferenceBlock -1 (signed): anything but a keyframe
    block_size = len(block_head) + size
    group_size = 1 + len(_vint(block_size)) + block_size + len(duration)
    timestamp = _uint(b"\xe7", pts_ns)
    cluster_size = len(timestamp) + 1 + len(_vint(group_size)) + group_size
    return (b"\x1f\x43\xb6\x75" + _vint(cluster_size) + timestamp
            + b"\xa0" + _vint(group_size) + duration + b"\xa1" + _vint(block_size) + block_head)
