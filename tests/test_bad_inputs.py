"""Every mistake a user can make on the command line ends in a short message that names the problem and what to do,
with a non-zero exit status, no traceback, and nothing new or lost in the results tree.

Each case runs the real CLI entry point (`initbench.cli.main`, what `python -m initbench` runs) in a child forked
from one process that imported initbench once (tests/cli_fork.py), in a work folder that already holds a results
tree with a finished run. Hydra's own bookkeeping (.hydra/, the job log) in a run folder that existed before is
the only thing allowed to appear.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, write_fake_cifar10, write_fake_jpeg_folder, write_idx_mnist
from tests.run_fixtures import write_run

LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d ")
MAX_LINES = 30  # one paragraph; Hydra's "Could not find" may also list all the group's options, one per line
MAX_OPTIONS = 60
MAX_MESSAGE = 600


@dataclass(frozen=True)
class Case:
    argv: list[str]  # "{w}" stands for the work folder
    problem: str  # regex: the message names what is wrong ...
    action: str  # ... and what to do about it
    setup: Callable[[Path], None] | None = None
    base: list[str] = field(default_factory=lambda: list(TINY))


# ----------------------------------------------------------------------------------------------- setups
def cifar(w: Path) -> None:
    write_fake_cifar10(w / "data")


def corrupt_pickle(w: Path) -> None:
    (write_fake_cifar10(w / "data") / "data_batch_3").write_bytes(b"\x80\x04 not a pickle")


def truncated_pickle(w: Path) -> None:
    batch = write_fake_cifar10(w / "data") / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:500])


def truncated_jpeg(w: Path) -> None:
    image = sorted((write_fake_jpeg_folder(w / "data", per_class=1) / "train").rglob("*.jpg"))[0]
    image.write_bytes(image.read_bytes()[:200])


def empty_image_folder(w: Path) -> None:
    for split in ("train", "test"):
        (w / "data" / "cifar10-jpeg" / split).mkdir(parents=True)


def class_without_images(w: Path) -> None:
    for split in ("train", "test"):
        (w / "data" / "cifar10-jpeg" / split / "cat").mkdir(parents=True)


def corrupt_archive(w: Path) -> None:
    (w / "data").mkdir()
    (w / "data" / "cifar10-jpeg.tar.xz").write_bytes(b"\xfd7zXZ\x00 cut short")


def mnist(w: Path) -> None:
    write_idx_mnist(w / "data" / "MNIST" / "raw")


def truncated_mnist(w: Path) -> None:
    images = write_idx_mnist(w / "data" / "MNIST" / "raw") / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])


def iwslt_codes_only(w: Path) -> None:
    folder = w / "data" / "iwslt14.tokenized.de-en"
    folder.mkdir(parents=True)
    (folder / "code").write_text("#version: 0.2\nd e\n")


def iwslt_misaligned(w: Path) -> None:
    folder = w / "data" / "iwslt14.tokenized.de-en"
    folder.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (folder / f"{split}.de").write_text("ein haus\nder hund\n")
        (folder / f"{split}.en").write_text("a house\n" if split == "valid" else "a house\nthe dog\n")


TRANSLATION = ["+experiment=smoke_translation", "progress=false", "dataset.train_size=50", "dataset.test_size=5"]
IWSLT = ["+experiment=iwslt14_postln", "progress=false", "dataset.root={w}/data"]


def file_in_the_way(w: Path) -> None:
    (w / "afile").write_text("a file where a folder is expected\n")


def table_file(rows: str, reported: str = "", metric: str = "best_test_error") -> Callable[[Path], None]:
    """A user's own table file, {w}/my_table.yaml, over the fixup_cifar10 sweep (jobs: +experiment=cifar10_resnet110
    and cifar10_resnet110_mixup x +method=bn_kaiming and fixup)."""
    text = (f"title: My table\nsweep: fixup_cifar10\nmetric: {metric}\ncolumns:\n"
            "  ResNet-110: {+experiment: cifar10_resnet110}\n  Mixup: {+experiment: cifar10_resnet110_mixup}\n"
            f"rows:\n{rows}{reported}")

    def setup(w: Path) -> None:
        (w / "my_table.yaml").write_text(text)
    return setup


BOTH_ROWS = "  BN: {+method: bn_kaiming}\n  Fixup: {+method: fixup}\n"
MY_TABLE = ["table", "{w}/my_table.yaml", "--root", "{w}/results"]


def interrupted_run(w: Path, checkpoint: bytes | None = b"PK\x03\x04 cut short") -> Path:
    """A run killed mid-training: its files, Hydra's, and a damaged checkpoint."""
    run = w / "results" / "runs" / "interrupted"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("epochs: 1\n")
    (run / "initbench.log").write_text("[2026-01-01 00:00:00,000][initbench][INFO] - epoch 1/2\n")
    (run / "config.yaml").write_text("epochs: 2\n")
    (run / "env.json").write_text("{}\n")
    (run / "metrics.csv").write_text("run_id,epoch,step,split,metric,value\nx,1,4,train,loss,2.3\n")
    if checkpoint is not None:
        (run / "checkpoint.pt").write_bytes(checkpoint)
    return run


