"""The training loop: AdamW, clipping, EMA, periodic test bound, atomic checkpoints, resume.

Faults: a step whose loss or gradient is not finite is skipped (logged); `nonfinite_patience` of them in
a row roll back to the newest good checkpoint with the learning rate halved and a fresh random stream;
after `max_rollbacks` rollbacks the run stops with one line.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from elbolab.atomic import TEMP_SUFFIX, atomic_write_json, atomic_write_text
from elbolab.bounds import mean_ci95, nats_to_bpd
from elbolab.data.base import ImageData
from elbolab.errors import ElbolabError
from elbolab.model import GenerativeModel, dataset_bound
from elbolab.train.checkpoint import (CheckpointError, flatten_optimizer, load_tensors, module_spec, nonfinite_tensors,
                                      optimizer_spec, restore_rng, rng_spec, rng_tensors, save_tensors,
                                      unflatten_optimizer)
from elbolab.train.config import TrainConfig
from elbolab.train.ema import EMA
from elbolab.train.run import (CHECKPOINT_DIR, CHECKPOINT_FILE, LOG_FILE, METRICS_FILE, WEIGHTS_FILE, checkpoint_path,
                               list_checkpoints, pick_device)

Callback = Callable[[int, dict], None]
Say = Callable[[str], None]
#: the training state every checkpoint's JSON holds
STATE_KEYS = ("step", "ema_updates", "optimizer", "train_seconds")


def say_on_stderr(message: str) -> None:
    """Where the trainer says what it did about a fault, by default: one line on stderr."""
    print(message, file=sys.stderr, flush=True)


def use_deterministic_algorithms() -> None:
    """Deterministic kernels on the GPU: torch's switch, cuDNN without autotuning, a fixed cuBLAS workspace."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


