"""The translation task behind the Trainer's task seam: token batches, label-smoothed cross-entropy, beam search and
BLEU (translation.md 3).

- Loss: label-smoothed cross-entropy summed over the non-pad target tokens and divided by their count (fairseq
  normalises the gradient by target tokens). `translation.smoothing_form=current`: (1 - eps - eps/(V-1)) NLL +
  eps/(V-1) sum_k -log p_k (fairseq since 2020); `fairseq2018`: (1 - eps) NLL + eps/V sum_k -log p_k.
- Generation: beam search as fairseq's SequenceGenerator: each step the 2 x beam best extensions; EOS is finalised
  only from the first `beam` of them, a sentence is done with `beam` finished hypotheses; score = sum log p /
  len^lenpen (len with EOS); pad banned, EOS banned before `min_len` = 1 token, forced at max length =
  a x (padded source length) + b. With beam 1 this is greedy decoding (`greedy_decode`, tested equal).
- BLEU, each labelled: `bleu_tok` = corpus BLEU-4 without smoothing on the whitespace tokens of the lowercased,
  tokenised text after BPE removal (the tokenized BLEU fairseq-generate prints and the papers quote, computed with
  sacreBLEU tokenize=none); `bleu_sacre` = sacreBLEU's default (13a, exp smoothing) on Moses-detokenised text
  (fairseq's --eval-bleu). Unknown words never match: <unk> is written differently in hypotheses and references.
- metrics.csv gets, per epoch and per `translation.eval_splits` split (valid, test): `loss` (label-smoothed, per
  token, teacher-forced), `bleu_sacre`, `bleu_tok`; training: `loss` and `error` (token error, %).
- The summary's BLEU is the test BLEU of the epoch with the best valid `bleu_sacre` (fairseq selects its best
  checkpoint on --eval-bleu); evaluating every epoch's test split gives exactly the best-valid checkpoint's.

Ours: fused seeds, torch.compile, λ1 measurements, mixup and the probe are refused for translation (variable-length
batches are not fused); a run's batches are device-resident, their order drawn per epoch from the run's generator;
the checkpoint keeps that generator and the global RNG dropout draws from, so a resumed run continues exactly.
Decoding is incremental, as fairseq's: each step runs the decoder on the new token only, with the earlier steps'
self-attention keys and values cached (reordered with the beams) and the encoder's computed once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from initbench.config import parse_warmup, seeds_of
from initbench.data.translation import (
    EOS, PAD, TRANSLATION_DATASETS, Split, TokenBatch, TokenBatcher, TokenSampler, TranslationData,
    batch_by_size, check_budget, eval_batches, ordered_indices, remove_bpe,
)
from initbench.errors import ConfigError, choice_error
from initbench.inits import InitContext
from initbench.train.replicas import Replicas

SMOOTHING_FORMS = ("current", "fairseq2018")
EVAL_SPLITS = ("valid", "test")
HYP_UNK, REF_UNK = "UNKNOWNTOKENINHYP", "UNKNOWNTOKENINREF"


def check_task(cfg: DictConfig) -> None:
    """Translation data needs the Transformer and vice versa; settings translation does not support are refused."""
    translation = cfg.dataset.name in TRANSLATION_DATASETS
    transformer = cfg.model.arch == "transformer"
    if translation != transformer:
        raise ConfigError(
            f"model.arch={cfg.model.arch} cannot train on dataset={cfg.dataset.name}: the Transformer "
            f"(model=transformer_postln|transformer_preln) is for the translation datasets "
            f"({', '.join(TRANSLATION_DATASETS)}), the image nets for the image datasets. Try "
            "+experiment=smoke_translation or +experiment=iwslt14_postln.")
    if not translation:
        return
    refused = {
        "fused seeds (seed=[...])": len(seeds_of(cfg.seed)) > 1,
        f"compile={cfg.compile}": cfg.compile is not False,
        "measure.hessian_every": cfg.measure.hessian_every is not None,
        "train.mixup_alpha": bool(cfg.train.mixup_alpha),
        "data.loader=torch": cfg.data.loader == "torch",
        "task=probe": cfg.task == "probe",
    }
    unsupported = [name for name, on in refused.items() if on]
    if unsupported:
        raise ConfigError(f"{', '.join(unsupported)}: not supported for translation, whose batches vary in length. "
                          "Launch seeds as separate jobs (python -m initbench -m ... seed=0,1,2) and leave these "
                          "settings at their defaults.")
    t = cfg.translation
    if t.smoothing_form not in SMOOTHING_FORMS:
        raise choice_error("translation.smoothing_form", t.smoothing_form, SMOOTHING_FORMS)
    if t.max_tokens < 1 or t.eval_max_tokens < 1 or t.beam < 1:
        raise ConfigError("translation.max_tokens, translation.eval_max_tokens and translation.beam must be >= 1 "
                          "(the reference: 4096 tokens, beam 5).")
    if not 0 <= t.label_smoothing < 1 or t.max_len_a < 0 or t.max_len_b < 0 or not math.isfinite(t.lenpen):
        raise ConfigError("translation.label_smoothing must be in [0, 1), translation.max_len_a and max_len_b >= 0 "
                          "and translation.lenpen finite (the reference: 0.1, 1.2, 10, 1).")
    if not t.eval_splits or any(split not in EVAL_SPLITS for split in t.eval_splits):
        raise ConfigError(f"translation.eval_splits={list(t.eval_splits)}: give valid and/or test, e.g. "
                          "'translation.eval_splits=[valid,test]'.")


def steps_per_epoch(data: TranslationData, max_tokens: int, seed: int) -> int:
    split = data.splits["train"]
    return len(batch_by_size(ordered_indices(split, torch.Generator().manual_seed(seed)), split.sizes(), max_tokens))


def check_data(cfg: DictConfig, data: TranslationData, seed: int) -> None:
    """Checks that need the data, before anything is written: the token budgets, the warmup against training."""
    check_budget(data, cfg.translation.max_tokens)
    check_budget(data, cfg.translation.eval_max_tokens, "translation.eval_max_tokens")
    per_epoch = steps_per_epoch(data, cfg.translation.max_tokens, seed)
    total = per_epoch * int(cfg.epochs)
    if parse_warmup(cfg.warmup, cfg.warmup_shape).total_steps(per_epoch) >= total:
        raise ConfigError(f"warmup={cfg.warmup} is not shorter than training: {cfg.epochs} epoch(s) x {per_epoch} "
                          f"batches of <= {cfg.translation.max_tokens} tokens = {total} steps. Shorten the warmup or "
                          "train longer.")


def label_smoothed_loss(logits: torch.Tensor, target: torch.Tensor, epsilon: float,
                        form: str = "current") -> torch.Tensor:
    """The summed label-smoothed cross-entropy over the non-pad target tokens (fp32)."""
    lprobs = F.log_softmax(logits.float(), dim=-1)
    keep = target.ne(PAD)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    smooth = -lprobs.sum(dim=-1)
    vocab = lprobs.shape[-1]
    if form == "fairseq2018":
        loss = (1 - epsilon) * nll + epsilon / vocab * smooth
    else:
        share = epsilon / (vocab - 1)
        loss = (1 - epsilon - share) * nll + share * smooth
    return (loss * keep).sum()


def _step_log_probs(model: nn.Module, tokens: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor, step: int,
                    max_len: int, min_len: int, cache: list[dict]) -> torch.Tensor:
    """Log-probabilities of the next token after the prefixes `tokens` [N, step + 1], with the length rules."""
    logits = model.decode_step(tokens[:, -1], step, memory, mask, cache)
    lprobs = F.log_softmax(logits.float(), dim=-1)
    lprobs[:, PAD] = -math.inf
    if step >= max_len:  # only EOS is left
        eos = lprobs[:, EOS].clone()
        lprobs.fill_(-math.inf)
        lprobs[:, EOS] = eos
    if step < min_len:
        lprobs[:, EOS] = -math.inf
    return lprobs


def _max_len(source: torch.Tensor, max_len_a: float, max_len_b: int, model: nn.Module) -> int:
    return min(int(max_len_a * source.shape[1] + max_len_b), model.positions.shape[0] - PAD - 2)


@torch.no_grad()
def greedy_decode(model: nn.Module, source: torch.Tensor, max_len_a: float, max_len_b: int,
                  min_len: int = 1) -> list[list[int]]:
    """Argmax decoding with beam search's length rules; each hypothesis ends with EOS."""
    max_len = _max_len(source, max_len_a, max_len_b, model)
    memory, mask = model.encode(source)
    tokens = torch.full((len(source), 1), EOS, dtype=torch.long, device=source.device)
    cache = [{} for _ in model.decoder_layers]
    for step in range(max_len + 1):
        next_tokens = _step_log_probs(model, tokens, memory, mask, step, max_len, min_len, cache).argmax(dim=-1)
        tokens = torch.cat([tokens, next_tokens[:, None]], dim=1)
        if bool(tokens[:, 1:].eq(EOS).any(dim=1).all()):
            break
    result = []
    for row in tokens[:, 1:].tolist():
        result.append(row[: row.index(EOS) + 1])
    return result


