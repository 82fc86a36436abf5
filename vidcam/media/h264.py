"""H.264 Annex B access units, and "skip" pictures spliced between x264's: repeated frames that cost no encoding.

When a source freezes (the same picture for many frames), x264 still spends milliseconds of CPU on every repeated
frame. Instead, x264 encodes only the distinct frames, and after each of its access units vidcam inserts N skip
pictures: P pictures in which every macroblock is P_Skip (motion vector 0, no residual), so that each one decodes
to an exact copy of the picture before it. This module does the bitstream side of that:

* :func:`split_annexb` and :class:`AccessUnitReader` cut an Annex B byte stream (ffmpeg ``-f h264``) into NAL
  units and access units (H.264 7.4.1.2.3), incrementally for a pipe;
* :func:`parse_sps`, :func:`parse_pps` and :func:`parse_slice_header` read what the splicing needs;
* :class:`SkipSplicer` checks that the stream allows skip pictures, writes them (:func:`skip_picture`: CAVLC or
  CABAC, the arithmetic coder of H.264 9.3.4 implemented here) and rewrites the ``frame_num`` of every later x264
  slice, which must count the inserted reference pictures;
* :meth:`SkipSplicer.config` builds the AVCDecoderConfigurationRecord (``avcC``) for a container.

Why it is only correct for some streams, and what is refused (:attr:`SkipSplicer.why_not`): a skip picture must
be a reference picture (with ``pic_order_cnt_type`` 2, which x264 uses without B-frames, two non-reference pictures
in a row are not allowed), so every later x264 P picture references the skip copy instead of x264's own previous
picture: the same pixels only when the DPB holds one reference frame (``max_num_ref_frames`` 1: x264's ultrafast,
superfast and veryfast presets; with more, x264's ``ref_idx`` > 0 would point at a copy). Also required: frames
only (``frame_mbs_only_flag``), one slice group, ``pic_order_cnt_type`` 2, no B/SP/SI slices, and in x264's
slices no ``ref_pic_list_modification`` nor memory management control operations once skips were inserted. Anything
else raises :class:`H264Error` rather than write a stream that would decode wrong.

Everything here is pure Python (the standard library only); the per-frame work is a header parse, and a rewrite
of the slice's ``frame_num`` bits once skips were inserted (an unescape and escape of the NAL unit, both done with
``bytes.find``). Skip pictures are cached: the CABAC coding of a picture's macroblocks is done once per picture
size and QP.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "H264Error",
    "NAL_SLICE",
    "NAL_IDR",
    "NAL_SEI",
    "NAL_SPS",
    "NAL_PPS",
    "NAL_AUD",
    "split_annexb",
    "join_annexb",
    "AccessUnit",
    "AccessUnitReader",
    "escape",
    "unescape",
    "BitReader",
    "BitWriter",
    "Sps",
    "Pps",
    "SliceHeader",
    "parse_sps",
    "parse_pps",
    "parse_slice_header",
    "CabacContext",
    "CabacEncoder",
    "skip_picture",
    "skip_problem",
    "SkipSplicer",
]


class H264Error(ValueError):
    """A bitstream that is malformed, or that skip pictures cannot be spliced into (the message says why)."""


NAL_SLICE = 1  # coded slice of a non-IDR picture
NAL_IDR = 5  # coded slice of an IDR picture
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9  # access unit delimiter

_START_CODE = b"\x00\x00\x01"
_VCL = frozenset((NAL_SLICE, NAL_IDR))
# For access unit boundaries: every VCL NAL unit type, and those that start with first_mb_in_slice (data partition A
# as well as whole slices; partitions B and C start with slice_id). Only types 1 and 5 are spliced.
_ANY_VCL = frozenset((1, 2, 3, 4, 5))
_FIRST_MB_VCL = frozenset((1, 2, 5))
# NAL unit types that, after a VCL NAL unit of the current access unit, start the next one (7.4.1.2.3).
_AU_OPENERS = frozenset((NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD, 14, 15, 16, 17, 18))
# profile_idc values whose SPS carries chroma_format_idc, bit depths and scaling lists (7.3.2.1.1).
_HIGH_PROFILES = frozenset((100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135))
# profile_idc values whose avcC has the chroma format / bit depth trailer (ISO/IEC 14496-15 5.3.3.1.2).
_AVCC_EXT_PROFILES = frozenset((100, 110, 122, 244))

_MAX_FRAME_MBS = 139264  # MaxFS of the highest level (6.2, Table A-1)
_P, _B, _I, _SP, _SI = range(5)  # slice_type % 5 (Table 7-6)
_SLICE_TYPE_NAMES = ("P", "B", "I", "SP", "SI")


# --- Annex B: NAL units and access units --------------------------------------------------------------------------


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of a complete Annex B byte stream, without their start codes (still escaped).

    Bytes before the first start code, and the zero bytes before each start code (``trailing_zero_8bits``, the
    leading zero of a 4-byte start code), belong to no NAL unit: a NAL unit never ends with a zero byte.
    """
    nals = []
    start = data.find(_START_CODE)
    while start >= 0:
        begin = start + 3
        start = data.find(_START_CODE, begin)
        end = len(data) if start < 0 else start
        while end > begin and data[end - 1] == 0:
            end -= 1
        if end > begin:
            nals.append(bytes(data[begin:end]))
    return nals


def join_annexb(nals: Iterable[bytes]) -> bytes:
    """NAL units as an Annex B byte stream (each after a 4-byte start code)."""
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in nals)


@dataclass(frozen=True)
class AccessUnit:
    """One access unit: its NAL units in order (escaped, without start codes); ``key`` when it is an IDR picture."""

    nals: tuple[bytes, ...]
    key: bool

    @property
    def annexb(self) -> bytes:
        """The access unit as Annex B bytes (4-byte start codes)."""
        return join_annexb(self.nals)