def foreign_checkpoint(w: Path) -> None:
    run = interrupted_run(w, checkpoint=None)
    torch.save({"version": 1, "runs": {"some-other-run": {}}}, run / "checkpoint.pt")


def old_summary(w: Path) -> None:
    run = interrupted_run(w, checkpoint=None)
    (run / "summary.csv").write_text("run_id,final_error\nold-run,7.5\n")


# ----------------------------------------------------------------------------------------------- cases
RUN_DIR = "hydra.run.dir={w}/results/runs/interrupted"
CIFAR = ["dataset=cifar10", "dataset.root={w}/data", "dataset.download=false"]
JPEG = ["dataset=cifar10_jpeg", "dataset.root={w}/data"]
CASES = {
    # deep plain nets and checkpointing
    "plain_cnn_depth_zero": Case(["model=plain_cnn", "model.depth=0", "init=kaiming"],
                                 r"model\.depth=0 cannot be built", r"model\.depth >= 1"),
    "mlp_negative_depth": Case(["model=mlp", "model.depth=-3", "init=kaiming"], r"model\.depth=-3 cannot be built",
                               r"model\.depth >= 1"),
    "plain_cnn_depth_misfits_downsampling": Case(["model=plain_cnn", "model.depth=2", "init=kaiming"],
                                                 r"model\.depth=2 does not fit the down-sampling",
                                                 r"model\.downsample_at=\[\]"),
    "fixup_on_plain_cnn": Case(["model=plain_cnn", "init=fixup"], r"branch_scalars=fixup needs residual branches",
                               r"init=delta_orthogonal"),
    "rezero_on_plain_cnn": Case(["model=plain_cnn", "init=rezero"], r"branch_scalars=rezero needs residual",
                                r"defined for residual nets only"),
    "skipinit_on_mlp": Case(["model=mlp", "init=skipinit"], r"branch_scalars=gate needs residual branches",
                            r"init=delta_orthogonal"),
    "delta_orthogonal_on_resnet": Case(["init=delta_orthogonal", "norm=none"],
                                       r"does not define model\.arch=resnet", r"model=plain_cnn"),
    "checkpoint_segments_beyond_depth": Case(["model=plain_cnn", "model.depth=4", "model.checkpoint_segments=5",
                                              "init=kaiming"], r"more than the 4 checkpointable units",
                                             r"Use at most 4"),
    "checkpoint_with_fused_seeds": Case(["model=plain_cnn", "model.depth=4", "model.checkpoint_segments=2",
                                         "init=kaiming", "seed=[0,1]"], r"fused seeds .* vmapped",
                                        r"separate jobs"),
    "mnist_missing": Case(["dataset=mnist", "dataset.root={w}/data", "dataset.download=false", "model=mlp",
                           "init=kaiming"], r"MNIST is not complete under .*MNIST/raw", r"dataset\.root"),
    "mnist_three_channel_normalisation": Case(["dataset=mnist", "dataset.root={w}/data", "model=mlp", "init=kaiming",
                                               "dataset.mean=[0.5,0.5,0.5]", "dataset.std=[1,1,1]"],
                                              r"mnist has 1-channel images but dataset\.mean/dataset\.std give 3",
                                              r"one per channel", setup=mnist),
    "mnist_truncated_file": Case(["dataset=mnist", "dataset.root={w}/data", "model=mlp", "init=kaiming"],
                                 r"MNIST under .*raw has a corrupt IDX file", r"download it again",
                                 setup=truncated_mnist),
    "net_too_large_for_memory": Case(["model=plain_cnn", "model.width=300000", "model.depth=3", "init=kaiming"],
                                     r"Out of memory .*batch_size=32", r"model\.checkpoint_segments=auto"),
    # config groups, keys and types (Hydra's composition, and the key check before it)
    "unknown_init": Case(["init=kaimng"], r"Could not find 'init/kaimng'",
                         r"Available options in 'init':[\s\S]*kaiming"),
    "unknown_model": Case(["model=resnet57"], r"Could not find 'model/resnet57'", r"Available options[\s\S]*resnet56"),
    "unknown_experiment": Case(["+experiment=smok"], r"Could not find 'experiment/smok'", r"smoke", base=[]),
    "experiment_without_plus": Case(["experiment=smoke"], r"Could not override 'experiment'",
                                    r"use \+experiment=smoke", base=[]),
    "unknown_key": Case(["optim.learning_rate=0.1"], r"optim\.learning_rate is not an initbench setting",
                        r"settings of optim are: .*optim\.lr,"),
    "unknown_key_added": Case(["+optim.learning_rate=0.1"], r"optim\.learning_rate is not an initbench setting",
                              r"optim\.lr,"),
    "misspelt_key": Case(["epoch=3"], r"epoch is not an initbench setting", r"Did you mean epochs\?"),
    "key_in_wrong_section": Case(["lr=0.5"], r"lr is not an initbench setting", r"Did you mean optim\.lr\?"),
    "unknown_init_option": Case(["+init.gian=2"], r"init=kaiming: Key 'gian'", r"Options of this scheme: init\.mode"),
    "init_choice": Case(["init.mode=fan_middle"], r"init\.mode='fan_middle' is not supported", r"fan_in, fan_out"),
    "wrong_type_int": Case(["epochs=three"], r"epochs=three", r"could not be converted to Integer"),
    "wrong_type_float": Case(["optim.lr=fast"], r"optim\.lr=fast", r"could not be converted to Float"),
    "wrong_type_bool": Case(["deterministic=maybe"], r"deterministic=maybe", r"not a valid bool"),
    "unknown_choice": Case(["norm=groupnorm"], r"norm='groupnorm' is not supported", r"batchnorm, none, weightnorm"),
    "unknown_task": Case(["task=bogus"], r"task='bogus' is not supported", r"train, probe"),
    # architecture and init
    "resnet_57": Case(["model.depth=57"], r"model\.depth=57 is not a valid depth",
                      r"nearest valid depths are 56 and 62"),
    "depth_too_small": Case(["model.depth=2"], r"model\.depth=2 is not a valid depth", r"model\.depth=8"),
    "wrn_depth": Case(["model=wrn40_10", "model.depth=41"], r"model\.depth=41 .* 6n\+4", r"40 and 46"),
    "fixup_with_batchnorm": Case(["init=fixup", "norm=batchnorm"], r"norm=batchnorm", r"use norm=none"),
    "fixup_on_preact": Case(["init=fixup", "model.layout=preact"], r"got layout=preact", r"layout=postact"),
    "wn_init_on_batchnorm": Case(["init=wn_arpit", "norm=batchnorm"], r"init=wn_arpit does not define norm=batchnorm",
                                 r"norm=weightnorm"),
    "arpit_layout_with_bn": Case(["model=resnet56_arpit", "norm=batchnorm"], r"identity_stream .* no BN layers",
                                 r"use norm=none or norm=weightnorm"),
    "probe_bad_combination": Case(["task=probe", "init=fixup", "norm=batchnorm"], r"norm=batchnorm", r"use norm=none"),
    # training length and learning rate
    "zero_epochs": Case(["epochs=0"], r"epochs=0 must be", r"> 0"),
    "negative_epochs": Case(["epochs=-3"], r"epochs=-3 must be", r"> 0"),
    "warmup_longer_than_training": Case(["warmup=5"], r"warmup=5 epochs is not shorter than training",
                                        r"Shorten the warmup or train longer"),
    "warmup_steps_longer_than_training": Case(["warmup=100000st"], r"warmup=100000st is not shorter than training",
                                              r"Shorten the warmup or train longer"),
    "warmup_word": Case(["warmup=soon"], r"warmup='soon' is not a warmup length", r"warmup=500st"),
    "nan_lr": Case(["optim.lr=nan"], r"optim\.lr=nan", r"finite number > 0"),
    "infinite_lr": Case(["optim.lr=inf"], r"optim\.lr=inf", r"finite number > 0"),
    "negative_lr": Case(["optim.lr=-0.1"], r"optim\.lr=-0\.1", r"finite number > 0"),
    "zero_lr": Case(["optim.lr=0"], r"optim\.lr=0\.0", r"finite number > 0"),
    "zero_batch": Case(["batch_size=0"], r"batch_size=0", r"> 0"),
    "milestone_in_epochs": Case(["schedule.milestones=[50]"], r"schedule\.milestones=\[50\.0\]",
                                r"fractions of training, each between 0 and 1"),
    # regularisers and optimiser values
    "cutout_larger_than_image": Case(["dataset.cutout=40"], r"dataset\.cutout=40 is larger than the 32x32 images",
                                     r"dataset\.cutout=16.* 0 turns cutout off"),
    "negative_cutout": Case(["dataset.cutout=-4"], r"dataset\.cutout=-4 must be", r">= 0"),
    "negative_mixup_alpha": Case(["train.mixup_alpha=-1"], r"train\.mixup_alpha=-1\.0 must be", r">= 0"),
    "negative_clip": Case(["optim.clip_grad_norm=-1"], r"optim\.clip_grad_norm=-1\.0 must be", r">= 0"),
    "no_weight_decay_typo": Case(["optim.no_weight_decay=batchnorm"],
                                 r"no_weight_decay='batchnorm' matches no parameter of this model",
                                 r"Fix the regex, or set optim\.no_weight_decay=''"),
    "no_weight_decay_bad_regex": Case(["optim.no_weight_decay='bn('"], r"optim\.no_weight_decay='bn\(' is not a valid "
                                      r"regex", r"missing \)"),
    "momentum_above_one": Case(["optim.momentum=1.5"], r"optim\.momentum=1\.5 must be in \[0, 1\)",
                               r"0\.9 is the usual value"),
    "adam_beta_above_one": Case(["optim=adam", "optim.betas=[0.9,1.5]"], r"optim\.betas\[1\]=1\.5 must be in "
                                r"\[0, 1\)", r"0\.9 is the usual value"),
    "negative_weight_decay": Case(["optim.weight_decay=-0.1"], r"optim\.weight_decay=-0\.1 must be", r">= 0"),
    "schedule_interval": Case(["schedule.interval=iteration"], r"schedule\.interval='iteration' is not supported",
                              r"step, epoch"),
    # baselines
    "zero_gamma_without_bn": Case(["init=zero_gamma", "norm=none"], r"init=zero_gamma does not define norm=none",
                                  r"residual nets with BN in their branches"),
    "zero_hadamard_on_weightnorm": Case(["init=zero_hadamard", "norm=weightnorm"],
                                        r"init=zero_hadamard does not define norm=weightnorm", r"norm=none or norm="),
    "wn_hanin_on_batchnorm": Case(["init=wn_hanin", "norm=batchnorm"], r"init=wn_hanin does not define norm=batchnorm",
                                  r"e\.g\. model=resnet110_arpit"),
    "lsuv_on_weightnorm": Case(["init=lsuv", "norm=weightnorm"], r"init=lsuv does not define norm=weightnorm",
                               r"norm=none or norm=batchnorm"),
    # curvature measurement
    "hessian_step_never_reached": Case(["measure.hessian_every=[0,5000]"],
                                       r"asks for steps \[5000\] that this run never reaches: it takes 4 steps",
                                       r"Drop them, or train longer"),
    "hessian_zero_steps": Case(["measure.hessian_every=[0]", "measure.hessian.steps=0"],
                               r"measure\.hessian\.steps=0 must be >= 1", r"gilmer preset: steps 20"),
    "hessian_more_steps_than_parameters": Case(["measure.hessian_every=[0]", "measure.hessian.steps=100000000"],
                                               r"steps=100000000 is more than the model's \d+ parameters",
                                               r"measure\.hessian\.steps=20"),
    "hessian_negative_period": Case(["measure.hessian_every=-3"], r"measure\.hessian_every=-3 is not a schedule",
                                    r"measure\.hessian_every=100"),
    "hessian_unknown_method": Case(["measure.hessian.method=arnoldi"],
                                   r"measure\.hessian\.method='arnoldi' is not supported", r"lanczos, power"),
    # learned inits
    "gradinit_gamma_zero": Case(["init=gradinit", "init.gamma=0"], r"init\.gamma=0\.0 must be > 0",
                                r"1 in the CIFAR scripts; inf turns the bound off"),
    "gradinit_min_scale_zero": Case(["init=gradinit", "init.min_scale=0"], r"init\.min_scale=0\.0 must be > 0",
                                    r"official lower bound is 0\.01"),
    "metainit_min_scale_negative": Case(["init=metainit", "init.min_scale=-1"], r"init\.min_scale=-1\.0 must be > 0",
                                        r"0\.01"),
    "gradinit_on_gradinit": Case(["init=gradinit", "init.base=gradinit"], r"init\.base=gradinit: the base is the init",
                                 r"must be a fixed scheme \(default, delta_orthogonal, fixup"),
    "gradinit_unknown_base": Case(["init=gradinit", "init.base=kaimin"], r"'kaimin' is not an init scheme",
                                  r"Fixed schemes: default"),
    "gradinit_too_many_iterations": Case(["init=gradinit", "init.iterations=100000", "init.batch_size=16"],
                                         r"init\.iterations=100000 would go over the 128 training images",
                                         r"Lower init\.iterations \(at most 533 here\)"),
    "gradinit_zero_iterations": Case(["init=gradinit", "init.iterations=0"], r"init\.iterations=0 must be >= 1",
                                     r"steps on the scales"),
    "gradinit_on_weightnorm": Case(["init=gradinit", "norm=weightnorm"], r"init=gradinit is defined for plain and BN",
                                   r"use norm=none or norm=batchnorm"),
    "metainit_unknown_data": Case(["init=metainit", "init.data=real"], r"init\.data='real' is not supported",
                                  r"synthetic, train"),
    # IDInit readings
    "idinit_tau_zero": Case(["init=idinit", "init.tau=0"], r"init\.tau=0\.0 must be > 0",
                            r"1 \(the paper's usual value\)"),
    "idinit_unknown_conv": Case(["init=idinit", "init.conv=diagonal"], r"init\.conv='diagonal' is not supported",
                                r"patch_cin_fastest, patch_torch, channel"),
    "unknown_idinit_reading": Case(["+idinit_reading=tau_1"], r"Could not find 'idinit_reading/tau_1'",
                                   r"tau_half"),
    # trackers (logger=...; the tracker packages are the trackers extra, which CI installs)
    "unknown_logger": Case(["logger=wandb"], r"Could not find 'logger/wandb'", r"Available options[\s\S]*mlflow"),
    "logger_option_without_logger": Case(["logger.mlflow.experiment=mine"], r"logger\.mlflow\.experiment is an "
                                         r"option of logger=mlflow, which this command does not select",
                                         r"Add logger=mlflow"),
    "logger_option_typo": Case(["logger=mlflow", "logger.mlflow.tracking_urx=x"],
                               r"logger\.mlflow\.tracking_urx is not an initbench setting",
                               r"Did you mean logger\.mlflow\.tracking_uri"),
    "mlflow_server_unreachable": Case(["logger=mlflow", "logger.mlflow.tracking_uri=http://127.0.0.1:9"],
                                      r"tracking_uri=http://127\.0\.0\.1:9 cannot be reached",
                                      r"Start the tracking server, fix the URI"),
    "mlflow_database_under_a_file": Case(["logger=mlflow", "logger.mlflow.tracking_uri=sqlite:///{w}/results/runs/"
                                          "finished-run/summary.csv/mlflow.db"], r"cannot create the folder",
                                         r"Give a database in a folder you can write"),
    # seeds and devices
    "negative_seed": Case(["seed=-1"], r"seed=-1 must be >= 0", r">= 0"),
    "text_seed": Case(["seed=abc"], r"seed='abc'", r"give an integer \(seed=3\)"),
    "float_seed": Case(["seed=1.5"], r"seed=1\.5", r"give an integer"),
    "repeated_seed": Case(["seed=[0,0]"], r"seed=\[0, 0\] repeats a seed", r"its own seed"),
    "fused_with_torch_loader": Case(["data.loader=torch", "seed=[0,1]"],
                                    r"Not supported together: fused seeds .* with data\.loader=torch",
                                    r"data\.loader=resident"),
    "unknown_device": Case(["device=gpu"], r"device='gpu' is not a device", r"device=cuda:<index>"),
    "missing_gpu": Case(["device=cuda:99"], r"device=cuda:99", r"device=auto"),
    # data
    "missing_cifar": Case(CIFAR, r"CIFAR-10 is not under .*/data/cifar-10-batches-py",
                          r"Download https://\S+ and extract it into .*set dataset\.root"),
    "corrupt_cifar_pickle": Case([*CIFAR, "dataset.verify_md5=false"], r"corrupt batch file", r"Delete .* download",
                                 setup=corrupt_pickle),
    "truncated_cifar_pickle": Case(CIFAR, r"incomplete or fails its checksum", r"Delete .* download it again",
                                   setup=truncated_pickle),
    "cifar_without_md5": Case(CIFAR, r"fails its checksum", r"dataset\.verify_md5=false", setup=cifar),
    "missing_jpeg_folder": Case(JPEG, r"No CIFAR-10 JPEG data at .*/data", r"Set dataset\.root"),
    "truncated_jpeg": Case(JPEG, r"Cannot decode image .*\.jpg", r"Replace or delete the file", setup=truncated_jpeg),
    "empty_image_folder": Case(JPEG, r"Couldn't find any class folder", r"Each class needs a folder with \.jpg",
                               setup=empty_image_folder),
    "class_without_images": Case(JPEG, r"Found no valid file for the classes cat", r"Each class needs a folder",
                                 setup=class_without_images),
    "corrupt_jpeg_archive": Case(JPEG, r"cifar10-jpeg\.tar\.xz is not a readable tar archive", r"Download it again",
                                 setup=corrupt_archive),
    # results folders, checkpoints, summaries
    "run_dir_under_a_file": Case(["hydra.run.dir={w}/afile/run"], r"Cannot write results to .*/afile/run",
                                 r"Set hydra\.run\.dir to a folder you can write", setup=file_in_the_way),
    "sweep_dir_under_a_file": Case(["-m", *TINY, "hydra.sweep.dir={w}/afile/sweep"], r"Cannot write results to",
                                   r"Set hydra\.sweep\.dir", setup=file_in_the_way, base=[]),
    "sweep_with_a_bad_cell": Case(["-m", *TINY, "model.depth=57", "hydra.sweep.dir={w}/results/sweeps/new"],
                                  r"model\.depth=57", r"nearest valid depths", base=[]),
    "corrupt_checkpoint": Case([RUN_DIR], r"checkpoint .*interrupted/checkpoint\.pt cannot be read",
                               r"Delete it to restart that run from scratch, or run with force=true",
                               setup=interrupted_run),
    "foreign_checkpoint": Case([RUN_DIR], r"does not belong to these runs", r"Delete it .* or run with force=true",
                               setup=foreign_checkpoint),
    "old_summary_layout": Case([RUN_DIR], r"summary\.csv lacks the columns experiment, dataset, model, depth and",
                               r"Delete it, or re-run this run with force=true", setup=old_summary),
    "another_runs_folder": Case(["hydra.run.dir={w}/results/runs/finished-run"],
                                r"holds the finished run finished-run, not this config's run",
                                r"its own folder \(hydra\.run\.dir=\.\.\.\), or run with force=true"),
    # collect and table
    "collect_old_summary": Case(["collect", "{w}/results"], r"summary\.csv lacks the columns", r"Delete it",
                                setup=old_summary, base=[]),
    "collect_missing_root": Case(["collect", "{w}/nothere"], r"nothere is not a folder",
                                 r"initbench collect results", base=[]),
    "collect_out_under_a_file": Case(["collect", "{w}/results", "--out", "{w}/afile/all.csv"], r"afile: File exists",
                                     r"Check --out", setup=file_in_the_way, base=[]),
    "collect_unknown_option": Case(["collect", "--bogus"], r"unrecognized arguments: --bogus",
                                   r"usage: initbench collect", base=[]),
    "table_unknown": Case(["table", "fixup_cifar"], r"table='fixup_cifar' is not supported",
                          r"Allowed values: .*fixup_cifar10", base=[]),
    "table_missing_root": Case(["table", "fixup_cifar10", "--root", "{w}/nothere"], r"--root .*nothere is not a folder",
                               r"--root results/sweeps/fixup_cifar10", base=[]),
    "table_bad_dataset_mapping": Case(["table", "fixup_cifar10", "--root", "{w}/results", "--dataset", "cifar10"],
                                      r"--dataset 'cifar10'", r"PAPER_DATASET=RUN_DATASET", base=[]),
    "table_out_under_a_file": Case(["table", "fixup_cifar10", "--root", "{w}/results", "--out", "{w}/afile/tables"],
                                   r"afile/tables: Not a directory", r"Check --out", setup=file_in_the_way, base=[]),
    "table_file_unknown_parameter": Case(MY_TABLE, r"my_table\.yaml: rows\.'BN' names '\+metod', which is not a "
                                         r"parameter of .*sweep/fixup_cifar10\.yaml", r"its parameters: \+experiment, "
                                         r"\+method.* Use one of them", base=[],
                                         setup=table_file("  BN: {+metod: bn_kaiming}\n  Fixup: {+method: fixup}\n")),
    "table_file_label_twice": Case(MY_TABLE, r"my_table\.yaml: line 10: 'BN' is given twice", r"rename one",
                                   setup=table_file(BOTH_ROWS + "  BN: {+method: fixup}\n"), base=[]),
    "table_file_unknown_reported_id": Case(MY_TABLE, r"my_table\.yaml: reported\.'ResNet-110'\.'BN' = "
                                           r"'fixup\.c10\.bn' is not an id of results/reported\.csv",
                                           r"Fix the id, or add the paper's number",
                                           setup=table_file(BOTH_ROWS, "reported:\n  ResNet-110: {BN: fixup.c10.bn}\n"),
                                           base=[]),
    "table_file_cell_no_job_produces": Case(MY_TABLE, r"no job of .*fixup_cifar10\.yaml produces the cell "
                                            r"\('ResNet-110', 'Fixup'\).*'\+method': \['bn_kaiming', 'fixup'\]",
                                            r"Fix the value, add it to the sweep, or mark the row not_run", base=[],
                                            setup=table_file("  BN: {+method: bn_kaiming}\n"
                                                             "  Fixup: {+method: fixup_}\n")),
    "table_file_one_job_two_cells": Case(MY_TABLE, r"the job \+experiment=cifar10_resnet110 \+method=fixup would fill "
                                         r"two cells", r"make their parameters differ", base=[],
                                         setup=table_file(BOTH_ROWS + "  Fixup again: {+method: fixup}\n")),
    "table_file_cell_of_two_jobs": Case(MY_TABLE, r"the cell \('ResNet-110', 'All'\).*would be filled by 2 jobs",
                                        r"Add the parameter that tells them apart", base=[],
                                        setup=table_file("  All: {}\n")),
    "table_file_job_in_no_cell": Case(MY_TABLE, r"2 job\(s\) of .*fixup_cifar10\.yaml land in no cell, e\.g\. "
                                      r"\+experiment=cifar10_resnet110 \+method=fixup", r"Add the row or column",
                                      setup=table_file("  BN: {+method: bn_kaiming}\n"), base=[]),
    "table_file_unknown_metric": Case(MY_TABLE, r"metric='test_eror' is not one of", r"best_test_error", base=[],
                                      setup=table_file(BOTH_ROWS, metric="test_eror")),
    "table_file_missing": Case(["table", "{w}/nothere.yaml"], r"nothere\.yaml does not exist",
                               r"give a table file, or one of: .*fixup_cifar10", base=[]),
    "table_unknown_dataset_swap": Case(["table", "fixup_cifar10", "--root", "{w}/results", "--dataset",
                                        "cifar10=cifar10_jpg"], r"'cifar10_jpg' is not a dataset config",
                                       r"Datasets: .*cifar10_jpeg", base=[]),
    "table_missing_reported": Case(["table", "fixup_cifar10", "--root", "{w}/results", "--reported",
                                    "{w}/nothere.csv"], r"nothere\.csv does not exist", r"reported\.csv", base=[]),
    # Translation (issue 16)
    "iwslt_not_prepared": Case(IWSLT, r"IWSLT'14 De-En in .* is not prepared", r"prepare_iwslt14\.py", base=[]),
    "iwslt_codes_without_text": Case(IWSLT, r"is half-prepared: .*train\.de", r"prepare_iwslt14\.py",
                                     setup=iwslt_codes_only, base=[]),
    "iwslt_misaligned_lines": Case(IWSLT, r"valid\.de has 2 lines but valid\.en has 1", r"prepare it again",
                                   setup=iwslt_misaligned, base=[]),
    "translation_token_budget_too_small": Case([*TRANSLATION, "translation.max_tokens=5"],
                                               r"max_tokens=5 is smaller than the longest sentence pair",
                                               r"Raise translation\.max_tokens to at least", base=[]),
    "translation_init_undefined": Case([*TRANSLATION, "init=kaiming"], r"init=kaiming is not defined for the "
                                       r"Transformer", r"default, fixup, gradinit, xavier .*init=gradinit_fairseq",
                                       base=[]),
    "translation_wn_arpit": Case([*TRANSLATION, "init=wn_arpit"], r"norm=weightnorm is not defined for the "
                                 r"Transformer", r"init=default\|xavier\|fixup\|gradinit_fairseq", base=[]),
    "translation_fused_seeds": Case([*TRANSLATION, "seed=[0,1]"], r"fused seeds .* not supported for translation",
                                    r"separate jobs", base=[]),
    "translation_gradinit_cifar_values": Case([*TRANSLATION, "init=gradinit"],
                                              r"init\.base='kaiming[^']*', which does not fit this model",
                                              r"init=gradinit_fairseq", base=[]),
    "translation_image_model": Case(["dataset=synthetic_translation", "progress=false"],
                                    r"model\.arch=resnet cannot train on dataset=synthetic_translation",
                                    r"smoke_translation", base=[]),
}


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path below `root`: a file's bytes, None for a folder."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in root.rglob("*")}