class TrainingDiverged(ElbolabError):
    """The loss or gradients stayed non-finite through every rollback allowed."""


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
                 run_dir: Path, callbacks: tuple[Callback, ...] = (), progress: bool = True,
                 say: Say = say_on_stderr) -> None:
        self.cfg = cfg
        if cfg.deterministic:
            use_deterministic_algorithms()
        self.run_dir = Path(run_dir)
        self.device = pick_device(cfg.device)
        self.model = model.to(self.device)
        self.train_data, self.test_data = train_data, test_data
        self.callbacks = callbacks
        self.progress = progress
        self.say = say
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                           weight_decay=cfg.weight_decay)
        self.ema = EMA(model, cfg.ema_decay)
        self.eval_model = copy.deepcopy(model).eval()
        self.data_generator = torch.Generator().manual_seed(cfg.seed + 1)
        self.step = 0
        self.seconds_before = 0.0          # training time of earlier sessions of this run (from the checkpoint)
        self.lr_scale = 1.0                # halved by each rollback
        self.rollbacks = 0
        self.nonfinite_in_a_row = 0
        self._started: float | None = None

    # ---- checkpoints
    def _spec(self) -> dict:
        """Names, shapes and dtypes a checkpoint of this model must hold."""
        return {**module_spec(self.model.state_dict(), "model."), **module_spec(self.ema.shadow, "ema."),
                **rng_spec(self.data_generator)}

    def save_checkpoint(self) -> Path:
        """Model, EMA, optimizer and RNG tensors with the JSON state, in one atomic file; keeps the newest K."""
        optim_tensors, optim_meta = flatten_optimizer(self.optimizer.state_dict())
        tensors = {**{f"model.{k}": v for k, v in self.model.state_dict().items()}, **self.ema.state_tensors(),
                   **optim_tensors, **rng_tensors(self.data_generator)}
        state = {"step": self.step, "ema_updates": self.ema.updates, "optimizer": optim_meta,
                 "train_seconds": self.seconds_trained(), "lr_scale": self.lr_scale, "rollbacks": self.rollbacks}
        path = checkpoint_path(self.run_dir, self.step)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(path, tensors, state)
        atomic_write_json(self.run_dir / CHECKPOINT_FILE, {
            "step": self.step, "file": f"{CHECKPOINT_DIR}/{path.name}", "ema_updates": self.ema.updates,
            "train_seconds": state["train_seconds"], "lr_scale": self.lr_scale, "rollbacks": self.rollbacks})
        for old in list_checkpoints(self.run_dir)[self.cfg.keep_checkpoints:]:
            if old.parent.name == CHECKPOINT_DIR:
                old.unlink(missing_ok=True)
        return path

    def _read(self, path: Path) -> tuple[dict, dict]:
        """A checkpoint's tensors and state, verified against this model and optimizer."""
        tensors, state = load_tensors(path, self._spec())
        optimizer_spec(path, tensors, list(self.model.parameters()))
        if state is None or any(key not in state for key in STATE_KEYS):
            raise CheckpointError(f"{path}: checkpoint has no training state")
        return tensors, state

    def load_checkpoint(self, rollback: bool = False) -> Path:
        """Restore the newest good checkpoint, saying which damaged ones it passed over; returns its path."""
        candidates = list_checkpoints(self.run_dir)
        if not candidates:
            raise CheckpointError(f"{self.run_dir}: no checkpoint to resume from")
        problems = []
        for path in candidates:
            try:
                tensors, state = self._read(path)
            except CheckpointError as exc:
                problems.append(str(exc))
                self.say(f"warning: {exc}")
                continue
            if problems:
                self.say(f"falling back to the older checkpoint {path} (step {state['step']})")
            self._restore(tensors, state, rollback)
            return path
        raise CheckpointError(f"{self.run_dir}: no usable checkpoint; all {len(problems)} are damaged, "
                              f"the newest: {problems[0]}")

    def _restore(self, tensors: dict, state: dict, rollback: bool) -> None:
        """Put back everything `save_checkpoint` wrote (a rollback keeps its own time and rollback count)."""
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.ema.load_tensors(tensors, state["ema_updates"])
        self.optimizer.load_state_dict(unflatten_optimizer(tensors, state["optimizer"]))
        for group in self.optimizer.param_groups:  # settings changed on resume win over the saved ones
            group.update(betas=(self.cfg.adam_beta1, self.cfg.adam_beta2), weight_decay=self.cfg.weight_decay)
        restore_rng(tensors, self.data_generator)
        self.step = int(state["step"])
        if not rollback:
            self.seconds_before = float(state["train_seconds"])
            self.lr_scale = float(state.get("lr_scale", 1.0))
            self.rollbacks = int(state.get("rollbacks", 0))
        self._truncate_log()

    def remove_temporary_files(self) -> None:
        """Delete what writes cut short by a crash left behind (hidden `.*.tmp` files)."""
        for folder in (self.run_dir, self.run_dir / CHECKPOINT_DIR):
            if folder.is_dir():
                for tmp in folder.glob(f".*{TEMP_SUFFIX}"):
                    tmp.unlink(missing_ok=True)

    def _truncate_log(self) -> None:
        """Drop log lines written after the step we continue from (and a line cut short by a crash)."""
        path = self.run_dir / LOG_FILE
        if not path.is_file():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("step", 0) <= self.step:
                keep.append(line)
        atomic_write_text(path, "".join(ln + "\n" for ln in keep))

    def _log(self, record: dict) -> None:
        with open(self.run_dir / LOG_FILE, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def log_event(self, event: str, **fields) -> None:
        """A line in the run's log for something other than a training step (a rollback, a config change)."""
        self._log({"step": self.step, "event": event, **fields})

    # ---- non-finite values
    def _roll_back(self, reason: str) -> None:
        """Back to the newest good checkpoint with the learning rate halved and a fresh random stream."""
        if self.rollbacks >= self.cfg.max_rollbacks:
            raise TrainingDiverged(f"training diverged at step {self.step}: {reason} after {self.rollbacks} "
                                   f"rollbacks (train.max_rollbacks={self.cfg.max_rollbacks}, learning rate × "
                                   f"{self.lr_scale:g}); lower train.lr or check the data")
        from_step, rollbacks, scale = self.step, self.rollbacks + 1, self.lr_scale * 0.5
        path = self.load_checkpoint(rollback=True)
        self.rollbacks, self.lr_scale, self.nonfinite_in_a_row = rollbacks, scale, 0
        stream = self.cfg.seed + 1_000_003 * rollbacks
        torch.manual_seed(stream)
        self.data_generator.manual_seed(stream + 1)
        self.log_event("rollback", reason=reason, from_step=from_step, checkpoint=path.name, lr_scale=scale,
                       rollbacks=rollbacks)
        self.say(f"warning: {reason} at step {from_step}; rolled back to step {self.step} ({path.name}) with the "
                 f"learning rate × {scale:g} and a fresh random stream (rollback {rollbacks} of "
                 f"{self.cfg.max_rollbacks})")

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
        lr = lr_at(self.step, cfg, self._time_fraction()) * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            loss = self.model.loss(x, self.step, cfg.steps).mean()
        self.optimizer.zero_grad(set_to_none=True)
        grad_norm = torch.tensor(float("nan"))
        problem = None if torch.isfinite(loss) else f"non-finite loss ({loss.item()})"
        if problem is None:
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                       cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            problem = None if torch.isfinite(grad_norm) else f"non-finite gradient (norm {grad_norm.item()})"
        if problem is None:
            self.optimizer.step()
            self.ema.update(self.model)
            self.nonfinite_in_a_row = 0
        else:  # skip the update: the weights, the optimizer's moments and the EMA stay as they were
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite_in_a_row += 1
        self.step += 1
        if problem is not None:
            return {"step": self.step, "skipped": problem, "lr": lr}
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
        self._truncate_log()
        if self.step == 0:
            self.save_checkpoint()  # a start to resume or roll back to, before any step
        with Progress(*columns, disable=not self.progress, transient=False) as bar:
            task = bar.add_task(f"{self.model.kind}", total=cfg.steps, completed=self.step, loss=float("nan"),
                                bpd="–", ips=0.0)
            stop = _StepBoundaryInterrupt()
            try:
                while self.step < cfg.steps and not self._out_of_time():
                    if stop.requested:
                        raise KeyboardInterrupt
                    record = self.train_step()
                    record["images_per_s"] = (max(0, self.step - start_step) * cfg.batch_size
                                              / max(1e-9, time.perf_counter() - started))
                    if "skipped" in record:
                        self.say(f"warning: step {self.step} skipped: {record['skipped']}")
                    if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                        last_eval = self.evaluate()
                        record.update(last_eval)
                    self._log(record)
                    if self.nonfinite_in_a_row >= cfg.nonfinite_patience:
                        self._roll_back(f"{self.nonfinite_in_a_row} non-finite steps in a row")
                        continue
                    if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps or self._out_of_time():
                        if nonfinite_tensors(self.model.state_dict()):
                            self._roll_back("non-finite weights")
                            continue
                        self.save_checkpoint()
                    for callback in self.callbacks:
                        callback(self.step, record)
                    bar.update(task, completed=self.step, loss=record.get("loss", float("nan")),
                               ips=record["images_per_s"], bpd=f"{last_eval['test_bpd']:.3f}")
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
