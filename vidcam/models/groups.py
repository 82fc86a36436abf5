"""Classes as groups: ImageNet's WordNet hierarchy, and a classifier whose classes are groups of another's.

ImageNet's 1000 classes are WordNet noun synsets, and WordNet puts each under broader ones: every dog breed is
under dog.n.01 (``n02084071``), the five domestic cats under domestic_cat.n.01 (``n02121808``). The package
holds each class's ancestors (``data/imagenet_wordnet.json.gz``, built from WordNet 3.0 by
``scripts/build_wordnet.py``), so a group can be named as a synset: ``dog``, ``domestic_cat``, ``n02084071``.

A group spec is ``[LABEL=]MEMBER[+MEMBER...]``; a member is a synset name (any of its lemmas, case-insensitive,
``_`` or space), a synset id (``n02084071``), a class id (``281``) or a range of them (``281-285``). A grouped
classifier's classes are the groups, in the order given, then ``other`` (every class in no group, when there is
one). A group's probability is the sum of its members'; the score the CAM engine explains for it is the log of
that sum, ``logsumexp(member logits) - logsumexp(all logits)`` (see :class:`vidcam.cam.engine.CamEngine`).

A name that several synsets holding ImageNet classes share means the one WordNet counts as its common sense (the
only one of them seen in WordNet's sense-tagged corpus): ``cat`` is cat.n.01 (true cats: the domestic cats, lynx
and cougar), ``food`` is food.n.01. With no such sense the name is ambiguous and the error lists what it could
mean (``crane``: the bird or the machine).
"""

from __future__ import annotations

import dataclasses
import difflib
import gzip
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

from vidcam.errors import UsageError

if TYPE_CHECKING:
    from vidcam.models.zoo import Classifier

__all__ = ["Synset", "ClassGroups", "OTHER", "synsets", "synset", "find_synsets", "parse_group_specs",
           "resolve_groups", "group_classifier", "describe_members"]

OTHER = "other"
WORDNET_DATA = "data/imagenet_wordnet.json.gz"
_ID = re.compile(r"n\d{8}")
_RANGE = re.compile(r"(\d+)-(\d+)")


@dataclass(frozen=True)
class Synset:
    """A WordNet noun synset that holds ImageNet classes.

    Attributes:
        id: the wnid, ``n`` + WordNet 3.0's offset (``n02084071``).
        lemmas: its words, WordNet's first (the head word) first (``dog``, ``domestic_dog``, ``Canis_familiaris``).
        gloss: the first clause of its definition.
        classes: the ImageNet class ids under it (itself included when it is a class), ascending.
    """

    id: str
    lemmas: tuple[str, ...]
    gloss: str
    classes: tuple[int, ...]

    @property
    def name(self) -> str:
        return self.lemmas[0]

    def describe(self) -> str:
        """``n02121620 cat, true_cat (7 classes: feline mammal usually having thick soft fur ...)``."""
        n = len(self.classes)
        return f"{self.id} {', '.join(self.lemmas[:3])} ({n} class{'es' if n != 1 else ''}: {self.gloss})"


@dataclass(frozen=True)
class _Hierarchy:
    synsets: tuple[Synset, ...]
    by_id: dict[str, Synset]
    by_name: dict[str, tuple[Synset, ...]]  # lower-case lemma -> synsets, WordNet's sense order
    common: dict[str, Synset]  # shared lemma -> its only tagged sense, where it has one