def hydra_bookkeeping(path: str, before: dict) -> bool:
    """Hydra's own files, written into a run folder that existed before the command."""
    parts = Path(path).parts
    if ".hydra" in parts:
        run = str(Path(*parts[: parts.index(".hydra")]))
    elif path.endswith(".log"):
        run = str(Path(path).parent)
    else:
        return False
    return run in before and before[run] is None


def message_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip() and not LOG_LINE.match(line)]


def run_case(cli_server, case: Case, w: Path, env: dict | None = None):
    write_run(w / "results" / "runs", "finished-run", seed=0)
    if case.setup is not None:
        case.setup(w)
    argv = [arg.replace("{w}", str(w)) for arg in [*case.base, *case.argv]]
    before = snapshot(w)
    result = cli_server.run(argv, w, env=env)
    return result, before, snapshot(w)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_a_clear_error_and_changes_nothing(cli_server, tmp_path: Path, name: str):
    case = CASES[name]
    result, before, after = run_case(cli_server, case, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode in (1, 2), f"exit status {result.returncode}:\n{output}"
    assert "Traceback" not in output, output
    assert re.search(case.problem, output), f"the message does not name the problem:\n{output}"
    assert re.search(case.action, output), f"the message does not say what to do:\n{output}"
    lines = message_lines(output)
    assert len(lines) <= MAX_LINES + (MAX_OPTIONS if "Available options in" in output else 0), output
    assert all(len(line) <= MAX_MESSAGE for line in lines), output

    new = [p for p in after if p not in before and not hydra_bookkeeping(p, before)]
    lost = [p for p in before if p not in after]
    changed = [p for p in before if p in after and after[p] != before[p] and not hydra_bookkeeping(p, before)]
    assert not new and not lost and not changed, f"new {new}, lost {lost}, changed {changed}"


def test_battery_covers_at_least_30_mistakes():
    assert len(CASES) >= 30


def test_hydra_full_error_shows_the_traceback_instead(cli_server, tmp_path: Path):
    case = CASES["resnet_57"]
    result, before, after = run_case(cli_server, case, tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "initbench.errors.ConfigError: model.depth=57 is not a valid depth" in result.stderr
    assert after == before  # the traceback path cleans up the same way
