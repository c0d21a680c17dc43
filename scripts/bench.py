"""Training throughput in one process: the reference loop against ours, single runs and K fused runs.

    python scripts/bench.py                        # GPU: resnet56, resnet110, wrn40_10, fixup10k; K = 8
    python scripts/bench.py --quick                # CPU-sized: tiny batches and steps, so it stays working
    python scripts/bench.py --quick --profile      # where a step's time goes (torch.profiler), no table
    python scripts/bench.py --nets resnet56 --regularisers   # + the cost of cutout 16 + mixup 1 per epoch
    python scripts/bench.py --nets resnet56,wrn40_10 --hessian  # + one λ1 estimate against one training step
    python scripts/bench.py --nets resnet50,resnet50_fixup --batch 128 --no-projection   # ImageNet-sized, BN vs Fixup

reference  the official scripts' loop: torchvision RandomCrop(32, 4) + flip in DataLoader workers
           (TorchLoader), fp32 eager, torch's default SGD, and a host read of loss and accuracy every
           step (`.item()`), as He et al.'s and Fixup's CIFAR scripts do.
ours       Trainer.train_epoch(): the split resident on the device, whole-epoch augmentation there, fused
           SGD, no host sync inside the epoch; optionally bf16 autocast, channels_last ("cl"), torch.compile.
Each variant trains a random uint8 split of steps x batch images; the first --warmup epochs (compilation,
cuDNN autotuning, worker start-up) are not timed; the figure is the median of --repeats epochs, timed with
CUDA events on a GPU and perf_counter on the CPU (an epoch ends with a host read, so the clock is synced).
img/s counts the images of all fused runs. cuDNN autotuning is on for both paths. The ImageNet nets (resnet50,
resnet101, and their Fixup variants *_fixup) train on random 224 x 224 images of 1000 classes, single runs only;
"peak GiB" is the most GPU memory a variant held (torch.cuda.max_memory_allocated). With --regularisers, the
"ours +cutout+mixup" rows add the papers' cutout (16 px) and mixup (alpha 1) to "ours fp32", and the cost of the two
is printed as the ratio of their epoch throughput to crop/flip alone, single and fused. With --hessian, one λ1
estimate (20 Lanczos steps, i.e. 20 Hessian-vector products, on one batch of the training batch size; the
measurement of measure.hessian_every, initbench/measure/hessian.py) is timed against one training step of "ours
fp32" on the same net.
"""

from __future__ import annotations

import argparse
import gc
import math
import re
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from initbench.config.checks import validate
from initbench.config.schema import compose
from initbench.data import ImageData
from initbench.data.augment import Normalize
from initbench.data.loaders import TorchLoader, data_generator
from initbench.distributed import resolve_device
from initbench.train.runner import build_trainer
from initbench.train.trainer import RunState, Trainer

# Nets by name: any configs/model/ name, plus the 10,000-layer Fixup net (1666 basic blocks per stage).
NETS = {"fixup10k": ["model=resnet110", "model.depth=9998", "init=fixup"],
        "resnet50_fixup": ["model=resnet50", "init=fixup"], "resnet101_fixup": ["model=resnet101", "init=fixup"]}
DEEP_NETS = ("fixup10k",)
IMAGENET_NETS = ("resnet50", "resnet50_fixup", "resnet101", "resnet101_fixup")  # 224 x 224, 1000 classes, K = 1
# The Fixup paper's ResNet-110 row: 5 seeds x 200 epochs of CIFAR-10 (50,000 train, 10,000 test images).
PROJECTION = {"net": ["model=resnet110", "init=fixup"], "seeds": 5, "epochs": 200, "train": 50_000, "test": 10_000}


@dataclass(frozen=True)
class Variant:
    name: str
    fused: bool = False
    reference: bool = False
    options: dict = field(default_factory=dict)


REGULARISED = "ours +cutout+mixup"


def variants(compile_mode: str | None, regularisers: bool = False) -> list[Variant]:
    """The rows timed per net; `compile_mode` None leaves out the torch.compile rows."""
    fast = {"precision": "bf16", "channels_last": True}
    single = [Variant("reference", reference=True), Variant("ours fp32"), Variant("ours bf16+cl", options=fast)]
    if compile_mode is not None:
        single.append(Variant("ours bf16+cl+compile", options={**fast, "compile": compile_mode}))
    if regularisers:
        single.append(Variant(REGULARISED, options={"dataset.cutout": 16, "train.mixup_alpha": 1.0}))
    fused = [Variant(v.name, fused=True, options=v.options) for v in single if not v.reference]
    return single + fused


