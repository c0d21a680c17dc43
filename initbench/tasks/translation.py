"""Translation: token batches, label-smoothed cross-entropy, beam search and BLEU (initbench/tasks/decoding.py).

- Loss: label-smoothed cross-entropy summed over the non-pad target tokens and divided by their count (fairseq
  normalises the gradient by target tokens). `translation.smoothing_form=current`: (1 - eps - eps/(V-1)) NLL +
  eps/(V-1) sum_k -log p_k (fairseq since 2020); `fairseq2018`: (1 - eps) NLL + eps/V sum_k -log p_k
  (facebookresearch/fairseq@3d262bb fairseq/criterions/label_smoothed_cross_entropy.py; the 2018 form at
  facebookresearch/fairseq@5d00e8e fairseq/criterions/label_smoothed_cross_entropy.py).
- metrics.csv gets, per epoch and per `translation.eval_splits` split (valid, test): `loss` (label-smoothed, per
  token, teacher-forced), `bleu_sacre`, `bleu_tok`; training: `loss` and `error` (token error, %). The summary adds
  the BLEU of the epoch with the best valid `bleu_sacre`.

Ours: one run per job, in one process (variable-length batches are not fused), without torch.compile, λ1
measurements, mixup or the probe (the task declares no optional feature); a run's batches are device-resident, their
order drawn per epoch from the run's generator; the checkpoint keeps that generator and the global RNG dropout draws
from, so a resumed run continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from initbench.config.values import Seeds, Warmup
from initbench.data.translation import (
    PAD, Split, TokenBatch, TokenBatcher, TokenSampler, TranslationData, batch_by_size, check_budget, eval_batches,
    ordered_indices, remove_bpe,
)
from initbench.errors import ConfigError, choice_error
from initbench.inits import InitContext
from initbench.models import build_model
from initbench.models.replicas import Replicas
from initbench.tasks.base import Task
from initbench.tasks.decoding import HYP_UNK, REF_UNK, beam_search, bleu_scores, bleu_summary

SMOOTHING_FORMS = ("current", "fairseq2018")
EVAL_SPLITS = ("valid", "test")


def steps_per_epoch(data: TranslationData, max_tokens: int, seed: int) -> int:
    split = data.splits["train"]
    return len(batch_by_size(ordered_indices(split, torch.Generator().manual_seed(seed)), split.sizes(), max_tokens))


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


def translation_init_context(cfg: DictConfig, seed: int, data: TranslationData, device: torch.device,
                             autocast: Callable[[], AbstractContextManager] = nullcontext) -> InitContext:
    """What the inits get for a Transformer: token batches (`init.batch_size` is a token budget) and the training
    loss of several batches together (summed label-smoothed CE over their target tokens). In fp32 by default
    (`autocast`): GradInit's fairseq code casts the model to fp32 for its search (zhuchen03/gradinit@777c407
    fairseq/gradinit/utils/gradinit_utils.py)."""
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


class TranslationTask(Task):
    """One run's token batches, losses and evaluation (fused seeds are refused, so the Replicas the loop hands over
    hold one plain model, `replicas.template`)."""

    name = "translation"
    features = frozenset()
    unsupported_because = "which trains one run per job, in one process, on token batches of varying length"

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        t = cfg.translation
        if t.smoothing_form not in SMOOTHING_FORMS:
            raise choice_error("translation.smoothing_form", t.smoothing_form, SMOOTHING_FORMS)
        if t.max_tokens < 1 or t.eval_max_tokens < 1 or t.beam < 1:
            raise ConfigError("translation.max_tokens, translation.eval_max_tokens and translation.beam must be >= 1 "
                              "(the reference: 4096 tokens, beam 5).")
        if not 0 <= t.label_smoothing < 1 or t.max_len_a < 0 or t.max_len_b < 0 or not math.isfinite(t.lenpen):
            raise ConfigError("translation.label_smoothing must be in [0, 1), translation.max_len_a and max_len_b "
                              ">= 0 and translation.lenpen finite (the reference: 0.1, 1.2, 10, 1).")
        if not t.eval_splits or any(split not in EVAL_SPLITS for split in t.eval_splits):
            raise ConfigError(f"translation.eval_splits={list(t.eval_splits)}: give valid and/or test, e.g. "
                              "'translation.eval_splits=[valid,test]'.")

    # ----------------------------------------------------------------------------- before training
    def check_data(self, seeds: Seeds, warmup: Warmup) -> None:
        """The token budgets against the longest pair, the warmup against training (before an init search that
        could take long)."""
        cfg, data = self.cfg, self.data
        check_budget(data, cfg.translation.max_tokens)
        check_budget(data, cfg.translation.eval_max_tokens, "translation.eval_max_tokens")
        per_epoch = steps_per_epoch(data, cfg.translation.max_tokens, seeds.values[0])
        total = per_epoch * int(cfg.epochs)
        if warmup.total_steps(per_epoch) >= total:
            raise ConfigError(f"warmup={cfg.warmup} is not shorter than training: {cfg.epochs} epoch(s) x "
                              f"{per_epoch} batches of <= {cfg.translation.max_tokens} tokens = {total} steps. "
                              "Shorten the warmup or train longer.")

    def new_model(self) -> nn.Module:
        return build_model(self.cfg.model, self.cfg.norm, self.data.vocab_sizes)

    def init_context(self, seed: int) -> InitContext:
        return translation_init_context(self.cfg, seed, self.data, self.device)

    # ----------------------------------------------------------------------------- training
    def start(self, seeds: list[int], generators: list[torch.Generator]) -> None:
        t = self.cfg.translation
        self.batcher = TokenBatcher(self.data.splits["train"], t.max_tokens, seeds[0], generators[0], self.device)
        self.steps_per_epoch = self.batcher.steps_per_epoch
        self.references = {split: [self._text(target.tolist(), REF_UNK) for target in self.data.splits[split].target]
                           for split in t.eval_splits}

    def _text(self, ids: list[int], unk: str) -> str:
        line = self.data.target_vocab.decode(ids, unk)
        return remove_bpe(line) if self.data.bpe else line

    def epoch(self) -> Iterator[TokenBatch]:
        return self.batcher.epoch()

    def losses(self, replicas: Replicas, batch: TokenBatch, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The loss to minimise [1] (per target token), correct next-token predictions [1], target tokens."""
        t, model = self.cfg.translation, replicas.template
        with self.autocast:
            logits = model(batch.source, batch.prev_output)
        loss = label_smoothed_loss(logits, batch.target, t.label_smoothing, t.smoothing_form)
        hits = (logits.detach().argmax(dim=-1).eq(batch.target) & batch.target.ne(PAD)).sum().float()
        return (loss / batch.ntokens).unsqueeze(0), hits.unsqueeze(0), batch.ntokens

    @torch.no_grad()
    def evaluate_split(self, model: nn.Module, split_name: str) -> dict[str, float]:
        t = self.cfg.translation
        split: Split = self.data.splits[split_name]
        loss_sum, tokens = torch.zeros((), device=self.device), 0
        hypotheses = [""] * len(split)
        for batch in eval_batches(split, t.eval_max_tokens, self.device):
            with self.autocast:
                logits = model(batch.source, batch.prev_output)
                best = beam_search(model, batch.source, t.beam, t.lenpen, t.max_len_a, t.max_len_b)
            loss_sum += label_smoothed_loss(logits, batch.target, t.label_smoothing, t.smoothing_form)
            tokens += batch.ntokens
            for index, ids in zip(batch.indices, best):
                hypotheses[index] = self._text(ids, HYP_UNK)
        return {"loss": loss_sum.item() / tokens,
                **bleu_scores(hypotheses, self.references[split_name], self.data.detokenize)}

    def evaluate(self, replicas: Replicas, alive: list[bool]) -> list[dict[tuple[str, str], float]]:
        replicas.train(False)
        return [{(split, metric): value for split in self.cfg.translation.eval_splits
                 for metric, value in self.evaluate_split(replicas.template, split).items()} if live else {}
                for live in alive]

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

    @classmethod
    def summary(cls, rows: list[dict]) -> dict[str, float]:
        return bleu_summary(rows)
