"""Typed schema of a run's config, and the checks that run before any training.

Hydra merges the YAML files of `configs/` into these dataclasses, so an unknown key or a
value of the wrong type fails at composition time with the key's name. Checks that need
more than a type (allowed choices, combinations) live in `validate`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from initbench.errors import ConfigError, choice_error

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")
TASKS = ("train", "probe")
NORMS = ("batchnorm", "none", "weightnorm", "layernorm")
LOADERS = ("resident", "torch")
PRECISIONS = ("fp32", "bf16")
# compile=true is torch.compile's default mode; a mode name picks another (reduce-overhead = CUDA graphs).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
AUGMENTS = ("crop_flip", "resized_crop_flip", "none")  # resized_crop_flip: ImageNet's (data/imagenet.py)
STREAMED_DATASETS = ("imagenet",)  # read from disk batch by batch, never held in memory
SCHEDULE_INTERVALS = ("step", "epoch")
HESSIAN_METHODS, BN_MODES, AD_MODES = ("lanczos", "power"), ("train", "eval"), ("auto", "forward", "reverse")
WARMUP_SHAPES = ("linear", "quadratic")


@dataclass
class DatasetConfig:
    name: str = MISSING
    root: str = "${oc.env:INITBENCH_DATA,data}"
    download: bool = True
    verify_md5: bool = True
    num_classes: int = 10
    mean: list[float] = field(default_factory=lambda: [0.4914, 0.4822, 0.4465])
    std: list[float] = field(default_factory=lambda: [0.2470, 0.2435, 0.2616])
    augment: str = "crop_flip"
    # Side of the square hole cut out of each training image after normalisation (0 = off; 16 in the papers).
    cutout: int = 0
    # Size of each split: 0 keeps the whole split; the synthetic set is generated at this size.
    train_size: int = 0
    test_size: int = 0
    cache_dir: str = "${oc.env:INITBENCH_CACHE,${oc.env:HOME,.}/.cache/initbench}"
    # ImageNet (data/imagenet.py): the training crop / evaluation centre crop, and the side resized to before it.
    crop_size: int = 224
    resize_size: int = 256
    # Translation data (initbench/data/translation.py): one dictionary for both languages (prepared data: built
    # from both sides; the reference keeps two), and the synthetic task's vocabulary and sentence lengths.
    joined_dictionary: bool = False
    vocab_size: int = 0
    min_length: int = 3
    max_length: int = 12


@dataclass
class ModelConfig:
    name: str = MISSING
    arch: str = MISSING
    depth: int = MISSING
    width: int = 16
    widen_factor: int = 1
    block: str = "basic"
    layout: str = "postact"
    shortcut: str = "A"
    # Per-block scalar parameters some inits need (Fixup's biases and multiplier, ReZero's gate).
    branch_scalars: str = "none"
    # Plain nets (plain_cnn, mlp) only; not part of other families' identity (_FAMILY_MODEL_KEYS).
    activation: Any = None  # relu | tanh
    downsample_at: Any = None  # plain_cnn: 0-based positions of the stride-2 convs
    # Activation checkpointing over segments of the deep families' layers: 0 = off, a number, or auto
    # (models/checkpointing.py). It changes memory and time, not results, so it is run control.
    checkpoint_segments: Any = 0
    # Transformers (initbench/models/transformer.py): depth = encoder layers, layout = post_ln | pre_ln.
    decoder_depth: int = 6
    embed_dim: int = 512
    ffn_dim: int = 1024
    heads: int = 4
    dropout: float = 0.1
    attention_dropout: float = 0.0
    relu_dropout: float = 0.0
    share_embeddings: str = "decoder"  # decoder (input = output projection) | all | none
    max_positions: int = 1024


@dataclass
class OptimConfig:
    name: str = MISSING
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    # Regex on parameter names -> LR multiplier (first match wins), e.g. Fixup's scalars at lr/10.
    lr_multipliers: dict[str, float] = field(default_factory=dict)
    # Regex on parameter names whose matches get no weight decay ("" = none), e.g. GradInit's "bn|norm".
    no_weight_decay: str = ""
    # Clip each run's gradient to this global L2 norm before the step (0 = off).
    clip_grad_norm: float = 0.0


@dataclass
class ScheduleConfig:
    name: str = MISSING
    # Fractions of training (0..1) at which the step schedule multiplies the LR by gamma:
    # [0.5, 0.75] is He et al.'s 32k/48k of 64k iterations and Fixup's epochs 100/150 of 200.
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1
    # When the schedule moves: every optimizer step (GradInit's cosine), or at epoch starts only.
    interval: str = "step"
    # linear: the LR GradInit's fairseq script decays to (translation.md 3).
    min_lr: float = 0.0
    # inverse_sqrt without warmup: lr * sqrt(R / (R + step)), T-Fixup's no-warmup form (translation.md 5).
    reference_steps: int = 4000


@dataclass
class TrainConfig:
    # Mixup's Beta(alpha, alpha) for the mixing weight of each mini-batch (0 = off; 1 in Fixup's CIFAR script).
    mixup_alpha: float = 0.0


@dataclass
class TranslationConfig:
    """Translation training and evaluation (initbench/train/translation.py; translation.md 3)."""

    max_tokens: int = 4096  # token budget of a training batch: sentences x longest side (EOS included)
    eval_max_tokens: int = 8192  # the same for evaluation batches
    label_smoothing: float = 0.1
    smoothing_form: str = "current"  # current (eps/(V-1) on non-targets) | fairseq2018 (eps/V on all)
    beam: int = 5
    lenpen: float = 1.0
    max_len_a: float = 1.2  # hypotheses end by a * source length + b (fairseq's validation-BLEU setting)
    max_len_b: int = 10
    eval_splits: list[str] = field(default_factory=lambda: ["valid", "test"])


@dataclass
class HessianConfig:
    """How λ1 is measured (initbench/measure/hessian.py); presets in configs/measure/hessian/."""

    method: str = "lanczos"  # lanczos | power
    steps: int = 20  # Lanczos steps / power iterations (one Hessian-vector product each)
    batches: int = 10  # fixed training batches the loss averages over
    batch_fraction: float = 0.0  # > 0: this share of an epoch's batches instead (Arpit et al.: 0.1)
    batch_size: int = 128
    bn_mode: str = "train"  # train: batch statistics, running statistics untouched | eval
    augment: bool = False  # measurement batches augmented like training batches
    resample: bool = False  # fresh batches for every product (Arpit et al.'s code; the operator is then not fixed)
    arpit_quirks: bool = False  # power: rescale by the largest entry, 1/(batches + 1) averaging
    trace_samples: int = 0  # Hutchinson probes for tr(H); 0 = off
    ad: str = "auto"  # forward (jvp of grad) | reverse (double backward) | auto (forward, else reverse)


@dataclass
class MeasureConfig:
    hessian: HessianConfig = field(default_factory=HessianConfig)
    # When training measures λ1: null (never), N (every N optimizer steps), or a list of steps, where "epoch" adds
    # the end of every epoch, e.g. [0, 1, 2, 5, 10, 20, 50, 100, epoch] (Gilmer-style).
    hessian_every: Any = None


@dataclass
class DataLoaderConfig:
    loader: str = "resident"
    num_workers: int = 2


@dataclass
class DivergenceConfig:
    # A run diverges when its training loss is non-finite or exceeds loss_factor x its first loss.
    loss_factor: float = 10.0
    # Steps between the host reads the divergence flags (the only sync inside an epoch).
    check_every: int = 50


@dataclass
class TensorBoardLoggerConfig:
    """logger=tensorboard: event files in each run's folder (initbench/results/trackers.py); nothing to set."""


