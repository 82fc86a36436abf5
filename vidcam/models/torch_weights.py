"""Read legacy (pre-zip) PyTorch ``state_dict`` files with numpy alone.

The offline ImageNet weights vidcam uses ship as legacy torch pickles. Loading them with ``torch.load``
would need torch (gigabytes) and would execute whatever the pickle asks for. This reader allows exactly
three things from the pickle: tensor rebuild calls, storage type markers and ``OrderedDict``; anything
else raises :class:`~vidcam.errors.WeightsError`.

Layout of a legacy file: four pickles (magic number, protocol version, system info, the object itself,
whose tensors reference storages through ``persistent_load``), a pickled list of storage keys, and then
for each key the raw storage: an int64 element count followed by the bytes.
"""

from __future__ import annotations

import collections
import math
import operator
import pickle
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from vidcam.errors import WeightsError

__all__ = ["read_legacy_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = _STORAGE_DTYPES[name]


class _Storage:
    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.data: np.ndarray | None = None


class _TensorRef:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
        if not isinstance(storage, _Storage):
            raise WeightsError("malformed torch file: a tensor does not reference a storage")
        try:
            size_t = tuple(operator.index(s) for s in size)
            stride_t = tuple(operator.index(s) for s in stride)
            offset = operator.index(offset)
        except TypeError:
            raise WeightsError("malformed torch file: a tensor's shape, strides or offset are not integers") from None
        # Negative strides or sizes would let the strided view below read memory outside the storage.
        if len(size_t) != len(stride_t) or offset < 0 or min((*size_t, *stride_t), default=0) < 0:
            raise WeightsError("malformed torch file: a tensor has a negative or inconsistent shape or strides")
        self.storage, self.offset, self.size, self.stride = storage, offset, size_t, stride_t

    def to_numpy(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise WeightsError("malformed torch file: a tensor's storage is missing")
        n = math.prod(self.size)  # Python integers: no overflow
        span = 1 + sum((s - 1) * st for s, st in zip(self.size, self.stride)) if n else 0
        if self.offset + span > data.size:
            raise WeightsError("malformed torch file: a tensor reaches outside its storage")
        if n == 0:
            return np.zeros(self.size, dtype=data.dtype.newbyteorder("="))
        strides = tuple(st * data.itemsize for st in self.stride)
        view = np.lib.stride_tricks.as_strided(data[self.offset :], self.size, strides)
        return np.array(view, dtype=data.dtype.newbyteorder("="))


def _rebuild_tensor(storage, offset, size, stride, *_unused) -> _TensorRef:
    return _TensorRef(storage, offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f: BinaryIO, storages: dict[str, _Storage]) -> None:
        super().__init__(f)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise WeightsError(f"refusing to load {module}.{name} from a torch file: only tensors are allowed")

    def persistent_load(self, pid: Any) -> _Storage:
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise WeightsError("malformed torch file: unexpected persistent id")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise WeightsError("malformed torch file: unknown storage type")
        return self._storages.setdefault(key, _Storage(storage_type.dtype))


def _safe_load(f: BinaryIO) -> Any:
    """Unpickle a plain value (magic number, protocol, system info, key list): no classes at all."""
    return _RestrictedUnpickler(f, {}).load()


def read_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a legacy torch ``state_dict`` into an ordered dict of numpy arrays.

    Args:
        path: a ``.pth`` file written by ``torch.save`` with ``_use_new_zipfile_serialization=False``.

    Returns:
        The tensors, in file order, as C-contiguous numpy arrays.

    Raises:
        WeightsError: the file is not a legacy torch file, is truncated, or asks for anything but tensors.

    Example:
        >>> sd = read_legacy_state_dict("efficientnet-lite0.pth")  # doctest: +SKIP
        >>> sd["_conv_stem.weight"].shape  # doctest: +SKIP
        (32, 3, 3, 3)
    """
    path = Path(path)
    storages: dict[str, _Storage] = {}
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            if f.read(2) == b"PK":
                raise WeightsError(f"{path} is a zip-format torch file; vidcam reads the legacy format only")
            f.seek(0)
            if _safe_load(f) != _LEGACY_MAGIC:
                raise WeightsError(f"{path} is not a legacy torch file (bad magic number)")
            _safe_load(f)  # protocol version
            _safe_load(f)  # system info
            obj = _RestrictedUnpickler(f, storages).load()
            keys = _safe_load(f)
            for key in keys:
                storage = storages.get(str(key))
                if storage is None:
                    raise WeightsError(f"malformed torch file {path}: unknown storage {key!r}")
                header = f.read(8)
                if len(header) != 8:
                    raise WeightsError(f"torch file {path} is truncated")
                (count,) = struct.unpack("<q", header)
                nbytes = count * storage.dtype.itemsize
                if count < 0 or nbytes > size - f.tell():  # never allocate what the file cannot hold
                    raise WeightsError(f"torch file {path} is truncated")
                raw = f.read(nbytes)
                if count < 0 or len(raw) != nbytes:
                    raise WeightsError(f"torch file {path} is truncated")
                storage.data = np.frombuffer(raw, dtype=storage.dtype)
    except WeightsError:
        raise
    except OSError as e:
        raise WeightsError(f"cannot read weights file {path}: {e.strerror or e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise WeightsError(f"{path} is not a readable legacy torch file ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} does not hold a state_dict")
    out: dict[str, np.ndarray] = collections.OrderedDict()
    for name, value in obj.items():
        if not isinstance(value, _TensorRef):
            raise WeightsError(f"{path}: entry {name!r} is not a tensor")
        out[str(name)] = value.to_numpy()
    return out
