"""Translation data: dictionaries, sentence pairs as token ids, and token-budget batches.

Follows fairseq's protocol (docs/iwslt14.md; facebookresearch/fairseq@3d262bb fairseq/data/dictionary.py,
fairseq/data/data_utils.py batch_by_size, fairseq/data/language_pair_dataset.py):
- a `Vocabulary` per language as fairseq-preprocess builds it: <s>=0, <pad>=1, </s>=2, <unk>=3, then the training
  text's types by descending count (ties alphabetical, as fairseq's finalize), threshold 0, the size padded to a
  multiple of 8 with filler types. `dataset.joined_dictionary=true` builds one dictionary from both sides (ours:
  needed to share all embeddings, model.share_embeddings=all; the reference keeps two);
- every sentence ends with EOS; a pair's size is max(source, target) tokens, EOS included;
- batches: pairs sorted by source length (ties by target length, then by a permutation drawn once from the run's
  seed), packed while sentences x longest <= max_tokens, cut to multiples of 8 where possible (fairseq's
  batch_by_size); the composition is fixed, the order of the batches is drawn every epoch from the run's generator;
- source left-padded, target right-padded, decoder input = EOS + target[:-1].

`dataset=iwslt14_de_en` reads the text files `scripts/prepare_iwslt14.py` writes; `dataset=synthetic_translation`
generates a learnable task (ours): each source word maps to one target word and neighbouring pairs swap places.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from initbench.data.sampler import SEED_OFFSET
from initbench.errors import ConfigError, DataError

BOS, PAD, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
PAD_MULTIPLE = 8
SPLITS = ("train", "valid", "test")
IWSLT_LANGS = ("de", "en")
BPE_CODES_FILE = "code"
_SYNTHETIC_SEED = 20210208


class Vocabulary:
    """Token strings <-> ids, fairseq-style (see the module docstring)."""

    def __init__(self, lines: list[str]):
        counts = collections.Counter(token for line in lines for token in line.split())
        types = [t for t, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if t not in SPECIALS]
        self.symbols = list(SPECIALS) + types
        filler = 0
        while len(self.symbols) % PAD_MULTIPLE:
            self.symbols.append(f"madeupword{filler:04d}")
            filler += 1
        self.index = {symbol: i for i, symbol in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, line: str) -> torch.Tensor:
        """Token ids of a whitespace-tokenised line, EOS appended (unknown types -> <unk>)."""
        ids = [self.index.get(token, UNK) for token in line.split()]
        return torch.tensor(ids + [EOS], dtype=torch.int64)

    def decode(self, ids: list[int], unk: str = "<unk>") -> str:
        """The text of ids (EOS, pad and BOS dropped), <unk> written as `unk`."""
        return " ".join(unk if i == UNK else self.symbols[i] for i in ids if i not in (BOS, PAD, EOS))


def remove_bpe(line: str) -> str:
    """fairseq's --remove-bpe for the "@@ " separator (facebookresearch/fairseq@3d262bb fairseq/data/data_utils.py)."""
    return (line + " ").replace("@@ ", "").rstrip()


@dataclass(frozen=True)
class Split:
    source: list[torch.Tensor]  # token ids, EOS last
    target: list[torch.Tensor]

    def __len__(self) -> int:
        return len(self.source)

    def sizes(self) -> np.ndarray:
        return np.array([max(len(s), len(t)) for s, t in zip(self.source, self.target)], dtype=np.int64)


@dataclass(frozen=True)
class TranslationData:
    name: str
    source_vocab: Vocabulary
    target_vocab: Vocabulary
    splits: dict[str, Split]
    bpe: bool  # the text is BPE-segmented ("@@ "): removed before scoring
    detokenize: Callable[[str], str]  # tokenised target text -> plain text for sacreBLEU

    @property
    def vocab_sizes(self) -> tuple[int, int]:
        return len(self.source_vocab), len(self.target_vocab)

    def train_tokens(self) -> int:
        return int(self.splits["train"].sizes().sum())


# ------------------------------------------------------------------------------------------------- loading
def _read_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle]


def prepared_dir(cfg: DictConfig) -> Path:
    root = Path(cfg.root).expanduser()
    prepared = (root / "train.de").exists() or (root / BPE_CODES_FILE).exists()
    return root if prepared else root / "iwslt14.tokenized.de-en"


PREPARE_HINT = ("Prepare it with `python scripts/prepare_iwslt14.py --out {out}` (downloads the IWSLT'14 release when "
                "online; --raw <de-en.tgz or folder> uses a local copy), or point dataset.root at the prepared folder.")


