"""The training loop: AdamW, clipping, EMA, periodic test bound, atomic checkpoints, resume."""

from __future__ import annotations

import copy
import json
import math
import signal
import time
from pathlib import Path
from typing import Callable

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from elbolab.bounds import mean_ci95, nats_to_bpd
from elbolab.data.base import ImageData
from elbolab.errors import ElbolabError
from elbolab.model import GenerativeModel, dataset_bound
from elbolab.train.checkpoint import (atomic_write_json, flatten_optimizer, load_tensors, restore_rng, rng_tensors,
                                      save_tensors, unflatten_optimizer)
from elbolab.train.config import TrainConfig
from elbolab.train.ema import EMA
from elbolab.train.run import CHECKPOINT_FILE, LOG_FILE, METRICS_FILE, WEIGHTS_FILE, pick_device

Callback = Callable[[int, dict], None]


class TrainingInterrupted(ElbolabError):
    """Ctrl-C during training: a checkpoint was written and the run can be resumed."""


def lr_at(step: int, cfg: TrainConfig, time_fraction: float = 0.0) -> float:
    """Linear warm-up, then cosine decay from lr to lr·min_lr_ratio at the last step — or at the end of
    the wall-clock budget (`time_fraction` of max_seconds spent), whichever comes first."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, max((step - cfg.warmup_steps) / span, time_fraction))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class _StepBoundaryInterrupt:
    """Ctrl-C sets a flag that the loop reads between steps, so a checkpoint never holds half a step."""

    def __init__(self) -> None:
        self.requested = False
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C as it is
            self._previous = None

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Trainer:
    """Trains one model on one data set into a run folder; resumable bit for bit on the CPU."""

    def __init__(self, model: GenerativeModel, train_data: ImageData, test_data: ImageData, cfg: TrainConfig,
                 run_dir: Path, callbacks: tuple[Callback, ...] = (), progress: bool = True) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = pick_device(cfg.device)
        self.model = model.to(self.device)
        self.train_data, self.test_data = train_data, test_data
        self.callbacks = callbacks
        self.progress = progress
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                           weight_decay=cfg.weight_decay)
        self.ema = EMA(model, cfg.ema_decay)
        self.eval_model = copy.deepcopy(model).eval()
        self.data_generator = torch.Generator().manual_seed(cfg.seed + 1)
        self.step = 0
        self.seconds_before = 0.0          # training time of earlier sessions of this run (from the checkpoint)
        self._started: float | None = None

    # ---- checkpoints
    def save_checkpoint(self) -> None:
        """Model, EMA, optimizer and RNG tensors with the JSON state, in one atomic file."""
        optim_tensors, optim_meta = flatten_optimizer(self.optimizer.state_dict())
        tensors = {**{f"model.{k}": v for k, v in self.model.state_dict().items()}, **self.ema.state_tensors(),
                   **optim_tensors, **rng_tensors(self.data_generator)}
        state = {"step": self.step, "ema_updates": self.ema.updates, "optimizer": optim_meta,
                 "train_seconds": self.seconds_trained()}
        save_tensors(self.run_dir / CHECKPOINT_FILE, tensors, state)
        atomic_write_json(self.run_dir / "checkpoint.json", {"step": self.step, "ema_updates": self.ema.updates,
                                                             "train_seconds": state["train_seconds"]})

    def load_checkpoint(self) -> None:
        """Restore everything `save_checkpoint` wrote."""
        tensors, state = load_tensors(self.run_dir / CHECKPOINT_FILE)
        if state is None:
            raise ElbolabError(f"{self.run_dir / CHECKPOINT_FILE}: checkpoint has no training state")
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.ema.load_tensors(tensors, state["ema_updates"])
        self.optimizer.load_state_dict(unflatten_optimizer(tensors, state["optimizer"]))
        restore_rng(tensors, self.data_generator)
        self.step = int(state["step"])
        self.seconds_before = float(state.get("train_seconds", 0.0))
        self._truncate_log()

    def _truncate_log(self) -> None:
        """Drop log lines written after the checkpoint we resume from."""
        path = self.run_dir / LOG_FILE
        if path.is_file():
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
            keep = [ln for ln in lines if json.loads(ln).get("step", 0) <= self.step]
            path.write_text("".join(ln + "\n" for ln in keep))

    def _log(self, record: dict) -> None:
        with open(self.run_dir / LOG_FILE, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    # ---- evaluation
    def evaluate(self) -> dict:
        """Test bits/dim of the EMA weights on `eval_n` test images, and of each term of the bound."""
        self.ema.copy_to(self.eval_model)
        bound = dataset_bound(self.eval_model, self.test_data, self.cfg.eval_n, self.cfg.batch_size)
        mean, ci = mean_ci95(bound.bits_per_dim())
        terms = {k: nats_to_bpd(v, bound.dims).mean().item() for k, v in bound.terms.items()}
        return {"test_bpd": mean, "test_bpd_ci95": ci, "test_bpd_terms": terms}

    # ---- the loop
    def train_step(self) -> dict:
        """One optimiser step on a batch drawn with replacement."""
        cfg = self.cfg
        idx = torch.randint(len(self.train_data), (cfg.batch_size,), generator=self.data_generator)
        x = self.train_data.model_range(idx).to(self.device)
        lr = lr_at(self.step, cfg, self._time_fraction())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            loss = self.model.loss(x, self.step, cfg.steps).mean()
        if not torch.isfinite(loss):
            raise ElbolabError(f"the loss became {loss.item()} at step {self.step}; lower train.lr "
                               f"(now {cfg.lr}) or resume from the last checkpoint")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                   cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        self.optimizer.step()
        self.ema.update(self.model)
        self.step += 1
        return {"step": self.step, "loss": loss.item(), "grad_norm": grad_norm.item(), "lr": lr}

    def seconds_trained(self) -> float:
        """Wall-clock training time of this run so far, earlier sessions included."""
        session = 0.0 if self._started is None else time.perf_counter() - self._started
        return self.seconds_before + session

    def _time_fraction(self) -> float:
        """Share of the wall-clock budget spent, across sessions (0 without a budget)."""
        if self.cfg.max_seconds <= 0:
            return 0.0
        return self.seconds_trained() / self.cfg.max_seconds

    def _out_of_time(self) -> bool:
        """True once `max_seconds` of training (this session) have passed."""
        return self._time_fraction() >= 1.0

    def fit(self) -> dict:
        """Train to `cfg.steps`, evaluating and checkpointing on the way; returns the final metrics."""
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]:.4g}"), TextColumn("test {task.fields[bpd]} bits/dim"),
                   TextColumn("{task.fields[ips]:.0f} img/s"), TimeRemainingColumn()]
        last_eval = {"test_bpd": float("nan")}
        started, start_step = time.perf_counter(), self.step
        self._started = started
        with Progress(*columns, disable=not self.progress, transient=False) as bar:
            task = bar.add_task(f"{self.model.kind}", total=cfg.steps, completed=self.step, loss=float("nan"),
                                bpd="–", ips=0.0)
            stop = _StepBoundaryInterrupt()
            try:
                while self.step < cfg.steps and not self._out_of_time():
                    if stop.requested:
                        raise KeyboardInterrupt
                    record = self.train_step()
                    record["images_per_s"] = ((self.step - start_step) * cfg.batch_size
                                              / max(1e-9, time.perf_counter() - started))
                    if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                        last_eval = self.evaluate()
                        record.update(last_eval)
                    self._log(record)
                    if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps or self._out_of_time():
                        self.save_checkpoint()
                    for callback in self.callbacks:
                        callback(self.step, record)
                    bar.update(task, completed=self.step, loss=record["loss"], ips=record["images_per_s"],
                               bpd=f"{last_eval['test_bpd']:.3f}")
            except KeyboardInterrupt:
                self.save_checkpoint()
                raise TrainingInterrupted(f"interrupted at step {self.step}; checkpoint saved in {self.run_dir}, "
                                          f"continue with --resume") from None
            finally:
                stop.restore()
        elapsed = time.perf_counter() - started
        final = self.evaluate()
        metrics = {"step": self.step, **final,
                   "train_images_per_s": (self.step - start_step) * cfg.batch_size / max(elapsed, 1e-9),
                   "train_seconds": self.seconds_before + elapsed, "objective": self.model.objective}
        save_tensors(self.run_dir / WEIGHTS_FILE, self.ema.shadow)
        atomic_write_json(self.run_dir / METRICS_FILE, metrics)
        return metrics
