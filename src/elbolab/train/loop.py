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
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor, nn

from elbolab.atomic import TEMP_SUFFIX, atomic_write_json, atomic_write_text
from elbolab.bounds import json_ready, mean_ci95, nats_to_bpd
from elbolab.data.base import ImageData, to_model
from elbolab.errors import ElbolabError
from elbolab.model import GenerativeModel, dataset_bound
from elbolab.train import distributed
from elbolab.train.budget import step_flops, steps_in_budget
from elbolab.train.checkpoint import (
    CheckpointError,
    flatten_optimizer,
    load_tensors,
    module_spec,
    nonfinite_tensors,
    optimizer_spec,
    restore_rng,
    rng_spec,
    rng_tensors,
    save_tensors,
    unflatten_optimizer,
)
from elbolab.train.config import TrainConfig
from elbolab.train.ema import EMA
from elbolab.train.run import (
    CHECKPOINT_DIR,
    CHECKPOINT_FILE,
    LOG_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    check_checkpoint_run,
    checkpoint_path,
    list_checkpoints,
    pick_device,
    read_log_text,
    run_stamp,
    snapshot_path,
)
from elbolab.train.validation import BestState, ValidationCurve, split_validation, validation_bpd

Callback = Callable[[int, dict[str, Any]], None]
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


def decays(name: str) -> bool:
    """Whether weight decay applies to the parameter called `name`: not to a learned noise schedule (its end
    points and shape), which decay would pull towards 0 with nothing in the bound to hold them."""
    return ".schedule." not in f".{name}"


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The optimiser's groups: runs of consecutive parameters (in `model.parameters()` order, which checkpoints
    index by) alike in whether they decay, each marked with "decay"."""
    groups: list[dict[str, Any]] = []
    for name, param in model.named_parameters():
        decay = decays(name)
        if not groups or groups[-1]["decay"] != decay:
            groups.append({"params": [], "decay": decay, "weight_decay": weight_decay if decay else 0.0})
        groups[-1]["params"].append(param)
    return groups


def regroup(saved: dict[str, Any], groups: list[dict[str, Any]]) -> dict[str, Any]:
    """A saved optimiser state laid out in the current `groups` (same parameters, same order; e.g. a checkpoint
    from before the schedule had a group of its own): its per-parameter state kept, its groups re-cut."""
    if [len(g["params"]) for g in saved["param_groups"]] == [len(g["params"]) for g in groups]:
        return saved
    order = [i for g in saved["param_groups"] for i in g["params"]]
    template = {k: v for k, v in saved["param_groups"][0].items() if k != "params"}
    cut, start = [], 0
    for group in groups:
        cut.append({**template, "decay": group["decay"], "params": order[start : start + len(group["params"])]})
        start += len(group["params"])
    return {"state": saved["state"], "param_groups": cut}


def stream_seed(seed: int, rollbacks: int) -> int:
    """The seed of the run's random stream: the configured one, and a fresh one after each rollback."""
    return seed + 1_000_003 * rollbacks


class TrainingDiverged(ElbolabError):
    """The loss or gradients stayed non-finite through every rollback allowed."""


class TrainingInterrupted(ElbolabError):
    """Ctrl-C, SIGTERM or SIGHUP during training: a checkpoint was written and the run can be resumed; the
    process exits with 128 + the signal's number (130, 143, 129), as a shell reports a death by that signal."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)


def lr_at(step: int, cfg: TrainConfig, time_fraction: float = 0.0) -> float:
    """Linear warm-up, then cosine decay from lr to lr·min_lr_ratio at the last step — or at the end of
    the wall-clock budget (`time_fraction` of max_seconds spent), whichever comes first."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, max((step - cfg.warmup_steps) / span, time_fraction))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


#: the signals that stop training with a checkpoint: Ctrl-C, `kill` (schedulers, containers), a closed terminal
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class _StepBoundaryInterrupt:
    """A stop signal sets a flag that the loop reads between steps, so a checkpoint never holds half a step."""

    def __init__(self) -> None:
        self.requested = False
        self.signum: int = signal.SIGINT
        self._previous: dict[int, Any] = {}
        try:
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: leave the signals as they are
            self.restore()

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested, self.signum = True, signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


