"""IWSLT'14 preparation and the translation loader and batches, against docs/iwslt14.md: the real
scripts/prepare_iwslt14.py on a tiny release in the raw files' own formats, the real loader on its output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from initbench.data import load_dataset
from initbench.data.translation import (
    EOS, PAD, TokenBatcher, Vocabulary, batch_by_size, check_budget, collate, ordered_indices, remove_bpe,
)
from initbench.errors import ConfigError, DataError
from tests.translation_fixtures import TITLE_WORD, write_raw_release

ROOT = Path(__file__).resolve().parent.parent
SPLITS = ("train", "valid", "test")


def prepare(raw: Path, out: Path, bpe_size: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_iwslt14.py"), "--raw", str(raw), "--out",
                           str(out), "--bpe-size", str(bpe_size)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("iwslt")
    release = write_raw_release(root)
    done = prepare(release["archive"], root / "prepared")
    assert done.returncode == 0, done.stderr
    return root / "prepared", release


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_preparation_writes_the_standard_splits(prepared):
    out, release = prepared
    for name in ("code", "dict.de.txt", "dict.en.txt", *(f"{s}.{lang}" for s in SPLITS for lang in ("de", "en")),
                 *(f"tok/{s}.{lang}" for s in SPLITS for lang in ("de", "en"))):
        assert (out / name).is_file(), name
    counts = {split: len(lines(out / f"{split}.de")) for split in SPLITS}
    assert counts == {split: len(lines(out / f"{split}.en")) for split in SPLITS}  # aligned languages
    clean = release["clean"]
    assert counts["valid"] == clean // 23 and counts["train"] == clean - clean // 23  # every 23rd cleaned pair
    assert counts["test"] == len(release["test"]["de"])  # every <seg> of the five test files, no filter
    tokenized = {(s, lang): lines(out / "tok" / f"{s}.{lang}") for s in SPLITS for lang in ("de", "en")}
    everything = [line for text in tokenized.values() for line in text]
    assert all(line == line.lower() for line in everything)
    assert not any(tag in line for line in everything for tag in ("<url>", "<talkid>", "<keywords>", "<title>",
                                                                  "<seg", "\u2019"))
    assert any(TITLE_WORD.lower() in line for s in ("train", "valid") for line in tokenized[s, "de"])  # text kept
    assert any("&apos;" in line for line in tokenized["test", "en"])  # Moses escaping, ’ mapped to '
    for de, en in zip(tokenized["train", "de"], tokenized["train", "en"]):
        n_de, n_en = len(de.split()), len(en.split())
        assert 1 <= n_de <= 175 and 1 <= n_en <= 175 and max(n_de, n_en) / min(n_de, n_en) <= 1.5


def test_bpe_round_trips_to_the_tokenized_text(prepared):
    out, _ = prepared
    segmented = 0
    for split in SPLITS:
        for lang in ("de", "en"):
            for bpe, tok in zip(lines(out / f"{split}.{lang}"), lines(out / "tok" / f"{split}.{lang}")):
                assert remove_bpe(bpe) == tok
                tokens = bpe.split()
                assert not tokens or not tokens[-1].endswith("@@")  # a continuation is always followed
                segmented += sum(t.endswith("@@") for t in tokens)
    assert segmented > 0  # the merges really split words
    assert len(lines(out / "code")) > 1  # the codes file: a version line, then merges


def test_the_loader_reads_the_prepared_folder(prepared):
    out, _ = prepared
    cfg = OmegaConf.create({"name": "iwslt14_de_en", "root": str(out.parent / "prepared"), "joined_dictionary": False})
    data = load_dataset(cfg)
    for split in SPLITS:
        assert len(data.splits[split]) == len(lines(out / f"{split}.de"))
        assert all(s[-1] == EOS and t[-1] == EOS for s, t in zip(data.splits[split].source,
                                                                 data.splits[split].target))
    source_size, target_size = data.vocab_sizes
    assert source_size % 8 == 0 and target_size % 8 == 0
    assert data.source_vocab.symbols != data.target_vocab.symbols  # two dictionaries, as fairseq-preprocess
    first = lines(out / "train.en")[0]
    assert data.target_vocab.decode(data.splits["train"].target[0].tolist()) == first


def test_half_prepared_or_damaged_data_is_refused(prepared, tmp_path):
    out, _ = prepared
    cfg = OmegaConf.create({"name": "iwslt14_de_en", "root": str(tmp_path), "joined_dictionary": False})
    with pytest.raises(DataError, match="is not prepared.*prepare_iwslt14.py"):
        load_dataset(cfg)
    (tmp_path / "code").write_text((out / "code").read_text())  # BPE codes without the text
    with pytest.raises(DataError, match="half-prepared.*train.de.*prepare_iwslt14.py"):
        load_dataset(cfg)
    for split in SPLITS:
        for lang in ("de", "en"):
            (tmp_path / f"{split}.{lang}").write_text((out / f"{split}.{lang}").read_text())
    (tmp_path / "valid.en").write_text("\n".join(lines(out / "valid.en")[:-1]) + "\nextra line\nanother\n")
    with pytest.raises(DataError, match="valid.de has .* lines but valid.en has"):
        load_dataset(cfg)


def test_a_bad_raw_release_is_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    done = prepare(tmp_path / "empty", tmp_path / "out")
    assert done.returncode == 2 and "train.tags.de-en.de" in done.stderr and "--raw" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def toy_split(lengths: list[tuple[int, int]]):
    from initbench.data.translation import Split

    ids = lambda n: torch.tensor([5] * (n - 1) + [EOS])  # noqa: E731
    return Split([ids(s) for s, _ in lengths], [ids(t) for _, t in lengths])


def test_every_batch_respects_the_token_budget():
    generator = torch.Generator().manual_seed(0)
    lengths = [(int(a), int(b)) for a, b in torch.randint(1, 40, (300, 2), generator=generator)]
    split = toy_split(lengths)
    sizes = split.sizes()
    for budget in (40, 64, 257, 1000):
        batches = batch_by_size(ordered_indices(split, torch.Generator().manual_seed(1)), sizes, budget)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # every pair exactly once
        for batch in batches:
            assert len(batch) * max(sizes[i] for i in batch) <= budget
    batcher = TokenBatcher(split, 200, 0, torch.Generator().manual_seed(3), torch.device("cpu"))
    orders = [[b.indices[0] for b in batcher.epoch()] for _ in range(2)]
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1])  # reshuffled each epoch
    with pytest.raises(ConfigError, match="max_tokens=30 is smaller than the longest"):
        check_budget(type("D", (), {"splits": {"train": split}, "name": "toy"})(), 30)


def test_padding_and_the_shifted_decoder_input():
    split = toy_split([(3, 5), (6, 2)])
    batch = collate(split, [0, 1])
    assert batch.source[0].tolist() == [PAD, PAD, PAD, 5, 5, EOS]  # source left-padded
    assert batch.target[1].tolist() == [5, EOS, PAD, PAD, PAD]  # target right-padded
    assert batch.prev_output[1].tolist() == [EOS, 5, PAD, PAD, PAD]  # EOS + target[:-1]
    assert batch.prev_output[0].tolist() == [EOS] + batch.target[0, :-1].tolist()
    assert batch.ntokens == 7


def test_dictionary_order_is_fairseqs():
    vocab = Vocabulary(["b a a", "c b a"])
    assert vocab.symbols[:7] == ["<s>", "<pad>", "</s>", "<unk>", "a", "b", "c"] and len(vocab) == 8


def test_a_run_on_the_prepared_data_writes_bleu_rows(prepared, tmp_path):
    """The real CLI on the prepared folder: BPE removal and Moses detokenisation on the scoring path."""
    import pandas as pd

    from tests.conftest import run_cli

    out, _ = prepared
    done = run_cli(["+experiment=iwslt14_postln", f"dataset.root={out}", "model.depth=1", "model.decoder_depth=1",
                    "model.embed_dim=16", "model.ffn_dim=32", "model.heads=2", "epochs=1", "warmup=1st",
                    "translation.max_tokens=256", "translation.beam=2", "progress=false"], tmp_path,
                   env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    folder = next((tmp_path / "results" / "runs").iterdir())
    metrics = pd.read_csv(folder / "metrics.csv")
    bleu = metrics[metrics.metric.str.startswith("bleu")]
    assert len(bleu) == 4 and bleu.value.between(0, 100).all()
    summary = pd.read_csv(folder / "summary.csv").iloc[0]
    assert summary.dataset == "iwslt14_de_en" and summary.best_valid_epoch == 1
