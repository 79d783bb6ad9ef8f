"""`lipsync train syncnet|wav2lip|davs`: the training loops, resumable, under torchrun too."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import TimeRemainingColumn

from .. import interrupts
# The config classes hold the settings' defaults (train/config.py imports no torch).
from ..train.config import DavsTrainConfig, TrainConfig, Wav2LipConfig
from .common import (DebugOpt, FieldColumn, QuietOpt, SpeedColumn, err, interrupted, progress_bar, report_errors,
                     with_flags)
from .layout import App, help_panels

app = App(help="The training loops: syncnet (the lip-sync expert), wav2lip (the generator), davs.",
                  no_args_is_help=True)

# Each setting's default is declared once, in its loop's config class; a flag left out is None,
# so the config file (or that default) wins.
ConfigFileOpt = Annotated[Optional[Path], typer.Option("--config", metavar="FILE|NAME", help="JSON or TOML file of settings, or a shipped one by name (finetune: the published generator fine-tuned on a small set); flags given here win.")]
FreshOpt = Annotated[bool, typer.Option("--fresh", help="Start from scratch even if OUT/last.pth exists (default: resume).")]


# The settings every loop shares, as flags: type, what the value is called in the help, and help
# (what one sample of a batch is depends on the loop). What each accepts is in the config
# classes' LIMITS: from_sources refuses a value out of its range, naming the flag, before anything
# runs.
LOOP_SETTINGS = {
    "steps": (Optional[int], "N", "Total optimisation steps"),
    "batch_size": (Optional[int], "N", "{sample} per step"),
    "lr": (Optional[float], "RATE", "Adam learning rate"),
    "eval_every": (Optional[int], "N", "Evaluate on the val split every N steps"),
    "eval_batches": (Optional[int], "N", "Batches per evaluation"),
    "checkpoint_every": (Optional[int], "N", "Save a checkpoint every N steps"),
    "seed": (Optional[int], "N", "Seed of the initialisation and of the samples"),
    "device": (Optional[str], "NAME", "auto, cpu or cuda (under torchrun, auto is the process's own GPU)"),
    "amp": (Optional[str], "auto|on|off", "auto (fp16 on CUDA, bf16 on a CPU with AMX), on or off"),
    "workers": (Optional[int], "N", "Data loading processes (0: in the training process)"),
    "width": (Optional[float], "FACTOR", "Channel multiplier of the networks (1: the published sizes; narrower: quick CPU runs)"),
}
# Their panels in the help, after each loop's own.
LOOP_PANELS = {
    "Steps and evaluation": ("steps", "batch_size", "lr", "seed", "eval_every", "eval_batches", "checkpoint_every"),
    "Device": ("device", "amp", "workers"),
}
RUN_PANEL = ("out", "config", "fresh", "quiet", "debug")  # "Run": where it goes and how it reports


def setting(cls, name: str, metavar: str, help: str):
    """The flag of setting `name` of config class `cls`: None when not given (then the config
    file or the class's default wins). Its help ends with the range and the default, both read
    from the class."""
    default = getattr(cls, name)
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    limit = cls.limit(name)
    bounds = f", {limit.text()}" if limit is not None and (limit.min is not None or limit.max is not None) else ""
    return typer.Option(None, metavar=metavar, help=f"{help}{bounds} (default: {shown}).")


def with_loop_settings(cls, sample: str):
    """Give a training command the flags of LOOP_SETTINGS with the defaults of its config class
    (listed before --fresh); the command takes them as **settings."""
    return with_flags({name: (annotation, setting(cls, name, metavar, help.format(sample=sample)))
                       for name, (annotation, metavar, help) in LOOP_SETTINGS.items()}, before="fresh")


@app.command("syncnet")
@report_errors
@help_panels({"Run": RUN_PANEL, "Model": ("size", "width"), **LOOP_PANELS})
@with_loop_settings(TrainConfig, sample="Samples")
def train_syncnet(
    data: Path = typer.Argument(..., help="Preprocessed data folder (filelists/ and clip folders), e.g. from `lipsync synth`."),
    out: Path = typer.Option(..., "-o", "--out", metavar="DIR", help="Run folder: checkpoints (published layout), last.pth, metrics.jsonl, TensorBoard logs."),
    size: Optional[int] = setting(TrainConfig, "size", "PIXELS", "Face side in pixels: 96 (the published expert), 192 or 288 (the data's crops are resized to it)"),
    config: ConfigFileOpt = None,
    fresh: FreshOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    **settings,
):
    """Train the lip-sync expert (SyncNet, colour) on 5-frame windows; resumes from OUT/last.pth."""
    from ..train.syncnet import train_syncnet as run

    cfg = TrainConfig.from_sources(
        str(config) if config else None, data=str(data), out=str(out), resume=False if fresh else None, size=size,
        **settings)
    _run_training(run, cfg, quiet, "syncnet")


@app.command("wav2lip")
@report_errors
@help_panels({"Run": RUN_PANEL, "Model": ("model", "attention", "size", "width", "init", "freeze_norm"),
              "Losses": ("expert", "no_gan", "sync_switch", "sync_weight"), **LOOP_PANELS})
@with_loop_settings(Wav2LipConfig, sample="Windows of 5 frames")
def train_wav2lip(
    data: Path = typer.Argument(..., help="Preprocessed data folder (filelists/ and clip folders), e.g. from `lipsync synth`."),
    out: Path = typer.Option(..., "-o", "--out", metavar="DIR", help="Run folder: generator and discriminator checkpoints (published layout), metrics, TensorBoard."),
    expert: Optional[Path] = typer.Option(None, "--expert", metavar="FILE|NAME", help="The frozen lip-sync expert: from `lipsync train syncnet`, or lipsync_expert.pth (a file, or the registry name lipsync_expert)."),
    model: Optional[str] = setting(Wav2LipConfig, "model", "NAME", "wav2lip, attnwav2lip, attnwav2lip-spatial or attnwav2lip-channel"),
    attention: bool = typer.Option(False, "--attention", help="Same as --model attnwav2lip (channel + spatial attention)."),
    no_gan: bool = typer.Option(False, "--no-gan", help="No visual-quality discriminator (the plain Wav2Lip stage): b = 0."),
    sync_switch: Optional[float] = setting(Wav2LipConfig, "sync_switch", "LOSS", f"Evaluation sync loss below which the sync weight switches from 0 to {Wav2LipConfig.sync_weight:g}; inf: from the first step"),
    sync_weight: Optional[float] = setting(Wav2LipConfig, "sync_weight", "WEIGHT", "a, the expert's weight once switched on; 0 trains on L1 (and GAN) alone"),
    init: Optional[Path] = typer.Option(None, "--init", metavar="FILE|NAME", help="Start from these generator weights (fine-tune: e.g. wav2lip_gan, a file or a registry name; or a run trained on L1 alone). Ignored when resuming."),
    freeze_norm: Optional[bool] = typer.Option(None, "--freeze-norm/--train-norm", help="Keep the generator's batch-norm statistics as --init brought them (fine-tuning on one person: its batches hold one face) or let them follow the batches (default: --train-norm; the finetune recipe: --freeze-norm)."),
    size: Optional[int] = setting(Wav2LipConfig, "size", "PIXELS", "Face side in pixels: 96 (the published generator), 192 or 288; the expert must be of the same size"),
    config: ConfigFileOpt = None,
    fresh: FreshOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    **settings,
):
    """Train the generator (Wav2Lip or AttnWav2Lip) with a frozen expert and the discriminator."""
    from ..train.wav2lip import train_wav2lip as run

    if attention and model not in (None, "attnwav2lip"):
        raise typer.BadParameter("--attention means --model attnwav2lip")
    cfg = Wav2LipConfig.from_sources(
        str(config) if config else None, data=str(data), out=str(out), resume=False if fresh else None, **settings,
        expert=str(expert) if expert else None, model="attnwav2lip" if attention else model,
        gan=False if no_gan else None, sync_switch=sync_switch, sync_weight=sync_weight,
        init=str(init) if init else None, freeze_norm=freeze_norm, size=size)
    _run_training(run, cfg, quiet, cfg.model)


@app.command("davs")
@report_errors
@help_panels({"Run": RUN_PANEL, "Model": ("size", "width", "word_classifier"),
              "Losses and stages": ("disentangle_from", "generate_from", "no_domain", "no_disentangle",
                                    "contrastive_weight", "uniform_weight", "gan_weight"), **LOOP_PANELS})
@with_loop_settings(DavsTrainConfig, sample="Clips")
def train_davs(
    data: Path = typer.Argument(..., help="Words-layout data folder (one word per clip; file lists with word and person), e.g. `lipsync synth --layout words`."),
    out: Path = typer.Option(..., "-o", "--out", metavar="DIR", help="Run folder: checkpoints, last.pth, metrics.jsonl, TensorBoard logs."),
    config: ConfigFileOpt = None,
    size: Optional[int] = setting(DavsTrainConfig, "size", "PIXELS", "Aligned face side: 64, 128 or 256 (the paper)"),
    disentangle_from: Optional[int] = setting(DavsTrainConfig, "disentangle_from", "STEP", "Step at which the adversarial disentangling starts"),
    generate_from: Optional[int] = setting(DavsTrainConfig, "generate_from", "STEP", "Step at which generation training starts"),
    word_classifier: Optional[str] = setting(DavsTrainConfig, "word_classifier", "MODE", "shared (one C_w for audio and video), separate, or none (contrastive loss alone)"),
    no_domain: bool = typer.Option(False, "--no-domain", help="Without the domain-adversarial loss (an ablation)."),
    no_disentangle: bool = typer.Option(False, "--no-disentangle", help="Without the adversarial disentangling (an ablation)."),
    contrastive_weight: Optional[float] = setting(DavsTrainConfig, "contrastive_weight", "WEIGHT", "Weight of the audio-video contrastive loss beside the word classifier's"),
    uniform_weight: Optional[float] = setting(DavsTrainConfig, "uniform_weight", "WEIGHT", "Weight of the push of the encoders towards the critics' uniform softmax"),
    gan_weight: Optional[float] = setting(DavsTrainConfig, "gan_weight", "WEIGHT", "alpha, the temporal GAN loss's weight beside L1"),
    fresh: FreshOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    **settings,
):
    """Train DAVS: the word-ID space, the adversarial disentangling, then generation, in one resumable loop."""
    from ..train.davs import train_davs as run

    cfg = DavsTrainConfig.from_sources(
        str(config) if config else None, data=str(data), out=str(out), size=size,
        disentangle_from=disentangle_from, generate_from=generate_from, word_classifier=word_classifier,
        domain_adversarial=False if no_domain else None, disentangle=False if no_disentangle else None,
        contrastive_weight=contrastive_weight, uniform_weight=uniform_weight, gan_weight=gan_weight,
        resume=False if fresh else None, **settings)
    _run_training(run, cfg, quiet, "davs")


def _run_training(run, cfg, quiet: bool, label: str) -> dict:
    """A training loop under a progress bar; Ctrl-C keeps a checkpoint and says how to go on.
    Under torchrun only rank 0 shows progress and the summary."""
    main_rank = os.environ.get("RANK", "0") == "0"
    try:
        with progress_bar(label, quiet or not main_rank, SpeedColumn(), TimeRemainingColumn(),
                          FieldColumn("info")) as update:
            def on_step(step: int, total: int, info: dict):
                if update is not None:
                    update(step, total, info="  ".join(f"{k} {v:.3f}" for k, v in info.items() if k != "step"))

            result = run(cfg, on_step)
    except KeyboardInterrupt as exc:
        if main_rank:
            raise interrupted(exc, f"checkpoint saved in {cfg.out}; run the same command to resume") from None
        raise typer.Exit(interrupts.exit_code(exc)) from None
    if main_rank:
        err.print(f"step {result['step']}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items() if k != "step"))
    return result