def load_iwslt14(cfg: DictConfig) -> TranslationData:
    """The prepared IWSLT'14 De-En files: {train,valid,test}.{de,en} (BPE'd, lowercased, Moses-tokenised)."""
    folder = prepared_dir(cfg)
    files = {(split, lang): folder / f"{split}.{lang}" for split in SPLITS for lang in IWSLT_LANGS}
    missing = [path.name for path in files.values() if not path.is_file()]
    if missing:
        state = "is half-prepared" if len(missing) < len(files) or (folder / BPE_CODES_FILE).exists() else \
            "is not prepared"
        raise DataError(f"IWSLT'14 De-En in {folder} {state}: {', '.join(sorted(missing))} missing. "
                        + PREPARE_HINT.format(out=folder))
    text = {key: _read_lines(path) for key, path in files.items()}
    for split in SPLITS:
        de, en = len(text[split, "de"]), len(text[split, "en"])
        if de != en:
            raise DataError(f"IWSLT'14 De-En in {folder}: {split}.de has {de} lines but {split}.en has {en}; the two "
                            "sides must be line-aligned. The folder is damaged: prepare it again. "
                            + PREPARE_HINT.format(out=folder))
        if de == 0:
            raise DataError(f"IWSLT'14 De-En in {folder}: {split}.de and {split}.en are empty. "
                            + PREPARE_HINT.format(out=folder))
    source_vocab, target_vocab = _vocabularies(text["train", "de"], text["train", "en"], cfg.joined_dictionary)
    splits = {split: Split([source_vocab.encode(line) for line in text[split, "de"]],
                           [target_vocab.encode(line) for line in text[split, "en"]]) for split in SPLITS}
    return TranslationData(cfg.name, source_vocab, target_vocab, splits, bpe=True, detokenize=_moses_detokenizer())


def _vocabularies(source: list[str], target: list[str], joined: bool) -> tuple[Vocabulary, Vocabulary]:
    if joined:
        shared = Vocabulary(source + target)
        return shared, shared
    return Vocabulary(source), Vocabulary(target)


def _moses_detokenizer() -> Callable[[str], str]:
    """English Moses detokenisation (fairseq --eval-bleu-detok moses); sacremoses is imported only here."""
    from sacremoses import MosesDetokenizer

    detokenizer = MosesDetokenizer(lang="en")
    return lambda line: detokenizer.detokenize(line.split())


