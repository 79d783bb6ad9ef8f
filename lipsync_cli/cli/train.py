"""`lipsync train syncnet|wav2lip|davs`: the training loops, resumable, under torchrun too."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import TimeRemainingColumn

from .. import interrupts
from .common import DebugOpt, FieldColumn, QuietOpt, SpeedColumn, err, interrupted, progress_bar, report_errors

app = typer.Typer(help="The training loops: syncnet (the lip-sync expert), wav2lip (the generator), davs.",
                  no_args_is_help=True)

# The settings every training loop shares (their defaults live in the loop's config class).
ConfigFileOpt = Annotated[Optional[Path], typer.Option("--config", help="JSON or TOML file of settings; flags given here win.")]
StepsOpt = Annotated[Optional[int], typer.Option(help="Total optimisation steps (default: 10000).")]
LrOpt = Annotated[Optional[float], typer.Option(help="Adam learning rate (default: 1e-4; davs 2e-4).")]
EvalEveryOpt = Annotated[Optional[int], typer.Option(help="Evaluate on the val split every N steps (default: 500).")]
EvalBatchesOpt = Annotated[Optional[int], typer.Option(help="Batches per evaluation (default: 20).")]
CheckpointEveryOpt = Annotated[Optional[int], typer.Option(help="Save a checkpoint every N steps (default: 1000).")]
SeedOpt = Annotated[Optional[int], typer.Option(help="Seed of the initialisation and of the samples (default: 0).")]
TrainDeviceOpt = Annotated[Optional[str], typer.Option(help="auto, cpu or cuda (under torchrun, auto is the process's own GPU).")]
AmpOpt = Annotated[Optional[str], typer.Option(help="auto (fp16 on CUDA, bf16 on a CPU with AMX), on or off.")]
WorkersOpt = Annotated[Optional[int], typer.Option(help="Data loading processes (default: 2).")]
FreshOpt = Annotated[bool, typer.Option("--fresh", help="Start from scratch even if OUT/last.pth exists (default: resume).")]


def _loop_settings(steps, lr, eval_every, eval_batches, checkpoint_every, seed, device, amp, workers, fresh) -> dict:
    """The shared training flags as config values (None: not given, the config file or default wins)."""
    return dict(steps=steps, lr=lr, eval_every=eval_every, eval_batches=eval_batches,
                checkpoint_every=checkpoint_every, seed=seed, device=device, amp=amp, workers=workers,
                resume=False if fresh else None)


@app.command("syncnet")
@report_errors
def train_syncnet(
    data: Path = typer.Argument(..., help="Preprocessed data folder (filelists/ and clip folders), e.g. from `lipsync synth`."),
    out: Path = typer.Option(..., "-o", "--out", help="Run folder: checkpoints (published layout), last.pth, metrics.jsonl, TensorBoard logs."),
    config: ConfigFileOpt = None,
    steps: StepsOpt = None,
    batch_size: Optional[int] = typer.Option(None, help="Samples per step (default: 64)."),
    lr: LrOpt = None,
    eval_every: EvalEveryOpt = None,
    eval_batches: EvalBatchesOpt = None,
    checkpoint_every: CheckpointEveryOpt = None,
    seed: SeedOpt = None,
    device: TrainDeviceOpt = None,
    amp: AmpOpt = None,
    workers: WorkersOpt = None,
    fresh: FreshOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Train the lip-sync expert (SyncNet, colour) on 5-frame windows; resumes from OUT/last.pth."""
    from ..train.loop import TrainConfig
    from ..train.syncnet import train_syncnet as run

    cfg = TrainConfig.from_sources(
        str(config) if config else None, data=str(data), out=str(out), batch_size=batch_size,
        **_loop_settings(steps, lr, eval_every, eval_batches, checkpoint_every, seed, device, amp, workers, fresh))
    _run_training(run, cfg, quiet, "syncnet")