def _key(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


@lru_cache(maxsize=1)
def _hierarchy() -> _Hierarchy:
    raw = resources.files("vidcam").joinpath(WORDNET_DATA).read_bytes()
    data = json.loads(gzip.decompress(raw))
    members: list[list[int]] = [[] for _ in data["synsets"]]
    for class_id, chain in enumerate(data["classes"]):
        for s in chain:
            members[s].append(class_id)
    all_synsets = tuple(Synset(wnid, tuple(lemmas), gloss, tuple(members[i]))
                        for i, (wnid, lemmas, gloss) in enumerate(data["synsets"]))
    by_name: dict[str, list[Synset]] = {}
    for s in all_synsets:
        for lemma in s.lemmas:
            by_name.setdefault(_key(lemma), []).append(s)
    common: dict[str, Synset] = {}
    for name, senses in data["senses"].items():  # shared names: WordNet's sense order, and which are tagged
        by_name[name] = [all_synsets[i] for i, _ in senses]
        tagged = [all_synsets[i] for i, t in senses if t]
        if len(tagged) == 1:
            common[name] = tagged[0]
    return _Hierarchy(all_synsets, {s.id: s for s in all_synsets}, {k: tuple(v) for k, v in by_name.items()}, common)


def synsets() -> tuple[Synset, ...]:
    """Every synset that holds ImageNet classes (1860), by id."""
    return _hierarchy().synsets


def find_synsets(search: str | None = None) -> list[Synset]:
    """The synsets whose id is ``search`` or one of whose lemmas contains it (case-insensitive, ``_`` or space),
    most classes first; all of them for None or an empty search."""
    h = _hierarchy()
    key = _key(search or "")
    found = [s for s in h.synsets if not key or s.id == key or any(key in _key(lemma) for lemma in s.lemmas)]
    return sorted(found, key=lambda s: (-len(s.classes), s.name.lower(), s.id))


def synset(name: str) -> Synset:
    """The synset a name or an id means.

    Raises:
        UsageError: no synset with ImageNet classes has that name (close names are suggested), or the name is
            ambiguous (the synsets it could mean are listed).
    """
    h = _hierarchy()
    key = _key(name)
    if _ID.fullmatch(key):
        if key not in h.by_id:
            raise UsageError(f"no WordNet synset {key} holds an ImageNet class: see `vidcam groups`")
        return h.by_id[key]
    found = h.by_name.get(key, ())
    if len(found) == 1:
        return found[0]
    if key in h.common:
        return h.common[key]
    if found:
        raise UsageError(f"group name {name!r} is ambiguous: it could mean " + "; ".join(s.describe() for s in found)
                         + ". Give the id you mean (or another of its names)")
    close = difflib.get_close_matches(key, list(h.by_name), n=3, cutoff=0.75)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise UsageError(f"no WordNet synset named {name!r} holds an ImageNet class{hint}: see `vidcam groups "
                     f"{name.strip()[:20]}`")


@dataclass(frozen=True)
class ClassGroups:
    """A grouping of a classifier's classes: picklable, so it travels to Ray workers with the model spec.

    Attributes:
        labels: the group names, then ``other`` when some classes are in no group.
        members: each group's class ids (of the model being grouped), ascending; ``other`` holds the rest.
        specs: what each group was made from (``domestic_cat``, ``281-285``), ``other`` last when present.
        num_classes: how many classes the grouped model has.
    """

    labels: tuple[str, ...]
    members: tuple[tuple[int, ...], ...]
    specs: tuple[str, ...]
    num_classes: int

    def describe(self, class_names: Sequence[str] | None = None) -> str:
        """``cat = domestic_cat (5 classes: 281 tabby, ...), dog = dog (118 classes: 151-268), other (877 classes)``."""
        parts = []
        for label, members, spec in zip(self.labels, self.members, self.specs):
            what = f"{label} = {spec}" if spec != label else label
            parts.append(f"{what} ({describe_members(members, class_names)})")
        return ", ".join(parts)

    def as_dict(self) -> dict:
        return {label: {"spec": spec, "classes": list(members)}
                for label, spec, members in zip(self.labels, self.specs, self.members)}


def _spans(ids: Sequence[int]) -> list[str]:
    out: list[str] = []
    start = prev = None
    for i in list(ids) + [None]:
        if prev is not None and i == prev + 1:
            prev = i
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = i
    return out


def describe_members(members: Sequence[int], class_names: Sequence[str] | None = None, limit: int = 6) -> str:
    """``5 classes: 281 tabby, 282 tiger cat, ...`` (up to ``limit`` named), or ``118 classes: 151-268``."""
    n = len(members)
    head = f"{n} class{'es' if n != 1 else ''}"
    if class_names is not None and n <= limit:
        return f"{head}: " + ", ".join(f"{i} {class_names[i]}" for i in members)
    spans = _spans(members)
    return f"{head}: {', '.join(spans[:limit])}{', ...' if len(spans) > limit else ''}"


def parse_group_specs(values: Iterable[str] | str | None) -> tuple[str, ...]:
    """The group specs in ``values`` (``--group`` values and ``--groups a,b,c`` lists), commas split, blanks
    refused.

    Raises:
        UsageError: an empty group, or a label without members (``cat=``).
    """
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for value in values:
        for part in str(value).split(","):
            spec = part.strip()
            label, sep, body = spec.partition("=")
            if not spec or (sep and (not label.strip() or not body.strip())) or any(
                    not m.strip() for m in (body if sep else spec).split("+")):
                raise UsageError(f"group {value!r} has an empty part: give NAME, LABEL=NAME, ids as 281-285, or "
                                 "members joined with + (pets=dog+domestic_cat); several groups as a,b,c")
            out.append(spec)
    return tuple(out)


def _members(member: str, num_classes: int, imagenet: bool, class_names: Sequence[str]) -> tuple[int, ...]:
    m = member.strip()
    span = _RANGE.fullmatch(m)
    if m.isdigit() or span:
        lo, hi = (int(m), int(m)) if m.isdigit() else (int(span.group(1)), int(span.group(2)))
        if lo > hi or hi >= num_classes:
            raise UsageError(f"class ids {m} are out of range: the model has {num_classes} classes "
                             f"(0..{num_classes - 1})")
        return tuple(range(lo, hi + 1))
    if not imagenet:
        shown = ", ".join(class_names[:5]) + (", ..." if len(class_names) > 5 else "")
        raise UsageError(f"group member {m!r} is a WordNet name: it needs a model with ImageNet's 1000 classes; "
                         f"this model's classes are {shown}: give class ids (0+1, 0-4)")
    return synset(m).classes


def resolve_groups(specs: Iterable[str] | str, class_names: Sequence[str], *, imagenet: bool = True) -> ClassGroups:
    """Resolve group specs against a model's classes.

    Args:
        specs: group specs (see the module's docstring); comma-separated lists are split.
        class_names: the classes of the model being grouped.
        imagenet: whether those are ImageNet's 1000 classes (WordNet names need them).

    Raises:
        UsageError: an unknown or ambiguous name, ids out of range, two groups that share classes (named), a
            label used twice or named ``other``, no group at all.

    Example:
        >>> names = imagenet_class_names()[0]  # doctest: +SKIP
        >>> resolve_groups(["cat=domestic_cat", "dog"], names).labels  # doctest: +SKIP
        ('cat', 'dog', 'other')
    """
    specs = parse_group_specs(specs)
    if not specs:
        raise UsageError("no groups given: name at least one (--group dog)")
    n = len(class_names)
    labels: list[str] = []
    groups: list[tuple[int, ...]] = []
    bodies: list[str] = []
    for spec in specs:
        label, sep, body = spec.partition("=")
        label, body = (label.strip(), body.strip()) if sep else (None, spec)
        if label is None:  # a synset id is labelled by its head word, anything else as it is written
            label = synset(body).name if _ID.fullmatch(_key(body)) and imagenet else body
        if _key(label) == OTHER:
            raise UsageError(f"group {spec!r}: {OTHER!r} names the classes in no group; give the group another label "
                             "(LABEL=...)")
        ids: set[int] = set()
        for member in body.split("+"):
            ids.update(_members(member, n, imagenet, class_names))
        if label in labels:
            raise UsageError(f"two groups are labelled {label!r}: give one another label (LABEL=...)")
        for other_label, other_ids in zip(labels, groups):
            shared = sorted(ids & set(other_ids))
            if shared:
                raise UsageError(f"groups {other_label!r} and {label!r} overlap: both hold "
                                 f"{describe_members(shared, class_names)}; a class can be in one group only")
        labels.append(label)
        groups.append(tuple(sorted(ids)))
        bodies.append(body.strip())
    rest = tuple(sorted(set(range(n)) - {i for g in groups for i in g}))
    if rest:
        labels.append(OTHER)
        groups.append(rest)
        bodies.append(OTHER)
    return ClassGroups(tuple(labels), tuple(groups), tuple(bodies), n)


def group_classifier(classifier: Classifier, specs: Iterable[str] | str, *, name: str | None = None) -> Classifier:
    """``classifier`` with its classes grouped: the same Keras model, whose class names are the groups'.

    Raises:
        UsageError: as :func:`resolve_groups`; a model already grouped; a multi-label (sigmoid) model, whose
            probabilities do not add up.
    """
    if classifier.groups is not None:
        raise UsageError(f"{classifier.name} is already grouped ({', '.join(classifier.class_names)}): group the "
                         "model it is made from instead")
    if classifier.output == "sigmoid" and int(classifier.model.outputs[0].shape[-1]) != 1:
        raise UsageError(f"{classifier.name} is multi-label (independent sigmoids): its classes' probabilities do "
                         "not add up, so they cannot be grouped")
    imagenet = classifier.wnids is not None and len(classifier.wnids) == 1000
    groups = resolve_groups(specs, classifier.class_names, imagenet=imagenet)
    return dataclasses.replace(classifier, name=name or classifier.name, class_names=list(groups.labels),
                               groups=groups, base_class_names=list(classifier.class_names), wnids=None)