def _synthetic_pairs(rng: np.random.Generator, count: int, words: int, lengths: tuple[int, int],
                     mapping: np.ndarray) -> tuple[list[str], list[str]]:
    sources, targets = [], []
    for _ in range(count):
        ids = rng.integers(0, words, int(rng.integers(lengths[0], lengths[1] + 1)))
        mapped = mapping[ids]
        swapped = mapped.copy()
        swapped[: len(ids) // 2 * 2] = mapped[: len(ids) // 2 * 2].reshape(-1, 2)[:, ::-1].reshape(-1)
        sources.append(" ".join(f"s{i}" for i in ids))
        targets.append(" ".join(f"t{i}" for i in swapped))
    return sources, targets


def load_synthetic_translation(cfg: DictConfig) -> TranslationData:
    """A deterministic task (ours): source words s0..s{V-1}, target word t{π(i)} for s{i} with a fixed permutation π,
    and each neighbouring pair of words swapped (local reordering). Generated from a fixed seed, so every run sees
    the same data; valid and test have `test_size` pairs each, train `train_size`."""
    words = cfg.vocab_size or 32
    if not 1 <= cfg.min_length <= cfg.max_length:
        raise ConfigError(f"dataset.min_length={cfg.min_length} and dataset.max_length={cfg.max_length}: need "
                          "1 <= min_length <= max_length.")
    rng = np.random.default_rng(_SYNTHETIC_SEED)
    mapping = rng.permutation(words)
    sizes = {"train": cfg.train_size or 4000, "valid": cfg.test_size or 200, "test": cfg.test_size or 200}
    text = {split: _synthetic_pairs(rng, count, words, (cfg.min_length, cfg.max_length), mapping)
            for split, count in sizes.items()}
    source_vocab, target_vocab = _vocabularies(*text["train"], cfg.joined_dictionary)
    splits = {split: Split([source_vocab.encode(line) for line in src], [target_vocab.encode(line) for line in tgt])
              for split, (src, tgt) in text.items()}
    return TranslationData(cfg.name, source_vocab, target_vocab, splits, bpe=False, detokenize=lambda line: line)


TRANSLATION_DATASETS: dict[str, Callable[[DictConfig], TranslationData]] = {
    "iwslt14_de_en": load_iwslt14,
    "synthetic_translation": load_synthetic_translation,
}


# ------------------------------------------------------------------------------------------------- batches
@dataclass
class TokenBatch:
    source: torch.Tensor  # [B, S] left-padded, EOS last
    prev_output: torch.Tensor  # [B, T] EOS + target[:-1], right-padded
    target: torch.Tensor  # [B, T] right-padded
    ntokens: int  # non-pad target tokens (known on the host: no device read)
    indices: list[int]  # the pairs' positions in their split

    def to(self, device: torch.device) -> TokenBatch:
        return TokenBatch(self.source.to(device, non_blocking=True), self.prev_output.to(device, non_blocking=True),
                          self.target.to(device, non_blocking=True), self.ntokens, self.indices)


def collate(split: Split, indices: list[int]) -> TokenBatch:
    sources = [split.source[i] for i in indices]
    targets = [split.target[i] for i in indices]
    source = torch.full((len(indices), max(len(s) for s in sources)), PAD, dtype=torch.int64)
    target = torch.full((len(indices), max(len(t) for t in targets)), PAD, dtype=torch.int64)
    prev = target.clone()
    for row, (s, t) in enumerate(zip(sources, targets)):
        source[row, source.shape[1] - len(s):] = s
        target[row, : len(t)] = t
        prev[row, 0] = EOS
        prev[row, 1 : len(t)] = t[:-1]
    return TokenBatch(source, prev, target, sum(len(t) for t in targets), list(indices))


def ordered_indices(split: Split, generator: torch.Generator | None) -> list[int]:
    """Sorted by source length, ties by target length, remaining ties by a permutation from `generator`
    (fairseq's ordered_indices; in file order without a generator)."""
    order = np.arange(len(split))
    if generator is not None:
        order = torch.randperm(len(split), generator=generator).numpy()
    target_len = np.array([len(t) for t in split.target])[order]
    order = order[np.argsort(target_len, kind="stable")]
    source_len = np.array([len(s) for s in split.source])[order]
    return order[np.argsort(source_len, kind="stable")].tolist()


def batch_by_size(indices: list[int], sizes: np.ndarray, max_tokens: int,
                  multiple: int = PAD_MULTIPLE) -> list[list[int]]:
    """Consecutive pairs while sentences x longest <= max_tokens, cut at a multiple of `multiple` sentences where
    possible (fairseq data_utils.batch_by_size). A pair longer than the budget is the caller's error."""
    batches, batch, longest_lengths = [], [], []
    for index in indices:
        longest_lengths.append(int(sizes[index]))
        longest = max(longest_lengths)
        if batch and (len(batch) + 1) * longest > max_tokens:
            cut = max(multiple * (len(batch) // multiple), len(batch) % multiple)
            batches.append(batch[:cut])
            batch, longest_lengths = batch[cut:], longest_lengths[cut:]
        batch.append(index)
    if batch:
        batches.append(batch)
    return batches


def check_budget(data: TranslationData, max_tokens: int, key: str = "translation.max_tokens") -> None:
    """A budget smaller than the longest pair would leave that pair in no batch: an error, before training."""
    for name, split in data.splits.items():
        longest = int(split.sizes().max())
        if longest > max_tokens:
            raise ConfigError(f"{key}={max_tokens} is smaller than the longest sentence pair of {data.name}'s {name} "
                              f"split ({longest} tokens with EOS), so that pair fits in no batch. Raise {key} to at "
                              f"least {longest} (the reference uses 4096).")


class TokenBatcher:
    """The training batches of one run: fixed composition, order drawn each epoch from the run's generator."""

    def __init__(self, split: Split, max_tokens: int, seed: int, generator: torch.Generator, device: torch.device):
        composition = torch.Generator().manual_seed(seed)
        self.batches = [collate(split, b).to(device)
                        for b in batch_by_size(ordered_indices(split, composition), split.sizes(), max_tokens)]
        self.generator = generator

    @property
    def steps_per_epoch(self) -> int:
        return len(self.batches)

    def epoch(self) -> Iterator[TokenBatch]:
        order = torch.randperm(len(self.batches), generator=self.generator, device=self.generator.device).tolist()
        for index in order:
            yield self.batches[index]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def eval_batches(split: Split, max_tokens: int, device: torch.device) -> Iterator[TokenBatch]:
    """A split in length order (no shuffling), in budgeted batches."""
    for indices in batch_by_size(ordered_indices(split, None), split.sizes(), max_tokens):
        yield collate(split, indices).to(device)


class TokenSampler:
    """Token batches for the learned inits (GradInit): the training split shuffled pass by pass from a generator of
    their own (seed + SEED_OFFSET, as data/sampler.py's), each call taking the next pairs while sentences x longest
    stays within `count` tokens. `size` is the split's token count (GradInit's pass check)."""

    def __init__(self, split: Split, seed: int, device: torch.device, offset: int = SEED_OFFSET):
        self.split, self.device = split, device
        self.sizes = split.sizes()
        self.generator = torch.Generator().manual_seed(offset + seed)
        self.order, self.position = [], 0

    @property
    def size(self) -> int:
        return int(self.sizes.sum())

    def __call__(self, count: int) -> TokenBatch:
        picked, longest = [], 0
        while True:
            if self.position >= len(self.order):
                if picked:
                    break
                self.order, self.position = torch.randperm(len(self.split), generator=self.generator).tolist(), 0
            index = self.order[self.position]
            longest_next = max(longest, int(self.sizes[index]))
            if picked and (len(picked) + 1) * longest_next > count:
                break
            picked.append(index)
            longest = longest_next
            self.position += 1
        return collate(self.split, picked).to(self.device)