@dataclass
class MlflowLoggerConfig:
    # $MLFLOW_TRACKING_URI when set, else a local database under results/; or a tracking server's http(s):// URI.
    tracking_uri: str = "${oc.env:MLFLOW_TRACKING_URI,sqlite:///results/mlflow.db}"
    experiment: str = "${experiment_name}"  # the MLflow experiment the runs are grouped in: the sweep's by default


@dataclass
class LoggerConfig:
    """Optional trackers fed the metrics rows beside the CSVs (configs/logger/); a section that is set is on."""

    tensorboard: Optional[TensorBoardLoggerConfig] = None
    mlflow: Optional[MlflowLoggerConfig] = None


@dataclass
class Config:
    defaults: list[Any] = field(default_factory=lambda: ["_self_"])
    task: str = "train"
    experiment_name: str = "adhoc"
    seed: Any = 0
    epochs: int = 200
    batch_size: int = 128
    eval_batch_size: int = 1000
    # Warmup length: 0 or "none" = off, a number = epochs, "<n>st" = optimizer steps.
    warmup: Any = 0
    warmup_shape: str = "linear"
    norm: str = "batchnorm"
    force: bool = False
    device: str = "auto"
    deterministic: bool = False
    precision: str = "fp32"
    compile: Any = False  # false | true | one of COMPILE_MODES
    channels_last: bool = False
    progress: bool = True
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    init: Any = MISSING
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    data: DataLoaderConfig = field(default_factory=DataLoaderConfig)
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    translation: TranslationConfig = field(default_factory=TranslationConfig)
    probe: Any = field(default_factory=lambda: {"batch_size": 128, "hessian": True})
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)


