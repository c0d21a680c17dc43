"""Encoder-decoder Transformer of fairseq's `transformer_iwslt_de_en` (docs/iwslt14.md), Post-LN or Pre-LN, and
Fixup's `transformer_zero` variant (hongyi-zhang/Fixup@f3fa449 fairseq/fairseq/models/transformer_zero.py).

- Sizes are config fields: `model.depth` encoder layers, `model.decoder_depth`, `embed_dim` 512, `ffn_dim` 1024
  (ReLU), `heads` 4 (queries scaled by head_dim^-1/2); `dropout`, `attention_dropout`, `relu_dropout`.
- `model.layout=post_ln`: every sublayer is LN(x + dropout(f(x))), no final LN on the stacks; `pre_ln`:
  x + dropout(f(LN(x))) and one final LN per stack. No LN on the embeddings.
- Input = sqrt(d) * token embedding + sinusoid, then dropout. Sinusoid: the first non-pad token has position
  pad + 1 = 2, vector [sin(p w_i) | cos(p w_i)], w_i = exp(-i ln(10000) / (d/2 - 1)); pad positions 0.
- `model.share_embeddings`: `decoder` (the decoder input embedding is the output projection: the current README
  and GradInit), `none` (2018 README, Fixup's run.sh: a separate output matrix), `all` (ours: also the encoder's,
  which needs one joined dictionary).
- `norm=none` with `model.branch_scalars=fixup` is transformer_zero: no LayerNorm anywhere, no biases in attention
  and FFN, a scalar shift (subtracted) at every branch input, after fc1 (before the ReLU) and before fc2, a scalar
  multiplier after every branch's dropout, a shift and a multiplier on the encoder output ((x - shift) * gain, an
  order of ours: both are neutral at init) and a shift on the decoder output. The scalars are named `*_shift` /
  `*_gain`, so Fixup's CIFAR rule "bias|scale at lr/10" (configs/init/fixup.yaml) matches none of them: the
  Transformer code trains every parameter at one LR (hongyi-zhang/Fixup@f3fa449 fairseq/run.sh).
- The model initialises itself as the reference does (`reference_init`, docs/iwslt14.md): era `current`
  (fairseq since 2020, GradInit's fork) or `2018` (facebookresearch/fairseq@5d00e8e, Fixup's baseline).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError, choice_error

PAD, EOS = 1, 2
LAYOUTS = ("post_ln", "pre_ln")
SHARING = ("decoder", "all", "none")
NORMS = ("layernorm", "none")
ERAS = ("current", "2018")


def check(cfg: DictConfig, norm: str) -> None:
    if cfg.layout not in LAYOUTS:
        raise choice_error("model.layout", cfg.layout, LAYOUTS)
    if norm not in NORMS:
        raise ConfigError(f"norm={norm} is not defined for the Transformer: norm=layernorm (Post-LN / Pre-LN by "
                          "model.layout) or norm=none (no LayerNorm; with model.branch_scalars=fixup, Fixup's "
                          "transformer_zero). An init that sets another norm (wn_arpit, wn_datadep, wn_hanin: "
                          "weightnorm) does not define the Transformer either: use "
                          "init=default|xavier|fixup|gradinit_fairseq.")
    if cfg.share_embeddings not in SHARING:
        raise choice_error("model.share_embeddings", cfg.share_embeddings, SHARING)
    if cfg.branch_scalars not in ("none", "fixup"):
        raise choice_error("model.branch_scalars", cfg.branch_scalars, ("none", "fixup"))
    if cfg.branch_scalars == "fixup" and norm != "none":
        raise ConfigError("model.branch_scalars=fixup is Fixup's transformer_zero, which has no LayerNorm: use "
                          "norm=none (init=fixup sets both).")
    for key in ("depth", "decoder_depth", "embed_dim", "ffn_dim", "heads", "max_positions"):
        if cfg[key] < 1:
            raise ConfigError(f"model.{key}={cfg[key]} must be >= 1.")
    if cfg.embed_dim % cfg.heads:
        raise ConfigError(f"model.embed_dim={cfg.embed_dim} must be divisible by model.heads={cfg.heads}.")
    if cfg.embed_dim % 2:
        raise ConfigError(f"model.embed_dim={cfg.embed_dim} must be even (sin | cos position halves).")
    for key in ("dropout", "attention_dropout", "relu_dropout"):
        if not 0 <= cfg[key] < 1:
            raise ConfigError(f"model.{key}={cfg[key]} must be in [0, 1).")


def sinusoids(positions: int, dim: int) -> torch.Tensor:
    """[positions, dim] table: row p = [sin(p w) | cos(p w)], w_i = exp(-i ln 10000 / (dim/2 - 1)); row PAD = 0."""
    half = dim // 2
    rates = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / max(half - 1, 1)))
    angles = torch.arange(positions, dtype=torch.float32)[:, None] * rates[None]
    table = torch.cat([angles.sin(), angles.cos()], dim=1)
    table[PAD] = 0
    return table


class Scalar(nn.Module):
    """One learned scalar (Fixup's shift or gain)."""

    def __init__(self, value: float):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(value)))


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v projections (fairseq since 2020; the 2018 stacked in_proj is the same
    map, and its init is reproduced over the stacked shape). With a `cache` (a dict, incremental decoding) the keys
    and values of earlier steps are kept and extended (self-attention), or computed once (`static_memory`: the
    encoder output of the encoder-decoder attention)."""

    def __init__(self, dim: int, heads: int, dropout: float, bias: bool, static_memory: bool = False):
        super().__init__()
        self.heads, self.static_memory = heads, static_memory
        self.attention_dropout = nn.Dropout(dropout)  # a module, so modes that switch dropout off see it
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim, bias=bias) for _ in range(4))

    def forward(self, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None,
                cache: dict | None = None) -> torch.Tensor:
        """query [B, T, d], memory [B, S, d], mask [B or 1, 1, T or 1, S] bool (True = attend)."""
        batch, length, dim = query.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, self.heads, dim // self.heads).transpose(1, 2)

        if cache is not None and self.static_memory and "k" in cache:
            keys, values = cache["k"], cache["v"]
        else:
            keys, values = split(self.k_proj(memory)), split(self.v_proj(memory))
            if cache is not None:
                if "k" in cache:  # self-attention: the earlier steps' keys and values, then this step's
                    keys, values = torch.cat([cache["k"], keys], dim=2), torch.cat([cache["v"], values], dim=2)
                cache["k"], cache["v"] = keys, values
        dropout = self.attention_dropout.p if self.attention_dropout.training else 0.0
        out = F.scaled_dot_product_attention(split(self.q_proj(query)), keys, values, attn_mask=mask,
                                             dropout_p=dropout)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, relu_dropout: float, bias: bool, fixup: bool):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden, bias=bias), nn.Linear(hidden, dim, bias=bias)
        self.relu_dropout = nn.Dropout(relu_dropout)
        self.fixup = fixup
        if fixup:
            self.relu_shift, self.fc2_shift = Scalar(0.0), Scalar(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if self.fixup:
            h = h - self.relu_shift.value
        h = self.relu_dropout(F.relu(h))
        if self.fixup:
            h = h - self.fc2_shift.value
        return self.fc2(h)


class Sublayer(nn.Module):
    """One residual branch with its LayerNorm placement (post / pre) or Fixup's scalars."""

    def __init__(self, cfg: DictConfig, norm: str, branch: nn.Module):
        super().__init__()
        self.branch, self.post = branch, cfg.layout == "post_ln"
        self.norm = nn.LayerNorm(cfg.embed_dim) if norm == "layernorm" else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.fixup = cfg.branch_scalars == "fixup"
        if self.fixup:
            self.input_shift, self.output_gain = Scalar(0.0), Scalar(1.0)

    def forward(self, x: torch.Tensor, *args) -> torch.Tensor:
        if self.fixup:
            return x + self.output_gain.value * self.dropout(self.branch(x - self.input_shift.value, *args))
        if self.norm is None:
            return x + self.dropout(self.branch(x, *args))
        if self.post:
            return self.norm(x + self.dropout(self.branch(x, *args)))
        return x + self.dropout(self.branch(self.norm(x), *args))