@app.command("wav2lip")
@report_errors
def train_wav2lip(
    data: Path = typer.Argument(..., help="Preprocessed data folder (filelists/ and clip folders), e.g. from `lipsync synth`."),
    out: Path = typer.Option(..., "-o", "--out", help="Run folder: generator and discriminator checkpoints (published layout), metrics, TensorBoard."),
    expert: Optional[Path] = typer.Option(None, "--expert", help="The frozen lip-sync expert: from `lipsync train syncnet`, or lipsync_expert.pth."),
    model: Optional[str] = typer.Option(None, help="wav2lip, attnwav2lip, attnwav2lip-spatial or attnwav2lip-channel (default: wav2lip)."),
    attention: bool = typer.Option(False, "--attention", help="Same as --model attnwav2lip (channel + spatial attention)."),
    no_gan: bool = typer.Option(False, "--no-gan", help="No visual-quality discriminator (the plain Wav2Lip stage): b = 0."),
    sync_switch: Optional[float] = typer.Option(None, help="Evaluation sync loss below which the sync weight switches from 0 to 0.03 (default: 0.75); inf: from the first step."),
    sync_weight: Optional[float] = typer.Option(None, help="a, the expert's weight once switched on (default: 0.03); 0 trains on L1 (and GAN) alone."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from these generator weights (fine-tune; e.g. a run trained on L1 alone). Ignored when resuming."),
    config: ConfigFileOpt = None,
    steps: StepsOpt = None,
    batch_size: Optional[int] = typer.Option(None, help="Windows of 5 frames per step (default: 64)."),
    lr: LrOpt = None,
    eval_every: EvalEveryOpt = None,
    eval_batches: EvalBatchesOpt = None,
    checkpoint_every: CheckpointEveryOpt = None,
    seed: SeedOpt = None,
    device: TrainDeviceOpt = None,
    amp: AmpOpt = None,
    workers: WorkersOpt = None,
    fresh: FreshOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Train the generator (Wav2Lip or AttnWav2Lip) with a frozen expert and the discriminator."""
    from ..train.wav2lip import Wav2LipConfig, train_wav2lip as run

    if attention and model not in (None, "attnwav2lip"):
        raise typer.BadParameter("--attention means --model attnwav2lip")
    cfg = Wav2LipConfig.from_sources(
        str(config) if config else None, data=str(data), out=str(out), batch_size=batch_size,
        **_loop_settings(steps, lr, eval_every, eval_batches, checkpoint_every, seed, device, amp, workers, fresh),
        expert=str(expert) if expert else None, model="attnwav2lip" if attention else model,
        gan=False if no_gan else None, sync_switch=sync_switch, sync_weight=sync_weight,
        init=str(init) if init else None)
    _run_training(run, cfg, quiet, cfg.model)


@app.command("davs")
@report_errors
def train_davs(
    data: Path = typer.Argument(..., help="Words-layout data folder (one word per clip; file lists with word and person), e.g. `lipsync synth --layout words`."),
    out: Path = typer.Option(..., "-o", "--out", help="Run folder: checkpoints, last.pth, metrics.jsonl, TensorBoard logs."),
    config: ConfigFileOpt = None,
    size: Optional[int] = typer.Option(None, help="Aligned face side: 64, 128 or 256 (the paper) (default: 64)."),
    width: Optional[float] = typer.Option(None, help="Channel multiplier of the networks (default: 1.0)."),
    disentangle_from: Optional[int] = typer.Option(None, help="Step at which the adversarial disentangling starts (default: 1000)."),
    generate_from: Optional[int] = typer.Option(None, help="Step at which generation training starts (default: 2000)."),
    word_classifier: Optional[str] = typer.Option(None, help="shared (one C_w for audio and video), separate, or none (contrastive loss alone) (default: shared)."),
    no_domain: bool = typer.Option(False, "--no-domain", help="Without the domain-adversarial loss (an ablation)."),
    no_disentangle: bool = typer.Option(False, "--no-disentangle", help="Without the adversarial disentangling (an ablation)."),
    contrastive_weight: Optional[float] = typer.Option(None, help="Weight of the audio-video contrastive loss beside the word classifier's (default: 1)."),
    uniform_weight: Optional[float] = typer.Option(None, help="Weight of the push of the encoders towards the critics' uniform softmax (default: 100)."),
    gan_weight: Optional[float] = typer.Option(None, help="alpha, the temporal GAN loss's weight beside L1 (default: 0.01)."),
    steps: StepsOpt = None,
    batch_size: Optional[int] = typer.Option(None, help="Clips per step (default: 16)."),
    lr: LrOpt = None,
    eval_every: EvalEveryOpt = None,
    eval_batches: EvalBatchesOpt = None,
    checkpoint_every: CheckpointEveryOpt = None,
    seed: SeedOpt = None,
    device: TrainDeviceOpt = None,
    amp: AmpOpt = None,
    workers: WorkersOpt = None,
    fresh: FreshOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Train DAVS: the word-ID space, the adversarial disentangling, then generation, in one resumable loop."""
    from ..train.davs import DavsTrainConfig, train_davs as run

    cfg = DavsTrainConfig.from_sources(
        str(config) if config else None, data=str(data), out=str(out), size=size, width=width,
        disentangle_from=disentangle_from, generate_from=generate_from, word_classifier=word_classifier,
        domain_adversarial=False if no_domain else None, disentangle=False if no_disentangle else None,
        contrastive_weight=contrastive_weight, uniform_weight=uniform_weight, gan_weight=gan_weight,
        batch_size=batch_size,
        **_loop_settings(steps, lr, eval_every, eval_batches, checkpoint_every, seed, device, amp, workers, fresh))
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