# Keys that say how or where to run, not what is computed: they do not change a run's identity.
_CONTROL_KEYS = ("force", "progress", "device", "task", "probe", "logger")
_CONTROL_DATASET_KEYS = ("root", "download", "cache_dir", "verify_md5")
_CONTROL_DATA_KEYS = ("num_workers",)
_CONTROL_MODEL_KEYS = ("checkpoint_segments",)


def recipe_identity(cfg: DictConfig | dict) -> dict:
    """The config fields that define what a run computes, except its seed (paths and run control removed):
    the runs of one recipe over several seeds, solo or fused, share it."""
    tree = cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)
    tree = {k: v for k, v in tree.items() if k not in ("hydra", "seed") and k not in _CONTROL_KEYS}
    tree["dataset"] = {k: v for k, v in tree["dataset"].items() if k not in _CONTROL_DATASET_KEYS}
    tree["data"] = {k: v for k, v in tree["data"].items() if k not in _CONTROL_DATA_KEYS}
    arch = tree["model"].get("arch")
    foreign = {key for family, keys in _FAMILY_MODEL_KEYS.items() if family != arch for key in keys}
    foreign -= set(_FAMILY_MODEL_KEYS.get(arch, ()))
    tree["model"] = {k: v for k, v in tree["model"].items() if k not in _CONTROL_MODEL_KEYS and k not in foreign}
    _drop_unused_keys(tree)
    return tree


def _drop_unused_keys(tree: dict) -> None:
    """The translation settings (and the linear schedule's floor) outside the runs they apply to are left out of the
    identity, so adding them changed no other run's identity."""
    if tree["model"].get("arch") != "transformer":
        tree.pop("translation", None)
        tree["dataset"] = {k: v for k, v in tree["dataset"].items() if k not in _TRANSLATION_DATASET_KEYS}
    if tree["dataset"].get("name") not in STREAMED_DATASETS:
        tree["dataset"] = {k: v for k, v in tree["dataset"].items() if k not in _STREAMED_DATASET_KEYS}
    name = tree.get("schedule", {}).get("name")
    unused = {"min_lr"} if name != "linear" else set()
    unused |= {"reference_steps"} if name != "inverse_sqrt" else set()
    tree["schedule"] = {k: v for k, v in tree["schedule"].items() if k not in unused}


# Model keys only some families read (the others carry the schema default). Outside those families they are left
# out of a run's identity, so adding a family changed no other run's identity.
_FAMILY_MODEL_KEYS = {
    "transformer": ("decoder_depth", "embed_dim", "ffn_dim", "heads", "dropout", "attention_dropout", "relu_dropout",
                    "share_embeddings", "max_positions"),
    "plain_cnn": ("activation", "downsample_at"),
    "mlp": ("activation",),
}
_TRANSLATION_DATASET_KEYS = ("joined_dictionary", "vocab_size", "min_length", "max_length")
_STREAMED_DATASET_KEYS = ("crop_size", "resize_size")