class SelfAttention(nn.Module):
    def __init__(self, attention: Attention):
        super().__init__()
        self.attention = attention

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cache: dict | None = None) -> torch.Tensor:
        return self.attention(x, x, mask, cache)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: DictConfig, norm: str):
        super().__init__()
        bias = cfg.branch_scalars != "fixup"
        self.self_attn = Sublayer(cfg, norm, SelfAttention(Attention(cfg.embed_dim, cfg.heads,
                                                                     cfg.attention_dropout, bias)))
        self.ffn = Sublayer(cfg, norm, FeedForward(cfg.embed_dim, cfg.ffn_dim, cfg.relu_dropout, bias,
                                                   cfg.branch_scalars == "fixup"))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.self_attn(x, mask))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DictConfig, norm: str):
        super().__init__()
        bias = cfg.branch_scalars != "fixup"
        self.self_attn = Sublayer(cfg, norm, SelfAttention(Attention(cfg.embed_dim, cfg.heads,
                                                                     cfg.attention_dropout, bias)))
        self.encoder_attn = Sublayer(cfg, norm, Attention(cfg.embed_dim, cfg.heads, cfg.attention_dropout, bias,
                                                          static_memory=True))
        self.ffn = Sublayer(cfg, norm, FeedForward(cfg.embed_dim, cfg.ffn_dim, cfg.relu_dropout, bias,
                                                   cfg.branch_scalars == "fixup"))

    def forward(self, x: torch.Tensor, causal: torch.Tensor | None, memory: torch.Tensor, memory_mask: torch.Tensor,
                cache: dict | None = None) -> torch.Tensor:
        """`cache` (incremental decoding): {"self": {...}, "cross": {...}}, filled here; x is then the new step only."""
        own = None if cache is None else cache.setdefault("self", {})
        cross = None if cache is None else cache.setdefault("cross", {})
        return self.ffn(self.encoder_attn(self.self_attn(x, causal, own), memory, memory_mask, cross))


