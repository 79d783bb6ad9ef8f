"""The training loop's skeleton, which drives every trainer (syncnet.py, wav2lip.py, davs.py):
the run folder and its config, seeds, devices and mixed precision, resume from OUT/last.pth,
batches by step, metrics (JSON lines, TensorBoard when installed), periodic evaluation and
checkpoints, progress, data-parallel training under `torchrun`, and a clean stop on Ctrl-C that
leaves a checkpoint behind. A trainer supplies its networks, its step, its evaluation and its
checkpoint format (`Trainer`).

Under `torchrun` (WORLD_SIZE > 1) every process takes its own slice of each step's batch (the
batch size stays the global one), gradients are averaged by DistributedDataParallel, and only
rank 0 evaluates, logs and writes checkpoints."""

from __future__ import annotations

import json
import os
import random
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..checkpoints import load_weights, save_published
from ..device import autocast, autocast_dtype, resolve_device
from ..errors import InputError
from ..outputs import atomic_write_text, link_or_copy, refuse_overlap
from .config import TrainConfig


@dataclass(frozen=True)
class Run:
    """Where a training run stands: its folder, this process's place in a torchrun job, its device
    and its mixed precision (the autocast dtype, or None for fp32)."""

    cfg: TrainConfig
    out: Path
    ddp: Distributed
    device: torch.device
    dtype: torch.dtype | None

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        return place(model, self.device, self.dtype)

    def autocast(self):
        return autocast(self.device, self.dtype)


def start_run(cfg: TrainConfig, kind: str) -> Run:
    """What every loop does first: join torchrun's group if any, make the run folder and record
    the config (rank 0), seed, pick the device and the mixed precision."""
    out = Path(cfg.out)
    refuse_overlap(out, cfg.data, "the run folder", "the data folder")  # a run never writes into its data
    for flag in ("expert", "init"):  # checkpoints the run reads: its own saves would replace them
        source = getattr(cfg, flag, None)
        if source and Path(os.path.realpath(out)) in Path(os.path.realpath(source)).parents:
            raise InputError(f"--{flag} {source}: lies in the run folder {out}, where the run writes its checkpoints: "
                             "choose another run folder")
    ddp = init_distributed(cfg.device)
    if ddp.main:
        out.mkdir(parents=True, exist_ok=True)
        write_config(out, cfg, kind)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    return Run(cfg, out, ddp, device, autocast_dtype(device, cfg.amp))


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def place(model: torch.nn.Module, device: torch.device, dtype: torch.dtype | None) -> torch.nn.Module:
    """Move a network to the device; under mixed precision also to channels-last memory, the
    layout oneDNN's bf16 and cuDNN's fp16 convolutions run natively (bf16 training of the
    generator on a 2-core AMX CPU: several times faster than in the default layout)."""
    model = model.to(device)
    if dtype is not None:
        # per tensor: `Module.to(memory_format=...)` refuses a network with 3-D convolutions (5-D weights)
        for t in [*model.parameters(), *model.buffers()]:
            if t.dim() == 4:
                t.data = t.data.contiguous(memory_format=torch.channels_last)
    return model


class Trainer:
    """What a trainer supplies to `train`; the loop does the rest. Its networks are built and
    placed when it is made; `model` is the network whose weights every rank must end with."""

    model: torch.nn.Module

    def resume(self, last: Path) -> int:
        """Restore the state saved in OUT/last.pth; returns its step."""
        raise NotImplementedError

    def fresh(self) -> int:
        """Set up a run from step 0 (not resumed); returns 0."""
        return 0

    def train_mode(self) -> None:
        """Put the networks in training mode: the loop calls it before the first step and after
        each evaluation (which may leave them in evaluation mode)."""
        self.model.train()

    def parallel(self) -> None:
        """Wrap the networks for data-parallel steps, once their starting weights are in place."""

    def step(self, batch: tuple, step: int) -> dict[str, float]:
        """One optimisation step on this process's part of the batch; the scalars to log
        (`train_loss` among them)."""
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        """Rank 0: the evaluation scalars (`val_...`)."""
        raise NotImplementedError

    def evaluated(self) -> None:
        """Every rank, after an evaluation: share what rank 0 decided from it."""

    def images(self) -> dict[str, torch.Tensor]:
        """Rank 0, after an evaluation: images to log by tag."""
        return {}

    def save(self, step: int) -> None:
        """Rank 0: write the checkpoints of this step, and OUT/last.pth."""
        raise NotImplementedError

    def summary(self) -> dict[str, float]:
        """Entries of the result beside the step and the last evaluation."""
        return {}


