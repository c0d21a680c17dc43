"""The Transformer, its inits, the translation loss, decoding, BLEU and training, against docs/iwslt14.md and
hongyi-zhang/Fixup@f3fa449 fairseq/fairseq/models/transformer_zero.py: each property computed by the test."""

from __future__ import annotations

import collections
import math
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from initbench.config.values import Warmup
from initbench.data.translation import EOS, PAD, TokenSampler, load_synthetic_translation
from initbench.errors import UserError
from initbench.inits import apply_init
from initbench.inits.registry import InitContext
from initbench.models.transformer import Sublayer, Transformer
from initbench.optim import LRSchedule
from initbench.tasks.decoding import beam_search, bleu_scores, greedy_decode
from initbench.tasks.translation import label_smoothed_loss, translation_init_context
from tests.conftest import run_cli
from tests.run_fixtures import compose_config

SMALL = {"layout": "post_ln", "depth": 2, "decoder_depth": 2, "embed_dim": 32, "ffn_dim": 64, "heads": 4,
         "dropout": 0.0, "attention_dropout": 0.0, "relu_dropout": 0.0, "share_embeddings": "decoder",
         "max_positions": 64, "branch_scalars": "none", "arch": "transformer"}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run much faster on one CPU thread (the suite's machine has two, often busy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small(norm: str = "layernorm", vocab: tuple[int, int] = (24, 16), **changes) -> Transformer:
    torch.manual_seed(0)
    return Transformer(OmegaConf.create({**SMALL, **changes}), norm, vocab)


def tokens(rows: int, length: int, vocab: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    out = torch.randint(4, vocab, (rows, length), generator=generator)
    out[:, -1] = EOS
    return out


@pytest.mark.parametrize("layout", ["post_ln", "pre_ln"])
def test_layernorm_sits_after_or_before_the_residual_add(layout):
    model = small(layout=layout).eval()
    seen = collections.defaultdict(dict)

    def keep(name, key):
        def hook(module, args, output):
            seen[name][key] = (args[0].detach(), output.detach())
        return hook

    for name, module in model.named_modules():
        if isinstance(module, Sublayer):
            module.register_forward_hook(keep(name, "sublayer"))
            module.branch.register_forward_hook(keep(name, "branch"))
            module.norm.register_forward_hook(keep(name, "norm"))
    model(tokens(3, 7, 24), tokens(3, 5, 16))
    assert len(seen) == 2 * 2 + 3 * 2
    for name, parts in seen.items():
        x, y = parts["sublayer"]
        branch_out = parts["branch"][1]
        norm_in, norm_out = parts["norm"]
        if layout == "post_ln":  # LN(x + f(x)): the norm sees the residual sum and gives the output
            torch.testing.assert_close(norm_in, x + branch_out)
            torch.testing.assert_close(y, norm_out)
            torch.testing.assert_close(y.mean(-1), torch.zeros_like(y.mean(-1)), atol=1e-5, rtol=0)
        else:  # x + f(LN(x)): the norm sees the sublayer input, the add comes after the branch
            torch.testing.assert_close(norm_in, x)
            torch.testing.assert_close(y, x + branch_out)
    assert (model.encoder_norm is None) == (layout == "post_ln") == (model.decoder_norm is None)


def test_reference_sizes_and_parameter_counts():
    """Our counts from the layer shapes (docs/iwslt14.md): 39,469,056 (shared decoder input/output), 42,864,640
    (unshared), Fixup 42,778,711 with the dictionaries of 8,848 (de) and 6,632 (en) types."""
    cfg = OmegaConf.to_container(compose_config(["model=transformer_postln"]).model)
    vocab = (8848, 6632)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(Transformer(OmegaConf.create(cfg), "layernorm", vocab)) == 39_469_056
    assert count(Transformer(OmegaConf.create({**cfg, "share_embeddings": "none"}), "layernorm", vocab)) == 42_864_640
    fixup = Transformer(OmegaConf.create({**cfg, "share_embeddings": "none", "branch_scalars": "fixup"}), "none", vocab)
    assert count(fixup) == 42_778_711
    model = Transformer(OmegaConf.create(cfg), "layernorm", vocab)  # the current era's init (docs/iwslt14.md)
    embedding = model.encoder_embed.weight
    assert embedding[PAD].abs().sum() == 0 and abs(embedding[2:].std().item() - 512 ** -0.5) < 5e-4
    attention = model.encoder_layers[0].self_attn.branch.attention
    bound = math.sqrt(6 / (4 * 512))
    assert abs(bound - 0.054127) < 1e-6 and 0.99 * bound < attention.q_proj.weight.abs().max() <= bound
    assert attention.q_proj.bias.abs().max() > 0.04  # PyTorch's default, not 0
    out_bound = math.sqrt(6 / (512 + 512))  # 0.076547
    assert 0.99 * out_bound < attention.out_proj.weight.abs().max() <= out_bound
    ffn = model.encoder_layers[0].ffn.branch
    fc1_bound = 512 ** -0.5  # 0.044194: PyTorch's U(+-1/sqrt(fan_in)), weights and biases
    assert 0.99 * fc1_bound < ffn.fc1.weight.abs().max() <= fc1_bound and 0.99 * fc1_bound < ffn.fc1.bias.abs().max()
    assert 0.99 * 1024 ** -0.5 < ffn.fc2.weight.abs().max() <= 1024 ** -0.5  # 0.03125
    model.reference_init("2018")
    xavier = math.sqrt(6 / (512 + 1024))  # 0.0625
    assert 0.99 * xavier < ffn.fc1.weight.abs().max() <= xavier and ffn.fc1.bias.abs().max() == 0
    assert attention.q_proj.bias.abs().max() == 0


def test_fixup_matches_the_transformer_zero_rule():
    cfg = compose_config(["+experiment=fixup_iwslt14", "+method=iwslt_fixup", "model.depth=2", "model.decoder_depth=2",
                          "model.embed_dim=32", "model.ffn_dim=64"])
    torch.manual_seed(0)
    model = Transformer(cfg.model, cfg.norm, (24, 16))
    apply_init(model, cfg.init, InitContext(model_cfg=cfg.model, norm=cfg.norm))
    branches = 2 * 2 + 3 * 2  # L
    d = 32
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    assert not any(name.endswith(".bias") for name, _ in model.named_parameters())  # no biases anywhere
    for ffn in model.feed_forwards():
        bound = math.sqrt(6 / (d + 64)) * branches ** -0.5
        assert 0.97 * bound < ffn.fc1.weight.abs().max() <= bound and ffn.fc2.weight.abs().max() == 0
    for kind, attention in model.attentions():
        scale = (12 if kind == "encoder_decoder" else branches) ** (-1 / 6)  # the official code's quirk
        bound = math.sqrt(6 / (3 * d + d)) * scale
        for proj in (attention.q_proj, attention.k_proj, attention.v_proj):
            assert 0.97 * bound < proj.weight.abs().max() <= bound
        assert attention.out_proj.weight.abs().max() == 0
    scalars = {n: p.item() for n, p in model.named_parameters() if p.dim() == 0}
    assert len(scalars) == 2 * branches + 2 * (2 + 2) + 3  # shift+gain per branch, 2 FFN shifts each, outputs
    assert all(v == (1.0 if "gain" in n else 0.0) for n, v in scalars.items())
    # Fixup's CIFAR "bias|scale at lr/10" rule (init/fixup.yaml) matches no parameter: one LR for all, as in
    # hongyi-zhang/Fixup@f3fa449 fairseq/run.sh.
    assert not [n for n, _ in model.named_parameters() if re.search("bias|scale", n)]
    source, target = tokens(4, 9, 24), tokens(4, 6, 16)
    prev = torch.cat([torch.full((4, 1), EOS), target[:, :-1]], 1)
    logits = model.eval()(source, prev)
    assert logits.abs().max() == 0  # zero output matrix: logits 0, loss ln V under both smoothing forms
    for form in ("current", "fairseq2018"):
        loss = label_smoothed_loss(logits, target, 0.1, form) / target.numel()
        assert abs(loss.item() - math.log(16)) < 1e-5


def test_label_smoothing_forms():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 7, generator=generator)
    target = torch.tensor([[4, 5, PAD], [6, EOS, 4]])
    lprobs = torch.log_softmax(logits, -1)
    keep = target != PAD
    nll = -lprobs.gather(-1, target[..., None])[..., 0][keep]
    smooth = -lprobs.sum(-1)[keep]
    eps, v = 0.1, 7
    current = ((1 - eps - eps / (v - 1)) * nll + eps / (v - 1) * smooth).sum()
    old = ((1 - eps) * nll + eps / v * smooth).sum()
    torch.testing.assert_close(label_smoothed_loss(logits, target, eps, "current"), current)
    torch.testing.assert_close(label_smoothed_loss(logits, target, eps, "fairseq2018"), old)


def test_beam_search_with_beam_1_is_greedy_decoding():
    model = small().eval()
    source = tokens(6, 9, 24, seed=3)
    source[0, :3] = PAD  # left padding, as the batches have it
    greedy = greedy_decode(model, source, 1.2, 10)
    assert beam_search(model, source, 1, 1.0, 1.2, 10) == greedy
    assert all(h[-1] == EOS and EOS not in h[:-1] and PAD not in h and len(h) <= int(1.2 * 9 + 10) + 1
               for h in greedy)
    wide = beam_search(model, source, 4, 1.0, 1.2, 10)
    assert len(wide) == 6 and all(h[-1] == EOS for h in wide)


def reference_bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU-4 on whitespace tokens, no smoothing, BP = min(1, exp(1 - r/c)) (docs/iwslt14.md)."""
    matches, totals, hyp_len, ref_len = [0] * 4, [0] * 4, 0, 0
    for hyp, ref in zip(hypotheses, references):
        h, r = hyp.split(), ref.split()
        hyp_len, ref_len = hyp_len + len(h), ref_len + len(r)
        for n in range(1, 5):
            hc = collections.Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
            rc = collections.Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
            matches[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
            totals[n - 1] += max(len(h) - n + 1, 0)
    if min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / 4
    return 100 * min(1.0, math.exp(1 - ref_len / hyp_len)) * math.exp(log_precision)


def test_bleu_goes_through_sacrebleu():
    references = ["the dog runs fast across the street .", "it &apos;s raining this morning", "a b c d e f"]
    hypotheses = ["the dog runs across the street .", "it &apos;s raining this morning", "a b c x e f g"]
    scores = bleu_scores(hypotheses, references, lambda line: line.replace(" &apos;", "'"))
    assert scores["bleu_tok"] == pytest.approx(reference_bleu(hypotheses, references), abs=1e-9)
    import sacrebleu

    detok = [h.replace(" &apos;", "'") for h in hypotheses], [[r.replace(" &apos;", "'") for r in references]]
    assert scores["bleu_sacre"] == pytest.approx(sacrebleu.corpus_bleu(*detok).score)
    assert bleu_scores(references, references, str)["bleu_tok"] == pytest.approx(100)


def test_schedules():
    """The schedules of docs/iwslt14.md: inverse_sqrt 5e-4 at n = 4000 and 2.5e-4 at 16,000; linear 5e-4 at
    n <= 1, ~1e-9 at T; T-Fixup's no-warmup form 5e-4/sqrt(2) at n = 4000."""
    lr = 5e-4
    inverse = LRSchedule(OmegaConf.create({"name": "inverse_sqrt", "milestones": [], "gamma": 0.1, "interval": "step",
                                           "min_lr": 0.0, "reference_steps": 4000}), Warmup(steps=4000), 1000, 100, lr)
    assert lr * inverse.factor(4000) == pytest.approx(5e-4) and lr * inverse.factor(16000) == pytest.approx(2.5e-4)
    assert lr * inverse.factor(1999) == pytest.approx(2.5e-4)  # the warmup ramp
    no_warmup = LRSchedule(OmegaConf.create({"name": "inverse_sqrt", "milestones": [], "gamma": 0.1,
                                             "interval": "step", "min_lr": 0.0, "reference_steps": 4000}),
                           Warmup(), 1000, 100, lr)
    assert lr * no_warmup.factor(0) == lr and lr * no_warmup.factor(4000) == pytest.approx(5e-4 / math.sqrt(2))
    linear = LRSchedule(OmegaConf.create({"name": "linear", "milestones": [], "gamma": 0.1, "interval": "step",
                                          "min_lr": 1e-9, "reference_steps": 4000}), Warmup(), 1000, 100, lr)
    assert lr * linear.factor(0) == lr * linear.factor(1) == pytest.approx(lr)
    assert lr * linear.factor(50_000) == pytest.approx(2.5e-4, rel=1e-4)
    assert lr * linear.factor(100_000) == pytest.approx(1e-9)


def test_gradinit_scales_the_transformer_with_its_fairseq_rules():
    cfg = compose_config(["+experiment=smoke_translation", "init=gradinit_fairseq", "init.iterations=8",
                          "init.batch_size=200", "dataset.train_size=200"])
    assert cfg.init.algorithm == "adam" and cfg.init.base == "default" and cfg.init.gamma == 1000  # fairseq values
    data = load_synthetic_translation(cfg.dataset)
    model = Transformer(cfg.model, cfg.norm, data.vocab_sizes)
    context = translation_init_context(cfg, 0, data, torch.device("cpu"))
    torch.manual_seed(5)  # the base init GradInit starts from, drawn twice from one seed
    apply_init(model, OmegaConf.create({"name": cfg.init.base}), context)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    torch.manual_seed(5)
    apply_init(model, cfg.init, context)
    scales = {row["tensor"]: row["scale"] for row in context.report.scales}
    assert not context.report.diverged and len(scales) == len(before)
    moved = 0
    for name, param in model.named_parameters():
        start = before[name]
        assert torch.allclose(param, scales[name] * start, atol=1e-6)  # a positive multiple of the initial tensor
        if start.abs().sum() == 0:
            assert param.abs().sum() == 0 and scales[name] == 1.0  # zero tensors are never scaled
        if name.endswith("norm.weight"):
            assert 0.01 <= scales[name] <= 100  # the fairseq version's LayerNorm bounds
        moved += scales[name] != 1.0
    assert moved > len(before) // 2


def test_sampler_batches_stay_within_their_token_budget():
    data = load_synthetic_translation(OmegaConf.create({"vocab_size": 16, "min_length": 2, "max_length": 9,
                                                        "train_size": 300, "test_size": 10,
                                                        "joined_dictionary": False, "name": "synthetic_translation"}))
    sampler = TokenSampler(data.splits["train"], 0, torch.device("cpu"))
    for _ in range(20):
        batch = sampler(60)
        assert batch.source.shape[0] * max(batch.source.shape[1], batch.target.shape[1]) <= 60


def test_a_checkpoint_of_another_vocabulary_is_refused(tmp_path: Path):
    from initbench.data.loaders import data_generator
    from initbench.train.runner import build_trainer
    from initbench.train.trainer import RunState, Trainer

    cfg = compose_config(["+experiment=smoke_translation", "dataset.train_size=100", "dataset.test_size=10",
                          "epochs=3", "warmup=2st"])
    checkpoint = tmp_path / "checkpoint.pt"

    def trainer(vocab: int) -> Trainer:
        data = load_synthetic_translation(OmegaConf.merge(cfg.dataset, {"vocab_size": vocab}))
        run = RunState("r", 0, tmp_path, data_generator(0, torch.device("cpu")))
        return build_trainer(cfg, [run], data, torch.device("cpu"), checkpoint)

    trainer(32)._save_checkpoint()
    with pytest.raises(UserError, match="does not fit this model.*decoder_embed.*vocabulary.*force=true"):
        trainer(48)


def test_a_2_layer_post_ln_model_learns_the_synthetic_task_on_cpu(tmp_path: Path):
    done = run_cli(["+experiment=smoke_translation", "progress=false"], tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    folder = next((tmp_path / "results" / "runs").iterdir())
    summary = pd.read_csv(folder / "summary.csv").iloc[0]
    metrics = pd.read_csv(folder / "metrics.csv")
    bleu = metrics[metrics.metric.str.startswith("bleu")]
    assert set(zip(bleu.split, bleu.metric)) == {(s, m) for s in ("valid", "test") for m in ("bleu_sacre", "bleu_tok")}
    assert len(bleu) == 4 * 8  # every epoch
    assert not summary.diverged and summary.test_bleu_tok > 30  # well above 0: the task is learned
    best = bleu[(bleu.split == "valid") & (bleu.metric == "bleu_sacre")].sort_values("epoch")
    epoch = int(best.loc[best.value.idxmax(), "epoch"])
    assert summary.best_valid_epoch == epoch
    assert summary.test_bleu_tok == bleu[(bleu.split == "test") & (bleu.metric == "bleu_tok") &
                                         (bleu.epoch == epoch)].value.item()


def test_no_warmup_at_a_high_lr_ends_as_a_diverged_row(tmp_path: Path):
    done = run_cli(["+experiment=smoke_translation", "progress=false", "epochs=2", "schedule=linear", "warmup=0",
                    "optim.lr=3", "divergence.check_every=5", "dataset.train_size=500"], tmp_path,
                   env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    summary = pd.read_csv(next((tmp_path / "results" / "runs").glob("*/summary.csv"))).iloc[0]
    assert summary.diverged and summary.warmup == "none" and summary.epochs_done == 1
    assert "non-finite or above" in summary.diverged_reason


def test_an_interrupted_translation_run_resumes_to_the_same_rows(tmp_path: Path):
    from initbench.data.loaders import data_generator
    from initbench.train.runner import build_trainer
    from initbench.train.trainer import RunState, Trainer

    cfg = compose_config(["+experiment=smoke_translation", "dataset.train_size=120", "dataset.test_size=6",
                          "epochs=2", "warmup=2st", "progress=false"])
    data = load_synthetic_translation(cfg.dataset)

    def trainer(folder: Path) -> tuple[Trainer, RunState]:
        run = RunState("r", 0, folder, data_generator(0, torch.device("cpu")))
        return build_trainer(cfg, [run], data, torch.device("cpu"), folder / "checkpoint.pt"), run

    straight, whole = trainer(tmp_path / "a")
    straight.fit()

    class Stop(Exception):
        pass

    def stop() -> None:
        raise Stop

    first, _ = trainer(tmp_path / "b")
    with pytest.raises(Stop):
        first.fit(on_epoch_end=stop)  # killed after epoch 1's checkpoint
    resumed, run = trainer(tmp_path / "b")
    resumed.fit()
    assert [(r["epoch"], r["split"], r["metric"]) for r in run.rows] == \
        [(r["epoch"], r["split"], r["metric"]) for r in whole.rows]
    for mine, theirs in zip(run.rows, whole.rows):
        assert mine["value"] == pytest.approx(theirs["value"], rel=1e-5, abs=1e-6), mine


def test_xavier_on_the_transformer_draws_every_linear_layer_by_its_own_fans():
    model = small()
    embedding = model.encoder_embed.weight.detach().clone()
    apply_init(model, OmegaConf.create({"name": "xavier"}), InitContext(model_cfg=OmegaConf.create(SMALL),
                                                                       norm="layernorm"))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2 * (4 + 2) + 2 * (8 + 2)  # q/k/v/out per attention, fc1/fc2 per FFN
    for layer in linears:
        bound = math.sqrt(6 / sum(layer.weight.shape))
        assert 0.9 * bound < layer.weight.abs().max() <= bound and layer.bias.abs().max() == 0
    assert torch.equal(model.encoder_embed.weight, embedding)  # embeddings keep the model's own init


def test_sharing_all_embeddings_needs_one_dictionary():
    from initbench.errors import ConfigError

    shared = small(vocab=(16, 16), share_embeddings="all")
    assert shared.encoder_embed is shared.decoder_embed and shared.output_projection is None
    counts = {share: sum(p.numel() for p in small(vocab=(16, 16), share_embeddings=share).parameters())
              for share in ("all", "decoder", "none")}
    assert counts["decoder"] - counts["all"] == counts["none"] - counts["decoder"] == 16 * 32
    with pytest.raises(ConfigError, match="joined_dictionary=true"):
        small(vocab=(24, 16), share_embeddings="all")


@pytest.mark.parametrize("layout,norm,scalars", [("post_ln", "layernorm", "none"), ("pre_ln", "layernorm", "none"),
                                                 ("post_ln", "none", "fixup")])
def test_incremental_decoding_equals_the_full_decoder(layout, norm, scalars):
    model = small(norm, layout=layout, branch_scalars=scalars, share_embeddings="none").eval()
    for param in model.parameters():  # Fixup's zeros would make every step trivially equal
        torch.nn.init.normal_(param, 0, 0.2) if param.dim() else param.data.fill_(0.3)
    source, prefix = tokens(3, 8, 24, seed=4), tokens(3, 6, 16, seed=5)
    prefix[:, 0] = EOS
    memory, mask = model.encode(source)
    full = model.decode(prefix, memory, mask)
    cache = [{} for _ in model.decoder_layers]
    steps = torch.stack([model.decode_step(prefix[:, t], t, memory, mask, cache) for t in range(6)], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)