@torch.no_grad()
def beam_search(model: nn.Module, source: torch.Tensor, beam: int, lenpen: float, max_len_a: float, max_len_b: int,
                min_len: int = 1) -> list[list[int]]:
    """The best finished hypothesis (token ids ending with EOS) per source sentence (module docstring)."""
    batch = len(source)
    max_len = _max_len(source, max_len_a, max_len_b, model)
    memory, mask = model.encode(source)
    memory, mask = memory.repeat_interleave(beam, 0), mask.repeat_interleave(beam, 0)
    device = source.device
    tokens = torch.full((batch * beam, 1), EOS, dtype=torch.long, device=device)
    scores = torch.full((batch, beam), -math.inf, device=device)
    scores[:, 0] = 0  # one live beam at the start: no duplicate hypotheses
    scores = scores.view(-1)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    positions = torch.arange(2 * beam, device=device)
    cache = [{} for _ in model.decoder_layers]
    for step in range(max_len + 1):
        lprobs = _step_log_probs(model, tokens, memory, mask, step, max_len, min_len, cache)
        vocab = lprobs.shape[-1]
        candidates = (scores[:, None] + lprobs).view(batch, beam * vocab)
        top_scores, top_index = candidates.topk(2 * beam, dim=1)
        top_beams, top_tokens = top_index // vocab, top_index % vocab
        host_scores, host_tokens, host_beams = top_scores.tolist(), top_tokens.tolist(), top_beams.tolist()
        for b in range(batch):
            if done[b]:
                continue
            for j in range(beam):
                if host_tokens[b][j] == EOS and math.isfinite(host_scores[b][j]) and len(finished[b]) < beam:
                    prefix = tokens[b * beam + host_beams[b][j], 1:].tolist()
                    finished[b].append((host_scores[b][j] / (step + 1) ** lenpen, prefix + [EOS]))
            done[b] = len(finished[b]) >= beam or step >= max_len
        if all(done):
            break
        # The next beams: the first `beam` candidates that do not end the sentence.
        rank = top_tokens.eq(EOS).long() * (2 * beam) + positions
        chosen = rank.argsort(dim=1)[:, :beam]
        rows = (torch.arange(batch, device=device)[:, None] * beam + top_beams.gather(1, chosen)).view(-1)
        tokens = torch.cat([tokens[rows], top_tokens.gather(1, chosen).view(-1, 1)], dim=1)
        scores = top_scores.gather(1, chosen).view(-1)
        for layer in cache:  # each beam continues from its parent's keys and values (the encoder's are shared)
            layer["self"]["k"], layer["self"]["v"] = layer["self"]["k"][rows], layer["self"]["v"][rows]
    return [max(hyps, key=lambda item: item[0])[1] for hyps in finished]


