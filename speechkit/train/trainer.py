"""The one training loop every recipe uses: single process or torchrun DDP, resumable from its run folder.

Contract with models: the model implements ``training_step(batch) -> (loss, metrics)`` where ``loss`` is
a scalar tensor to minimise and ``metrics`` a dict of floats (the same keys on every rank). The trainer
knows nothing else about the model, so codecs, TTS, ASR and speaker models share it.

One optimizer step (per process): ``grad_accum_steps`` micro-batches under autocast (``precision.py``),
backward, gradient-norm clipping, then ONE all-reduce of (loss, gradient norm, wall-budget flag, signal
flag) so every rank decides alike: a non-finite loss or norm anywhere skips the step everywhere (raising
after ``max_consecutive_nonfinite`` in a row), a stop request anywhere stops all. Then AdamW, the
warmup + cosine schedule and the weight EMA.

DDP: a tiny module whose ``forward(batch)`` calls ``model.training_step(batch)`` is what
``DistributedDataParallel`` wraps, so DDP's reducer sees the forward. DDP broadcasts buffers from rank 0
at every forward (``forward_sync_buffers``, formerly ``broadcast_buffers``): this keeps the EMA
codebooks of vector quantizers (buffers updated inside the forward) identical on all ranks with no
distributed code in the quantizer, at the price that the codebooks follow rank 0's statistics only
(the other ranks' updates are overwritten). Buffers are broadcast once more when ``fit`` ends. Rank 0
alone logs, evaluates (the others wait at a barrier) and writes shared files; ``run_dir`` must be on a
file system every node sees.

Adversarial training (GANs): a model with an ``adversary`` submodule and an ``adversary_step(batch) ->
(loss, metrics)`` method gets a second update in every micro-batch. The generator pass runs with the
adversary's parameters frozen (gradients still flow through it to the generator), then
``adversary_step`` (which reuses what ``training_step`` cached, e.g. the generated audio, detached) is
backpropagated into the adversary alone. Both parameter sets live in the one AdamW (separate groups,
same schedule), are clipped separately and step together, so saving and resuming need nothing new.
Under DDP the adversary is excluded from the wrapper and its gradients are averaged by one extra
all-reduce.

Sessions get killed: the state is checkpointed every ``checkpoint_every`` steps, at the end, when
``max_wall_minutes`` is used up and on SIGTERM (torchrun forwards it); a new Trainer on the same
``run_dir`` resumes exactly (weights, optimizer, schedule, EMA, step, sampler position, generators).

Example:
    >>> import tempfile, torch
    >>> class Tiny(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.linear = torch.nn.Linear(2, 1)
    ...     def training_step(self, batch):
    ...         x, y = batch
    ...         loss = torch.nn.functional.mse_loss(self.linear(x), y)
    ...         return loss, {"mse": loss.item()}
    >>> data = torch.utils.data.TensorDataset(torch.randn(32, 2), torch.randn(32, 1))
    >>> config = TrainConfig(max_steps=3, batch_size=8, precision="fp32", log_every=1)
    >>> with tempfile.TemporaryDirectory() as run_dir:
    ...     summary = Trainer(Tiny(), data, config, run_dir).fit()
    >>> summary.step, summary.stopped_reason
    (3, 'max_steps')
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from speechkit.errors import ConfigError, SpeechkitError
from speechkit.train.distributed import (
    DistributedContext,
    move_to_device,
    rescale_consumed,
    sharded_train_loader,
    sigterm_handler,
)
from speechkit.train.ema import ModelEMA
from speechkit.train.ledger import Ledger, describe_hardware
from speechkit.train.precision import autocast_context, resolve_precision
from speechkit.train.train_config import TrainConfig
from speechkit.train.train_state import (
    BEST,
    CHECKPOINT_DIR,
    capture_rng_state,
    find_training_state,
    load_training_state,
    read_rng_state,
    restore_rng_state,
    save_training_state,
    save_weights,
    seed_generators,
)

logger = logging.getLogger(__name__)

METRICS_FILE, LEDGER_FILE, CONFIG_FILE = "metrics.jsonl", "ledger.jsonl", "train_config.json"


class NonFiniteLossError(SpeechkitError, FloatingPointError):
    """Training produced a non-finite loss or gradient norm for too many consecutive steps."""


@dataclasses.dataclass(frozen=True)
class TrainSummary:
    """What one call of :meth:`Trainer.fit` did.

    Attributes:
        start_step: step the segment started at (> 0 after a resume).
        step: step reached.
        steps_done: optimizer steps taken in this segment.
        skipped_steps: steps skipped for non-finite values over the whole run.
        wall_seconds: duration of this segment.
        total_wall_hours: cumulative duration of the run.
        stopped_reason: ``"max_steps"``, ``"wall_budget"`` or ``"signal"``.
        last_metrics: the last logged training metrics (averaged over ranks).
        last_eval: the last evaluation metrics (rank 0; empty elsewhere).
    """

    start_step: int
    step: int
    steps_done: int
    skipped_steps: int
    wall_seconds: float
    total_wall_hours: float
    stopped_reason: str
    last_metrics: dict[str, float]
    last_eval: dict[str, float]


class _TrainingStep(nn.Module):
    """``forward(batch) = model.training_step(batch)``: the module DDP wraps, so its hooks see the step."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.training_step(batch)