def _digest(tree: dict) -> str:
    return hashlib.sha1(json.dumps(tree, sort_keys=True).encode()).hexdigest()


def recipe_digest(cfg: DictConfig | dict) -> str:
    """A fingerprint of `recipe_identity`: how a table finds the runs of a sweep job's recipe."""
    return _digest(recipe_identity(cfg))


def run_identity(cfg: DictConfig | dict, seed: Any) -> dict:
    """The config fields that define what a run computes: its recipe and its seed."""
    return {**recipe_identity(cfg), "seed": seed}


def run_id(cfg: DictConfig | dict, seed: int | list[int]) -> str:
    """Readable, stable id: same config and seed -> same id, so a re-launched sweep finds its runs.
    With a list of seeds it names the job that trains them fused (its folder, see `job_name`)."""
    identity = run_identity(cfg, seed)
    digest = _digest(identity)[:8]
    seed_label = "-".join(str(s) for s in seed) if isinstance(seed, list) else str(seed)
    return f"{identity['model']['name']}-{identity['norm']}-{identity['init']['name']}-s{seed_label}-{digest}"


def job_name(*, _root_: DictConfig) -> str:
    """Hydra resolver for run and sweep directory names (`${ib_job_name:}`)."""
    tree = OmegaConf.to_container(_root_, resolve=False)
    tree = {k: v for k, v in tree.items() if k != "hydra"}
    resolved = OmegaConf.to_container(OmegaConf.create(tree), resolve=True)
    try:
        seeds = seeds_of(resolved["seed"])
    except ConfigError:
        # An error raised inside Hydra's interpolation ends in a traceback; validate() reports it cleanly
        # once the job starts, and the job's folder is removed again.
        return "invalid-seed"
    name = run_id(resolved, seeds if len(seeds) > 1 else seeds[0])
    # `task` is not part of a run's identity, so a probe gets its own folder next to the training run's.
    return f"probe-{name}" if resolved.get("task") == "probe" else name


def as_list(value: Any) -> list:
    """A setting that takes one value or a list of them (seed, measure.hessian_every, a table's metric), as a list."""
    return list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else [value]


def seeds_of(seed: Any) -> list[int]:
    """`seed` is one int, or a list of ints trained together as fused runs."""
    values = as_list(seed)
    if not values or not all(isinstance(s, int) and not isinstance(s, bool) for s in values):
        raise ConfigError(f"seed={seed!r}: give an integer (seed=3) or a list of integers (seed=[0,1,2]).")
    if len(set(values)) != len(values):
        raise ConfigError(f"seed={list(values)} repeats a seed; each fused run needs its own seed.")
    return values


@dataclass(frozen=True)
class Warmup:
    """Parsed `warmup`: length in epochs or in steps (both 0 = off), and its shape."""

    epochs: float = 0.0
    steps: int = 0
    shape: str = "linear"

    @property
    def enabled(self) -> bool:
        return self.epochs > 0 or self.steps > 0

    def label(self) -> str:
        if not self.enabled:
            return "none"
        length = f"{self.steps}st" if self.steps else f"{self.epochs:g}ep"
        return length if self.shape == "linear" else f"{self.shape}:{length}"

    def total_steps(self, steps_per_epoch: int) -> int:
        return self.steps or int(round(self.epochs * steps_per_epoch))


def parse_warmup(value: Any, shape: str) -> Warmup:
    if shape not in WARMUP_SHAPES:
        raise choice_error("warmup_shape", shape, WARMUP_SHAPES)
    hint = "Use warmup=0 or warmup=none (off), warmup=5 (5 epochs) or warmup=500st (500 steps)."
    if value is None or (isinstance(value, str) and value.lower() in ("none", "off", "0")):
        return Warmup(shape=shape)
    if isinstance(value, bool):
        raise ConfigError(f"warmup={value!r} is not a warmup length. {hint}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"warmup={value!r} must be a finite number >= 0. {hint}")
        return Warmup(epochs=float(value), shape=shape)
    match = re.fullmatch(r"(\d+)\s*(st|steps?)", str(value).strip())
    if match:
        return Warmup(steps=int(match.group(1)), shape=shape)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ep|epochs?)", str(value).strip())
    if match:
        return Warmup(epochs=float(match.group(1)), shape=shape)
    raise ConfigError(f"warmup={value!r} is not a warmup length. {hint}")


