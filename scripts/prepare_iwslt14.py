"""Prepare IWSLT'14 German-English exactly as fairseq's examples/translation/prepare-iwslt14.sh does
(facebookresearch/fairseq@3d262bb; docs/iwslt14.md), without fairseq or Perl: sacremoses for the Moses tokenizer,
subword-nmt for the joint BPE.

    python scripts/prepare_iwslt14.py --out data/iwslt14.tokenized.de-en                 # downloads de-en.tgz
    python scripts/prepare_iwslt14.py --raw ~/Downloads/de-en.tgz --out data/iwslt14.tokenized.de-en

Steps (the shell script's, in its order):
1. train.tags.de-en.{de,en}: lines with <url>, <talkid> or <keywords> dropped; the tags <title>, </title>,
   <description>, </description> deleted, their text kept; Moses-tokenised (default options: HTML escaping on, no
   aggressive hyphen splitting);
2. clean-corpus-n -ratio 1.5, 1..175 tokens on the tokenised, still-cased pairs (whitespace collapsed, '|' removed;
   a pair goes when a side is empty, outside 1..175 tokens, has a word over 1000 characters or a length ratio above
   1.5 either way), then lowercased;
3. valid = the cleaned lines whose 1-based number is divisible by 23, train = the rest;
4. every IWSLT14.TED*.{de,en}.xml: the "<seg id" lines, seg tags stripped, ’ mapped to ', tokenised, lowercased;
   test = TED.dev2010, TEDX.dev2012, TED.tst2010, TED.tst2011, TED.tst2012 in this order;
5. joint BPE: subword-nmt learn_bpe with `--bpe-size` merges (10,000) on train.de + train.en, applied to every split.

Written to --out: {train,valid,test}.{de,en} (BPE, what dataset=iwslt14_de_en reads), `code` (the BPE merges),
dict.{de,en}.txt (fairseq's "type count" dictionaries of the BPE'd training text) and tok/ (the same splits before
BPE, to inspect). The tool versions the papers used are unconfirmed (no source states them).
"""

from __future__ import annotations

import argparse
import collections
import io
import re
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

URL = "https://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"
LANGS = ("de", "en")
TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011",
             "IWSLT14.TED.tst2012")
DROP = ("<url>", "<talkid>", "<keywords>")
KEEP_TEXT_TAGS = ("<title>", "</title>", "<description>", "</description>")
MAX_LEN, MIN_LEN, RATIO, MAX_WORD = 175, 1, 1.5, 1000
VALID_EVERY = 23


class PrepareError(Exception):
    """A problem with the raw release or the output folder; the message says what to do."""


def find_raw(raw: Path, work: Path) -> Path:
    """The folder holding train.tags.de-en.de: `raw` itself, its de-en/ subfolder, or the archive unpacked."""
    if raw.is_file():
        try:
            with tarfile.open(raw) as archive:
                archive.extractall(work, filter="data")
        except (tarfile.TarError, OSError) as err:
            raise PrepareError(f"{raw} is not a readable IWSLT'14 archive ({err}). Download {URL} again.") from None
        raw = work
    for folder in (raw, raw / "de-en", *sorted(raw.glob("*/de-en"))):
        if (folder / "train.tags.de-en.de").is_file():
            return folder
    raise PrepareError(f"{raw} holds no train.tags.de-en.de: give --raw the de-en.tgz release ({URL}) or the "
                       "folder it unpacks to.")


def download(work: Path) -> Path:
    target = work / "de-en.tgz"
    try:
        with urllib.request.urlopen(URL, timeout=60) as response, open(target, "wb") as handle:
            handle.write(response.read())
    except OSError as err:
        raise PrepareError(f"Could not download {URL} ({err}). Download it elsewhere and pass --raw "
                           "<path to de-en.tgz>.") from None
    return target


def read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise PrepareError(f"{path.name} is missing from the raw release in {path.parent}: the release is "
                           f"incomplete; download {URL} again.")
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle]


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)


class Tokenizers:
    def __init__(self) -> None:
        from sacremoses import MosesTokenizer

        self.moses = {lang: MosesTokenizer(lang=lang) for lang in LANGS}

    def __call__(self, line: str, lang: str) -> str:
        """tokenizer.perl -l LANG with its defaults (escaping on, no -a)."""
        return self.moses[lang].tokenize(line, escape=True, return_str=True, aggressive_dash_splits=False)


def train_text(lines: list[str]) -> list[str]:
    kept = [line for line in lines if not any(tag in line for tag in DROP)]
    for tag in KEEP_TEXT_TAGS:
        kept = [line.replace(tag, "") for line in kept]
    return kept