class AccessUnitReader:
    """Cuts an Annex B byte stream, fed in chunks of any size, into access units.

    An access unit is complete when the first NAL unit of the next one starts (its first one or two bytes have
    arrived): at an access unit delimiter, SPS, PPS or SEI (types 9, 7, 8, 6, and 14-18) that follows a VCL NAL unit
    of the current access unit, or at a slice (types 1, 5) with ``first_mb_in_slice`` 0 when the current access unit
    already has one (H.264 7.4.1.2.3; with no arbitrary slice order, which Main and High profiles forbid and x264
    never uses, a picture's first slice is the one with ``first_mb_in_slice`` 0). Chunks may split start codes and
    NAL units anywhere; the search is ``bytes.find`` over the new bytes only, so large chunks cost little.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._buf = bytearray()
        self._nal = -1  # where the open NAL unit's bytes start in _buf; -1 before the first start code
        self._pending = False  # the open NAL unit is not yet classified (too few of its bytes have arrived)
        self._scan = 0  # where the search for the next start code resumes
        self._nals: list[bytes] = []  # the current access unit's complete NAL units
        self._has_vcl = False
        self._key = False

    def feed(self, chunk: bytes) -> list[AccessUnit]:
        """Add bytes; return the access units they completed (often none, sometimes several)."""
        out: list[AccessUnit] = []
        buf = self._buf
        buf += chunk
        if self._pending:
            self._classify(len(buf), False, out)
        while True:
            found = buf.find(_START_CODE, self._scan)
            if found < 0:
                # A start code may straddle this chunk and the next: resume two bytes back.
                self._scan = max(self._scan, len(buf) - 2, self._nal)
                break
            if self._nal >= 0:
                self._close(found, out)
            self._nal = self._scan = found + 3
            self._pending = True
            self._classify(len(buf), False, out)
        # Drop what is done with (bytearray deletes at its front without moving the rest).
        cut = self._nal if self._nal >= 0 else self._scan
        if cut > 0:
            del buf[:cut]
            self._scan -= cut
            if self._nal >= 0:
                self._nal -= cut
        return out

    def finish(self) -> list[AccessUnit]:
        """End of stream: return the access units still held (the last one, unless the stream was empty)."""
        out: list[AccessUnit] = []
        if self._nal >= 0:
            self._close(len(self._buf), out)
        if self._nals:
            out.append(AccessUnit(tuple(self._nals), self._key))
        self._reset()
        return out

    def _classify(self, end: int, final: bool, out: list[AccessUnit]) -> None:
        """Decide whether the open NAL unit (its bytes so far end at ``end``) starts a new access unit."""
        buf, start = self._buf, self._nal
        size = end - start
        if size < 1:
            if final:
                self._pending = False
            return
        nal_type = buf[start] & 0x1F
        if nal_type in _FIRST_MB_VCL and size < 2 and not final:
            return  # first_mb_in_slice is in the next byte
        self._pending = False
        if nal_type in _ANY_VCL:
            # first_mb_in_slice is ue(v), the first syntax element: 0 exactly when its first bit is 1. (No
            # emulation prevention byte can come before the second byte of a NAL unit.)
            if nal_type in _FIRST_MB_VCL and self._has_vcl and size >= 2 and buf[start + 1] & 0x80:
                self._emit(out)
            self._has_vcl = True
            self._key = self._key or nal_type == NAL_IDR
        elif nal_type in _AU_OPENERS and self._has_vcl:
            self._emit(out)

    def _close(self, end: int, out: list[AccessUnit]) -> None:
        """The open NAL unit ends at ``end`` (a start code, or the end of the stream)."""
        if self._pending:
            self._classify(end, True, out)
        buf, start = self._buf, self._nal
        while end > start and buf[end - 1] == 0:
            end -= 1
        if end > start:
            with memoryview(buf) as view:
                self._nals.append(bytes(view[start:end]))
        self._nal = -1

    def _emit(self, out: list[AccessUnit]) -> None:
        if self._nals:
            out.append(AccessUnit(tuple(self._nals), self._key))
        self._nals = []
        self._has_vcl = self._key = False


# --- Emulation prevention -----------------------------------------------------------------------------------------


def unescape(nal: bytes) -> bytes:
    """The RBSP of escaped NAL unit bytes: every ``00 00 03`` loses its ``03`` (the emulation prevention byte)."""
    found = nal.find(b"\x00\x00\x03")
    if found < 0:
        return bytes(nal)
    parts = []
    start = 0
    while found >= 0:
        parts.append(nal[start : found + 2])
        start = found + 3
        found = nal.find(b"\x00\x00\x03", start)
    parts.append(nal[start:])
    return b"".join(parts)


def escape(rbsp: bytes) -> bytes:
    """Escaped NAL unit bytes of an RBSP: a ``03`` after every ``00 00`` that is followed by ``00``-``03``.

    Runs of zeros overlap correctly (``00 00 00 00`` becomes ``00 00 03 00 00 03``), and a final ``03`` is appended
    when the RBSP ends with a zero byte (7.4.1: only after a ``cabac_zero_word``, ``00 00``). An RBSP cannot end
    with a lone zero byte (it ends with the byte of its stop bit, then any number of ``cabac_zero_word`` s): that
    raises ValueError, as no NAL unit could carry it.
    """
    found = rbsp.find(b"\x00\x00")
    if found < 0:
        if rbsp.endswith(b"\x00"):
            raise ValueError("an RBSP cannot end with a lone zero byte")
        return bytes(rbsp)
    parts = []
    start = 0
    size = len(rbsp)
    while found >= 0:
        after = found + 2
        if after < size and rbsp[after] <= 3:
            parts.append(rbsp[start:after])
            parts.append(b"\x03")
            start = after
            found = rbsp.find(b"\x00\x00", after)
        else:
            found = rbsp.find(b"\x00\x00", found + 1)
    tail = rbsp[start:]
    parts.append(tail)
    if tail.endswith(b"\x00"):
        if not tail.endswith(b"\x00\x00"):
            raise ValueError("an RBSP cannot end with a lone zero byte")
        parts.append(b"\x03")
    return b"".join(parts)


# --- Bits ---------------------------------------------------------------------------------------------------------


class BitReader:
    """Reads an RBSP most significant bit first: ``u(n)``, ``ue(v)``, ``se(v)`` (H.264 7.2, 9.1)."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos  # in bits
        self.size = len(data) * 8

    def u(self, n: int) -> int:
        """The next ``n`` bits as an unsigned integer."""
        if n == 0:
            return 0
        end = self.pos + n
        if end > self.size:
            raise H264Error(f"bitstream ends {end - self.size} bits too early")
        first, last = self.pos >> 3, (end + 7) >> 3
        value = int.from_bytes(self.data[first:last], "big") >> (last * 8 - end)
        self.pos = end
        return value & ((1 << n) - 1)

    def flag(self) -> bool:
        return bool(self.u(1))

    def ue(self) -> int:
        """Exp-Golomb ``ue(v)``."""
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros > 31:
                raise H264Error("ue(v) longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        """Exp-Golomb ``se(v)``: 0, 1, -1, 2, -2, ..."""
        k = self.ue()
        return (k + 1) >> 1 if k & 1 else -(k >> 1)

    @property
    def byte_aligned(self) -> bool:
        return self.pos & 7 == 0

    def more_rbsp_data(self) -> bool:
        """Whether syntax elements remain before the ``rbsp_trailing_bits`` (7.2)."""
        data = self.data
        last = len(data) - 1
        while last >= 0 and data[last] == 0:
            last -= 1
        if last < 0:
            return False
        byte = data[last]
        stop = last * 8 + 7 - ((byte & -byte).bit_length() - 1)  # position of the rbsp_stop_one_bit
        return self.pos < stop


class BitWriter:
    """Writes bits most significant bit first: ``u(n)``, ``ue(v)``, ``se(v)``, alignment and trailing bits."""

    def __init__(self) -> None:
        self._value = 0
        self.bits = 0

    def u(self, n: int, value: int) -> None:
        """``value`` in ``n`` bits."""
        if value < 0 or value >> n:
            raise ValueError(f"{value} does not fit in {n} bits")
        self._value = (self._value << n) | value
        self.bits += n

    def flag(self, value: bool | int) -> None:
        self.u(1, 1 if value else 0)

    def ue(self, value: int) -> None:
        """Exp-Golomb ``ue(v)``."""
        if value < 0:
            raise ValueError(f"ue(v) of a negative number: {value}")
        code = value + 1
        self.u(2 * code.bit_length() - 1, code)

    def se(self, value: int) -> None:
        """Exp-Golomb ``se(v)``."""
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    @property
    def byte_aligned(self) -> bool:
        return self.bits & 7 == 0

    def align(self, bit: int) -> None:
        """Pad with ``bit`` (0 or 1) up to the next byte boundary."""
        pad = -self.bits & 7
        self.u(pad, (1 << pad) - 1 if bit else 0)

    def trailing_bits(self) -> None:
        """``rbsp_trailing_bits()``: the stop bit, then zeros to the byte boundary."""
        self.u(1, 1)
        self.align(0)

    def append_bytes(self, data: bytes) -> None:
        """Whole bytes (the writer must be byte aligned)."""
        if not self.byte_aligned:
            raise ValueError("append_bytes needs a byte-aligned writer")
        self.u(len(data) * 8, int.from_bytes(data, "big"))

    def to_bytes(self) -> bytes:
        """The bytes written (the writer must be byte aligned)."""
        if not self.byte_aligned:
            raise ValueError(f"{self.bits} bits is not a whole number of bytes")
        return self._value.to_bytes(self.bits // 8, "big")


def _put_bits(buf: bytearray, pos: int, width: int, value: int) -> None:
    """Overwrite ``width`` bits of ``buf`` at bit ``pos`` with ``value``."""
    first, last = pos >> 3, (pos + width + 7) >> 3
    shift = last * 8 - pos - width
    mask = ((1 << width) - 1) << shift
    old = int.from_bytes(buf[first:last], "big")
    buf[first:last] = ((old & ~mask) | (value << shift)).to_bytes(last - first, "big")


# --- Parameter sets and slice headers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sps:
    """What vidcam needs of a sequence parameter set (H.264 7.3.2.1.1); ``nal`` is the escaped NAL unit."""

    nal: bytes
    profile_idc: int
    constraint_flags: int  # the byte of constraint_set0..5_flag and reserved_zero_2bits
    level_idc: int
    sps_id: int
    chroma_format_idc: int
    separate_colour_plane_flag: bool
    bit_depth_luma: int
    bit_depth_chroma: int
    log2_max_frame_num: int
    pic_order_cnt_type: int
    log2_max_pic_order_cnt_lsb: int  # 0 unless pic_order_cnt_type is 0
    delta_pic_order_always_zero_flag: bool
    max_num_ref_frames: int
    gaps_in_frame_num_allowed: bool
    pic_width_in_mbs: int
    pic_height_in_map_units: int
    frame_mbs_only_flag: bool
    frame_crop: tuple[int, int, int, int]  # left, right, top, bottom offsets (in crop units)

    @property
    def max_frame_num(self) -> int:
        return 1 << self.log2_max_frame_num

    @property
    def chroma_array_type(self) -> int:
        return 0 if self.separate_colour_plane_flag else self.chroma_format_idc

    @property
    def frame_height_in_mbs(self) -> int:
        return (2 - self.frame_mbs_only_flag) * self.pic_height_in_map_units

    @property
    def pic_size_in_mbs(self) -> int:
        """Macroblocks in a frame (a skip picture codes this many)."""
        return self.pic_width_in_mbs * self.frame_height_in_mbs

    @property
    def width(self) -> int:
        """The cropped width in pixels."""
        unit = 1 if self.chroma_array_type == 0 else (1 if self.chroma_format_idc == 3 else 2)
        return 16 * self.pic_width_in_mbs - unit * (self.frame_crop[0] + self.frame_crop[1])

    @property
    def height(self) -> int:
        """The cropped height in pixels."""
        unit = 1 if self.chroma_array_type == 0 else (2 if self.chroma_format_idc == 1 else 1)
        unit *= 2 - self.frame_mbs_only_flag
        return 16 * self.frame_height_in_mbs - unit * (self.frame_crop[2] + self.frame_crop[3])


@dataclass(frozen=True)
class Pps:
    """What vidcam needs of a picture parameter set (H.264 7.3.2.2); ``nal`` is the escaped NAL unit."""

    nal: bytes
    pps_id: int
    sps_id: int
    entropy_coding_mode_flag: bool  # CABAC
    bottom_field_pic_order_in_frame_present_flag: bool
    num_slice_groups: int
    num_ref_idx_l0_default_active: int
    num_ref_idx_l1_default_active: int
    weighted_pred_flag: bool
    weighted_bipred_idc: int
    pic_init_qp: int  # 26 + pic_init_qp_minus26
    chroma_qp_index_offset: int
    deblocking_filter_control_present_flag: bool
    constrained_intra_pred_flag: bool
    redundant_pic_cnt_present_flag: bool
    transform_8x8_mode_flag: bool


@dataclass(frozen=True)
class SliceHeader:
    """A slice header up to ``dec_ref_pic_marking()`` (H.264 7.3.3), and where ``frame_num`` lies in the RBSP."""

    nal_ref_idc: int
    nal_unit_type: int
    first_mb_in_slice: int
    slice_type: int  # 0-9 (Table 7-6); % 5 gives P, B, I, SP, SI
    pps_id: int
    frame_num: int
    frame_num_bit: int  # bit offset of frame_num in the RBSP after the NAL unit header byte
    redundant_pic_cnt: int
    num_ref_idx_l0_active: int
    ref_pic_list_modification: bool  # any modification flag set
    long_term_reference_flag: bool  # IDR only
    adaptive_ref_pic_marking: bool  # memory management control operations present
    mmco5: bool  # one of them is 5 (frame_num counts from 0 again after this picture)

    @property
    def idr(self) -> bool:
        return self.nal_unit_type == NAL_IDR


def _nal_rbsp(nal: bytes, limit: int | None = None) -> bytes:
    """The RBSP after the one-byte NAL unit header (of the first ``limit`` escaped bytes, when given)."""
    if not nal:
        raise H264Error("empty NAL unit")
    if nal[0] & 0x80:
        raise H264Error("forbidden_zero_bit is set")
    return unescape(nal[1:] if limit is None else nal[1 : 1 + limit])


def _skip_scaling_list(r: BitReader, size: int) -> None:
    """Consume ``scaling_list()`` (7.3.2.1.1.1): only its syntax matters here, not the matrix."""
    last = nxt = 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + r.se() + 256) % 256
        last = nxt if nxt != 0 else last


def parse_sps(nal: bytes) -> Sps:
    """Parse a sequence parameter set NAL unit (type 7, escaped, with its header byte)."""
    if not nal or nal[0] & 0x1F != NAL_SPS:
        raise H264Error("not an SPS NAL unit")
    r = BitReader(_nal_rbsp(nal))
    profile_idc, constraint_flags, level_idc = r.u(8), r.u(8), r.u(8)
    sps_id = r.ue()
    if sps_id > 31:
        raise H264Error(f"seq_parameter_set_id {sps_id} out of range")
    chroma_format_idc, separate_colour_plane, depth_luma, depth_chroma = 1, False, 8, 8
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc > 3:
            raise H264Error(f"chroma_format_idc {chroma_format_idc} out of range")
        if chroma_format_idc == 3:
            separate_colour_plane = r.flag()
        depth_luma, depth_chroma = 8 + r.ue(), 8 + r.ue()
        if depth_luma > 14 or depth_chroma > 14:
            raise H264Error(f"bit depth {max(depth_luma, depth_chroma)} out of range")
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.flag():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.flag():
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    log2_max_frame_num = 4 + r.ue()
    if log2_max_frame_num > 16:
        raise H264Error(f"log2_max_frame_num {log2_max_frame_num} out of range")
    poc_type = r.ue()
    log2_max_poc_lsb, always_zero = 0, False
    if poc_type == 0:
        log2_max_poc_lsb = 4 + r.ue()
        if log2_max_poc_lsb > 16:
            raise H264Error(f"log2_max_pic_order_cnt_lsb {log2_max_poc_lsb} out of range")
    elif poc_type == 1:
        always_zero = r.flag()
        r.se()  # offset_for_non_ref_pic
        r.se()  # offset_for_top_to_bottom_field
        for _ in range(r.ue()):  # num_ref_frames_in_pic_order_cnt_cycle
            r.se()
    elif poc_type != 2:
        raise H264Error(f"pic_order_cnt_type {poc_type} out of range")
    max_num_ref_frames = r.ue()
    if max_num_ref_frames > 16:
        raise H264Error(f"max_num_ref_frames {max_num_ref_frames} out of range")
    gaps = r.flag()
    width_mbs, height_map_units = r.ue() + 1, r.ue() + 1
    frame_mbs_only = r.flag()
    if width_mbs * height_map_units * (2 - frame_mbs_only) > _MAX_FRAME_MBS:
        raise H264Error(f"{width_mbs}x{height_map_units * (2 - frame_mbs_only)} macroblocks: larger than any level")
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    crop = (r.ue(), r.ue(), r.ue(), r.ue()) if r.flag() else (0, 0, 0, 0)
    return Sps(nal=bytes(nal), profile_idc=profile_idc, constraint_flags=constraint_flags, level_idc=level_idc,
               sps_id=sps_id, chroma_format_idc=chroma_format_idc, separate_colour_plane_flag=separate_colour_plane,
               bit_depth_luma=depth_luma, bit_depth_chroma=depth_chroma, log2_max_frame_num=log2_max_frame_num,
               pic_order_cnt_type=poc_type, log2_max_pic_order_cnt_lsb=log2_max_poc_lsb,
               delta_pic_order_always_zero_flag=always_zero, max_num_ref_frames=max_num_ref_frames,
               gaps_in_frame_num_allowed=gaps, pic_width_in_mbs=width_mbs,
               pic_height_in_map_units=height_map_units, frame_mbs_only_flag=frame_mbs_only, frame_crop=crop)


def parse_pps(nal: bytes, sps_by_id: dict[int, Sps]) -> Pps:
    """Parse a picture parameter set NAL unit (type 8); ``sps_by_id`` must hold the SPS it refers to."""
    if not nal or nal[0] & 0x1F != NAL_PPS:
        raise H264Error("not a PPS NAL unit")
    r = BitReader(_nal_rbsp(nal))
    pps_id, sps_id = r.ue(), r.ue()
    if pps_id > 255:
        raise H264Error(f"pic_parameter_set_id {pps_id} out of range")
    sps = sps_by_id.get(sps_id)
    if sps is None:
        raise H264Error(f"PPS {pps_id} refers to SPS {sps_id}, which has not been seen")
    cabac, bottom_field_poc = r.flag(), r.flag()
    num_slice_groups = r.ue() + 1
    if num_slice_groups > 8:
        raise H264Error(f"{num_slice_groups} slice groups: out of range")
    if num_slice_groups > 1:
        map_type = r.ue()
        if map_type == 0:
            for _ in range(num_slice_groups):
                r.ue()  # run_length_minus1
        elif map_type == 2:
            for _ in range(num_slice_groups - 1):
                r.ue()  # top_left
                r.ue()  # bottom_right
        elif map_type in (3, 4, 5):
            r.u(1)  # slice_group_change_direction_flag
            r.ue()  # slice_group_change_rate_minus1
        elif map_type == 6:
            bits = (num_slice_groups - 1).bit_length()  # Ceil(Log2(num_slice_groups_minus1 + 1))
            for _ in range(r.ue() + 1):  # pic_size_in_map_units_minus1
                r.u(bits)
    l0_default, l1_default = r.ue() + 1, r.ue() + 1
    if max(l0_default, l1_default) > 32:
        raise H264Error(f"{max(l0_default, l1_default)} default active references: out of range")
    weighted_pred, weighted_bipred = r.flag(), r.u(2)
    pic_init_qp = 26 + r.se()
    if not -6 * (sps.bit_depth_luma - 8) <= pic_init_qp <= 51:
        raise H264Error(f"pic_init_qp {pic_init_qp} out of range")
    r.se()  # pic_init_qs_minus26
    chroma_qp_offset = r.se()
    deblocking_control, constrained_intra, redundant = r.flag(), r.flag(), r.flag()
    transform_8x8 = False
    if r.more_rbsp_data():
        transform_8x8 = r.flag()
        if r.flag():  # pic_scaling_matrix_present_flag
            for i in range(6 + (2 if sps.chroma_format_idc != 3 else 6) * transform_8x8):
                if r.flag():
                    _skip_scaling_list(r, 16 if i < 6 else 64)
        r.se()  # second_chroma_qp_index_offset
    return Pps(nal=bytes(nal), pps_id=pps_id, sps_id=sps_id, entropy_coding_mode_flag=cabac,
               bottom_field_pic_order_in_frame_present_flag=bottom_field_poc, num_slice_groups=num_slice_groups,
               num_ref_idx_l0_default_active=l0_default, num_ref_idx_l1_default_active=l1_default,
               weighted_pred_flag=weighted_pred, weighted_bipred_idc=weighted_bipred, pic_init_qp=pic_init_qp,
               chroma_qp_index_offset=chroma_qp_offset, deblocking_filter_control_present_flag=deblocking_control,
               constrained_intra_pred_flag=constrained_intra, redundant_pic_cnt_present_flag=redundant,
               transform_8x8_mode_flag=transform_8x8)


def _ref_pic_list_modification(r: BitReader) -> bool:
    """Consume one list's ``ref_pic_list_modification`` syntax (7.3.3.1); whether its flag was set."""
    if not r.flag():
        return False
    while True:
        idc = r.ue()
        if idc == 3:
            return True
        if idc not in (0, 1, 2):
            raise H264Error(f"modification_of_pic_nums_idc {idc} in an AVC slice")
        r.ue()  # abs_diff_pic_num_minus1 or long_term_pic_num


def _pred_weight_table(r: BitReader, chroma_array_type: int, lists: Sequence[int]) -> None:
    """Consume ``pred_weight_table()`` (7.3.3.2) for lists with these numbers of active references."""
    r.ue()  # luma_log2_weight_denom
    if chroma_array_type != 0:
        r.ue()  # chroma_log2_weight_denom
    for count in lists:
        for _ in range(count):
            if r.flag():  # luma_weight_lX_flag
                r.se()
                r.se()
            if chroma_array_type != 0 and r.flag():  # chroma_weight_lX_flag
                for _ in range(4):
                    r.se()


def _dec_ref_pic_marking(r: BitReader, idr: bool) -> tuple[bool, bool, bool]:
    """Consume ``dec_ref_pic_marking()`` (7.3.3.3): long_term_reference_flag, adaptive_ref_pic_marking_mode_flag, and
    whether one of the operations is 5."""
    if idr:
        r.u(1)  # no_output_of_prior_pics_flag
        return r.flag(), False, False
    if not r.flag():
        return False, False, False
    mmco5 = False
    while op := r.ue():
        if op > 6:
            raise H264Error(f"memory_management_control_operation {op} out of range")
        mmco5 = mmco5 or op == 5
        if op in (1, 3):
            r.ue()  # difference_of_pic_nums_minus1
        if op == 2:
            r.ue()  # long_term_pic_num
        if op in (3, 6):
            r.ue()  # long_term_frame_idx
        if op == 4:
            r.ue()  # max_long_term_frame_idx_plus1
    return False, True, mmco5


def _parse_slice_header(rbsp: bytes, nal_header: int, sps_by_id: dict[int, Sps],
                        pps_by_id: dict[int, Pps]) -> tuple[SliceHeader, Sps, Pps]:
    nal_ref_idc, nal_type = (nal_header >> 5) & 3, nal_header & 0x1F
    r = BitReader(rbsp)
    first_mb, slice_type, pps_id = r.ue(), r.ue(), r.ue()
    if slice_type > 9:
        raise H264Error(f"slice_type {slice_type} out of range")
    pps = pps_by_id.get(pps_id)
    if pps is None:
        raise H264Error(f"slice refers to PPS {pps_id}, which has not been seen")
    sps = sps_by_id.get(pps.sps_id)
    if sps is None:
        raise H264Error(f"PPS {pps_id} refers to SPS {pps.sps_id}, which has not been seen")
    kind = slice_type % 5
    if sps.separate_colour_plane_flag:
        r.u(2)  # colour_plane_id
    frame_num_bit = r.pos
    frame_num = r.u(sps.log2_max_frame_num)
    field_pic = False
    if not sps.frame_mbs_only_flag:
        field_pic = r.flag()
        if field_pic:
            r.u(1)  # bottom_field_flag
    if nal_type == NAL_IDR:
        r.ue()  # idr_pic_id
    if sps.pic_order_cnt_type == 0:
        r.u(sps.log2_max_pic_order_cnt_lsb)
        if pps.bottom_field_pic_order_in_frame_present_flag and not field_pic:
            r.se()
    elif sps.pic_order_cnt_type == 1 and not sps.delta_pic_order_always_zero_flag:
        r.se()
        if pps.bottom_field_pic_order_in_frame_present_flag and not field_pic:
            r.se()
    redundant_pic_cnt = r.ue() if pps.redundant_pic_cnt_present_flag else 0
    if kind == _B:
        r.u(1)  # direct_spatial_mv_pred_flag
    l0, l1 = pps.num_ref_idx_l0_default_active, pps.num_ref_idx_l1_default_active
    if kind in (_P, _SP, _B) and r.flag():  # num_ref_idx_active_override_flag
        l0 = r.ue() + 1
        if kind == _B:
            l1 = r.ue() + 1
        if max(l0, l1) > 32:
            raise H264Error(f"{max(l0, l1)} active references: out of range")
    modification = False
    if kind not in (_I, _SI):
        modification = _ref_pic_list_modification(r)
        if kind == _B:
            modification = _ref_pic_list_modification(r) or modification
    if (pps.weighted_pred_flag and kind in (_P, _SP)) or (pps.weighted_bipred_idc == 1 and kind == _B):
        _pred_weight_table(r, sps.chroma_array_type, (l0, l1) if kind == _B else (l0,))
    long_term, adaptive, mmco5 = _dec_ref_pic_marking(r, nal_type == NAL_IDR) if nal_ref_idc else (False,) * 3
    header = SliceHeader(nal_ref_idc=nal_ref_idc, nal_unit_type=nal_type, first_mb_in_slice=first_mb,
                         slice_type=slice_type, pps_id=pps_id, frame_num=frame_num, frame_num_bit=frame_num_bit,
                         redundant_pic_cnt=redundant_pic_cnt, num_ref_idx_l0_active=l0,
                         ref_pic_list_modification=modification, long_term_reference_flag=long_term,
                         adaptive_ref_pic_marking=adaptive, mmco5=mmco5)
    return header, sps, pps


_HEADER_BYTES = 512  # a slice header is parsed from this many escaped bytes first (the whole NAL unit if short)


def parse_slice_header(nal: bytes, sps_by_id: dict[int, Sps], pps_by_id: dict[int, Pps]) -> SliceHeader:
    """Parse the header of a slice NAL unit (type 1 or 5) up to ``dec_ref_pic_marking()``."""
    return _slice_header(nal, sps_by_id, pps_by_id)[0]


def _slice_header(nal: bytes, sps_by_id: dict[int, Sps],
                  pps_by_id: dict[int, Pps]) -> tuple[SliceHeader, Sps, Pps]:
    if not nal or nal[0] & 0x1F not in _VCL:
        raise H264Error("not a slice NAL unit (type 1 or 5)")
    if len(nal) > 1 + _HEADER_BYTES:
        try:
            return _parse_slice_header(_nal_rbsp(nal, _HEADER_BYTES), nal[0], sps_by_id, pps_by_id)
        except H264Error:
            pass  # a header longer than the prefix (or a real error, which the whole unit reports again)
    return _parse_slice_header(_nal_rbsp(nal), nal[0], sps_by_id, pps_by_id)


# --- CABAC (H.264 9.3) --------------------------------------------------------------------------------------------

# rangeTabLPS[pStateIdx][qCodIRangeIdx] (Table 9-44) and transIdxLPS / transIdxMPS (Table 9-45), as in FFmpeg's
# libavcodec/cabac.c (lps_range, lps_state, mps_state), checked against x264's common/tables.c
# (x264_cabac_range_lps, stored for pStateIdx 63 down to 0, and x264_cabac_transition, whose states are
# ((63 - pStateIdx) << 1) | valMPS): the same numbers for all 64 states.
_RANGE_TAB_LPS = (
    (128, 176, 208, 240), (128, 167, 197, 227), (128, 158, 187, 216), (123, 150, 178, 205),
    (116, 142, 169, 195), (111, 135, 160, 185), (105, 128, 152, 175), (100, 122, 144, 166),
    (95, 116, 137, 158), (90, 110, 130, 150), (85, 104, 123, 142), (81, 99, 117, 135),
    (77, 94, 111, 128), (73, 89, 105, 122), (69, 85, 100, 116), (66, 80, 95, 110),
    (62, 76, 90, 104), (59, 72, 86, 99), (56, 69, 81, 94), (53, 65, 77, 89),
    (51, 62, 73, 85), (48, 59, 69, 80), (46, 56, 66, 76), (43, 53, 63, 72),
    (41, 50, 59, 69), (39, 48, 56, 65), (37, 45, 54, 62), (35, 43, 51, 59),
    (33, 41, 48, 56), (32, 39, 46, 53), (30, 37, 43, 50), (29, 35, 41, 48),
    (27, 33, 39, 45), (26, 31, 37, 43), (24, 30, 35, 41), (23, 28, 33, 39),
    (22, 27, 32, 37), (21, 26, 30, 35), (20, 24, 29, 33), (19, 23, 27, 31),
    (18, 22, 26, 30), (17, 21, 25, 28), (16, 20, 23, 27), (15, 19, 22, 25),
    (14, 18, 21, 24), (14, 17, 20, 23), (13, 16, 19, 22), (12, 15, 18, 21),
    (12, 14, 17, 20), (11, 14, 16, 19), (11, 13, 15, 18), (10, 12, 15, 17),
    (10, 12, 14, 16), (9, 11, 13, 15), (9, 11, 12, 14), (8, 10, 12, 14),
    (8, 9, 11, 13), (7, 9, 11, 12), (7, 9, 10, 12), (7, 8, 10, 11),
    (6, 8, 9, 11), (6, 7, 9, 10), (6, 7, 8, 9), (2, 2, 2, 2),
)
_TRANS_IDX_LPS = (
    0, 0, 1, 2, 2, 4, 4, 5, 6, 7, 8, 9, 9, 11, 11, 12,
    13, 13, 15, 15, 16, 16, 18, 18, 19, 19, 21, 21, 22, 22, 23, 24,
    24, 25, 26, 26, 27, 27, 28, 29, 29, 30, 30, 30, 31, 32, 32, 33,
    33, 33, 34, 34, 35, 35, 35, 36, 36, 36, 37, 37, 37, 38, 38, 63,
)
_TRANS_IDX_MPS = tuple(range(1, 63)) + (62, 63)

# (m, n) for ctxIdx 11-13 (mb_skip_flag in P and SP slices) with cabac_init_idc 0 (Table 9-13): FFmpeg's
# libavcodec/h264_cabac.c cabac_context_init_PB[0][11..13] and x264's x264_cabac_context_init_PB[0][11..13] agree.
_MB_SKIP_FLAG_INIT = ((23, 33), (23, 2), (21, 0))
_CTX_MB_SKIP_FLAG_P = 11


class CabacContext:
    """One context variable: ``pStateIdx`` and ``valMPS`` (H.264 9.3.1.1)."""

    __slots__ = ("state", "mps")

    def __init__(self, m: int, n: int, slice_qp: int) -> None:
        pre = min(max(((m * min(max(slice_qp, 0), 51)) >> 4) + n, 1), 126)  # preCtxState
        if pre <= 63:
            self.state, self.mps = 63 - pre, 0
        else:
            self.state, self.mps = pre - 64, 1


class CabacEncoder:
    """The arithmetic encoder of H.264 9.3.4 (InitEncoder, EncodeDecision, EncodeTerminate, EncodeFlush), writing
    into a :class:`BitWriter` that is byte aligned when it starts (after the ``cabac_alignment_one_bit`` s)."""

    def __init__(self, writer: BitWriter) -> None:
        self._w = writer
        self._low = 0  # codILow
        self._range = 510  # codIRange
        self._first = True  # firstBitFlag
        self._outstanding = 0  # bitsOutstanding

    def _put_bit(self, bit: int) -> None:
        if self._first:
            self._first = False
        else:
            self._w.u(1, bit)
        if self._outstanding:
            n = self._outstanding
            self._w.u(n, 0 if bit else (1 << n) - 1)
            self._outstanding = 0

    def _renorm(self) -> None:
        while self._range < 256:
            if self._low < 256:
                self._put_bit(0)
            elif self._low >= 512:
                self._low -= 512
                self._put_bit(1)
            else:
                self._low -= 256
                self._outstanding += 1
            self._range <<= 1
            self._low <<= 1

    def decision(self, ctx: CabacContext, bin_val: int) -> None:
        """EncodeDecision (9.3.4.2)."""
        lps = _RANGE_TAB_LPS[ctx.state][(self._range >> 6) & 3]
        self._range -= lps
        if bin_val != ctx.mps:
            self._low += self._range
            self._range = lps
            if ctx.state == 0:
                ctx.mps = 1 - ctx.mps
            ctx.state = _TRANS_IDX_LPS[ctx.state]
        else:
            ctx.state = _TRANS_IDX_MPS[ctx.state]
        self._renorm()

    def terminate(self, bin_val: int) -> None:
        """EncodeTerminate (9.3.4.5); a 1 (``end_of_slice_flag``) also flushes: the last bit written is then the
        ``rbsp_stop_one_bit``."""
        self._range -= 2
        if bin_val:
            self._low += self._range
            self._range = 2  # EncodeFlush
            self._renorm()
            self._put_bit((self._low >> 9) & 1)
            self._w.u(2, ((self._low >> 7) & 3) | 1)
        else:
            self._renorm()


# --- Skip pictures ------------------------------------------------------------------------------------------------

_SKIP_NAL_HEADER = (2 << 5) | NAL_SLICE  # nal_ref_idc 2, a non-IDR slice
_cabac_skip_cache: dict[tuple[int, int], bytes] = {}


def _cabac_skip_data(mbs: int, slice_qp: int) -> bytes:
    """The CABAC-coded ``slice_data()`` of ``mbs`` skipped macroblocks, from the byte after the alignment bits
    through the stop bit and the zero alignment bits (cached: it depends on nothing else)."""
    key = (mbs, slice_qp)
    data = _cabac_skip_cache.get(key)
    if data is None:
        w = BitWriter()
        enc = CabacEncoder(w)
        contexts = [CabacContext(m, n, slice_qp) for m, n in _MB_SKIP_FLAG_INIT]
        # ctxIdxInc = condTermFlagA + condTermFlagB (9.3.3.1.1.1): each is 0 when that neighbour is unavailable or
        # skipped, and every macroblock here is skipped, so ctxIdx is always 11.
        skip_ctx = contexts[_CTX_MB_SKIP_FLAG_P - 11]
        for i in range(1, mbs + 1):
            enc.decision(skip_ctx, 1)  # mb_skip_flag
            enc.terminate(1 if i == mbs else 0)  # end_of_slice_flag
        w.align(0)  # rbsp_alignment_zero_bits (the flush wrote the rbsp_stop_one_bit)
        data = _cabac_skip_cache[key] = w.to_bytes()
    return data


def skip_picture(sps: Sps, pps: Pps, frame_num: int) -> bytes:
    """A P picture (one slice NAL unit, ``nal_ref_idc`` 2) whose every macroblock is P_Skip: decoded, an exact copy
    of the reference picture before it (RefPicList0[0], the previous picture when the DPB holds one frame).

    Motion vectors are 0 (for P_Skip the predicted vector is 0 when a neighbour is unavailable or has vector 0 and
    reference 0, which holds for every macroblock here), the weights are the defaults (denominators 0, no weight
    flags), there is no residual, and deblocking is off when the PPS lets the slice say so (with it on, every edge
    between two skipped macroblocks of the same reference and vector has boundary strength 0 anyway).
    """
    if not 0 <= frame_num < sps.max_frame_num:
        raise ValueError(f"frame_num {frame_num} out of range 0-{sps.max_frame_num - 1}")
    if sps.separate_colour_plane_flag or sps.pic_order_cnt_type != 2 or not sps.frame_mbs_only_flag:
        raise H264Error("skip pictures need frame_mbs_only_flag 1, pic_order_cnt_type 2, no separate colour planes")
    if pps.num_slice_groups != 1:
        raise H264Error("skip pictures need one slice group")
    w = BitWriter()
    w.ue(0)  # first_mb_in_slice
    w.ue(_P)  # slice_type
    w.ue(pps.pps_id)
    w.u(sps.log2_max_frame_num, frame_num)
    if pps.redundant_pic_cnt_present_flag:
        w.ue(0)  # redundant_pic_cnt
    w.u(1, 1)  # num_ref_idx_active_override_flag
    w.ue(0)  # num_ref_idx_l0_active_minus1
    w.u(1, 0)  # ref_pic_list_modification_flag_l0
    if pps.weighted_pred_flag:  # pred_weight_table(): the default weights
        w.ue(0)  # luma_log2_weight_denom
        if sps.chroma_array_type != 0:
            w.ue(0)  # chroma_log2_weight_denom
        w.u(1, 0)  # luma_weight_l0_flag
        if sps.chroma_array_type != 0:
            w.u(1, 0)  # chroma_weight_l0_flag
    w.u(1, 0)  # dec_ref_pic_marking(): adaptive_ref_pic_marking_mode_flag (sliding window)
    if pps.entropy_coding_mode_flag:
        w.ue(0)  # cabac_init_idc
    w.se(0)  # slice_qp_delta: SliceQPY = 26 + pic_init_qp_minus26
    if pps.deblocking_filter_control_present_flag:
        w.ue(1)  # disable_deblocking_filter_idc
    if pps.entropy_coding_mode_flag:
        w.align(1)  # cabac_alignment_one_bit
        w.append_bytes(_cabac_skip_data(sps.pic_size_in_mbs, pps.pic_init_qp))
    else:
        w.ue(sps.pic_size_in_mbs)  # mb_skip_run: every macroblock; then more_rbsp_data() is false
        w.trailing_bits()
    return bytes((_SKIP_NAL_HEADER,)) + escape(w.to_bytes())


def skip_problem(sps: Sps, pps: Pps) -> str | None:
    """Why skip pictures cannot go into a stream with this SPS and PPS (one sentence), or None when they can."""
    if sps.max_num_ref_frames != 1:
        return (f"max_num_ref_frames is {sps.max_num_ref_frames}, not 1: later pictures could reference a skip copy "
                "in place of an older picture (x264 presets ultrafast, superfast and veryfast use one)")
    if not sps.frame_mbs_only_flag:
        return "the stream may have field pictures (frame_mbs_only_flag 0)"
    if sps.pic_order_cnt_type != 2:
        return f"pic_order_cnt_type is {sps.pic_order_cnt_type}, not 2 (B-frames or interlacing)"
    if sps.separate_colour_plane_flag:
        return "the stream codes its colour planes separately"
    if sps.profile_idc == 44 or (sps.profile_idc in (110, 122, 244) and sps.constraint_flags & 0x10):
        return f"profile {sps.profile_idc} is an intra-only profile"  # 44, or High 10/4:2:2/4:4:4 Intra
    if pps.num_slice_groups != 1:
        return f"PPS {pps.pps_id} has {pps.num_slice_groups} slice groups"
    return None


@dataclass(frozen=True)
class _Picture:
    """The last picture :meth:`SkipSplicer.frame` passed: what a skip picture after it needs."""

    sps: Sps
    pps: Pps
    problem: str | None  # why no skip picture may follow it, or None


class SkipSplicer:
    """Splices skip pictures between x264's access units, fed in decoding order.

    Call :meth:`frame` with each of x264's access units and write the NAL units it returns; after any of them,
    :meth:`repeat` returns a skip picture repeating the picture before it (as many times as wanted). Each skip
    picture is a reference picture, so every later slice's ``frame_num`` grows by the number of skip pictures
    inserted since the last IDR picture (modulo MaxFrameNum): :meth:`frame` rewrites it, and raises
    :class:`H264Error` rather than pass anything that would then decode wrong.
    """

    def __init__(self) -> None:
        self.sps: dict[int, Sps] = {}
        self.pps: dict[int, Pps] = {}
        self.inserted = 0  # skip pictures returned by repeat(), in all
        self._since_idr = 0  # skip pictures inserted since the last IDR picture
        self._offset = 0  # ... modulo MaxFrameNum: what x264's frame_num values grow by
        self._prev_ref_frame_num: int | None = None  # PrevRefFrameNum of the stream written (7.4.3)
        self._last: _Picture | None = None
        self._tainted: str | None = None  # long-term references since the last IDR picture: no skip pictures
        self._skips: dict[tuple[bytes, bytes, int], bytes] = {}

    @property
    def why_not(self) -> str | None:
        """Why :meth:`repeat` cannot be called now (None when it can): no picture yet, a stream whose SPS or PPS do
        not allow skip pictures, or a last picture that is not a reference P or I frame (or has memory
        management operations)."""
        if self._last is None:
            return "no picture has been seen yet"
        return skip_problem(self._last.sps, self._last.pps) or self._last.problem or self._tainted

    @property
    def can_repeat(self) -> bool:
        """Whether :meth:`repeat` can be called now (see :attr:`why_not`)."""
        return self.why_not is None

    def frame(self, au: AccessUnit | Sequence[bytes]) -> list[bytes]:
        """One of x264's access units, as its NAL units must be written: slices with ``frame_num`` rewritten; SPS,
        PPS (also remembered here) and every other NAL unit unchanged.

        Raises :class:`H264Error` for a malformed slice or parameter set, and for anything that skip pictures
        inserted since the last IDR picture would make decode wrong (see :func:`skip_problem`, and in the slices:
        B, SP or SI slices, reference list modifications, memory management operations, a ``frame_num`` that does
        not follow). With no skip picture since the last IDR picture, such an access unit passes unchanged, and
        :attr:`why_not` then says why no skip picture may follow it.
        """
        nals = au.nals if isinstance(au, AccessUnit) else au
        out = []
        picture: _Picture | None = None
        unsupported: str | None = None
        for nal in nals:
            if not nal:
                raise H264Error("empty NAL unit")
            nal_type = nal[0] & 0x1F
            if nal_type == NAL_SPS:
                sps = parse_sps(nal)
                self.sps[sps.sps_id] = sps
            elif nal_type == NAL_PPS:
                pps = parse_pps(nal, self.sps)
                self.pps[pps.pps_id] = pps
            elif nal_type in _VCL:
                nal, picture = self._slice(nal, picture)
            elif nal_type in (2, 3, 4, 20, 21):
                unsupported = f"NAL unit type {nal_type} (partitioned or extension slices)"
                if self._since_idr:
                    raise H264Error(f"cannot splice: {unsupported}, after {self._since_idr} skip pictures since the "
                                    "last IDR picture")
            out.append(nal)
        if unsupported is not None and (picture or self._last) is not None:
            base = picture or self._last
            picture = _Picture(base.sps, base.pps, unsupported)
        if picture is not None:
            self._last = picture
        return out

    def _slice(self, nal: bytes, picture: _Picture | None) -> tuple[bytes, _Picture]:
        """Check and rewrite one slice; ``picture`` is its picture so far (None for the access unit's first)."""
        header, sps, pps = _slice_header(nal, self.sps, self.pps)
        first = picture is None
        if first and header.idr:
            self._since_idr = self._offset = 0
            self._tainted = None
        frame_num = (header.frame_num + self._offset) % sps.max_frame_num
        problem = self._slice_problem(header, sps, pps, frame_num if first else None)
        if problem is not None and self._since_idr:
            raise H264Error(f"cannot splice: {problem}, after {self._since_idr} skip pictures since the last IDR "
                            "picture")
        if header.long_term_reference_flag or header.adaptive_ref_pic_marking:
            self._tainted = "long-term references or memory management operations since the last IDR picture"
        if self._offset:
            rbsp = bytearray(_nal_rbsp(nal))
            _put_bits(rbsp, header.frame_num_bit, sps.log2_max_frame_num, frame_num)
            nal = nal[:1] + escape(bytes(rbsp))
        if picture is None:
            if header.nal_ref_idc:
                self._prev_ref_frame_num = 0 if header.mmco5 else frame_num
            elif problem is None:
                problem = "the picture before is not a reference picture"
            picture = _Picture(sps, pps, problem)
        elif problem is not None and picture.problem is None:
            picture = _Picture(picture.sps, picture.pps, problem)
        return nal, picture

    def _slice_problem(self, header: SliceHeader, sps: Sps, pps: Pps, frame_num: int | None) -> str | None:
        """What in this slice forbids skip pictures before it (since the last IDR picture) or after it, or None.
        ``frame_num`` (rewritten) is checked for a picture's first slice only."""
        problem = skip_problem(sps, pps)
        if problem is not None:
            return problem
        kind = header.slice_type % 5
        if kind not in (_P, _I):
            return f"the picture has {_SLICE_TYPE_NAMES[kind]} slices"
        if header.ref_pic_list_modification:
            return "a slice modifies its reference picture list"
        if header.adaptive_ref_pic_marking:
            return "a slice has memory management control operations"
        prev = self._prev_ref_frame_num
        if frame_num is None or header.idr or prev is None:
            return None
        if frame_num != (prev + 1) % sps.max_frame_num:
            return (f"frame_num {header.frame_num} does not follow the previous reference picture's "
                    f"{(prev - self._offset) % sps.max_frame_num}")
        return None

    def repeat(self) -> list[bytes]:
        """One skip picture (one NAL unit) repeating the picture before it; :class:`H264Error` when
        :attr:`why_not` says it cannot."""
        problem = self.why_not
        if problem is not None:
            raise H264Error(f"cannot insert a skip picture: {problem}")
        assert self._last is not None and self._prev_ref_frame_num is not None
        sps, pps = self._last.sps, self._last.pps
        frame_num = (self._prev_ref_frame_num + 1) % sps.max_frame_num
        key = (sps.nal, pps.nal, frame_num)
        nal = self._skips.get(key)
        if nal is None:
            if len(self._skips) > 4096:
                self._skips.clear()
            nal = self._skips[key] = skip_picture(sps, pps, frame_num)
        self._prev_ref_frame_num = frame_num
        self._offset = (self._offset + 1) % sps.max_frame_num
        self._since_idr += 1
        self.inserted += 1
        return [nal]

    def config(self) -> bytes:
        """The AVCDecoderConfigurationRecord (``avcC``, ISO/IEC 14496-15 5.3.3.1) of the parameter sets seen:
        4-byte NAL unit lengths; for High profiles (100, 110, 122, 244) also chroma format and bit depths."""
        if not self.sps or not self.pps:
            raise H264Error("no SPS and PPS seen yet")
        if len(self.sps) > 31 or len(self.pps) > 255:
            raise H264Error(f"{len(self.sps)} SPS and {len(self.pps)} PPS: more than an avcC record holds")
        spss = [self.sps[i] for i in sorted(self.sps)]
        ppss = [self.pps[i] for i in sorted(self.pps)]
        sps = self._last.sps if self._last is not None else spss[0]
        out = bytearray((1, sps.profile_idc, sps.constraint_flags, sps.level_idc, 0xFC | 3, 0xE0 | len(spss)))
        for s in spss:
            out += struct.pack(">H", len(s.nal)) + s.nal
        out.append(len(ppss))
        for p in ppss:
            out += struct.pack(">H", len(p.nal)) + p.nal
        if sps.profile_idc in _AVCC_EXT_PROFILES:
            out += bytes((0xFC | sps.chroma_format_idc, 0xF8 | (sps.bit_depth_luma - 8),
                          0xF8 | (sps.bit_depth_chroma - 8), 0))  # numOfSequenceParameterSetExt 0
        return bytes(out)