def _section(kind: Any) -> Any:
    """The dataclass of a section that may be unset (Optional[...], as logger.mlflow), else `kind` itself."""
    return next((arg for arg in typing.get_args(kind) if dataclasses.is_dataclass(arg)), kind)


def _all_settings(schema: type, prefix: str = "") -> list[str]:
    settings = []
    for name, kind in typing.get_type_hints(schema).items():
        if name != "defaults":
            settings.append(f"{prefix}{name}")
            if dataclasses.is_dataclass(_section(kind)):
                settings.extend(_all_settings(_section(kind), f"{prefix}{name}."))
    return settings


def unknown_setting(key: str) -> str | None:
    """None when the dotted `key` is a setting of the schema (or lies inside a free-form one such as
    `init.*`, whose options the init scheme checks); otherwise the message naming the nearest settings."""
    schema, parts = Config, key.split(".")
    for depth, part in enumerate(parts):
        hints = typing.get_type_hints(schema)
        if part not in hints or part == "defaults":
            section = ".".join(parts[:depth])
            by_name: dict[str, list[str]] = {}
            for setting in _all_settings(Config):
                by_name.setdefault(setting.rsplit(".", 1)[-1], []).append(setting)
            close = [s for name in difflib.get_close_matches(part, list(by_name), n=2, cutoff=0.75)
                     for s in by_name[name]]
            names = ", ".join(f"{section}.{name}" if section else name for name in hints if name != "defaults")
            return " ".join(filter(None, (
                f"{key} is not an initbench setting.",
                f"Did you mean {' or '.join(close)}?" if close else "",
                f"The settings of {section} are: {names}." if section else "",
                f"The top-level settings are: {names}." if not section and not close else "",
                "`python -m initbench --cfg job` prints every setting with its value.",
            )))
        if not dataclasses.is_dataclass(_section(hints[part])):
            return None
        schema = _section(hints[part])
    return None


def _check_known_keys(node: DictConfig, schema: type, prefix: str = "") -> None:
    """A key the schema lacks (added with `+key=...` or by a config file) would be ignored silently."""
    hints = typing.get_type_hints(schema)
    for key in node.keys():
        if key == "hydra" and not prefix:
            continue
        if key not in hints:
            raise ConfigError(unknown_setting(f"{prefix}{key}"))
        if dataclasses.is_dataclass(hints[key]) and isinstance(node[key], DictConfig):
            _check_known_keys(node[key], hints[key], f"{prefix}{key}.")


def _check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise choice_error(key, value, allowed)


def _check_positive(key: str, value: float, allow_zero: bool = False) -> None:
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key}={value!r} must be a finite number {bound}.")


