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
from torch import Tensor, nn
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from elbolab.bounds import mean_ci95
from elbolab.data.base import ImageData, to_model
from elbolab.errors import ElbolabError
from elbolab.model import GenerativeModel, dataset_bound
from elbolab.train.checkpoint import (atomic_write_json, flatten_optimizer, load_tensors, restore_rng, rng_tensors,
                                      save_tensors, unflatten_optimizer)
from elbolab.train import distributed
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


def device_images(data: ImageData, device: torch.device, share: float = 0.25) -> Tensor:
    """The training images (uint8 levels) held on the device as one tensor when they fit in `share` of its
    free memory (no host copy per step), else on the host."""
    if device.type == "cuda" and data.images.nbytes > share * torch.cuda.mem_get_info(device)[0]:
        return data.images
    return data.images.to(device)


def compile_networks(model: nn.Module) -> None:
    """torch.compile, in place, every outermost network of `model` (elbolab.nets modules: UNet, encoder, decoder)."""
    compiled: list[str] = []
    for name, module in model.named_modules():
        if type(module).__module__.startswith("elbolab.nets.") and not any(name.startswith(c + ".") for c in compiled):
            module.compile()
            compiled.append(name)


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
        self.world = distributed.current()
        self.device = distributed.local_device(pick_device(cfg.device), self.world)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.train_data, self.test_data = train_data, test_data
        self.images = device_images(train_data, self.device)
        self.micro_size = distributed.micro_batch(cfg.batch_size, cfg.grad_accum, self.world)
        self.objective = distributed.objective(model, self.world, self.device)
        if cfg.compile:
            compile_networks(model)
        self.callbacks = callbacks
        self.progress = progress and self.world.main
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                           weight_decay=cfg.weight_decay, fused=self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
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
        if self.world.main:
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
        """Test bits/dim of the EMA weights on `eval_n` test images."""
        self.ema.copy_to(self.eval_model)
        bound = dataset_bound(self.eval_model, self.test_data, self.cfg.eval_n, self.cfg.batch_size)
        mean, ci = mean_ci95(bound.bits_per_dim())
        return {"test_bpd": mean, "test_bpd_ci95": ci}

    # ---- the loop
    def micro_batch(self, slot: int) -> Tensor:
        """Micro-batch `slot` of this step, drawn with replacement from the slot's own stream, which also
        seeds the loss's noise (see `distributed`): the same draws on any number of processes."""
        seed = distributed.slot_seed(self.cfg.seed, self.step, slot)
        torch.manual_seed(seed)
        idx = torch.randint(len(self.images), (self.micro_size,), generator=torch.Generator().manual_seed(seed))
        x = to_model(self.images[idx.to(self.images.device)], self.train_data.levels)
        return x.contiguous(memory_format=self.memory_format)

    def train_step(self) -> dict:
        """One optimiser step on the global batch: grad_accum micro-batches on each process, gradients averaged."""
        cfg = self.cfg
        lr = lr_at(self.step, cfg, self._time_fraction())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        total = torch.zeros((), device=self.device)
        for a in range(cfg.grad_accum):
            x = self.micro_batch(self.world.rank * cfg.grad_accum + a)
            with distributed.no_sync(self.objective, a == cfg.grad_accum - 1):
                with torch.autocast(self.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
                    loss = self.objective(x, self.step, cfg.steps).mean()
                # averaged over the processes first, so that all of them stop together
                mean = distributed.mean_over(loss.detach().float(), self.world)
                if not torch.isfinite(mean):
                    raise ElbolabError(f"the loss became {mean.item()} at step {self.step}; lower train.lr "
                                       f"(now {cfg.lr}) or resume from the last checkpoint")
                self.scaler.scale(loss / cfg.grad_accum).backward()
            total += mean / cfg.grad_accum
        loss = total
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                   cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update(self.model)
        self.step += 1
        return {"step": self.step, "loss": loss.item(), "grad_norm": grad_norm.item(), "lr": lr}

    def seconds_trained(self) -> float:
        """Wall-clock training time of this run so far, earlier sessions included."""
        session = 0.0 if self._started is None else time.perf_counter() - self._started
        return self.seconds_before + session

    def _time_fraction(self) -> float:
        """Share of the wall-clock budget spent, across sessions (0 without a budget); rank 0's clock on all."""
        if self.cfg.max_seconds <= 0:
            return 0.0
        return distributed.from_main(self.seconds_trained(), self.world, self.device) / self.cfg.max_seconds

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
                    if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps and self.world.main:
                        last_eval = self.evaluate()
                        record.update(last_eval)
                    if self.world.main:
                        self._log(record)
                    if (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps or self._out_of_time()) \
                            and self.world.main:
                        self.save_checkpoint()
                    for callback in self.callbacks:
                        callback(self.step, record)
                    bar.update(task, completed=self.step, loss=record["loss"], ips=record["images_per_s"],
                               bpd=f"{last_eval['test_bpd']:.3f}")
            except KeyboardInterrupt:
                if self.world.main:
                    self.save_checkpoint()
                raise TrainingInterrupted(f"interrupted at step {self.step}; checkpoint saved in {self.run_dir}, "
                                          f"continue with --resume") from None
            finally:
                stop.restore()
        elapsed = time.perf_counter() - started
        if not self.world.main:  # rank 0 evaluates and writes the run folder
            return {"step": self.step}
        final = self.evaluate()
        metrics = {"step": self.step, **final,
                   "train_images_per_s": (self.step - start_step) * cfg.batch_size / max(elapsed, 1e-9),
                   "train_seconds": self.seconds_before + elapsed, "objective": self.model.objective}
        save_tensors(self.run_dir / WEIGHTS_FILE, self.ema.shadow)
        atomic_write_json(self.run_dir / METRICS_FILE, metrics)
        return metrics
