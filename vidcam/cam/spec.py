"""What engine to build, as a small picklable value: what the CLI parses, the jobs take and Ray ships to workers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

from vidcam.errors import ModelError, UsageError
from vidcam.models.groups import parse_group_specs
from vidcam.models.zoo import DEFAULT_MODEL, is_zoo_name

if TYPE_CHECKING:
    from vidcam.cam.engine import CamEngine
    from vidcam.models.zoo import Classifier

__all__ = ["ModelSpec", "ModelLike", "build_engine", "portable_spec"]


@dataclass(frozen=True)
class ModelSpec:
    """A model and how to explain it.

    Attributes:
        model: a zoo name (``vidcam models``) or a ``.keras`` path.
        layer: the feature-map layer (plain or ``outer/inner``), or several as ``a,b,c`` (maps fused at the
            finest one's resolution, see :func:`vidcam.cam.engine.fuse_layer_maps`); None: the model's default.
        method: a CAM method (``vidcam.cam.methods.METHODS``).
        weights: a weights file for a zoo model, or None.
        unsafe: allow ``.keras`` files with Lambda layers (runs their code).
        groups: the model's classes grouped (:mod:`vidcam.models.groups`): group specs such as ``"dog"``,
            ``"cat=domestic_cat"``, ``"281-285"``; the classes become the groups and ``other``. Kept as the specs
            (each worker resolves them against the same packaged WordNet data); for a zoo model they are
            resolved when the spec is made, so a bad name is an error before anything loads.

    Raises:
        UsageError: groups that cannot be made (see :func:`vidcam.models.groups.resolve_groups`).

    Example:
        >>> ModelSpec("efficientnet_lite0", method="gradcam++").build()  # doctest: +SKIP
        >>> ModelSpec("efficientnet_lite0", groups=("cat=domestic_cat", "dog")).build()  # doctest: +SKIP
    """

    model: str = DEFAULT_MODEL
    layer: str | None = None
    method: str = "gradcam"
    weights: str | None = None
    unsafe: bool = False
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", os.fspath(self.model))
        if self.weights is not None:
            object.__setattr__(self, "weights", os.fspath(self.weights))
        object.__setattr__(self, "groups", parse_group_specs(self.groups))
        if self.groups and is_zoo_name(self.model):
            from vidcam.models.zoo import check_zoo_groups

            check_zoo_groups(self.model, self.groups)

    def portable(self) -> ModelSpec:
        """The same spec with absolute file paths, for workers whose working folder is not this process's.

        Raises:
            ModelError: a ``.keras`` file that does not exist (checked here, without importing TensorFlow).
        """
        name = self.model
        if not is_zoo_name(name):
            if not Path(name).is_file():
                if Path(name).suffix == ".keras":
                    raise ModelError(f"model file not found: {name}")
                from vidcam.models.zoo import load_classifier

                load_classifier(name)  # raises the local job's own message (unknown name, not a .keras file)
            name = str(Path(name).absolute())
        weights = str(Path(self.weights).absolute()) if self.weights else None
        return ModelSpec(name, self.layer, self.method, weights, self.unsafe, self.groups)

    def classifier(self) -> Classifier:
        """Load the classifier (no engine)."""
        from vidcam.models.zoo import load_classifier

        return load_classifier(self.model, weights=self.weights, unsafe=self.unsafe, groups=self.groups)

    def build(self) -> CamEngine:
        """Load the classifier and build its engine (once per process); its compiled step comes from the cache
        when an earlier run saved it (:mod:`vidcam.cam.stepcache`)."""
        from vidcam.cam.stepcache import build_cached

        return build_cached(self)


ModelLike = Union[str, os.PathLike, ModelSpec, "Classifier", "CamEngine"]


def build_engine(model: ModelLike = DEFAULT_MODEL) -> CamEngine:
    """An engine for a zoo name, a ``.keras`` path, a :class:`ModelSpec`, a loaded classifier (default layer and
    method), or an existing engine (returned as is)."""
    from vidcam.cam.engine import CamEngine
    from vidcam.models.zoo import Classifier

    if isinstance(model, CamEngine):
        return model
    if isinstance(model, Classifier):
        return CamEngine(model)
    spec = spec_of(model)
    if spec is not None:
        return spec.build()
    raise UsageError(f"model must be a zoo name, a .keras path, a ModelSpec, a Classifier or a CamEngine, "
                     f"not {type(model).__name__}")


def spec_of(model: ModelLike) -> ModelSpec | None:
    """The :class:`ModelSpec` of a zoo name, a ``.keras`` path or a spec; None for a loaded classifier or engine."""
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, (str, os.PathLike)):
        return ModelSpec(os.fspath(model))
    return None


def portable_spec(model: ModelLike) -> ModelSpec:
    """A :meth:`ModelSpec.portable` spec for a name, a path or a spec: what remote workers build their engine from.

    Raises:
        UsageError: a loaded classifier or engine (it cannot be shipped to other processes).
    """
    spec = spec_of(model)
    if spec is not None:
        return spec.portable()
    raise UsageError("a remote executor needs the model as a zoo name, a .keras path or a ModelSpec (each worker "
                     f"loads its own copy), not a loaded {type(model).__name__}")