def _check_unit_interval(key: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ConfigError(f"{key}={value!r} must be in [0, 1) (0.9 is the usual value); at 1 or above the "
                          "optimizer's running averages never forget and training blows up.")


def hessian_schedule(every: Any, steps_per_epoch: int, epochs: int) -> list[int]:
    """The optimizer steps (0 = at init) at which λ1 is measured, from `measure.hessian_every`."""
    if every is None:
        return []
    total = steps_per_epoch * epochs
    if isinstance(every, int) and not isinstance(every, bool):
        return list(range(0, total + 1, every))
    steps = set()
    for entry in as_list(every):
        steps |= set(range(steps_per_epoch, total + 1, steps_per_epoch)) if entry == "epoch" else {entry}
    return sorted(steps)


def _check_hessian(measure: DictConfig) -> None:
    hessian, every = measure.hessian, measure.hessian_every
    _check_choice("measure.hessian.method", hessian.method, HESSIAN_METHODS)
    _check_choice("measure.hessian.bn_mode", hessian.bn_mode, BN_MODES)
    _check_choice("measure.hessian.ad", hessian.ad, AD_MODES)
    for key in ("steps", "batches", "batch_size"):
        if hessian[key] < 1:
            raise ConfigError(f"measure.hessian.{key}={hessian[key]} must be >= 1 (the gilmer preset: steps 20, "
                              "batches 10, batch_size 128).")
    if not 0 <= hessian.batch_fraction <= 1 or hessian.trace_samples < 0:
        raise ConfigError("measure.hessian.batch_fraction must be in [0, 1] and measure.hessian.trace_samples >= 0.")
    hint = ("Give measure.hessian_every=null (off), a period (measure.hessian_every=100) or a list of steps and "
            "'epoch', e.g. 'measure.hessian_every=[0,1,2,5,10,epoch]'.")
    if isinstance(every, bool) or (isinstance(every, int) and every < 1):
        raise ConfigError(f"measure.hessian_every={every!r} is not a schedule. {hint}")
    if every is not None and not isinstance(every, int):
        entries = as_list(every)
        bad = [e for e in entries if e != "epoch" and (not isinstance(e, int) or isinstance(e, bool) or e < 0)]
        if bad or not entries:
            raise ConfigError(f"measure.hessian_every={every!r}: {bad or 'an empty list'} is not a step. {hint}")


def _check_streamed(cfg: DictConfig, seeds: list[int]) -> None:
    """What a dataset streamed from disk (ImageNet) supports, and the augmentation each kind of dataset has."""
    streamed = cfg.dataset.name in STREAMED_DATASETS
    if (cfg.dataset.augment == "resized_crop_flip") != streamed and cfg.dataset.augment != "none":
        fits = "resized_crop_flip" if streamed else "crop_flip"
        raise ConfigError(f"dataset.augment={cfg.dataset.augment} does not apply to {cfg.dataset.name}: use "
                          f"dataset.augment={fits} (or none).")
    if not streamed:
        return
    if min(cfg.dataset.crop_size, cfg.dataset.resize_size) < 1 or cfg.dataset.crop_size > cfg.dataset.resize_size:
        raise ConfigError(f"dataset.crop_size={cfg.dataset.crop_size} and dataset.resize_size="
                          f"{cfg.dataset.resize_size}: give 1 <= crop_size <= resize_size (ImageNet: 224 and 256).")
    unsupported = [setting for setting, used in (
        (f"fused seeds (seed={cfg.seed}); launch one job per seed", len(seeds) > 1),
        ("task=probe", cfg.task == "probe"),
        ("measure.hessian_every", cfg.measure.hessian_every is not None),
        (f"dataset.cutout={cfg.dataset.cutout} (the official ImageNet recipe has none)", cfg.dataset.cutout > 0),
    ) if used]
    if unsupported:
        raise ConfigError(f"dataset={cfg.dataset.name} streams from disk, one run per job; it does not support "
                          f"{', '.join(unsupported)}. Those need a dataset held in memory (e.g. cifar10).")


def validate(cfg: DictConfig) -> None:
    """Every check that needs no data or model: run before anything is built or written."""
    from initbench.data import DATASETS
    from initbench.inits import check_init
    from initbench.models import check_model, checkpoint_segments
    from initbench.train.translation import check_task

    _check_known_keys(cfg, Config)
    _check_choice("task", cfg.task, TASKS)
    _check_choice("norm", cfg.norm, NORMS)
    _check_choice("precision", cfg.precision, PRECISIONS)
    if not isinstance(cfg.compile, bool) and cfg.compile not in COMPILE_MODES:
        raise choice_error("compile", cfg.compile, ("true", "false", *COMPILE_MODES))
    _check_choice("data.loader", cfg.data.loader, LOADERS)
    _check_choice("dataset.name", cfg.dataset.name, tuple(DATASETS))
    _check_choice("dataset.augment", cfg.dataset.augment, AUGMENTS)
    _check_choice("optim.name", cfg.optim.name, ("sgd", "adam", "adamw"))
    _check_choice("schedule.name", cfg.schedule.name, ("step", "cosine", "constant", "inverse_sqrt", "linear"))
    _check_choice("schedule.interval", cfg.schedule.interval, SCHEDULE_INTERVALS)
    seeds = seeds_of(cfg.seed)
    if any(s < 0 for s in seeds):
        raise ConfigError(f"seed={cfg.seed} must be >= 0.")
    _check_positive("epochs", cfg.epochs)
    _check_positive("batch_size", cfg.batch_size)
    _check_positive("eval_batch_size", cfg.eval_batch_size)
    _check_positive("optim.lr", cfg.optim.lr)
    _check_positive("optim.weight_decay", cfg.optim.weight_decay, allow_zero=True)
    _check_unit_interval("optim.momentum", cfg.optim.momentum)
    for index, beta in enumerate(cfg.optim.betas):
        _check_unit_interval(f"optim.betas[{index}]", beta)
    if len(cfg.optim.betas) != 2:
        raise ConfigError(f"optim.betas={list(cfg.optim.betas)}: Adam takes two betas, e.g. optim.betas=[0.9,0.999].")
    _check_positive("optim.eps", cfg.optim.eps)
    _check_positive("optim.clip_grad_norm", cfg.optim.clip_grad_norm, allow_zero=True)
    _check_positive("train.mixup_alpha", cfg.train.mixup_alpha, allow_zero=True)
    _check_positive("dataset.cutout", cfg.dataset.cutout, allow_zero=True)
    _check_positive("divergence.loss_factor", cfg.divergence.loss_factor)
    _check_positive("divergence.check_every", cfg.divergence.check_every)
    _check_positive("dataset.train_size", cfg.dataset.train_size, allow_zero=True)
    _check_positive("dataset.test_size", cfg.dataset.test_size, allow_zero=True)
    if not len(cfg.dataset.mean) == len(cfg.dataset.std) >= 1 or min(cfg.dataset.std) <= 0:
        raise ConfigError("dataset.mean and dataset.std need one value per image channel (three for CIFAR, one for "
                          "MNIST), std > 0.")
    for pattern, key in [(p, f"optim.lr_multipliers key {p!r}") for p in cfg.optim.lr_multipliers] + \
            [(cfg.optim.no_weight_decay, f"optim.no_weight_decay={cfg.optim.no_weight_decay!r}")]:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ConfigError(f"{key} is not a valid regex: {err}") from None
    for milestone in cfg.schedule.milestones:
        if not 0 < milestone < 1:
            raise ConfigError(
                f"schedule.milestones={list(cfg.schedule.milestones)}: milestones are fractions of training, "
                "each between 0 and 1 (e.g. [0.5, 0.75] for epochs 100 and 150 of 200)."
            )
    _check_hessian(cfg.measure)
    warmup = parse_warmup(cfg.warmup, cfg.warmup_shape)
    if warmup.epochs >= cfg.epochs:
        raise ConfigError(
            f"warmup={cfg.warmup} epochs is not shorter than training (epochs={cfg.epochs:g}). "
            "Shorten the warmup or train longer."
        )
    if len(seeds) > 1 and cfg.data.loader == "torch":
        raise ConfigError("Fused runs (seed=[...]) need data.loader=resident; the torch loader feeds one run.")
    check_model(cfg.model, cfg.norm)
    if len(seeds) > 1 and checkpoint_segments(cfg.model):
        raise ConfigError(
            f"model.checkpoint_segments={cfg.model.checkpoint_segments} checkpoints this {cfg.model.depth}-layer net, "
            f"but fused seeds (seed={list(seeds)}) run as one vmapped model, which torch's activation checkpointing "
            "does not support. Launch the seeds as separate jobs (python -m initbench -m ... seed=0,1,2), or set "
            "model.checkpoint_segments=0 if the fused net fits in memory."
        )
    _check_streamed(cfg, seeds)
    check_init(cfg.init, cfg.model, cfg.norm)
    check_task(cfg)
