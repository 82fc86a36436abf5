"""The packaged WordNet hierarchy and group specs (no TensorFlow: the data file and the resolver only)."""

from __future__ import annotations

import gzip
import json
import re
from importlib import resources

import pytest

from vidcam.errors import UsageError
from vidcam.models.groups import (
    OTHER,
    find_synsets,
    parse_group_specs,
    resolve_groups,
    synset,
    synsets,
)
from vidcam.models.zoo import GROUPED_MODELS, imagenet_class_names

NAMES, WNIDS = imagenet_class_names()


def _raw():
    return json.loads(gzip.decompress(resources.files("vidcam").joinpath("data/imagenet_wordnet.json.gz").read_bytes()))


def test_the_data_covers_every_class_with_its_own_synset_first():
    data = _raw()
    ids = [s[0] for s in data["synsets"]]
    assert ids == sorted(ids) and len(ids) == len(set(ids)) == 1860
    assert len(data["classes"]) == 1000
    for wnid, chain in zip(WNIDS, data["classes"]):
        assert ids[chain[0]] == wnid  # the class's own synset, then its ancestors
        assert ids.index("n00001740") in chain  # entity, WordNet's root, above every class
    assert "WordNet 3.0" in data["source"] and "Princeton" in data["licence"]


def test_the_118_dog_classes_are_all_under_dog_n01():
    dog = synset("n02084071")
    assert dog.lemmas[:2] == ("dog", "domestic_dog")
    assert dog.classes == tuple(range(151, 269))  # the 118 breeds, and nothing else
    assert synset("dog") is dog and synset("Domestic Dog") is dog


def test_domestic_cats_and_other_named_examples():
    assert synset("domestic_cat").classes == (281, 282, 283, 284, 285)
    assert [NAMES[i] for i in synset("domestic_cat").classes] == [
        "tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"]
    # WordNet's common sense of a shared name: cat.n.01 (the domestic cats, cougar and lynx), food.n.01
    assert synset("cat").id == "n02121620" and synset("cat").classes == tuple(range(281, 288))
    assert synset("food").id == "n00021265"
    assert len(synset("bird").classes) == 59 and len(synset("vehicle").classes) == 67
    assert synset("entity").classes == tuple(range(1000))
    assert all(len(s.classes) >= 1 for s in synsets())


def test_find_synsets_most_classes_first():
    found = find_synsets("dog")
    assert found[0].id == "n02084071" and {"hunting_dog", "hotdog"} <= {s.name for s in found}
    assert [len(s.classes) for s in found] == sorted((len(s.classes) for s in found), reverse=True)
    assert find_synsets("n02121808")[0].name == "domestic_cat"
    assert len(find_synsets()) == len(synsets()) and find_synsets("zzzz") == []


def test_groups_become_the_classes_plus_other():
    g = resolve_groups(["cat=domestic_cat", "dog"], NAMES)
    assert g.labels == ("cat", "dog", OTHER) and g.num_classes == 1000
    assert g.members[0] == (281, 282, 283, 284, 285) and g.members[1] == tuple(range(151, 269))
    assert sorted(i for m in g.members for i in m) == list(range(1000))  # each class exactly once
    assert "281 tabby" in g.describe(NAMES) and "other (877 classes" in g.describe(NAMES)


@pytest.mark.parametrize("specs,labels,first", [
    (["n02084071"], ("dog", OTHER), tuple(range(151, 269))),
    (["big=281-285+0"], ("big", OTHER), (0, 281, 282, 283, 284, 285)),
    (["pets=dog+domestic_cat", "bird"], ("pets", "bird", OTHER), (*range(151, 269), *range(281, 286))),
    (["0-999"], ("0-999",), tuple(range(1000))),  # nothing left: no "other"
])
def test_group_specs(specs, labels, first):
    g = resolve_groups(specs, NAMES)
    assert g.labels == labels and g.members[0] == first


def test_parse_splits_commas_and_refuses_blanks():
    assert parse_group_specs(["dog,cat=domestic_cat", " bird "]) == ("dog", "cat=domestic_cat", "bird")
    assert parse_group_specs(None) == ()
    for bad in ("dog,,cat", "cat=", "=dog", "dog+", ""):
        with pytest.raises(UsageError, match="empty part"):
            parse_group_specs([bad])


@pytest.mark.parametrize("specs,pattern", [
    (["crane"], r"group name 'crane' is ambiguous: it could mean n03126707 crane .*; n02012849 crane .*wading bird"),
    (["plant"], r"ambiguous: .*n03956922 plant, works.*n00017222 plant, flora"),
    (["dog", "terrier"], r"groups 'dog' and 'terrier' overlap: both hold 26 classes: 179-204"),
    (["animal", "cat=domestic_cat"], r"groups 'animal' and 'cat' overlap: both hold 5 classes: 281 tabby, "),
    (["dgo"], r"no WordNet synset named 'dgo' holds an ImageNet class \(did you mean dingo\?\)"),
    (["n09999999"], r"no WordNet synset n09999999 holds an ImageNet class"),
    (["990-1000"], r"class ids 990-1000 are out of range: the model has 1000 classes"),
    (["other=dog"], r"'other' names the classes in no group"),
    (["other"], r"'other' names the classes in no group"),
    (["a=dog", "a=bird"], r"two groups are labelled 'a'"),
    ([], r"no groups given"),
])
def test_group_errors_are_one_line(specs, pattern):
    with pytest.raises(UsageError) as e:
        resolve_groups(specs, NAMES)
    assert re.search(pattern, str(e.value)) and "\n" not in str(e.value)


def test_wordnet_names_need_imagenet_classes():
    g = resolve_groups(["pets=0+1"], ["cat", "dog", "car"], imagenet=False)
    assert g.labels == ("pets", OTHER) and g.members == ((0, 1), (2,))
    with pytest.raises(UsageError, match="needs a model with ImageNet's 1000 classes"):
        resolve_groups(["dog"], ["cat", "dog", "car"], imagenet=False)


def test_cats_dogs_is_domestic_cats_and_dogs():
    g = resolve_groups(GROUPED_MODELS["cats_dogs"].groups, NAMES)
    assert g.labels == ("cat", "dog", OTHER)
    assert g.members[:2] == ((281, 282, 283, 284, 285), tuple(range(151, 269)))
