"""The typed schema of a run's config: the dataclasses Hydra merges the YAML files of `configs/` into.

An unknown key or a value of the wrong type fails when Hydra composes the config, naming the key. Beside each
setting its declaration says what it is for when that is not what the run computes:
- `control(...)`: how or where to run (device, paths, progress bars, trackers); never part of a run's identity;
- `task_section(...)`: a section only one task reads (`translation`); part of the identity of that task's runs only.
Which model, dataset and schedule keys only some families read is declared by their registries (initbench/models,
initbench/data, initbench/optim), not here.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from initbench.errors import ConfigError

CONFIG_DIR = str(Path(__file__).resolve().parent.parent.parent / "configs")
PRECISIONS = ("fp32", "bf16")
# compile=true is torch.compile's default mode; a mode name picks another (reduce-overhead = CUDA graphs).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CONTROL = "control"
TASK = "task"


def control(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A setting that says how or where to run, not what is computed: left out of the run's identity."""
    if default is not dataclasses.MISSING:
        kwargs["default"] = default
    return field(metadata={CONTROL: True}, **kwargs)


def task_section(task: str, factory: Any) -> Any:
    """A section that only `task` reads: part of the identity of that task's runs only."""
    return field(default_factory=factory, metadata={TASK: task})


def is_control(schema: type, name: str) -> bool:
    return bool(_metadata(schema, name).get(CONTROL))


def section_task(schema: type, name: str) -> str | None:
    return _metadata(schema, name).get(TASK)


def _metadata(schema: type, name: str) -> dict:
    fields = {f.name: f for f in dataclasses.fields(schema)}
    return dict(fields[name].metadata) if name in fields else {}


@dataclass
class DatasetConfig:
    name: str = MISSING
    root: str = control("${oc.env:INITBENCH_DATA,data}")
    download: bool = control(True)
    verify_md5: bool = control(True)
    num_classes: int = 10
    mean: list[float] = field(default_factory=lambda: [0.4914, 0.4822, 0.4465])
    std: list[float] = field(default_factory=lambda: [0.2470, 0.2435, 0.2616])
    augment: str = "crop_flip"
    # Side of the square hole cut out of each training image after normalisation (0 = off; 16 in the papers).
    cutout: int = 0
    # Size of each split: 0 keeps the whole split; the synthetic set is generated at this size.
    train_size: int = 0
    test_size: int = 0
    cache_dir: str = control("${oc.env:INITBENCH_CACHE,${oc.env:HOME,.}/.cache/initbench}")
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
    # Every family's identity carries the keys up to branch_scalars; the keys after them belong to the families
    # that declare them in initbench/models (Arch.keys) and are left out of the other families' identities.
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
    # Plain nets (plain_cnn, mlp) only.
    activation: Any = None  # relu | tanh
    downsample_at: Any = None  # plain_cnn: 0-based positions of the stride-2 convs
    # Activation checkpointing over segments of the deep families' layers: 0 = off, a number, or auto
    # (models/checkpointing.py). It changes memory and time, not results, so it is run control.
    checkpoint_segments: Any = control(0)
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
    # schedule=linear only: the LR it decays to (initbench/optim.py).
    min_lr: float = 0.0
    # schedule=inverse_sqrt without warmup only: lr * sqrt(R / (R + step)) (initbench/optim.py).
    reference_steps: int = 4000


@dataclass
class TrainConfig:
    # Mixup's Beta(alpha, alpha) for the mixing weight of each mini-batch (0 = off; 1 in Fixup's CIFAR script).
    mixup_alpha: float = 0.0


@dataclass
class TranslationConfig:
    """Translation training and evaluation (initbench/tasks/translation.py, initbench/tasks/decoding.py)."""

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
    num_workers: int = control(2)


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
    # train: train the task the dataset declares (initbench/tasks); probe: probe the model at init instead.
    task: str = control("train")
    experiment_name: str = "adhoc"
    seed: Any = 0
    epochs: int = 200
    batch_size: int = 128
    eval_batch_size: int = 1000
    # Warmup length: 0 or "none" = off, a number = epochs, "<n>st" = optimizer steps.
    warmup: Any = 0
    warmup_shape: str = "linear"
    norm: str = "batchnorm"
    force: bool = control(False)
    device: str = control("auto")
    deterministic: bool = False
    precision: str = "fp32"  # one of PRECISIONS
    compile: Any = False  # false | true | one of COMPILE_MODES
    channels_last: bool = False
    progress: bool = control(True)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    init: Any = MISSING
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    data: DataLoaderConfig = field(default_factory=DataLoaderConfig)
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    translation: TranslationConfig = task_section("translation", TranslationConfig)
    probe: Any = control(default_factory=lambda: {"batch_size": 128, "hessian": True})
    logger: LoggerConfig = control(default_factory=LoggerConfig)


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)


def compose(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The config `python -m initbench <overrides>` would run, composed by Hydra without running it (scripts and
    notebooks use it; it checks nothing beyond the schema's types)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


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


def check_known_keys(node: DictConfig, schema: type, prefix: str = "") -> None:
    """A key the schema lacks (added with `+key=...` or by a config file) would be ignored silently."""
    hints = typing.get_type_hints(schema)
    for key in node.keys():
        if key == "hydra" and not prefix:
            continue
        if key not in hints:
            raise ConfigError(unknown_setting(f"{prefix}{key}"))
        if dataclasses.is_dataclass(hints[key]) and isinstance(node[key], DictConfig):
            check_known_keys(node[key], hints[key], f"{prefix}{key}.")