def train(trainer: Trainer, run: Run, data, progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """Train from OUT/last.pth (or from step 0) to cfg.steps on `data`, evaluating every
    eval_every steps and saving every checkpoint_every steps and at the end; returns the step,
    the trainer's summary and the last evaluation."""
    cfg, ddp = run.cfg, run.ddp
    last = run.out / "last.pth"
    start = trainer.resume(last) if cfg.resume and last.exists() else trainer.fresh()
    trainer.parallel()
    metrics = Metrics(run.out) if ddp.main else None
    last_eval: dict = {}
    step = start
    trainer.train_mode()
    with finishing(ddp, metrics, trainer.save, start, lambda: step):
        for batch in batches(data, range(start, cfg.steps), cfg.batch_size, cfg.workers, run.device, ddp):
            logs = trainer.step(batch, step)
            step += 1
            evaluate_now = step % cfg.eval_every == 0 or step == cfg.steps
            if ddp.main:
                metrics.scalars(step, **logs)
                if evaluate_now:
                    last_eval = trainer.evaluate()
                    trainer.train_mode()
                    metrics.scalars(step, **last_eval)
                    for tag, image in trainer.images().items():
                        metrics.images(step, tag, image)
            if evaluate_now:
                trainer.evaluated()
            if ddp.main:
                if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    trainer.save(step)
                if progress:
                    progress(step, cfg.steps, {"loss": logs["train_loss"], **last_eval})
        check_ranks_agree(trainer.model, ddp, run.device)
    return {"step": step, **trainer.summary(), **last_eval}


class Update:
    """One optimiser's step, the same under every precision: zero the gradients, backward, step.
    Under fp16 (CUDA) the loss is scaled against underflow; elsewhere the scaler does nothing.
    With `average_over`, the gradients are averaged over the processes by hand (for several
    optimisers over parts of one network, where a DDP wrapper does not fit)."""

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device, dtype: torch.dtype | None,
                 average_over: Distributed | None = None):
        self.optimizer, self.average_over = optimizer, average_over
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and dtype == torch.float16)

    def __call__(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.average_over is not None:
            average_gradients(self.optimizer, self.average_over)
        self.scaler.step(self.optimizer)
        self.scaler.update()


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a `torchrun` job (rank 0 of 1 when run on its own)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device_name: str) -> Distributed:
    """Join the `torchrun` process group when there is one: NCCL between GPUs, Gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_name != "cpu"
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size())


def shutdown_distributed(ddp: Distributed):
    if ddp.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


@contextmanager
def finishing(ddp: Distributed, metrics: "Metrics | None", save: Callable[[int], None], start: int,
              current_step: Callable[[], int]):
    """How every training loop ends, whatever ends it: on Ctrl-C the main process saves the steps
    this run did (`save(step)`: a checkpoint the run resumes from) and the interrupt goes on up;
    the metrics files are closed and the process group is left in every case."""
    try:
        yield
        if ddp.active:  # every rank done: leave together (a rank tearing down Gloo while another
            import torch.distributed as dist  # still evaluates or saves can abort the process)

            dist.barrier()
    except KeyboardInterrupt:
        step = current_step()
        if ddp.main and step > start:  # at `start` the checkpoint it resumed from is already on disk
            save(step)
        raise
    finally:
        if metrics is not None:
            metrics.close()
        shutdown_distributed(ddp)


def parallel(model: torch.nn.Module, ddp: Distributed, device: torch.device) -> torch.nn.Module:
    """The model as the training step calls it: wrapped in DistributedDataParallel under torchrun
    (batch norm synchronised across GPUs), itself otherwise."""
    if not ddp.active:
        return model
    if device.type == "cuda":  # SyncBatchNorm runs on GPUs only; its state_dict keys are BatchNorm's
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def average_gradients(optimizer: torch.optim.Optimizer, ddp: Distributed):
    """Average the gradients of an optimiser's parameters over the processes: for loops with
    several optimisers over parts of one network (DAVS), where a DDP wrapper does not fit."""
    if not ddp.active:
        return
    import torch.distributed as dist

    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(ddp.world)


def broadcast_flag(value: bool, ddp: Distributed, device: torch.device) -> bool:
    """Rank 0's decision, on every rank (a schedule switch made from rank 0's evaluation)."""
    if not ddp.active:
        return value
    import torch.distributed as dist

    flag = torch.tensor([1.0 if value else 0.0], device=device)
    dist.broadcast(flag, 0)
    return bool(flag.item() > 0.5)


def check_ranks_agree(model: torch.nn.Module, ddp: Distributed, device: torch.device):
    """Every rank must hold the same weights at the end of a data-parallel run; a difference means
    the gradients were not averaged and rank 0's checkpoint is not the model that was trained."""
    if not ddp.active:
        return
    import torch.distributed as dist

    with torch.no_grad():
        total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1).to(device)
    gathered = [torch.zeros_like(total) for _ in range(ddp.world)]
    dist.all_gather(gathered, total)
    values = [float(g) for g in gathered]
    if max(values) - min(values) > 1e-6 * max(1.0, abs(values[0])):
        raise RuntimeError(f"data-parallel ranks ended with different weights: {values}")


