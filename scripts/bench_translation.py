"""Translation speed and a short training check, through the harness's own Trainer and runner.

1. Throughput: target tokens/s of one training step (forward, backward, AdamW step) of the reference-size Post-LN
   Transformer (transformer_iwslt_de_en, docs/iwslt14.md; dictionaries of ~6,632 types) on 4096-token batches of
   the synthetic task, fp32 and bf16 autocast in the same process, and their ratio.
2. Training: a few hundred steps of the same model on the synthetic task (`train_job`, the real runner), printing
   the training loss and the valid/test BLEU of every epoch.

    python scripts/bench_translation.py                      # GPU: the reference model, under 3 minutes on an H200
    python scripts/bench_translation.py --quick --device cpu # CPU: a small model and a few steps, to check the path

Needs no network and no prepared data (synthetic batches); sacrebleu is the only text package it imports.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from initbench.config.schema import compose  # noqa: E402
from initbench.data import load_dataset  # noqa: E402
from initbench.data.loaders import data_generator  # noqa: E402
from initbench.train.runner import train_job  # noqa: E402
from initbench.train.runner import build_trainer  # noqa: E402
from initbench.train.trainer import RunState  # noqa: E402

# The reference model (configs/model/transformer_postln.yaml) with fairseq's optimizer on the synthetic task.
BASE = ["dataset=synthetic_translation", "model=transformer_postln", "init=default", "optim=adamw",
        "schedule=inverse_sqrt", "experiment_name=bench_translation", "progress=false"]
QUICK_MODEL = ["model.depth=2", "model.decoder_depth=2", "model.embed_dim=64", "model.ffn_dim=128"]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(args: argparse.Namespace, precision: str, scratch: Path) -> float:
    """Target tokens per second of the training loop's epoch (`Trainer.train_epoch`): one untimed epoch, one timed."""
    length = 31  # + EOS = 32 tokens per sentence, 128 sentences per 4096-token batch
    sentences = args.max_tokens // (length + 1)
    cfg = compose([
        *BASE, *(QUICK_MODEL if args.quick else []), f"dataset.vocab_size={args.vocab}",
        f"dataset.min_length={length}", f"dataset.max_length={length}",
        f"dataset.train_size={sentences * args.batches}", "dataset.test_size=8",
        f"translation.max_tokens={args.max_tokens}",
        f"precision={precision}", f"device={args.device}", "epochs=3", "warmup=1st", "divergence.loss_factor=1e30",
    ])
    device = torch.device(args.device)
    data = load_dataset(cfg.dataset)
    run = RunState(f"bench-{precision}", 0, scratch, data_generator(0, device))
    trainer = build_trainer(cfg, [run], data, device, scratch / f"checkpoint-{precision}.pt")
    params = sum(p.numel() for p in trainer.model.parameters())
    trainer.train_epoch()  # warm-up: kernels, allocator, autotuning
    synchronize(device)
    tokens_before, steps_before = run.images_trained, run.steps_done  # the run counts target tokens as its images
    started = time.perf_counter()
    trainer.train_epoch()
    synchronize(device)
    seconds = time.perf_counter() - started
    tokens, steps = run.images_trained - tokens_before, run.steps_done - steps_before
    rate = tokens / seconds
    print(f"  {precision}: {params / 1e6:.1f}M parameters, {steps} steps of {args.max_tokens} "
          f"tokens in {seconds:.2f} s: {rate:,.0f} target tokens/s ({1000 * seconds / steps:.1f} ms/step)")
    return rate


def training(args: argparse.Namespace, scratch: Path) -> None:
    cfg = compose([
        *BASE, *(QUICK_MODEL if args.quick else []), f"dataset.train_size={args.train_size}", "dataset.test_size=200",
        f"translation.max_tokens={args.max_tokens}",
        f"epochs={args.epochs}", f"warmup={args.warmup}", "optim.lr=1e-3", "model.dropout=0.1",
        f"precision={args.precision}", f"device={args.device}", "translation.beam=5",
    ])
    started = time.perf_counter()
    summary = train_job(cfg, scratch / "run")[0]
    metrics = pd.read_csv(scratch / "run" / "metrics.csv")
    table = metrics.pivot_table(index="epoch", columns=["split", "metric"], values="value")
    print(f"  {summary['epochs_done']} epochs, {int(metrics.step.max())} steps, {time.perf_counter() - started:.0f} s "
          f"(diverged: {summary['diverged']})")
    for epoch, row in table.iterrows():
        value = lambda split, metric: row.get((split, metric), math.nan)  # noqa: E731
        print(f"  epoch {epoch}: train loss {value('train', 'loss'):.3f}, valid loss {value('valid', 'loss'):.3f}, "
              f"valid BLEU tok {value('valid', 'bleu_tok'):.2f} / sacre {value('valid', 'bleu_sacre'):.2f}, "
              f"test BLEU tok {value('test', 'bleu_tok'):.2f}")
    print(f"  summary: test BLEU of the best-valid epoch ({summary['best_valid_epoch']}): tok "
          f"{summary['test_bleu_tok']:.2f}, sacre {summary['test_bleu_sacre']:.2f}; "
          f"{summary['images_per_s']:,.0f} target tokens/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="a 2+2-layer width-64 model and few steps (CPU check)")
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16"), help="of the training part")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    args.max_tokens = 512 if args.quick else 4096
    args.batches = 4 if args.quick else 40
    args.vocab = 200 if args.quick else 6624  # + 4 specials, padded to 8: 6,632 types like the English dictionary
    args.train_size = 1000 if args.quick else 30000
    args.warmup = "10st" if args.quick else "100st"
    args.epochs = 2 if args.quick else 5  # ~64 steps an epoch at full size
    device = torch.device(args.device)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), torch "
          f"{torch.__version__}")
    with tempfile.TemporaryDirectory() as scratch:
        print("1. training-step throughput (forward + backward + AdamW step):")
        fp32 = throughput(args, "fp32", Path(scratch))
        bf16 = throughput(args, "bf16", Path(scratch))
        print(f"  bf16 / fp32 throughput: {bf16 / fp32:.2f}x")
        if not args.skip_training:
            print(f"2. training on the synthetic task ({args.precision}):")
            training(args, Path(scratch))


if __name__ == "__main__":
    main()