class _StepResult(NamedTuple):
    finite: bool
    loss: float
    grad_norm: float
    stop_reason: str | None
    metrics: dict[str, float]


def default_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices and embeddings (ndim >= 2), none on biases and norm gains.

    Pass a ``param_groups_fn`` to the Trainer to change it (e.g. no decay on learned codebooks).

    Example:
        >>> [len(g["params"]) for g in default_param_groups(torch.nn.Linear(2, 2), 0.1)]
        [1, 1]
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


class _Window:
    """Running sums of the steps since the last log."""

    def __init__(self) -> None:
        self.start, self.steps, self.loss, self.grad_norm = time.monotonic(), 0, 0.0, 0.0
        self.metrics: dict[str, float] = {}

    def add(self, result: _StepResult) -> None:
        self.steps += 1
        self.loss += result.loss
        self.grad_norm += result.grad_norm
        for name, value in result.metrics.items():
            self.metrics[name] = self.metrics.get(name, 0.0) + value


class Trainer:
    """Trains any model that has ``training_step(batch) -> (loss, metrics)``; resumes from ``run_dir``.

    Builds AdamW (``param_groups_fn`` or :func:`default_param_groups`), the warmup + cosine schedule,
    the optional EMA and the DDP wrapper, then loads ``run_dir/checkpoints/last`` if it exists and appends
    a ``resume`` entry to the ledger. Call :meth:`fit` on every rank.

    Writes into ``run_dir``: ``train_config.json``, ``metrics.jsonl`` (train logs and evaluations),
    ``ledger.jsonl`` (``ledger.py``), ``checkpoints/last`` and ``checkpoints/best`` (``train_state.py``).

    Args:
        model: the model (moved to the process's device).
        train_dataset: map-style dataset (``__len__``/``__getitem__``); sampled endlessly, shuffled per epoch
            and sharded by rank.
        config: the training settings.
        run_dir: the run folder (created).
        collate_fn: builds a batch from a list of items (default: torch's default collate).
        valid_dataset: evaluated with ``training_step`` in eval mode; reported as ``valid_<name>``
            (mean over batches, ``valid_loss`` included).
        evaluate_fn: ``evaluate_fn(model) -> dict[str, float]``, run on rank 0 under ``no_grad`` with the
            EMA weights when EMA is on, its generators seeded and the training generators untouched.
        param_groups_fn: ``param_groups_fn(model) -> list of AdamW param-group dicts``.
        dist: the process context (default: read torchrun's environment). The caller shuts it down.
    """

    def __init__(
        self,
        model: nn.Module,
        train_dataset: Dataset,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        valid_dataset: Dataset | None = None,
        evaluate_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
        param_groups_fn: Callable[[nn.Module], list[dict[str, Any]]] | None = None,
        dist: DistributedContext | None = None,
    ) -> None:
        if not callable(getattr(model, "training_step", None)):
            raise ConfigError(f"{type(model).__name__} has no training_step(batch) -> (loss, metrics) method")
        try:
            self._num_train = len(train_dataset)  # type: ignore[arg-type]
        except TypeError as err:
            raise ConfigError("train_dataset needs __len__ and __getitem__ (a map-style dataset)") from err
        self._segment_start = time.monotonic()
        self.config, self.run_dir = config, Path(run_dir)
        self.train_dataset, self.valid_dataset = train_dataset, valid_dataset
        self.collate_fn, self.evaluate_fn = collate_fn, evaluate_fn
        self.dist = (dist or DistributedContext.from_env()).init()
        self.device = self.dist.device
        self.model = model.to(self.device)
        self.precision = resolve_precision(self.device, config.precision)
        self.hardware = describe_hardware(
            self.device, self.dist.world_size, self.precision, self.dist.num_nodes
        )
        self.ema = ModelEMA(self.model, config.ema_decay) if config.ema_decay is not None else None
        self.adversary = _find_adversary(self.model)
        self._adversary_params = list(self.adversary.parameters()) if self.adversary is not None else []
        self.optimizer, self.scheduler = self._build_optimizer(param_groups_fn)
        adversarial = {id(p) for p in self._adversary_params}
        self._params = [
            p for group in self.optimizer.param_groups for p in group["params"] if id(p) not in adversarial
        ]
        self._module: nn.Module = _TrainingStep(self.model)
        if self.dist.is_distributed and self.adversary is not None:
            for param in self._adversary_params:  # the main DDP ignores them, so sync them here once
                self.dist.broadcast_(param.data)
            ignored = [f"model.{name}" for name, _ in self.model.named_parameters() if _is_adversarial(name)]
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self._module, ignored)
        if self.dist.is_distributed:
            self._module = DistributedDataParallel(
                self._module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=config.find_unused_parameters,
                **_sync_buffers_every_forward(),
            )
        self.ledger = Ledger(self.run_dir / LEDGER_FILE)
        self.step, self._consumed, self._skipped, self._hours_before = 0, 0, 0, 0.0
        self._best: dict[str, Any] | None = None
        self._rng: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
        self._resumed, self._last_saved_step, self._last_eval_step = False, -1, -1
        self._signal_received = False
        self._last_metrics: dict[str, float] = {}
        self._last_eval: dict[str, float] = {}
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config.save(self.run_dir / CONFIG_FILE)
        self.dist.barrier()
        state_dir = find_training_state(self.run_dir)
        if state_dir is not None:
            self._resume(state_dir)

    def _build_optimizer(
        self, param_groups_fn: Callable[[nn.Module], list[dict[str, Any]]] | None
    ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
        cfg = self.config
        make_groups = param_groups_fn or (lambda model: default_param_groups(model, cfg.weight_decay))
        groups = make_groups(self.model)
        if not groups:
            raise ConfigError(f"{type(self.model).__name__} has no trainable parameters")
        if self._adversary_params:  # the adversary gets groups of its own (see the module docstring)
            adversarial = {id(p) for p in self._adversary_params}
            generator = [
                {**g, "params": [p for p in g["params"] if id(p) not in adversarial]} for g in groups
            ]
            adversary_groups = default_param_groups(self.adversary, cfg.weight_decay)
            groups = [g for g in generator if g["params"]] + adversary_groups
        optimizer = torch.optim.AdamW(
            groups, lr=cfg.learning_rate, betas=cfg.betas, weight_decay=cfg.weight_decay
        )

        def factor(step: int) -> float:  # a plain function: LambdaLR then saves no state for it
            return cfg.lr_multiplier(step)

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    @property
    def wall_hours(self) -> float:
        """Cumulative wall-clock hours of the run, this segment included."""
        return self._hours_before + (time.monotonic() - self._segment_start) / 3600.0

    def _resume(self, state_dir: Path) -> None:
        state = load_training_state(
            state_dir, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler, ema=self.ema
        )
        self.step, self._skipped = int(state["step"]), int(state["skipped_steps"])
        self._hours_before, self._best = float(state["wall_hours"]), state.get("best")
        self._consumed = int(state["samples_per_rank"])
        if self.ema is not None:
            self.ema.num_updates = int(state.get("ema_updates", 0))
        old_world = int(state["world_size"])
        if old_world != self.dist.world_size:
            logger.warning("resuming a %d-process run with %d processes", old_world, self.dist.world_size)
            self._consumed = rescale_consumed(self._consumed, old_world, self.dist.world_size)
        else:
            self._rng = read_rng_state(state_dir, self.dist.rank)
        changed = sorted(k for k, v in self.config.to_dict().items() if state["config"].get(k) != v)
        if changed:
            logger.warning("config differs from the checkpoint's in %s; using the new values", changed)
        self._resumed, self._last_saved_step = True, self.step
        logger.info("resumed %s at step %d (%.3f h so far)", state_dir, self.step, self._hours_before)
        if self.dist.is_main:
            self.ledger.append(
                "resume", step=self.step, wall_hours=self._hours_before, hardware=self.hardware
            )

    def _seed_generators(self) -> None:
        """Restore the checkpoint's generators, or seed ``seed + rank`` (dropout differs across ranks)."""
        if self._rng is not None:
            restore_rng_state(*self._rng)
            self._rng = None
            return
        seed_generators(self.config.seed + self.dist.rank + (1_000_003 * self.step if self._resumed else 0))

    def _batches(self) -> Iterator[Any]:
        """Endless micro-batches of this rank's shard, starting after the samples already consumed."""
        cfg, dist = self.config, self.dist
        yield from sharded_train_loader(
            self.train_dataset,
            batch_size=cfg.batch_size,
            rank=dist.rank,
            world_size=dist.world_size,
            seed=cfg.seed,
            start=self._consumed,
            collate_fn=self.collate_fn,
            num_workers=cfg.num_workers,
        )

    def _local_stop_reason(self) -> str | None:
        if self._signal_received:
            return "signal"
        budget = self.config.max_wall_minutes
        if budget is not None and time.monotonic() - self._segment_start >= budget * 60.0:
            return "wall_budget"
        return None

    def _train_step(self, batches: Iterator[Any]) -> _StepResult:
        cfg = self.config
        loss_sum = torch.zeros((), device=self.device)
        metric_sums: dict[str, float] = {}
        for micro in range(cfg.grad_accum_steps):
            batch = move_to_device(next(batches), self.device)
            # DDP all-reduces gradients only on the last micro-batch of a step.
            sync_later = (
                isinstance(self._module, DistributedDataParallel) and micro < cfg.grad_accum_steps - 1
            )
            with self._module.no_sync() if sync_later else contextlib.nullcontext(), self._adversary_frozen():
                with autocast_context(self.device, self.precision):
                    loss, metrics = self._module(batch)
                (loss / cfg.grad_accum_steps).backward()
            if self.adversary is not None:
                with autocast_context(self.device, self.precision):
                    adversary_loss, adversary_metrics = self.model.adversary_step(batch)
                (adversary_loss / cfg.grad_accum_steps).backward()
                metrics = {**metrics, **adversary_metrics}
            self._consumed += cfg.batch_size
            loss_sum += loss.detach().float()
            for name, value in metrics.items():
                metric_sums[name] = metric_sums.get(name, 0.0) + float(value) / cfg.grad_accum_steps
        max_norm = cfg.grad_clip_norm if cfg.grad_clip_norm is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self._params, max_norm)
        if self.adversary is not None:
            self._average_adversary_gradients()
            adversary_norm = torch.nn.utils.clip_grad_norm_(self._adversary_params, max_norm)
            metric_sums["adversary_grad_norm"] = float(adversary_norm)
            grad_norm = grad_norm + 0.0 * adversary_norm  # a non-finite adversary norm skips the step too
        reason = self._local_stop_reason()
        flags = torch.tensor([0.0, 0.0, reason == "wall_budget", reason == "signal"], device=self.device)
        flags[0], flags[1] = loss_sum / cfg.grad_accum_steps, grad_norm  # device copies, no host sync
        # One collective per step: every rank sees the same sums, hence takes the same decisions.
        loss_total, norm_total, wall_flag, signal_flag = self.dist.all_reduce_sum_(flags).tolist()
        loss_mean, norm_mean = loss_total / self.dist.world_size, norm_total / self.dist.world_size
        finite = math.isfinite(loss_mean) and math.isfinite(norm_mean)
        if finite:
            self.optimizer.step()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        stop = "signal" if signal_flag > 0 else "wall_budget" if wall_flag > 0 else None
        return _StepResult(finite, loss_mean, norm_mean, stop, metric_sums)

    @contextlib.contextmanager
    def _adversary_frozen(self) -> Iterator[None]:
        """The generator pass: no gradients into the adversary's parameters (they still flow through it)."""
        flags = [p.requires_grad for p in self._adversary_params]
        for param in self._adversary_params:
            param.requires_grad_(False)
        try:
            yield
        finally:
            for param, flag in zip(self._adversary_params, flags):
                param.requires_grad_(flag)

    def _average_adversary_gradients(self) -> None:
        """All-reduce the adversary's gradients (the main DDP ignores them): one flat collective."""
        if not self.dist.is_distributed:
            return
        grads = [p.grad for p in self._adversary_params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.dist.all_reduce_sum_(flat).div_(self.dist.world_size)
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def _on_sigterm(self) -> None:
        logger.warning("stopping after this step and checkpointing")
        self._signal_received = True

    def fit(self) -> TrainSummary:
        """Train until ``max_steps``, the wall budget or SIGTERM; checkpoint; return what was done.

        Raises:
            NonFiniteLossError: ``max_consecutive_nonfinite`` steps in a row had a non-finite loss or
                gradient norm (the last good checkpoint is left as it was).
        """
        cfg = self.config
        self._seed_generators()
        start_step, reason, consecutive = self.step, "max_steps", 0
        window, batches = _Window(), self._batches()
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train", disable=not self.dist.is_main)
        try:
            with sigterm_handler(self._on_sigterm):
                while self.step < cfg.max_steps:
                    result = self._train_step(batches)
                    if result.finite:
                        consecutive = 0
                        self.step += 1
                        bar.update(1)
                        window.add(result)
                        window = self._after_step(window, bar)
                    else:
                        consecutive, self._skipped = consecutive + 1, self._skipped + 1
                        self._check_nonfinite(result, consecutive)
                    if result.stop_reason is not None:
                        reason = result.stop_reason
                        logger.info("stopping at step %d: %s", self.step, reason)
                        break
        finally:
            bar.close()
            batches.close()
        reason = (
            "max_steps" if self.step >= cfg.max_steps else reason
        )  # a stop on the last step changes nothing
        return self._finish(start_step, reason, window)

    def _after_step(self, window: _Window, bar: tqdm) -> _Window:
        cfg = self.config
        if self.step % cfg.log_every == 0:
            window = self._log(window, bar)
        if cfg.eval_every and self.step % cfg.eval_every == 0 and self._has_evaluation:
            self.evaluate()
        if self.step % cfg.checkpoint_every == 0:
            self.save()
        return window

    def _check_nonfinite(self, result: _StepResult, consecutive: int) -> None:
        logger.warning("skipped step %d: loss %s, gradient norm %s", self.step, result.loss, result.grad_norm)
        if consecutive >= self.config.max_consecutive_nonfinite:
            raise NonFiniteLossError(
                f"loss or gradient norm non-finite for {consecutive} consecutive steps at step {self.step} "
                f"(loss={result.loss}, grad_norm={result.grad_norm}); the last checkpoint is untouched. "
                "Lower learning_rate, set grad_clip_norm, check the data, or try precision='fp32'."
            )

    def _finish(self, start_step: int, reason: str, window: _Window) -> TrainSummary:
        if window.steps:
            self._log(window, None)
        if reason == "max_steps" and self._has_evaluation and self._last_eval_step != self.step:
            self.evaluate()
        if self._last_saved_step != self.step:
            self.save()
        self.dist.broadcast_buffers(self.model)  # DDP would only do it at the next forward
        seconds = time.monotonic() - self._segment_start
        steps_done = self.step - start_step
        if self.dist.is_main:
            metrics = {
                "segment_hours": seconds / 3600.0,
                "segment_steps": steps_done,
                "steps_per_second": steps_done / max(seconds, 1e-9),
                **{k: v for k, v in self._last_metrics.items() if k in ("loss", "grad_norm")},
            }
            self.ledger.append(
                "train", step=self.step, wall_hours=self.wall_hours, hardware=self.hardware, metrics=metrics
            )
        return TrainSummary(
            start_step=start_step,
            step=self.step,
            steps_done=steps_done,
            skipped_steps=self._skipped,
            wall_seconds=seconds,
            total_wall_hours=self.wall_hours,
            stopped_reason=reason,
            last_metrics=dict(self._last_metrics),
            last_eval=dict(self._last_eval),
        )

    def _log(self, window: _Window, bar: tqdm | None) -> _Window:
        """Average the window over ranks (a collective), write ``metrics.jsonl``, refresh the bar."""
        model_metrics = self.dist.all_reduce_mean({k: v / window.steps for k, v in window.metrics.items()})
        steps_per_second = window.steps / max(time.monotonic() - window.start, 1e-9)
        entry = {
            **model_metrics,
            "loss": window.loss / window.steps,
            "grad_norm": window.grad_norm / window.steps,
            "lr": self.optimizer.param_groups[0]["lr"],
            "steps_per_second": steps_per_second,
            "skipped_steps": float(self._skipped),
            "wall_hours": self.wall_hours,
        }
        self._last_metrics = entry
        if self.dist.is_main:
            if bar is not None:
                bar.set_postfix(
                    loss=f"{entry['loss']:.4g}", lr=f"{entry['lr']:.2e}", steps_s=f"{steps_per_second:.2f}"
                )
            self._write_metrics("train", entry)
        return _Window()

    def _write_metrics(self, split: str, metrics: Mapping[str, float]) -> None:
        with open(self.run_dir / METRICS_FILE, "a") as handle:
            handle.write(json.dumps({"time": _now(), "step": self.step, "split": split, **metrics}) + "\n")

    @property
    def _has_evaluation(self) -> bool:
        return self.valid_dataset is not None or self.evaluate_fn is not None

    def evaluate(self) -> dict[str, float]:
        """Evaluate on rank 0 (others wait at a barrier), log, ledger, keep the best. Call on every rank.

        Returns:
            The metrics on rank 0, an empty dict on the other ranks.
        """
        metrics: dict[str, float] = {}
        if self.dist.is_main:
            metrics = self._evaluate_here()
            self._write_metrics("eval", metrics)
            self.ledger.append(
                "eval", step=self.step, wall_hours=self.wall_hours, hardware=self.hardware, metrics=metrics
            )
            self._keep_best(metrics)
            self._last_eval = metrics
            logger.info("step %d eval %s", self.step, metrics)
        self.dist.barrier()
        self._last_eval_step = self.step
        return metrics

    def _evaluate_here(self) -> dict[str, float]:
        saved_rng = capture_rng_state()  # evaluation must not shift the training random stream
        was_training = self.model.training
        self.model.eval()
        ema_weights = self.ema.applied_to(self.model) if self.ema is not None else contextlib.nullcontext()
        try:
            with torch.no_grad(), ema_weights:
                seed_generators(self.config.seed)
                metrics = self._validation_metrics() if self.valid_dataset is not None else {}
                if self.evaluate_fn is not None:
                    metrics.update({k: float(v) for k, v in self.evaluate_fn(self.model).items()})
        finally:
            self.model.train(was_training)
            restore_rng_state(*saved_rng)
        return metrics

    def _validation_metrics(self) -> dict[str, float]:
        loader = DataLoader(
            self.valid_dataset, batch_size=self.config.batch_size, shuffle=False, collate_fn=self.collate_fn
        )
        sums: dict[str, float] = {}
        batches = 0
        for batch in loader:
            with autocast_context(self.device, self.precision):
                loss, metrics = self.model.training_step(move_to_device(batch, self.device))
            for name, value in {**metrics, "loss": float(loss)}.items():
                sums[name] = sums.get(name, 0.0) + float(value)
            batches += 1
        return {f"valid_{name}": total / max(batches, 1) for name, total in sums.items()}

    def _keep_best(self, metrics: Mapping[str, float]) -> None:
        name = self.config.best_metric
        if name is None:
            return
        if name not in metrics:
            logger.warning("best_metric %r not among evaluation metrics %s", name, sorted(metrics))
            return
        value = metrics[name]
        if not math.isfinite(value) or (self._best is not None and value >= self._best["value"]):
            return
        self._best = {"metric": name, "value": value, "step": self.step}
        meta = {
            "step": self.step,
            "best": self._best,
            "metrics": dict(metrics),
            "config": self.config.to_dict(),
        }
        save_weights(self.run_dir / CHECKPOINT_DIR / BEST, model=self.model, ema=self.ema, meta=meta)

    def save(self) -> Path:
        """Checkpoint the full training state to ``run_dir/checkpoints/last`` (call on every rank)."""
        meta = {
            "time": _now(),
            "step": self.step,
            "samples_per_rank": self._consumed,
            "world_size": self.dist.world_size,
            "wall_hours": self.wall_hours,
            "skipped_steps": self._skipped,
            "ema_updates": self.ema.num_updates if self.ema is not None else 0,
            "best": self._best,
            "config": self.config.to_dict(),
        }
        path = save_training_state(
            self.run_dir,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            ema=self.ema,
            meta=meta,
            dist=self.dist,
        )
        self._last_saved_step = self.step
        return path


ADVERSARY_ATTRIBUTE = "adversary"


def _find_adversary(model: nn.Module) -> nn.Module | None:
    """The model's ``adversary`` submodule when it also has ``adversary_step`` (see the module docstring)."""
    adversary = getattr(model, ADVERSARY_ATTRIBUTE, None)
    if adversary is None:
        return None
    if not isinstance(adversary, nn.Module) or not callable(getattr(model, "adversary_step", None)):
        raise ConfigError(
            f"{type(model).__name__}.adversary needs to be a module and adversary_step a method"
        )
    return adversary


def _is_adversarial(parameter_name: str) -> bool:
    return parameter_name.split(".", 1)[0] == ADVERSARY_ATTRIBUTE


def _sync_buffers_every_forward() -> dict[str, bool]:
    """DDP's flag for broadcasting buffers from rank 0 at each forward (renamed in recent torch)."""
    new_name = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    return {"forward_sync_buffers" if new_name else "broadcast_buffers": True}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