def bleu_scores(hypotheses: list[str], references: list[str], detokenize: Callable[[str], str]) -> dict[str, float]:
    """`bleu_tok` and `bleu_sacre` (module docstring) of tokenised, BPE-free hypotheses and references."""
    import sacrebleu

    tokenized = sacrebleu.corpus_bleu(hypotheses, [references], tokenize="none", smooth_method="none", force=True)
    detok = sacrebleu.corpus_bleu([detokenize(h) for h in hypotheses], [[detokenize(r) for r in references]])
    return {"bleu_tok": tokenized.score, "bleu_sacre": detok.score}


def translation_init_context(cfg: DictConfig, seed: int, data: TranslationData, device: torch.device,
                             autocast: Callable[[], AbstractContextManager] = nullcontext) -> InitContext:
    """What the inits get for a Transformer: token batches (`init.batch_size` is a token budget) and the training
    loss of several batches together (summed label-smoothed CE over their target tokens). In fp32 by default
    (`autocast`): GradInit's fairseq code casts the model to fp32 for its search (gradinit_metainit.md 1)."""
    epsilon, form = cfg.translation.label_smoothing, cfg.translation.smoothing_form

    def objective(call: Callable[..., torch.Tensor], batches: list[TokenBatch]) -> torch.Tensor:
        total = sum(batch.ntokens for batch in batches)
        loss = 0.0
        for batch in batches:
            with autocast():
                logits = call(batch.source, batch.prev_output)
            loss = loss + label_smoothed_loss(logits, batch.target, epsilon, form)
        return loss / total

    return InitContext(model_cfg=cfg.model, norm=cfg.norm, sampler=TokenSampler(data.splits["train"], seed, device),
                       seed=seed, num_classes=data.vocab_sizes[1], device=device, autocast=autocast,
                       objective=objective)


