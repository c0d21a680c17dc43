"""Decoding and scoring for translation: greedy decoding, beam search and corpus BLEU.

- Beam search as fairseq's SequenceGenerator (facebookresearch/fairseq@3d262bb fairseq/sequence_generator.py): each
  step the 2 x beam best extensions; EOS is finalised only from the first `beam` of them, a sentence is done with
  `beam` finished hypotheses; score = sum log p / len^lenpen (len with EOS); pad banned, EOS banned before `min_len`
  = 1 token, forced at max length = a x (padded source length) + b. With beam 1 this is greedy decoding
  (`greedy_decode`, tested equal). Decoding is incremental, as fairseq's: each step runs the decoder on the new
  token only, with the earlier steps' self-attention keys and values cached (reordered with the beams) and the
  encoder's computed once.
- BLEU, each labelled: `bleu_tok` = corpus BLEU-4 without smoothing on the whitespace tokens of the lowercased,
  tokenised text after BPE removal (the tokenized BLEU fairseq-generate prints and the papers quote, computed with
  sacreBLEU tokenize=none); `bleu_sacre` = sacreBLEU's default (13a, exp smoothing) on Moses-detokenised text
  (fairseq's --eval-bleu). Unknown words never match: <unk> is written differently in hypotheses and references.
- A run's summary BLEU (`bleu_summary`) is the test BLEU of the epoch with the best valid `bleu_sacre` (fairseq
  selects its best checkpoint on --eval-bleu); evaluating every epoch's test split gives exactly the best-valid
  checkpoint's.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from initbench.data.translation import EOS, PAD

HYP_UNK, REF_UNK = "UNKNOWNTOKENINHYP", "UNKNOWNTOKENINREF"


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
