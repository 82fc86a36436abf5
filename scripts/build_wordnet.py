#!/usr/bin/env python3
"""Build vidcam/data/imagenet_wordnet.json.gz: every ImageNet class's WordNet ancestors, from WordNet 3.0 itself.

Run once, offline, when the data file has to be made again (the generated file is committed; vidcam and its tests
never need WordNet installed). The source is Debian's ``wordnet-base`` package (WordNet 3.0, Princeton's database
files): ``apt-get install wordnet-base`` puts ``data.noun`` in ``/usr/share/wordnet``. An ImageNet wnid is WordNet
3.0's noun synset offset with an ``n`` before it (``n02084071`` is ``02084071`` in ``data.noun``: dog.n.01).

Each class's ancestors are every synset reached by following hypernym pointers (``@``, and ``@i`` for instances)
up from the class's own synset, over all paths (WordNet's noun hierarchy is a graph: a dog is both a canine and a
domestic animal). The file keeps only those synsets, with their lemmas and the first clause of their gloss::

    {"source": ..., "licence": ...,
     "synsets": [["n00001740", ["entity"], "that which is perceived ..."], ...],   # sorted by id
     "classes": [[i, j, ...], ...],   # per class index: indices into "synsets", the class's own synset first
     "senses": {"cat": [[i, 1], [j, 0]], ...}}

``senses`` is for the names (lemmas, lower case) that several of those synsets share: the synsets in WordNet's
sense order (``index.noun``: the most frequent sense first), each with 1 when WordNet counts it as a tagged
sense (one seen in its sense-tagged corpus), else 0. vidcam resolves such a name to its only tagged synset, and
calls the name ambiguous otherwise.

Usage: ``.venv/bin/python scripts/build_wordnet.py [--wordnet DIR] [-o OUTPUT]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INDEX = ROOT / "vidcam" / "data" / "imagenet_class_index.json"
OUTPUT = ROOT / "vidcam" / "data" / "imagenet_wordnet.json.gz"
LICENCE = ("WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. Used under the WordNet 3.0 "
           "licence (https://wordnet.princeton.edu/license-and-commercial-use); THIS SOFTWARE AND DATABASE IS PROVIDED "
           "\"AS IS\" AND PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED.")


def read_nouns(path: Path) -> dict[str, tuple[list[str], list[str], str]]:
    """``data.noun`` -> offset -> (lemmas, hypernym offsets, gloss). See wndb(5WN) for the line format."""
    synsets = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):  # the licence header
                continue
            data, _, gloss = line.partition(" | ")
            fields = data.split()
            offset, n_words = fields[0], int(fields[3], 16)
            lemmas = [fields[4 + 2 * i] for i in range(n_words)]
            pos = 4 + 2 * n_words
            n_ptrs = int(fields[pos])
            hypernyms = []
            for p in range(n_ptrs):
                symbol, target, target_pos = fields[pos + 1 + 4 * p : pos + 4 + 4 * p]
                if symbol in ("@", "@i") and target_pos == "n":
                    hypernyms.append(target)
            # lemmas carry an adjective marker in parentheses for a few adjectives only; nouns have none
            synsets[offset] = (lemmas, hypernyms, gloss.strip())
    return synsets


def read_senses(path: Path) -> dict[str, tuple[list[str], int]]:
    """``index.noun`` -> lemma -> (synset offsets in sense order, how many of the first ones are tagged senses)."""
    senses = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):
                continue
            fields = line.split()
            lemma, synset_cnt, p_cnt = fields[0], int(fields[2]), int(fields[3])
            tagged = int(fields[5 + p_cnt])
            senses[lemma] = (fields[6 + p_cnt : 6 + p_cnt + synset_cnt], tagged)
    return senses


def shared_names(ids: list[str], nouns: dict, senses: dict) -> dict[str, list[list[int]]]:
    """The lemmas that more than one of ``ids`` has: [[index into ids, tagged], ...] in WordNet's sense order."""
    pos = {s: i for i, s in enumerate(ids)}
    names = sorted({lemma.lower() for s in ids for lemma in nouns[s][0]})
    out = {}
    for name in names:
        order, tagged = senses[name]
        hits = [[pos[s], int(rank < tagged)] for rank, s in enumerate(order) if s in pos]
        if len(hits) > 1:
            out[name] = hits
    return out


def short_gloss(gloss: str) -> str:
    """The definition's first clause, without the examples (``"..."``), at most 90 characters."""
    text = gloss.split(";")[0].strip().strip('"').strip()
    return text if len(text) <= 90 else text[:87].rstrip() + "..."


def ancestors(offset: str, nouns: dict) -> list[str]:
    """The synset itself, then every hypernym reachable from it, breadth first, each once."""
    out, queue, seen = [], [offset], {offset}
    while queue:
        cur = queue.pop(0)
        out.append(cur)
        for parent in nouns[cur][1]:
            if parent not in seen:
                seen.add(parent)
                queue.append(parent)
    return out


def build(wordnet: Path) -> dict:
    nouns = read_nouns(wordnet / "data.noun")
    senses = read_senses(wordnet / "index.noun")
    index = json.loads(INDEX.read_text(encoding="utf-8"))
    wnids = [index[str(i)][0] for i in range(len(index))]
    missing = [w for w in wnids if w[1:] not in nouns]
    if missing:
        sys.exit(f"{len(missing)} ImageNet wnids are not WordNet 3.0 noun synsets here: {', '.join(missing[:5])}")
    chains = [ancestors(w[1:], nouns) for w in wnids]
    ids = sorted({s for chain in chains for s in chain})
    pos = {s: i for i, s in enumerate(ids)}
    return {
        "source": f"WordNet 3.0 noun hierarchy (Debian package wordnet-base, {wordnet / 'data.noun'}); "
                  "built by scripts/build_wordnet.py",
        "licence": LICENCE,
        "synsets": [["n" + s, nouns[s][0], short_gloss(nouns[s][2])] for s in ids],
        "classes": [[pos[s] for s in chain] for chain in chains],
        "senses": shared_names(ids, nouns, senses),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"),
                        help="folder with WordNet 3.0's data.noun (default: Debian wordnet-base's)")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    if not (args.wordnet / "data.noun").is_file():
        sys.exit(f"{args.wordnet / 'data.noun'} not found: apt-get install wordnet-base, or pass --wordnet DIR")
    data = build(args.wordnet)
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    # mtime=0: the same input gives the same bytes
    args.output.write_bytes(gzip.compress(text, compresslevel=9, mtime=0))
    print(f"{args.output}: {len(data['synsets'])} synsets over {len(data['classes'])} classes, "
          f"{args.output.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