class Transformer(nn.Module):
    """forward(source [B, S], prev_output [B, T]) -> logits [B, T, target vocabulary]."""

    def __init__(self, cfg: DictConfig, norm: str, vocab_sizes: tuple[int, int]):
        super().__init__()
        source_size, target_size = vocab_sizes
        if cfg.share_embeddings == "all" and source_size != target_size:
            raise ConfigError("model.share_embeddings=all needs one dictionary for both languages: set "
                              "dataset.joined_dictionary=true, or model.share_embeddings=decoder (the reference).")
        dim = cfg.embed_dim
        self.dim, self.layout, self.fixup = dim, cfg.layout, cfg.branch_scalars == "fixup"
        self.embed_scale = math.sqrt(dim)
        self.decoder_embed = nn.Embedding(target_size, dim, padding_idx=PAD)
        self.encoder_embed = self.decoder_embed if cfg.share_embeddings == "all" else \
            nn.Embedding(source_size, dim, padding_idx=PAD)
        self.output_projection = None if cfg.share_embeddings in ("decoder", "all") else \
            nn.Linear(dim, target_size, bias=False)
        self.register_buffer("positions", sinusoids(cfg.max_positions + PAD + 1, dim), persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(cfg, norm) for _ in range(cfg.depth))
        self.decoder_layers = nn.ModuleList(DecoderLayer(cfg, norm) for _ in range(cfg.decoder_depth))
        final = norm == "layernorm" and cfg.layout == "pre_ln"
        self.encoder_norm = nn.LayerNorm(dim) if final else None
        self.decoder_norm = nn.LayerNorm(dim) if final else None
        if self.fixup:
            self.encoder_output_shift, self.encoder_output_gain = Scalar(0.0), Scalar(1.0)
            self.decoder_output_shift = Scalar(0.0)
        self.reference_init("current")

    # ----------------------------------------------------------------------------------------- init
    def attentions(self) -> list[tuple[str, Attention]]:
        """Every attention module with its kind: encoder_self, decoder_self, encoder_decoder."""
        found = [("encoder_self", layer.self_attn.branch.attention) for layer in self.encoder_layers]
        for layer in self.decoder_layers:
            found += [("decoder_self", layer.self_attn.branch.attention), ("encoder_decoder",
                                                                          layer.encoder_attn.branch)]
        return found

    def feed_forwards(self) -> list[FeedForward]:
        return [layer.ffn.branch for layer in [*self.encoder_layers, *self.decoder_layers]]

    def embeddings(self) -> list[nn.Embedding]:
        return list({id(e): e for e in (self.encoder_embed, self.decoder_embed)}.values())

    @torch.no_grad()
    def reference_init(self, era: str) -> None:
        """fairseq's own init (docs/iwslt14.md). Both eras: token embeddings N(0, d^-1/2) with the pad row 0, an
        unshared output matrix N(0, d^-1/2), attention q/k/v Xavier-uniform with the bound of the stacked 3d x d
        in_proj (= gain 1/sqrt(2) on each d x d block), out_proj Xavier-uniform with bias 0, LayerNorm 1/0.
        `2018`: FFN Xavier-uniform with bias 0, q/k/v biases 0. `current`: FFN and the q/k/v biases keep PyTorch's
        Linear default U(+-1/sqrt(fan_in))."""
        if era not in ERAS:
            raise choice_error("init.era", era, ERAS)
        for embedding in self.embeddings():
            nn.init.normal_(embedding.weight, 0.0, self.dim ** -0.5)
            embedding.weight[PAD] = 0
        if self.output_projection is not None:
            nn.init.normal_(self.output_projection.weight, 0.0, self.dim ** -0.5)
        stacked_bound = math.sqrt(6.0 / (3 * self.dim + self.dim))
        for _, attention in self.attentions():
            for proj in (attention.q_proj, attention.k_proj, attention.v_proj):
                nn.init.uniform_(proj.weight, -stacked_bound, stacked_bound)
                if proj.bias is not None:
                    if era == "2018":
                        proj.bias.zero_()
                    else:
                        bound = proj.in_features ** -0.5
                        nn.init.uniform_(proj.bias, -bound, bound)
            nn.init.xavier_uniform_(attention.out_proj.weight)
            if attention.out_proj.bias is not None:
                attention.out_proj.bias.zero_()
        for ffn in self.feed_forwards():
            for fc in (ffn.fc1, ffn.fc2):
                if era == "2018":
                    nn.init.xavier_uniform_(fc.weight)
                    if fc.bias is not None:
                        fc.bias.zero_()
                else:
                    fc.reset_parameters()
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                module.reset_parameters()

    # ----------------------------------------------------------------------------------------- forward
    def _embed(self, tokens: torch.Tensor, embedding: nn.Embedding) -> torch.Tensor:
        mask = tokens.ne(PAD)
        positions = torch.cumsum(mask, dim=1) * mask + PAD  # first non-pad token -> PAD + 1, pads -> PAD (row 0)
        return self.dropout(self.embed_scale * embedding(tokens) + self.positions[positions])

    def encode(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output [B, S, d] and its attention mask [B, 1, 1, S] (True = a real token)."""
        mask = source.ne(PAD)[:, None, None, :]
        x = self._embed(source, self.encoder_embed)
        for layer in self.encoder_layers:
            x = layer(x, mask)
        if self.encoder_norm is not None:
            x = self.encoder_norm(x)
        if self.fixup:
            x = (x - self.encoder_output_shift.value) * self.encoder_output_gain.value
        return x, mask

    def decode(self, prev_output: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, V] of every target position (causal)."""
        length = prev_output.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=prev_output.device).tril()[None, None]
        x = self._embed(prev_output, self.decoder_embed)
        for layer in self.decoder_layers:
            x = layer(x, causal, memory, memory_mask)
        return self._output(x)

    def decode_step(self, tokens: torch.Tensor, step: int, memory: torch.Tensor, memory_mask: torch.Tensor,
                    cache: list[dict]) -> torch.Tensor:
        """Logits [N, V] after the decoder input `tokens` [N] at 0-based position `step` of a prefix without pads,
        the earlier steps' keys and values in `cache` (one dict per decoder layer, extended here): decode()'s
        last row, without recomputing the prefix."""
        x = self.embed_scale * self.decoder_embed(tokens[:, None]) + self.positions[step + PAD + 1]
        x = self.dropout(x)
        for layer, layer_cache in zip(self.decoder_layers, cache):
            x = layer(x, None, memory, memory_mask, layer_cache)
        return self._output(x)[:, 0]

    def _output(self, x: torch.Tensor) -> torch.Tensor:
        if self.decoder_norm is not None:
            x = self.decoder_norm(x)
        if self.fixup:
            x = x - self.decoder_output_shift.value
        if self.output_projection is not None:
            return self.output_projection(x)
        return F.linear(x, self.decoder_embed.weight)

    def forward(self, source: torch.Tensor, prev_output: torch.Tensor) -> torch.Tensor:
        memory, mask = self.encode(source)
        return self.decode(prev_output, memory, mask)


def build(cfg: DictConfig, norm: str, vocab_sizes: tuple[int, int], input_shape: tuple[int, ...] = (),
          segments: int = 0) -> Transformer:
    """The registry's builder: the vocabulary sizes stand where image nets take the class count; the image shape
    and activation checkpointing do not apply (model.checkpoint_segments must stay 0)."""
    return Transformer(cfg, norm, vocab_sizes)