class StepSampler(torch.utils.data.Sampler):
    """Sample indices of steps [start, stop): step s holds samples s*B .. s*B+B-1 of the seeded
    dataset (so a resumed run sees the batches it would have seen), and rank r of W takes the
    r-th of W equal slices of each step."""

    def __init__(self, steps: range, batch_size: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise InputError(f"the batch size ({batch_size}) must divide evenly among {world} processes")
        self.steps, self.batch_size, self.rank, self.world = steps, batch_size, rank, world
        self.per_rank = batch_size // world

    def __iter__(self):
        for s in self.steps:
            first = s * self.batch_size + self.rank * self.per_rank
            yield from range(first, first + self.per_rank)

    def __len__(self) -> int:
        return len(self.steps) * self.per_rank


def _quiet_worker_shutdown(worker_id: int) -> None:
    """In a data-loading worker: when the training process stops (Ctrl-C, SIGTERM), it drops its
    connections to the worker's batch-sharing thread, which then printed a ConnectionResetError
    traceback under the one-line message. A lost connection is how a worker's run ends: say nothing."""
    import sys

    previous = sys.excepthook

    def hook(kind, value, tb):
        if not issubclass(kind, (ConnectionError, EOFError)):
            previous(kind, value, tb)

    sys.excepthook = hook


def batches(ds, steps: range, batch_size: int, workers: int, device: torch.device, ddp: Distributed = Distributed()):
    """This process's part of the batches of `steps`, moved to `device`."""
    sampler = StepSampler(steps, batch_size, ddp.rank, ddp.world)
    loader = torch.utils.data.DataLoader(ds, batch_size=sampler.per_rank, num_workers=workers, sampler=sampler,
                                         worker_init_fn=_quiet_worker_shutdown if workers else None)
    for batch in loader:
        yield tuple(x.to(device) for x in batch)


class Metrics:
    """Scalars to OUT/metrics.jsonl (always) and to TensorBoard (when the package is installed)."""

    def __init__(self, out: Path):
        self.path = out / "metrics.jsonl"
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        except Exception:  # tensorboard not installed: the JSON lines are enough
            self.tb = None

    def scalars(self, step: int, **values: float):
        record = {"step": step, "time": round(time.time(), 3), **{k: float(v) for k, v in values.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, float(v), step)

    def images(self, step: int, tag: str, grid: torch.Tensor):
        if self.tb is not None:
            self.tb.add_image(tag, grid, step)

    def close(self):
        if self.tb is not None:
            self.tb.close()


def save_checkpoint(out: Path, name: str, write: Callable[[Path], None], last_name: str = "last") -> Path:
    """OUT/`name`.pth, written by `write(path)`, and the running OUT/`last_name`.pth the run
    resumes from: the same file (a hard link where possible), since checkpoints are never
    rewritten in place."""
    path = out / f"{name}.pth"
    write(path)
    link_or_copy(path, out / f"{last_name}.pth")
    return path


def save_published_checkpoint(out: Path, name: str, model: torch.nn.Module, optimizer, step: int,
                              extra: dict | None = None, last_name: str = "last") -> Path:
    """`save_checkpoint` in the published layout (what `dub` and the published tools load)."""
    return save_checkpoint(out, name, lambda path: save_published(model, path, optimizer=optimizer, global_step=step,
                                                                  extra=extra), last_name)


def restore(path: Path, model: torch.nn.Module, optimizer) -> dict:
    """Weights and optimiser state from a published-layout checkpoint; returns its other
    top-level entries (global_step, a loss schedule...)."""
    extras = load_weights(model, path)
    if optimizer is not None and extras.get("optimizer"):
        optimizer.load_state_dict(extras["optimizer"])
    return extras


def write_config(out: Path, cfg, kind: str):
    atomic_write_text(out / "config.json", json.dumps({"kind": kind, **asdict(cfg)}, indent=1))