class TranslationTask:
    """One run's training batches, losses and evaluation behind the Trainer's task seam (fused seeds are refused by
    check_task, so the Replicas the loop hands over hold one plain model, `replicas.template`)."""

    def __init__(self, cfg: DictConfig, seed: int, generator: torch.Generator, data: TranslationData,
                 device: torch.device, autocast: AbstractContextManager):
        self.cfg, self.data, self.device, self.autocast = cfg.translation, data, device, autocast
        self.batcher = TokenBatcher(data.splits["train"], cfg.translation.max_tokens, seed, generator, device)
        self.steps_per_epoch = self.batcher.steps_per_epoch
        self.references = {split: [self._text(target.tolist(), REF_UNK) for target in data.splits[split].target]
                           for split in self.cfg.eval_splits}

    def _text(self, ids: list[int], unk: str) -> str:
        line = self.data.target_vocab.decode(ids, unk)
        return remove_bpe(line) if self.data.bpe else line

    def epoch(self) -> Iterator[TokenBatch]:
        return self.batcher.epoch()

    def losses(self, replicas: Replicas, batch: TokenBatch, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The loss to minimise [1] (per target token), correct next-token predictions [1], target tokens."""
        model = replicas.template
        with self.autocast:
            logits = model(batch.source, batch.prev_output)
        loss = label_smoothed_loss(logits, batch.target, self.cfg.label_smoothing, self.cfg.smoothing_form)
        hits = (logits.detach().argmax(dim=-1).eq(batch.target) & batch.target.ne(PAD)).sum().float()
        return (loss / batch.ntokens).unsqueeze(0), hits.unsqueeze(0), batch.ntokens

    @torch.no_grad()
    def evaluate_split(self, model: nn.Module, split_name: str) -> dict[str, float]:
        split: Split = self.data.splits[split_name]
        loss_sum, tokens = torch.zeros((), device=self.device), 0
        hypotheses = [""] * len(split)
        for batch in eval_batches(split, self.cfg.eval_max_tokens, self.device):
            with self.autocast:
                logits = model(batch.source, batch.prev_output)
                best = beam_search(model, batch.source, self.cfg.beam, self.cfg.lenpen, self.cfg.max_len_a,
                                   self.cfg.max_len_b)
            loss_sum += label_smoothed_loss(logits, batch.target, self.cfg.label_smoothing, self.cfg.smoothing_form)
            tokens += batch.ntokens
            for index, ids in zip(batch.indices, best):
                hypotheses[index] = self._text(ids, HYP_UNK)
        return {"loss": loss_sum.item() / tokens,
                **bleu_scores(hypotheses, self.references[split_name], self.data.detokenize)}

    def evaluate(self, replicas: Replicas, runs: list) -> None:
        replicas.train(False)
        for run in runs:
            if run.diverged:
                continue
            for split in self.cfg.eval_splits:
                for metric, value in self.evaluate_split(replicas.template, split).items():
                    run.record(split, metric, value)

    def state_dict(self, run: int) -> dict:
        """The batch order's generator and the global RNG that dropout draws from, so that a resumed run
        continues exactly as an uninterrupted one."""
        state = {**self.batcher.state_dict(), "torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, run: int, state: dict) -> None:
        self.batcher.load_state_dict(state)
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)


BLEU_SUMMARY = ("best_valid_bleu_sacre", "best_valid_epoch", "test_bleu_sacre", "test_bleu_tok")


def bleu_summary(rows: list[dict]) -> dict[str, float]:
    """The summary's BLEU: the test BLEU at the epoch of the best valid bleu_sacre (NaN without valid BLEU)."""
    valid = [(r["value"], -r["epoch"]) for r in rows if r["split"] == "valid" and r["metric"] == "bleu_sacre"
             and not math.isnan(r["value"])]
    if not valid:
        return {name: math.nan for name in BLEU_SUMMARY}
    best, negative_epoch = max(valid)
    epoch = -negative_epoch  # the first epoch reaching the best value

    def test(metric: str) -> float:
        return next((r["value"] for r in rows if r["split"] == "test" and r["metric"] == metric
                     and r["epoch"] == epoch), math.nan)

    return {"best_valid_bleu_sacre": best, "best_valid_epoch": epoch, "test_bleu_sacre": test("bleu_sacre"),
            "test_bleu_tok": test("bleu_tok")}
