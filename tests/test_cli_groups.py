"""Groups from the command line: `vidcam groups`, --group/--groups and --model cats_dogs on image, video, frames,
compare and evaluate (the Kaggle layout's cats/ and dogs/ folders), and their usage errors. The real CLI on the
real default model, the bundled photos and the demo video."""

from __future__ import annotations

import csv
import json
import shutil

import cv2
import pytest
from conftest import CHELSEA, DOG, ROOT
from typer.testing import CliRunner

from vidcam.cli import app

runner = CliRunner()
DEMO = ROOT / "video" / "demo.mp4"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_usage_error(r, *needles: str) -> str:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidcam: error: "), lines
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def coffee(tmp_path_factory):
    import skimage.data

    path = tmp_path_factory.mktemp("coffee") / "coffee.png"
    cv2.imwrite(str(path), cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR))
    return path


def test_groups_lists_synsets_with_their_class_counts():
    r = invoke("groups", "dog")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["synset", "classes", "names", "definition"]
    assert lines[1].split()[:3] == ["n02084071", "118", "dog,"]  # most classes first
    assert any(line.split()[:2] == ["n02087122", "63"] for line in lines)  # hunting_dog
    r = invoke("groups", "domestic_cat", "--members")
    assert "n02121808 domestic_cat: 5 classes: 281 tabby, 282 tiger cat, 283 Persian cat, 284 Siamese cat, " \
           "285 Egyptian cat" in r.stdout
    rows = [json.loads(line) for line in invoke("groups", "--json").stdout.splitlines()]
    assert len(rows) == 1860 and rows[0]["id"] == "n00001740" and rows[0]["classes"] == 1000
    r = invoke("groups", "zzzz")
    assert r.exit_code == 1 and "no WordNet synset with ImageNet classes matches 'zzzz'" in r.stderr


def test_models_lists_cats_dogs_and_says_which_classes():
    r = invoke("models")
    assert r.exit_code == 0, r.output
    assert "cats_dogs: efficientnet_lite0 with its classes grouped: cat = domestic_cat (5 classes: 281 tabby, " \
           "282 tiger cat, 283 Persian cat, 284 Siamese cat, 285 Egyptian cat), dog (118 classes: 151-268), other" \
           in r.stdout


@pytest.mark.parametrize("args,needles", [
    (["--group", "crane"], ["group name 'crane' is ambiguous", "n03126707", "n02012849"]),
    (["--groups", "dog,terrier"], ["groups 'dog' and 'terrier' overlap: both hold 26 classes: 179-204"]),
    (["--group", "dgo"], ["no WordNet synset named 'dgo'", "did you mean dingo?"]),
    (["--group", "dog", "--model", "cats_dogs"], ["cats_dogs is already grouped"]),
    (["--groups", "dog,,cat"], ["empty part"]),
])
@pytest.mark.parametrize("command", ["image", "video", "frames", "compare", "evaluate"])
def test_bad_groups_are_one_line_usage_errors(command, args, needles, tmp_path):
    where = {"image": [CHELSEA], "compare": [CHELSEA], "video": [DEMO], "frames": [tmp_path],
             "evaluate": ["efficientnet_lite0", tmp_path, "-o", tmp_path / "report"]}[command]
    if command == "evaluate" and "--model" in args:
        where, args = ["cats_dogs", tmp_path, "-o", tmp_path / "report"], args[:2]
    one_line_usage_error(invoke(command, *where, *args), *needles)
    assert not list(tmp_path.iterdir())  # nothing written


def test_image_with_cats_dogs_and_with_groups(coffee, tmp_path):
    r = invoke("image", CHELSEA, DOG, coffee, "--model", "cats_dogs", "--json", "-o", tmp_path)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["predictions"][0]["label"] for row in rows] == ["cat", "dog", "other"]
    for row in rows:
        assert abs(sum(p["probability"] for p in row["predictions"]) - 1) < 1e-5  # all three groups: they add up
    assert (tmp_path / "dog_output.jpg").is_file()
    r = invoke("image", CHELSEA, DOG, "--group", "dog", "--group", "domestic_cat", "--no-output")
    assert r.exit_code == 0, r.output
    assert "1. domestic_cat" in r.stdout.split("dog.jpg")[0] and "1. dog " in r.stdout.split("dog.jpg")[1]


@pytest.mark.parametrize("start,label", [("1.0", "cat"), ("5.0", "dog")])
def test_the_demo_video_is_a_cat_then_a_dog(start, label, tmp_path):
    labels = tmp_path / "labels.csv"
    r = invoke("video", DEMO, "-o", tmp_path / "out.mp4", "--model", "cats_dogs", "--start", start,
               "--duration", "0.4", "--labels-out", labels, "--quiet")
    assert r.exit_code == 0, r.output
    with open(labels, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and {row["label"] for row in rows} == {label}, [row["label"] for row in rows]
    assert all(float(row["probability"]) > 0.5 for row in rows)


def test_frames_and_compare_take_groups(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(CHELSEA, frames / "a.png")
    shutil.copy(DOG, frames / "b.jpg")
    r = invoke("frames", frames, "-o", tmp_path / "res", "--groups", "cat=domestic_cat,dog", "--quiet")
    assert r.exit_code == 0, r.output
    with open(tmp_path / "res" / "labels.csv", newline="", encoding="utf-8") as f:
        assert [row["label"] for row in csv.DictReader(f)] == ["cat", "dog"]
    r = invoke("compare", DOG, "--group", "dog", "--methods", "gradcam,cam", "--no-output")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"{DOG}: dog 0.8") and "(class 0)" in r.stdout


def test_evaluate_cats_dogs_on_the_kaggle_layout(tmp_path, coffee):
    """Folders named cats/ and dogs/ are the groups cat and dog; the report has each class's recall."""
    data = tmp_path / "data" / "val"
    for folder, photo in (("cats", CHELSEA), ("Dogs", DOG)):
        (data / folder).mkdir(parents=True)
        img = cv2.imread(str(photo))
        cv2.imwrite(str(data / folder / "a.png"), img)
        cv2.imwrite(str(data / folder / "b.png"), cv2.flip(img, 1))
    r = invoke("evaluate", "cats_dogs", tmp_path / "data", "-o", tmp_path / "report", "--json")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["accuracy"] == 1.0 and m["classes"] == ["cat", "dog"]
    assert m["per_class"]["cat"]["recall"] == 1.0 and m["per_class"]["dog"]["support"] == 2
    (data / "Dogs" / "c.png").write_bytes(coffee.read_bytes())  # a coffee in dogs/: "other", wrong
    r = invoke("evaluate", "efficientnet_lite0", tmp_path / "data", "-o", tmp_path / "report2",
               "--groups", "cat=domestic_cat,dog")
    assert r.exit_code == 0, r.output
    assert "5 images, accuracy 0.800" in r.stdout and "recall 0.667  (3 images)" in r.stdout
