"""A tiny IWSLT'14 De-En release in the raw files' own formats (train.tags.de-en.{de,en} with their tag lines,
IWSLT14.TED*.de-en.{de,en}.xml with <seg id> lines), packed as de-en.tgz like the real archive."""

from __future__ import annotations

import random
import tarfile
from pathlib import Path

TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011",
             "IWSLT14.TED.tst2012")
GERMAN = "das haus ist groß und der hund läuft schnell über die straße weil es regnet heute morgen".split()
ENGLISH = "the house is big and the dog runs fast across the street because it rains this morning".split()
TITLE_WORD = "Titelwort"  # only in a <title> line: its text is kept as a sentence


ENDINGS = [(".", "."), ("?", "?"), (', "sagt" er.', ', "says" he.'), (" & mehr's.", " & more's.")]


def _sentence(rng: random.Random, words: list[str], length: int, ending: str = ".") -> str:
    text = " ".join(rng.choice(words) for _ in range(length))
    return text[0].upper() + text[1:] + ending


def write_raw_release(root: Path, pairs: int = 70, seed: int = 0) -> dict:
    """de-en.tgz under `root`; returns what the test must expect: the number of sentence pairs that survive
    the cleaning (`clean`) and the segments of every test file (`test`)."""
    rng = random.Random(seed)
    folder = root / "release" / "de-en"
    folder.mkdir(parents=True)
    de, en = [], []
    header = [("<url>http://www.ted.com/talks/x.html</url>",) * 2, ("<keywords>talks, dogs</keywords>",) * 2,
              ("<talkid>1</talkid>",) * 2,
              (f"<title>{TITLE_WORD}: Hunde</title>", f"<title>{TITLE_WORD}: dogs</title>"),
              ("<description>TED Talk: ein Hund</description>", "<description>TED Talk: a dog</description>")]
    for d, e in header:
        de.append(d)
        en.append(e)
    clean = 2  # the title and description lines are sentences that pass the cleaning
    for index in range(pairs):
        length = rng.randint(3, 12)
        if index % 10 == 3:  # a ratio above 1.5: dropped by the cleaning
            de.append(_sentence(rng, GERMAN, length) + " " + " ".join(["noch"] * 20))
            en.append("Yes.")
        elif index % 10 == 7:  # an empty side: dropped
            de.append(_sentence(rng, GERMAN, length))
            en.append("")
        else:  # as many tokens on both sides: kept
            de_end, en_end = rng.choice(ENDINGS)
            de.append(_sentence(rng, GERMAN, length, de_end))
            en.append(_sentence(rng, ENGLISH, length, en_end))
            clean += 1
    (folder / "train.tags.de-en.de").write_text("\n".join(de) + "\n", encoding="utf-8")
    (folder / "train.tags.de-en.en").write_text("\n".join(en) + "\n", encoding="utf-8")
    test = {}
    for number, name in enumerate(TEST_SETS):
        count = 2 + number
        for lang, words in (("de", GERMAN), ("en", ENGLISH)):
            segs = [_sentence(rng, words, rng.randint(2, 8)) + " it\u2019s" for _ in range(count)]
            lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<mteval>",
                     f'<srcset setid="{name}" srclang="{lang}">', '<doc docid="1" genre="lectures">',
                     "<url>http://www.ted.com/talks/y.html</url>", "<talkid>2</talkid>",
                     *(f'<seg id="{i + 1}"> {seg} </seg>' for i, seg in enumerate(segs)), "</doc>", "</srcset>",
                     "</mteval>"]
            (folder / f"{name}.de-en.{lang}.xml").write_text("\n".join(lines) + "\n", encoding="utf-8")
            test.setdefault(lang, []).extend(segs)
    archive = root / "de-en.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="de-en")
    return {"archive": archive, "clean": clean, "test": test}