class Trainer:
    """Trains one model on one data set into a run folder; resumable bit for bit on the CPU."""

    def __init__(
        self,
        model: GenerativeModel,
        train_data: ImageData,
        test_data: ImageData,
        cfg: TrainConfig,
        run_dir: Path,
        callbacks: tuple[Callback, ...] = (),
        progress: bool = True,
        say: Say = say_on_stderr,
    ) -> None:
        self.cfg = cfg
        if cfg.deterministic:
            use_deterministic_algorithms()
        self.run_dir = Path(run_dir)
        self.world = distributed.current()
        self.device = distributed.local_device(pick_device(cfg.device), self.world)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        # nn.Module.to takes memory_format at run time; torch's stub does not declare it
        self.model = model.to(self.device, memory_format=self.memory_format)  # type: ignore[call-overload]
        # the validation split is carved from the training images (the test split only measures)
        self.train_data, self.validation = split_validation(
            train_data, cfg.validation_fraction, cfg.seed, cfg.validation_max
        )
        self.test_data = test_data
        self.images = device_images(self.train_data, self.device)
        # a conditional model's labels, beside the images (None for any other model)
        self.labels = (
            self.train_data.require_labels(f"the conditional {model.kind} model").to(self.images.device)
            if model.capabilities.classes is not None
            else None
        )
        self.micro_size = distributed.micro_batch(cfg.batch_size, cfg.grad_accum, self.world)
        self.objective = distributed.objective(model, self.world, self.device)
        if cfg.compile:
            compile_networks(model)
        self.callbacks = callbacks
        self.progress = progress and self.world.main
        self.say = say
        self.optimizer = torch.optim.AdamW(
            parameter_groups(model, cfg.weight_decay),
            lr=cfg.lr,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            fused=self.device.type == "cuda",
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        self.ema = EMA(model, cfg.ema_decay)
        self.eval_model = copy.deepcopy(model).eval()
        self.step = 0
        self.seconds_before = 0.0  # training time of earlier sessions of this run (from the checkpoint)
        self.lr_scale = 1.0  # halved by each rollback
        self.rollbacks = 0
        self.nonfinite_in_a_row = 0
        self._window: Tensor | None = None  # deferred steps' [loss sum, non-finite steps, steps] (log_every > 1)
        self._started: float | None = None
        self.flops_per_step: int | None = None  # counted once, at the first `fit`
        self.best = BestState()
        self.curve: list[tuple[int, float]] = []  # (step, validation bits/dim)

    # ---- checkpoints
    def _spec(self) -> dict[str, Any]:
        """Names, shapes and dtypes a checkpoint of this model must hold."""
        return {**module_spec(self.model.state_dict(), "model."), **module_spec(self.ema.shadow, "ema."), **rng_spec()}

    def save_checkpoint(self) -> Path:
        """Model, EMA, optimizer and RNG tensors with the JSON state, in one atomic file; keeps the newest K."""
        optim_tensors, optim_meta = flatten_optimizer(self.optimizer.state_dict())
        tensors = {
            **{f"model.{k}": v for k, v in self.model.state_dict().items()},
            **self.ema.state_tensors(),
            **optim_tensors,
            **rng_tensors(),
            **self.best.state_tensors(),
        }
        state = {
            "step": self.step,
            "ema_updates": self.ema.updates,
            "optimizer": optim_meta,
            "train_seconds": self.seconds_trained(),
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            **run_stamp(self.run_dir),
            "validation": {"curve": self.curve, "best_step": self.best.step, "best_bpd": self._best_bpd()},
        }
        path = checkpoint_path(self.run_dir, self.step)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(path, tensors, state)
        atomic_write_json(
            self.run_dir / CHECKPOINT_FILE,
            {
                "step": self.step,
                "file": f"{CHECKPOINT_DIR}/{path.name}",
                "ema_updates": self.ema.updates,
                "train_seconds": state["train_seconds"],
                "lr_scale": self.lr_scale,
                "rollbacks": self.rollbacks,
                **run_stamp(self.run_dir),
            },
        )
        for old in list_checkpoints(self.run_dir)[self.cfg.keep_checkpoints :]:
            if old.parent.name == CHECKPOINT_DIR:
                old.unlink(missing_ok=True)
        return path

    def _read(self, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        """A checkpoint's tensors and state, verified against this model and optimizer."""
        tensors, state = load_tensors(path, self._spec())
        optimizer_spec(path, tensors, list(self.model.parameters()))
        if state is None or any(key not in state for key in STATE_KEYS):
            raise CheckpointError(f"{path}: checkpoint has no training state")
        check_checkpoint_run(self.run_dir, path, state)
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
        raise CheckpointError(
            f"{self.run_dir}: no usable checkpoint; all {len(problems)} are damaged, the newest: {problems[0]}"
        )

    def _restore(self, tensors: dict[str, Any], state: dict[str, Any], rollback: bool) -> None:
        """Put back everything `save_checkpoint` wrote (a rollback keeps its own time and rollback count)."""
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.ema.load_tensors(tensors, state["ema_updates"])
        self.optimizer.load_state_dict(
            regroup(unflatten_optimizer(tensors, state["optimizer"]), self.optimizer.param_groups)
        )
        for group in self.optimizer.param_groups:  # settings changed on resume win over the saved ones
            group.update(
                betas=(self.cfg.adam_beta1, self.cfg.adam_beta2),
                weight_decay=self.cfg.weight_decay if group.get("decay", True) else 0.0,
            )
        restore_rng(tensors)
        validation = state.get("validation", {"curve": [], "best_step": None, "best_bpd": None})
        self.curve = [(int(s), float(b)) for s, b in validation["curve"]]
        self.best.load(tensors, validation["best_step"], validation["best_bpd"])
        self.step = int(state["step"])
        if not rollback:
            self.seconds_before = float(state["train_seconds"])
            self.lr_scale = float(state.get("lr_scale", 1.0))
            self.rollbacks = int(state.get("rollbacks", 0))
        if self.world.main:
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
        for line in read_log_text(path).splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("step", 0) <= self.step:
                keep.append(line)
        atomic_write_text(path, "".join(ln + "\n" for ln in keep))

    def _log(self, record: dict[str, Any]) -> None:
        """A line in the run's log (rank 0 writes the run folder)."""
        if not self.world.main:
            return
        with open(self.run_dir / LOG_FILE, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def log_event(self, event: str, **fields: Any) -> None:
        """A line in the run's log for something other than a training step (a rollback, a config change)."""
        self._log({"step": self.step, "event": event, **fields})

    # ---- non-finite values
    def _roll_back(self, reason: str) -> None:
        """Back to the newest good checkpoint with the learning rate halved and a fresh random stream."""
        if self.rollbacks >= self.cfg.max_rollbacks:
            raise TrainingDiverged(
                f"training diverged at step {self.step}: {reason} after {self.rollbacks} "
                f"rollbacks (train.max_rollbacks={self.cfg.max_rollbacks}, learning rate × "
                f"{self.lr_scale:g}); lower train.lr or check the data"
            )
        from_step, rollbacks, scale = self.step, self.rollbacks + 1, self.lr_scale * 0.5
        path = self.load_checkpoint(rollback=True)
        self.rollbacks, self.lr_scale, self.nonfinite_in_a_row, self._window = rollbacks, scale, 0, None
        self.log_event(
            "rollback", reason=reason, from_step=from_step, checkpoint=path.name, lr_scale=scale, rollbacks=rollbacks
        )
        self.say(
            f"warning: {reason} at step {from_step}; rolled back to step {self.step} ({path.name}) with the "
            f"learning rate × {scale:g} and a fresh random stream (rollback {rollbacks} of "
            f"{self.cfg.max_rollbacks})"
        )

    # ---- evaluation
    def evaluate(self, weights: dict[str, Tensor] | None = None) -> dict[str, Any]:
        """Test bits/dim of the EMA weights (or `weights`) on `eval_n` test images, and of each term of the bound."""
        self.eval_model.load_state_dict(self.ema.shadow if weights is None else weights)
        bound = dataset_bound(self.eval_model, self.test_data, self.cfg.eval_n, self.cfg.batch_size)
        mean, ci = mean_ci95(bound.bits_per_dim())
        terms = {k: nats_to_bpd(v, bound.dims).mean().item() for k, v in bound.terms.items()}
        return {"test_bpd": mean, "test_bpd_ci95": ci, "test_bpd_terms": terms, "test_n": len(bound.total)}

    def validate(self) -> dict[str, Any]:
        """The validation bound of the EMA weights at this step, on the curve; kept if the best so far."""
        if self.validation is None:
            raise ElbolabError("no validation split to validate on: set train.validation_fraction")
        self.ema.copy_to(self.eval_model)
        bpd = validation_bpd(self.eval_model, self.validation, self.cfg.batch_size)
        self.curve.append((self.step, bpd))
        if self.cfg.keep_best:
            self.best.offer(self.step, bpd, self.ema.shadow)
        return {"validation_bpd": bpd}

    def _validation_due(self) -> bool:
        """Whether this step is on the validation cadence or the run's last (rank 0, with a validation split)."""
        last = self.step >= self.cfg.steps or self._out_of_time()
        return self.validation is not None and self.world.main and (self.step % self.cfg.validate_every == 0 or last)

    def _best_bpd(self) -> float | None:
        return None if self.best.step is None else self.best.bpd

    def validation_curve(self) -> ValidationCurve | None:
        """The curve so far and the kept step (None without a validation split)."""
        if self.validation is None:
            return None
        steps = tuple(s for s, _ in self.curve)
        bpd = tuple(b for _, b in self.curve)
        return ValidationCurve(len(self.validation), steps, bpd, self.best.step, self._best_bpd())

    # ---- snapshots along the budget
    def _snapshots_due(self) -> list[float]:
        """The snapshot fractions (`train.snapshots`) this step has reached and not yet written (rank 0): of the
        steps for a step or FLOP budget, of the seconds for a wall-clock one."""
        if not self.world.main:
            return []
        seconds = self.cfg.max_seconds > 0 and self.cfg.max_flops <= 0
        reached = self._time_fraction() if seconds else self.step / self.cfg.steps
        return [
            f
            for f in self.cfg.snapshots
            if (reached >= f if seconds else self.step >= max(1, round(f * self.cfg.steps)))
            and not snapshot_path(self.run_dir, f).is_file()
        ]

    def save_snapshot(self, fraction: float, record: dict[str, Any]) -> dict[str, Any]:
        """Keep the weights the run would hand over if it stopped at this step (`snapshot_path`): with keep_best
        the best on validation so far (validated at this step first), else the EMA's; returns its log fields."""
        if self.cfg.keep_best and "validation_bpd" not in record:
            record.update(self.validate())
        kept = self.best.tensors if self.cfg.keep_best and self.best.tensors else self.ema.shadow
        state = {
            "fraction": fraction,
            "step": self.step,
            "kept_step": self.best.step if self.cfg.keep_best else self.step,
            "train_flops": None if self.flops_per_step is None else self.step * self.flops_per_step,
        }
        path = snapshot_path(self.run_dir, fraction)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(path, kept, state)
        return {"snapshot": fraction}

    def count_flops(self) -> int:
        """Counted FLOPs of one optimiser step: one micro-batch's forward and backward, times the micro-batches
        of every process (`step_flops`)."""
        x = to_model(self.images[: self.micro_size], self.train_data.levels).contiguous(
            memory_format=self.memory_format
        )
        y = None if self.labels is None else self.labels[: self.micro_size].to(self.device)
        return step_flops(self.model, x, self.cfg.steps, y) * self.cfg.grad_accum * self.world.size

    # ---- the loop
    def micro_batch(self, slot: int) -> tuple[Tensor, Tensor | None]:
        """Micro-batch `slot` of this step (images, and a conditional model's labels), drawn with replacement from
        the slot's own stream, which also seeds the loss's noise (see `distributed`): the same draws on any number
        of processes."""
        seed = distributed.slot_seed(stream_seed(self.cfg.seed, self.rollbacks), self.step, slot)
        torch.manual_seed(seed)
        idx = torch.randint(len(self.images), (self.micro_size,), generator=torch.Generator().manual_seed(seed))
        if self.images.is_cuda:  # pinned and asynchronous: a pageable copy would wait for the GPU each step
            idx = idx.pin_memory().to(self.images.device, non_blocking=True)
        x = to_model(self.images[idx], self.train_data.levels)
        y = None if self.labels is None else self.labels[idx.to(self.labels.device)].to(self.device)
        return x.contiguous(memory_format=self.memory_format), y

    def _accumulate(self, check: bool = True) -> tuple[Tensor, str | None]:
        """Forward and backward over this process's grad_accum micro-batches; the loss averaged over every
        process (so that all of them agree on a non-finite one), and the problem if it is not finite (with
        `check` False not looked at: no host read)."""
        cfg = self.cfg
        autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        total = torch.zeros((), device=self.device)
        for a in range(cfg.grad_accum):
            x, y = self.micro_batch(self.world.rank * cfg.grad_accum + a)
            with distributed.no_sync(self.objective, a == cfg.grad_accum - 1):
                with torch.autocast(self.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
                    loss = self.objective(x, self.step, cfg.steps, y).mean()
                mean = distributed.mean_over(loss.detach().float(), self.world)
                if check and not torch.isfinite(mean):
                    return mean, f"non-finite loss ({mean.item()})"
                self.scaler.scale(loss / cfg.grad_accum).backward()
            total += mean / cfg.grad_accum
        return total, None

    def _deferred(self) -> bool:
        """Whether steps leave their checks on the device (train.log_every > 1): in fp32 or bf16 (fp16's scaler
        decides on overflow itself) and for a model with no limit on the gradient norm."""
        limit = getattr(self.model, "skip_gradient_norm", math.inf)
        skips = getattr(self.model, "skips_updates", False)
        return self.cfg.log_every > 1 and not self.scaler.is_enabled() and math.isinf(limit) and not skips

    def _deferred_step(self, lr: float) -> dict[str, Any]:
        """One optimiser step with no host read: the loss summed and non-finite steps counted on the device. Every
        log_every-th step reads both back at once and logs the window's mean loss; a non-finite step among them
        (its update applied) rolls the run back to the last good checkpoint."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, _ = self._accumulate(check=False)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        )
        bad = (~(torch.isfinite(loss) & torch.isfinite(grad_norm))).float()
        window = torch.stack([loss.float(), bad, torch.ones_like(bad)])
        self._window = window if self._window is None else self._window + window
        self.optimizer.step()
        self.ema.update(self.model)
        self.step += 1
        if self.step % self.cfg.log_every:
            return {"step": self.step, "lr": lr}
        total, bad_steps, steps, norm = torch.cat([self._window, grad_norm.float().reshape(1)]).tolist()
        self._window = None
        if bad_steps:
            self.nonfinite_in_a_row = self.cfg.nonfinite_patience  # the weights may be spoiled: roll back
            return {"step": self.step, "skipped": f"{bad_steps:.0f} non-finite of the last {steps:.0f} steps", "lr": lr}
        return {"step": self.step, "loss": total / steps, "grad_norm": norm, "lr": lr}

    def train_step(self) -> dict[str, Any]:
        """One optimiser step on the global batch: grad_accum micro-batches on each process, gradients averaged
        (DDP's all-reduce); a non-finite loss or gradient skips the update on every process alike (with
        train.log_every > 1, `_deferred_step`: checked every log_every steps, rolled back if one was)."""
        cfg = self.cfg
        lr = lr_at(self.step, cfg, self._time_fraction()) * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self._deferred():
            return self._deferred_step(lr)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, problem = self._accumulate()
        grad_norm = torch.tensor(float("nan"))
        overflow = large = False
        if problem is None:
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(
                self.model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
            )
            if not torch.isfinite(grad_norm):
                problem = f"non-finite gradient (norm {grad_norm.item()})"
                overflow = self.scaler.is_enabled()  # with fp16, the scaler's business: it lowers its scale
            elif grad_norm > (limit := getattr(self.model, "skip_gradient_norm", math.inf)):  # e.g. VDVAE's skip
                large = True
                problem = f"gradient norm {grad_norm.item():.4g} above the model's skip_gradient_norm {limit:g}"
            observe = getattr(self.model, "observe_gradient_norm", None)
            if observe is not None and torch.isfinite(grad_norm):  # a model's running scale of the norms
                observe(grad_norm)
        if problem is None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.ema.update(self.model)
            self.nonfinite_in_a_row = 0
        elif overflow:
            self.scaler.update()
            self.step += 1
            return {
                "step": self.step,
                "overflow": f"{problem}; fp16 loss scale now {self.scaler.get_scale():g}",
                "lr": lr,
            }
        else:  # skip the update: the weights, the optimizer's moments and the EMA stay as they were
            self.optimizer.zero_grad(set_to_none=True)
            if (
                large
            ):  # finite, only above the model's limit: no fault to roll back for; the fp16 scaler closes its step
                self.scaler.update()
            else:
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
        """Share of the wall-clock budget spent, across sessions (0 without a budget); rank 0's clock on all."""
        if self.cfg.max_seconds <= 0:
            return 0.0
        return distributed.from_main(self.seconds_trained(), self.world, self.device) / self.cfg.max_seconds

    def _out_of_time(self) -> bool:
        """True once `max_seconds` of training (this session) have passed."""
        return self._time_fraction() >= 1.0

    def _pause_due(self, pause_at: float | None) -> bool:
        """True once this run has trained `pause_at` seconds (earlier sessions included); rank 0's clock on all."""
        return (
            pause_at is not None and distributed.from_main(self.seconds_trained(), self.world, self.device) >= pause_at
        )

    def fit(self, pause_at: float | None = None) -> dict[str, Any]:
        """Train to `cfg.steps`, evaluating and checkpointing on the way; returns the final metrics. With
        `pause_at`, return {"step", "train_seconds", "paused": True} once the run has trained that many seconds,
        with no final evaluation: a later `fit` continues it, its clock and learning-rate schedule unbroken
        (how a benchmark trains two models in turns). A FLOP budget (`max_flops`) becomes a number of steps here."""
        if self.flops_per_step is None:
            self.flops_per_step = self.count_flops()
        self.cfg = replace(self.cfg, steps=steps_in_budget(self.cfg.steps, self.cfg.max_flops, self.flops_per_step))
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4g}"),
            TextColumn("test {task.fields[bpd]} bits/dim"),
            TextColumn("{task.fields[ips]:.0f} img/s"),
            TimeRemainingColumn(),
        ]
        last_eval = {"test_bpd": float("nan")}
        started, start_step = time.perf_counter(), self.step
        self._started = started
        if self.world.main:
            self._truncate_log()
            if self.step == 0:
                self.save_checkpoint()  # a start to resume or roll back to, before any step
        with Progress(*columns, disable=not self.progress, transient=False) as bar:
            task = bar.add_task(
                f"{self.model.kind}", total=cfg.steps, completed=self.step, loss=float("nan"), bpd="–", ips=0.0
            )
            stop = _StepBoundaryInterrupt()
            try:
                while self.step < cfg.steps and not self._out_of_time() and not self._pause_due(pause_at):
                    if stop.requested:
                        raise KeyboardInterrupt
                    record = self.train_step()
                    record["images_per_s"] = (
                        max(0, self.step - start_step) * cfg.batch_size / max(1e-9, time.perf_counter() - started)
                    )
                    if "skipped" in record:
                        self.say(f"warning: step {self.step} skipped: {record['skipped']}")
                    periodic = cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps
                    if periodic and self.world.main and not cfg.keep_best:  # keep_best: the test split only measures
                        last_eval = self.evaluate()
                        record.update(last_eval)
                    if self._validation_due():
                        record.update(self.validate())
                    for fraction in self._snapshots_due():
                        record.update(self.save_snapshot(fraction, record))
                    self._log(record)
                    if self.nonfinite_in_a_row >= cfg.nonfinite_patience:
                        self._roll_back(f"{self.nonfinite_in_a_row} non-finite steps in a row")
                        continue
                    if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps or self._out_of_time():
                        if nonfinite_tensors(self.model.state_dict()):
                            self._roll_back("non-finite weights")
                            continue
                        if self.world.main:
                            self.save_checkpoint()
                    for callback in self.callbacks:
                        callback(self.step, record)
                    bar.update(
                        task,
                        completed=self.step,
                        loss=record.get("loss", float("nan")),
                        ips=record["images_per_s"],
                        bpd=f"{last_eval['test_bpd']:.3f}",
                    )
            except KeyboardInterrupt:
                if self.world.main:
                    self.save_checkpoint()
                raise TrainingInterrupted(
                    f"interrupted ({stop.name}) at step {self.step}; checkpoint saved in {self.run_dir}, "
                    f"continue with --resume",
                    stop.signum,
                ) from None
            finally:
                stop.restore()
        elapsed = time.perf_counter() - started
        self.seconds_before, self._started = self.seconds_before + elapsed, None
        if self.step < cfg.steps and self._pause_due(pause_at) and not self._out_of_time():
            return {"step": self.step, "train_seconds": self.seconds_before, "paused": True}
        if not self.world.main:  # rank 0 evaluates and writes the run folder
            return {"step": self.step}
        if self.validation is not None and (not self.curve or self.curve[-1][0] != self.step):
            self.log_event("validation", **self.validate())
        kept = self.best.tensors if cfg.keep_best and self.best.tensors else self.ema.shadow
        final = self.evaluate(kept)
        curve = self.validation_curve()
        metrics = {
            "step": self.step,
            **final,
            "train_images_per_s": (self.step - start_step) * cfg.batch_size / max(elapsed, 1e-9),
            "train_seconds": self.seconds_before,
            "train_flops_per_step": self.flops_per_step,
            "train_flops": self.step * self.flops_per_step,
            "kept_step": self.best.step if cfg.keep_best else self.step,
            "validation": None if curve is None else curve.to_json(),
            "objective": self.model.objective,
        }
        save_tensors(self.run_dir / WEIGHTS_FILE, kept)
        atomic_write_json(self.run_dir / METRICS_FILE, json_ready(metrics))  # NaN (an interval of one image) as null
        return metrics
