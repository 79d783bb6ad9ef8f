"""The loop skeleton that drives every trainer, on a one-weight network: when it evaluates,
saves and reports, what Ctrl-C leaves, and where a resumed run goes on."""

from __future__ import annotations

import json

import pytest
import torch

from lipsync_cli.models.loading import read_state_dict
from lipsync_cli.train import loop
from lipsync_cli.train.config import TrainConfig


class Numbers(torch.utils.data.Dataset):
    """Sample i is the number i: a batch says which steps it belongs to."""

    def __len__(self):
        return 10 ** 6

    def __getitem__(self, i):
        return (torch.tensor([float(i)]),)


class Tiny(loop.Trainer):
    def __init__(self, run: loop.Run):
        self.run = run
        self.model = torch.nn.Linear(1, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3)
        self.update = loop.Update(self.optimizer, run.device, run.dtype)
        self.seen: list[float] = []
        self.evaluations = 0

    def resume(self, last):
        return int(loop.restore(last, self.model, self.optimizer)["global_step"])

    def step(self, batch, step):
        (x,) = batch
        self.seen.append(float(x[0]))
        loss = self.model(x / 100).pow(2).mean()
        self.update(loss)
        return {"train_loss": loss.item()}

    def evaluate(self):
        self.evaluations += 1
        return {"val_count": float(self.evaluations)}

    def save(self, step):
        loop.save_published_checkpoint(self.run.out, f"tiny_step{step:06d}", self.model, self.optimizer, step)


def run_tiny(tmp_path, steps: int, progress=None) -> tuple[dict, Tiny]:
    cfg = TrainConfig(data="unused", out=str(tmp_path / "run"), steps=steps, batch_size=2, eval_every=3,
                      checkpoint_every=4, workers=0, amp="off", device="cpu")
    run = loop.start_run(cfg, "tiny")
    trainer = Tiny(run)
    return loop.train(trainer, run, Numbers(), progress), trainer


def metrics(tmp_path) -> list[dict]:
    return [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]


def test_the_loop_evaluates_saves_and_reports_on_schedule(tmp_path):
    reported = []
    result, trainer = run_tiny(tmp_path, 7, lambda step, total, info: reported.append((step, total, sorted(info))))
    assert result["step"] == 7 and result["val_count"] == 3  # evaluated at 3, 6 and the last step
    assert trainer.seen == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0]  # step s takes samples s*B ..
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows if "train_loss" in r] == list(range(1, 8))
    assert [r["step"] for r in rows if "val_count" in r] == [3, 6, 7]
    assert sorted(p.name for p in (tmp_path / "run").glob("tiny_step*.pth")) == ["tiny_step000004.pth",
                                                                                   "tiny_step000007.pth"]
    assert (tmp_path / "run" / "last.pth").samefile(tmp_path / "run" / "tiny_step000007.pth")
    assert reported[0] == (1, 7, ["loss"]) and reported[-1] == (7, 7, ["loss", "val_count"])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["kind"] == "tiny"


def test_ctrl_c_saves_the_steps_done_and_a_rerun_goes_on_from_them(tmp_path):
    def ctrl_c_at_step_5(step, total, info):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_tiny(tmp_path, 7, ctrl_c_at_step_5)
    assert read_state_dict(tmp_path / "run" / "last.pth")[1]["global_step"] == 5
    result, trainer = run_tiny(tmp_path, 7)
    assert result["step"] == 7 and trainer.seen == [10.0, 12.0]  # the batches of steps 5 and 6
    assert [r["step"] for r in metrics(tmp_path) if "train_loss" in r] == [1, 2, 3, 4, 5, 6, 7]
    result, trainer = run_tiny(tmp_path, 7)  # finished: nothing left to do
    assert result == {"step": 7} and trainer.seen == []