def clean_pairs(source: list[str], target: list[str]) -> list[tuple[str, str]]:
    """clean-corpus-n.perl -ratio 1.5 ... 1 175."""
    kept = []
    for pair in zip(source, target):
        sides = [re.sub(r"\s+", " ", side.replace("|", "")).strip() for side in pair]
        words = [side.split(" ") if side else [] for side in sides]
        counts = [len(w) for w in words]
        if min(counts) < MIN_LEN or max(counts) > MAX_LEN:
            continue
        if counts[0] / counts[1] > RATIO or counts[1] / counts[0] > RATIO:
            continue
        if any(len(word) > MAX_WORD for side in words for word in side):
            continue
        kept.append((sides[0], sides[1]))
    return kept


def segments(lines: list[str]) -> list[str]:
    """The <seg id> lines of an IWSLT xml file, without their tags, ’ as '."""
    out = []
    for line in lines:
        if "<seg id" not in line:
            continue
        line = re.sub(r'<seg id="[0-9]*">\s*', "", line)
        line = re.sub(r"\s*</seg>\s*", "", line)
        out.append(line.replace("\u2019", "'"))
    return out


def dictionary(lines: list[str]) -> list[str]:
    counts = collections.Counter(token for line in lines for token in line.split())
    return [f"{token} {count}" for token, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def prepare(raw_folder: Path, out: Path, bpe_size: int) -> dict[str, int]:
    from subword_nmt.apply_bpe import BPE
    from subword_nmt.learn_bpe import learn_bpe

    tokenize = Tokenizers()
    train = {lang: [tokenize(line, lang) for line in train_text(read_lines(raw_folder / f"train.tags.de-en.{lang}"))]
             for lang in LANGS}
    if len(train["de"]) != len(train["en"]):
        raise PrepareError(f"train.tags.de-en.de and .en in {raw_folder} keep {len(train['de'])} and "
                           f"{len(train['en'])} lines after the tag filter: the release is damaged; download it again.")
    cleaned = [(de.lower(), en.lower()) for de, en in clean_pairs(train["de"], train["en"])]
    tok = {("valid", lang): [] for lang in LANGS} | {("train", lang): [] for lang in LANGS}
    for number, pair in enumerate(cleaned, start=1):
        split = "valid" if number % VALID_EVERY == 0 else "train"
        for lang, line in zip(LANGS, pair):
            tok[split, lang].append(line)
    for lang in LANGS:
        tok["test", lang] = []
        for name in TEST_SETS:
            lines = segments(read_lines(raw_folder / f"{name}.de-en.{lang}.xml"))
            tok["test", lang] += [tokenize(line, lang).lower() for line in lines]
    for split in ("train", "valid", "test"):
        if len(tok[split, "de"]) != len(tok[split, "en"]):
            raise PrepareError(f"the {split} split has {len(tok[split, 'de'])} German and {len(tok[split, 'en'])} "
                               "English lines: the release's xml files are damaged; download it again.")
        if not tok[split, "de"]:
            raise PrepareError(f"the {split} split is empty: the release in {raw_folder} has too little text.")
    for (split, lang), lines in tok.items():
        write_lines(out / "tok" / f"{split}.{lang}", lines)

    codes = out / "code"
    joint = io.StringIO("".join(line + "\n" for lang in LANGS for line in tok["train", lang]))
    with open(codes, "w", encoding="utf-8") as handle:
        learn_bpe(joint, handle, bpe_size)
    with open(codes, encoding="utf-8") as handle:
        bpe = BPE(handle)
    for (split, lang), lines in tok.items():
        write_lines(out / f"{split}.{lang}", [bpe.process_line(line) for line in lines])
    for lang in LANGS:
        write_lines(out / f"dict.{lang}.txt", dictionary([bpe.process_line(line) for line in tok["train", lang]]))
    return {split: len(tok[split, "de"]) for split in ("train", "valid", "test")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", type=Path, help="de-en.tgz or the folder it unpacks to (default: download it)")
    parser.add_argument("--out", type=Path, default=Path("data/iwslt14.tokenized.de-en"))
    parser.add_argument("--bpe-size", type=int, default=10000, help="BPE merges (10,000 in the reference)")
    args = parser.parse_args(argv)
    try:
        if args.bpe_size < 1:
            raise PrepareError(f"--bpe-size {args.bpe_size}: give a positive number of merges (10000).")
        if args.out.exists() and not args.out.is_dir():
            raise PrepareError(f"--out {args.out} is a file; give a folder.")
        with tempfile.TemporaryDirectory() as work:
            raw = args.raw if args.raw is not None else download(Path(work))
            if not raw.exists():
                raise PrepareError(f"--raw {raw} does not exist. Give de-en.tgz ({URL}) or the folder it unpacks to.")
            counts = prepare(find_raw(raw, Path(work)), args.out, args.bpe_size)
    except PrepareError as err:
        print(f"prepare_iwslt14: {err}", file=sys.stderr)
        return 2
    print(f"prepared {args.out}: " + ", ".join(f"{split} {count} pairs" for split, count in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