def compose_config(overrides: list[str]) -> DictConfig:
    cfg = compose(overrides)
    validate(cfg)
    return cfg


def random_split(train: int, test: int, side: int = 32, classes: int = 10) -> ImageData:
    """Throughput does not depend on pixel values: random images and labels, generated in no time."""
    generator = torch.Generator().manual_seed(0)

    def images(count: int) -> torch.Tensor:
        return torch.randint(0, 256, (count, 3, side, side), dtype=torch.uint8, generator=generator)

    def labels(count: int) -> torch.Tensor:
        return torch.randint(0, classes, (count,), generator=generator)

    return ImageData("bench", images(train), labels(train), images(test), labels(test), classes)


def bench_trainer(net: list[str], variant: Variant, runs: int, batch: int, data: ImageData, device: torch.device,
                  workers: int, scratch: Path) -> Trainer:
    seeds = list(range(runs))
    options = {"precision": "fp32", "channels_last": False, "compile": False, **variant.options}
    cfg = compose_config([
        *net, "dataset=synthetic", f"batch_size={batch}", f"eval_batch_size={min(1000, len(data.test_labels))}",
        f"seed={seeds if runs > 1 else seeds[0]}", f"device={device}", "progress=false",
        # The reference row's trainer only provides the model: the torch loader keeps no copy of the split on the
        # device (its workers start only when iterated), and reference_epoch feeds the model a TorchLoader of its own.
        f"data.loader={'torch' if variant.reference else 'resident'}", f"data.num_workers={workers}",
        # No early stop, and only non-finite losses flag a run: an epoch is always its full length.
        "divergence.check_every=1000000000", "divergence.loss_factor=1e30",
        *(f"{key}={str(value).lower()}" for key, value in options.items()),
    ])
    states = [RunState(f"bench-{s}", s, scratch, data_generator(s, device)) for s in seeds]
    return build_trainer(cfg, states, data, device, scratch / "checkpoint.pt")


def reference_epoch(trainer: Trainer, data: ImageData, workers: int) -> Callable[[], None]:
    """The official scripts' training loop over the trainer's model, fed by the reference TorchLoader."""
    model, device, cfg = trainer.model, trainer.device, trainer.cfg
    loader = TorchLoader(data.train_images, data.train_labels, cfg.batch_size, list(cfg.dataset.mean),
                         list(cfg.dataset.std), True, 0, workers, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                weight_decay=cfg.optim.weight_decay)  # torch's default implementation

    def epoch() -> None:
        model.train()
        train_loss, correct = 0.0, 0
        for images, labels in loader.epoch():  # each batch copied to the device as it comes, as the scripts do
            images, labels = images[0], labels[0]
            outputs = model(images)
            loss = F.cross_entropy(outputs, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_loss += loss.item()
            correct += outputs.argmax(1).eq(labels).sum().item()

    return epoch


def seconds(fn: Callable[[], None], device: torch.device) -> float:
    if device.type != "cuda":
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000


def median_seconds(fn: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(seconds(fn, device) for _ in range(repeats))


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------- table
@dataclass(frozen=True)
class Shape:
    runs: int
    batch: int  # per run
    steps: int  # per timed epoch


def net_shape(net_name: str, variant: Variant, args: argparse.Namespace) -> Shape:
    """The deep net has its own batch, K and steps: 10k layers of activations, and seconds per step."""
    deep = net_name in DEEP_NETS
    runs = (args.deep_runs if deep else args.runs) if variant.fused else 1
    return Shape(runs, args.deep_batch if deep else args.batch, args.deep_steps if deep else args.steps)


@dataclass
class Row:
    net: str
    variant: Variant
    runs: int
    batch: int
    images_per_s: float | None  # all runs together; None when it could not run
    note: str = ""
    peak_gib: float | None = None  # GPU memory held at most (CUDA only)


def measure(net_name: str, variant: Variant, shape: Shape, args: argparse.Namespace, device: torch.device,
            scratch: Path) -> Row:
    imagenet = net_name in IMAGENET_NETS
    data = random_split(shape.steps * shape.batch, shape.batch, *((224, 1000) if imagenet else (32, 10)))
    net = NETS.get(net_name, [f"model={net_name}"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        # ImageNet nets: crops come from loader workers in real runs, so the resident epoch-wide crop buffer (several
        # GiB at 224 x 224) would only inflate the peak memory; the timed step is the same.
        net = [*net, "dataset.augment=none"] if imagenet and not variant.reference else net
        trainer = bench_trainer(net, variant, shape.runs, shape.batch, data, device, args.workers, scratch)
        epoch = reference_epoch(trainer, data, args.workers) if variant.reference else trainer.train_epoch
        elapsed = median_seconds(epoch, device, args.warmup, args.repeats)
        note = "non-finite loss (timing kept)" if any(r.diverged for r in trainer.runs) else ""
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        return Row(net_name, variant, shape.runs, shape.batch, shape.runs * len(data.train_labels) / elapsed, note,
                   peak)
    except torch.OutOfMemoryError:
        return Row(net_name, variant, shape.runs, shape.batch, None, "out of memory")
    finally:
        trainer = epoch = None
        release(device)


def print_table(rows: list[Row]) -> None:
    print(f"{'net':<15} {'variant':<22} {'runs':>4} {'batch':>5} {'img/s':>10} {'per run':>9} "
          f"{'x ref':>6} {'x single':>8} {'peak GiB':>8}  note")
    for row in rows:
        same_net = [r for r in rows if r.net == row.net and r.images_per_s]
        reference = next((r.images_per_s for r in same_net if r.variant.reference), None)
        single = next((r.images_per_s for r in same_net if r.variant.name == row.variant.name and r.runs == 1), None)
        if row.images_per_s is None:
            figures = f"{'-':>10} {'-':>9} {'-':>6} {'-':>8}"
        else:
            ratio_ref = f"{row.images_per_s / reference:6.2f}" if reference else f"{'-':>6}"
            ratio_single = f"{row.images_per_s / single:8.2f}" if single and row.runs > 1 else f"{'':>8}"
            figures = f"{row.images_per_s:10.1f} {row.images_per_s / row.runs:9.1f} {ratio_ref} {ratio_single}"
        peak = f"{row.peak_gib:8.2f}" if row.peak_gib is not None else f"{'-':>8}"
        print(f"{row.net:<15} {row.variant.name:<22} {row.runs:>4} {row.batch:>5} {figures} {peak}  {row.note}")


def print_regulariser_cost(rows: list[Row]) -> None:
    """Throughput with cutout + mixup over crop/flip alone, per net and K (< 1: the share of speed they cost)."""
    print("\ncutout 16 + mixup 1 against crop/flip alone (epoch throughput ratio):")
    for row in [r for r in rows if r.variant.name == REGULARISED and r.images_per_s]:
        plain = next((r.images_per_s for r in rows if r.net == row.net and r.runs == row.runs
                      and r.variant.name == "ours fp32" and r.images_per_s), None)
        if plain:
            print(f"  {row.net:<10} x{row.runs:<3} {row.images_per_s / plain:6.3f}")


def hessian_cost(net_name: str, args: argparse.Namespace, device: torch.device, scratch: Path) -> None:
    """Seconds of one λ1 estimate over seconds of one training step, on the same net and batch size."""
    from omegaconf import OmegaConf

    from initbench.config.schema import HessianConfig
    from initbench.measure.hessian import estimate, settings_operator

    shape = net_shape(net_name, Variant("ours fp32"), args)
    data = random_split(shape.steps * shape.batch, shape.batch)
    trainer = bench_trainer(NETS.get(net_name, [f"model={net_name}"]), Variant("ours fp32"), 1, shape.batch, data,
                            device, args.workers, scratch)
    step = median_seconds(trainer.train_epoch, device, args.warmup, args.repeats) / shape.steps
    images, labels = data.train_images[: shape.batch].to(device), data.train_labels[: shape.batch].to(device)
    batch = (Normalize(trainer.cfg.dataset.mean, trainer.cfg.dataset.std, device)(images), labels)
    settings = OmegaConf.structured(HessianConfig)  # the gilmer preset: Lanczos, 20 steps
    model = trainer.model
    operator = settings_operator(settings, model, dict(model.named_parameters()), dict(model.named_buffers()),
                                 lambda: [batch])
    one = median_seconds(lambda: estimate(operator, settings, 0), device, 1, args.repeats)
    print(f"  {net_name:<10} one λ1 estimate {one:8.3f} s, one training step {step:8.4f} s: ratio {one / step:8.1f}"
          f"  ({operator.ad} mode, batch {shape.batch})")
    trainer = operator = None
    release(device)


def project_fixup_row(args: argparse.Namespace, device: torch.device, scratch: Path, compile_mode: str | None) -> None:
    """Wall time of Fixup's ResNet-110 row (5 seeds x 200 epochs, fused) from measured throughput."""
    seeds, spec = args.projection_runs, PROJECTION
    print(f"\nFixup ResNet-110 row: {spec['seeds']} seeds x {spec['epochs']} epochs of CIFAR-10, "
          f"fused {seeds} at a time, batch {args.batch}, projected from this machine's throughput:")
    for variant in [v for v in variants(compile_mode) if v.fused]:
        data = random_split(args.steps * args.batch, args.eval_images)
        trainer = bench_trainer(spec["net"], variant, seeds, args.batch, data, device, args.workers, scratch)
        train = median_seconds(trainer.train_epoch, device, args.warmup, args.repeats)
        evaluate = median_seconds(trainer.evaluate, device, 1, args.repeats)
        rate = seeds * len(data.train_labels) / train
        groups = math.ceil(spec["seeds"] / seeds)
        eval_epoch = spec["test"] / args.eval_images * evaluate
        total = groups * spec["epochs"] * (spec["train"] / len(data.train_labels) * train + eval_epoch)
        print(f"  {variant.name:<22} {rate:10.1f} img/s training, eval {eval_epoch:7.2f} s/epoch -> "
              f"{total / 60:10.1f} min ({groups} fused job(s) x {spec['epochs']} epochs)")
        trainer = None
        release(device)


# ----------------------------------------------------------------------------------------------- profile
DATA = re.compile(r"^initbench\.data|DataLoader|pin_memory")  # our loader's ranges, torch's DataLoader ones
OP_GROUPS = (
    ("CUDA runtime", re.compile(r"^cuda[A-Z]|^cu[A-Z]")),  # kernel launches, copies, synchronisation waits
    ("conv/matmul", re.compile(r"conv|cudnn|mkldnn|gemm|mm$|addmm|bmm|linear")),
    ("batch norm", re.compile(r"batch_norm")),
    ("optimizer", re.compile(r"_fused_sgd|_fused_adam|_foreach|Optimizer|optimizer")),
    ("loss/metrics", re.compile(r"softmax|nll|cross_entropy|argmax|::eq|item|_local_scalar|isfinite|where|nan_to_num|"
                                r"::le$|::lt$|bitwise|__and__|__or__|scalar_tensor")),
    ("elementwise", re.compile(r"relu|threshold|add|mul|clamp|fill|copy|zero|pad|mean|sum|div|sub|cat|index|to_copy|"
                               r"stack|ones|sqrt|rsqrt|neg")),
    ("autograd glue", re.compile(r"^autograd::|Backward|backward")),
    ("views/alloc", re.compile(r"empty|view|as_strided|reshape|expand|permute|transpose|squeeze|select|slice|"
                               r"detach|resize|alias|contiguous|flatten|movedim|_to_dim_order|::to$|lift|record|"
                               r"clone|narrow|::t$|resolve")),
)


def category(event) -> str:
    """'data' for anything under a loader range, else the op group of the event's name."""
    node = event
    while node is not None:
        if DATA.search(node.name):
            return "data"
        node = node.cpu_parent
    return next((name for name, pattern in OP_GROUPS if pattern.search(event.name)), "other")


def profile_variant(net_name: str, variant: Variant, shape: Shape, args: argparse.Namespace, device: torch.device,
                    scratch: Path) -> None:
    from torch.profiler import ProfilerActivity, profile

    runs, batch, steps = shape.runs, shape.batch, shape.steps
    data = random_split(steps * batch, batch)
    trainer = bench_trainer(NETS.get(net_name, [f"model={net_name}"]), variant, runs, batch, data, device,
                            args.workers, scratch)
    epoch = reference_epoch(trainer, data, args.workers) if variant.reference else trainer.train_epoch
    for _ in range(max(1, args.warmup)):
        epoch()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        wall = seconds(epoch, device)
    host, kernels = defaultdict(float), defaultdict(float)
    for event in prof.events():
        if event.device_type.name == "CPU":
            group = category(event)
            host[group] += event.self_cpu_time_total / 1e6
            kernels[group] += getattr(event, "self_device_time_total", 0.0) / 1e6
    in_ops = sum(host.values())
    print(f"\nprofile: {net_name}, {variant.name}, {runs} run(s), batch {batch}, {steps} steps, {device} "
          f"(profiler on: times are inflated)")
    print(f"  wall per step                          {1e3 * wall / steps:10.2f} ms")
    print(f"  host time in ops (all threads)         {1e3 * in_ops / steps:10.2f} ms ({100 * in_ops / wall:5.1f}%)")
    print(f"  host time outside ops (Python, glue)   {1e3 * max(0.0, wall - in_ops) / steps:10.2f} ms "
          f"({100 * max(0.0, wall - in_ops) / wall:5.1f}%)")
    for group in sorted(host, key=host.get, reverse=True):
        print(f"    {group:<14} host {1e3 * host[group] / steps:9.2f} ms/step ({100 * host[group] / wall:5.1f}%)"
              + (f"   GPU kernels {1e3 * kernels[group] / steps:8.3f} ms/step" if device.type == "cuda" else ""))
    if device.type == "cuda":
        busy = sum(kernels.values())
        print(f"  GPU kernel time                        {1e3 * busy / steps:10.2f} ms ({100 * busy / wall:5.1f}% of"
              f" wall; the rest is launch gaps, host overhead and waits)")
    sort_key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort_key, row_limit=args.profile_rows, max_name_column_width=50))
    trainer = epoch = prof = None
    release(device)


# ----------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CPU-sized defaults: small batches, few steps")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--nets", default="resnet56,resnet110,wrn40_10,fixup10k",
                        help="comma-separated: configs/model names and fixup10k")
    parser.add_argument("--runs", type=int, help="K of the fused rows (default 8 on GPU, 2 with --quick)")
    parser.add_argument("--batch", type=int, help="batch size per run (default 128; 8 with --quick)")
    parser.add_argument("--deep-batch", type=int, help="batch of the 10k-layer net (default 32; 2 with --quick)")
    parser.add_argument("--deep-runs", type=int, help="K for the 10k-layer net (default 2)")
    parser.add_argument("--steps", type=int, help="steps per timed epoch (default 100; 2 with --quick)")
    parser.add_argument("--deep-steps", type=int, help="steps per epoch of the 10k-layer net (default 10; 1 quick)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs first (compile, autotune, workers)")
    parser.add_argument("--repeats", type=int, help="timed epochs, the median is reported (default 3; 2 quick)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference (Fixup: 2)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="include torch.compile variants (default: on GPU only)")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode of those variants, e.g. "
                        "default, reduce-overhead (CUDA graphs), max-autotune")
    parser.add_argument("--projection-runs", type=int, default=5, help="K for the Fixup ResNet-110 projection")
    parser.add_argument("--eval-images", type=int, help="test images timed for the projection (default 10000)")
    parser.add_argument("--no-projection", action="store_true")
    parser.add_argument("--regularisers", action="store_true",
                        help="also time cutout 16 + mixup 1 and print their cost against crop/flip alone")
    parser.add_argument("--hessian", action="store_true",
                        help="also time one λ1 estimate (20 Lanczos steps) against one training step, per net")
    parser.add_argument("--profile", action="store_true", help="profile one epoch per variant instead of timing")
    parser.add_argument("--profile-variants", default="reference,ours fp32,ours bf16+cl",
                        help="comma-separated variant names; each is profiled single and fused")
    parser.add_argument("--profile-rows", type=int, default=12)
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"runs": 2 if quick else 8, "batch": 8 if quick else 128, "deep_batch": 2 if quick else 32,
                "deep_runs": 2, "steps": 2 if quick else 100, "deep_steps": 1 if quick else 10,
                "repeats": 2 if quick else 3,
                "eval_images": 64 if quick else 10_000}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.device = "cpu" if quick and args.device == "auto" else args.device
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    compile_too = args.compile if args.compile is not None else device.type == "cuda"
    compile_mode = args.compile_mode if compile_too else None
    warnings.filterwarnings("ignore", message=".*TF32.*")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__} on {name}; batch {args.batch}/run, {args.steps} steps per epoch, "
          f"warm-up {args.warmup} epoch(s), median of {args.repeats}"
          + (f"; torch.compile mode {compile_mode}" if compile_mode else ""))
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        if args.profile:
            wanted = [v.strip() for v in args.profile_variants.split(",")]
            for net_name in nets:
                for variant in [v for v in variants(compile_mode, regularisers=True) if v.name in wanted]:
                    profile_variant(net_name, variant, net_shape(net_name, variant, args), args, device, scratch)
            return
        rows = []
        for net_name in nets:
            for variant in variants(None if net_name in DEEP_NETS else compile_mode, args.regularisers):
                if variant.fused and net_name in IMAGENET_NETS:
                    continue
                shape = net_shape(net_name, variant, args)
                rows.append(measure(net_name, variant, shape, args, device, scratch))
                print(f"  measured {net_name} {variant.name} x{shape.runs}: "
                      f"{rows[-1].images_per_s or 0:.1f} img/s {rows[-1].note}", file=sys.stderr, flush=True)
        print()
        print_table(rows)
        if args.regularisers:
            print_regulariser_cost(rows)
        if args.hessian:
            print("\nthe cost of measuring λ1 (measure.hessian_every) against training:")
            for net_name in nets:
                hessian_cost(net_name, args, device, scratch)
        if not args.no_projection:
            project_fixup_row(args, device, scratch, compile_mode)


if __name__ == "__main__":
    main()
