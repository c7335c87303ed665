"""Training: `train(cfg) -> TrainResult` and the loop it runs, `train_one_epoch`.

Reads top to bottom: the task checks its paths -> the task builds the model and its datasets -> (the
frozen part's features computed once, `vidrec.engine.feature_cache`) -> loaders -> optimiser -> (resume)
-> for each epoch: train, validate, checkpoint, log -> curves.

The loop does not know what it learns: ``cfg.task`` names a `vidrec.tasks.Task` (classify, caption,
landmarks, segment) that gives the datasets, the model, each batch's loss and summed metrics, the
validation metrics and the state stored beside the weights (class names, a vocabulary).

Determinism and exact resume. Every item is made under generators seeded from (seed, epoch, index) and
data order from a sampler seeded with ``runtime.seed + epoch`` (`vidrec.engine.loaders`). Model
randomness (dropout) uses the main process's generators, which checkpoints store. Together these let a
run killed mid-epoch resume from `last.safetensors`, skip the batches it already did, and finish with the
same weights as an uninterrupted run (bit-exact on CPU; on GPU with ``runtime.deterministic``).

Models: the task builds ``model.name`` through `vidrec.models.build.build_model` (a registry name, or a
``module.path:factory`` the user named); the stored config records it, so `load_for_inference` rebuilds
either kind (a factory only when the caller names it again).

Distributed: launch with torchrun (see `vidrec.engine.distributed`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from vidrec import interrupt
from vidrec.engine import distributed as D
from vidrec.engine import feature_cache, runfolder
from vidrec.engine.checkpoint import (
    Checkpoint,
    CheckpointError,
    capture_rng,
    init_weights,
    load_checkpoint,
    load_model_state,
    restore_rng,
    save_checkpoint,
)
from vidrec.engine.distributed import resolve_device, use_amp, with_sync_bn
from vidrec.engine.evaluate import NoDataError
from vidrec.engine.inputs import training_flow
from vidrec.engine.loaders import ResumableSampler, check_decode_device, make_loaders, seed_everything
from vidrec.engine.logging import RunLogger
from vidrec.engine.optim import build_optimizer, lr_factor, set_lr, weight_average
from vidrec.engine.runfolder import agree_on_checkpoint
from vidrec.engine.runstate import EpochStats, Run
from vidrec.engine.schema import ConfigError, TrainConfig, config_to_dict
from vidrec.progress import progress
from vidrec.tasks import Task, make_task


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; the last good checkpoint was kept."""


@dataclass
class TrainResult:
    """What `train` returns."""

    out_dir: Path
    epochs_done: int
    global_step: int
    best_top1: float | None  # the best value of the task's `best_metric` (val_top1 for classify)
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    best_metric: str = "val_top1"  # the name of the task's metric that `best_top1` holds


# ----------------------------------------------------------------------------- the run, top to bottom


def train(cfg: TrainConfig) -> TrainResult:
    """Train `cfg.model` on `cfg.data`; see the module docstring. Returns a `TrainResult`."""
    info = D.env_info()
    device = resolve_device(cfg.runtime.device)
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
    check_decode_device(cfg)  # torchcodec and a GPU, when data.decode_device=cuda
    make_task(cfg).check()  # before any model is built
    cfg = absolute_data_paths(cfg)  # the stored config works from any directory
    owns_group = info.enabled and not D.is_dist()  # a caller's own process group is left alone
    info = D.init_distributed(device.type, cfg.runtime.dist_backend)
    out_dir = Path(cfg.out_dir)
    with contextlib.ExitStack() as stack:
        stack.enter_context(flushed_denormals())
        if info.is_main:
            stack.enter_context(runfolder.locked(out_dir))  # one run per folder at a time
            runfolder.check_fresh(out_dir, resume=cfg.resume, overwrite=cfg.overwrite)
            runfolder.remove_stale_temps(out_dir)
            (out_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        try:
            return _train_in(cfg, info, device, out_dir)
        finally:
            if owns_group:
                D.cleanup()


@contextlib.contextmanager
def flushed_denormals() -> Iterator[None]:
    """CPU floats below 1.2e-38 (denormals) read and written as 0 for the block; the setting restored after.

    Training drives small values (a recurrent layer's gate gradients, AdamW's second moments) into the
    denormal range, where every CPU operation on them is many times slower: a cached gestures_prernn_fc
    epoch grew from 3.3 s to 6.2 s over three epochs, and stayed at 2.7 s with denormals flushed, with the
    same losses to the printed digits.
    """
    before = flushing_denormals()
    torch.set_flush_denormal(True)  # (a no-op where the CPU cannot)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def flushing_denormals() -> bool:
    """True when CPU denormals are flushed to zero now (`torch.set_flush_denormal` cannot be read back)."""
    return bool((torch.tensor([1e-39]) * 1.0).item() == 0.0)


def absolute_data_paths(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with its data paths made absolute (checkpoints store them; eval may run elsewhere)."""
    names = ("train_list", "val_list", "root", "classes", "flow_root", "frames_root")
    paths = {n: str(Path(getattr(cfg.data, n)).resolve()) for n in names if getattr(cfg.data, n)}
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **paths))


def _train_in(cfg: TrainConfig, info: D.DistInfo, device: torch.device, out_dir: Path) -> TrainResult:
    logger = RunLogger(out_dir, enabled=info.is_main, tensorboard=cfg.tensorboard)
    try:
        task = make_task(cfg)
        model, train_model, train_ds, val_ds = _setup(cfg, task, info, device, log=logger.info)
        for what, ds, source in (("training", train_ds, cfg.data.train_list), ("validation", val_ds, "")):
            if ds is not None and len(ds) == 0:
                where = source or cfg.data.val_list or cfg.data.plugin
                raise NoDataError(f"{what}: the {what} set is empty ({where}); check the list file")
        flow = training_flow(cfg, train_ds)
        train_ds, val_ds, cache = feature_cache.plan(cfg, model, train_ds, val_ds, log=logger.info)
        loader, sampler, val_loader = make_loaders(cfg, train_ds, val_ds, info, task.collate(), device=device)
        steps = len(loader) if not cfg.max_steps_per_epoch else min(len(loader), cfg.max_steps_per_epoch)
        if steps == 0:
            raise ValueError(
                f"data.batch_size={cfg.data.batch_size} is larger than this process's share of the "
                f"{len(train_ds)} training items; lower it"
            )
        run = Run(
            cfg=cfg,
            model=model,
            train_model=train_model,
            optimizer=build_optimizer(model, cfg.optim),
            device=device,
            amp=use_amp(cfg.runtime.amp, device),
            info=info,
            logger=logger,
            task=task,
            batches_per_epoch=steps,
            flow=flow,
            ema=weight_average(model, cfg.optim.ema),
        )
        with run.stop:  # stop signals end the loop at a step boundary, see `_save_interrupted`
            return _fit(run, loader, sampler, val_loader, cache)
    finally:
        logger.close()


def channels_last(model: nn.Module) -> nn.Module:
    """`model` with its 2D convolutions' weights channels_last (NHWC) and its 3D ones channels_last_3d.

    `model.to(memory_format=torch.channels_last)` refuses a model holding a 5D weight (ST-ResNet's
    temporal `Conv3d`); each convolution is converted in the layout of its own rank instead.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.to(memory_format=torch.channels_last)
        elif isinstance(module, nn.Conv3d):
            module.to(memory_format=torch.channels_last_3d)
    return model


def _setup(cfg: TrainConfig, task: Task, info: D.DistInfo, device: torch.device, log=None):
    """Seeds set, model built by the task (after its `check`) and wrapped, the task's datasets made."""
    seed_everything(cfg.runtime.seed + info.rank)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    if cfg.runtime.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    model = task.build_model().to(device)
    train_ds, val_ds = task.datasets(model, log if info.is_main else None)
    resuming = cfg.resume not in ("", "auto") or (Path(cfg.out_dir) / "last.safetensors").is_file()
    if cfg.model.init_from and not (cfg.resume and resuming):  # a resumed checkpoint holds every weight
        init_weights(model, cfg.model, log=log if info.is_main else None)
    if cfg.runtime.channels_last:
        model = channels_last(model)
    model = with_sync_bn(model, enabled=cfg.runtime.sync_bn and info.enabled, device=device)
    train_model: nn.Module = model
    if info.enabled:
        ids = (
            [device.index if device.index is not None else info.local_rank] if device.type == "cuda" else None
        )
        train_model = DistributedDataParallel(model, device_ids=ids)
    if cfg.runtime.compile:
        train_model = torch.compile(train_model)
    return model, train_model, train_ds, val_ds


def _fit(
    run: Run,
    loader: DataLoader,
    sampler: ResumableSampler,
    val_loader: DataLoader | None,
    cache: feature_cache.FeatureCache | None = None,
) -> TrainResult:
    cfg = run.cfg
    start_epoch, start_batch, stats = resume_point(run) if cfg.resume else (0, 0, None)
    set_lr(run.optimizer, lr_factor(run.global_step, cfg.schedule, run.steps_per_epoch))
    run.position = (start_epoch, start_batch)
    with contextlib.ExitStack() as stack:
        if cache is not None:  # the frozen weights are final now (resumed or initialised)
            show = cfg.progress and run.info.is_main
            log = run.logger.info
            cache.prepare(info=run.info, batch_size=cfg.data.batch_size, workers=cfg.data.workers,
                          show_progress=show, log=log)  # fmt: skip
            stack.enter_context(feature_cache.reading_features(run.model))
            if run.ema is not None:  # the average validates: it reads the cached features too
                stack.enter_context(feature_cache.reading_features(run.eval_model))
        return _epochs(run, loader, sampler, val_loader, start_epoch, start_batch, stats)


def _epochs(
    run: Run,
    loader: DataLoader,
    sampler: ResumableSampler,
    val_loader: DataLoader | None,
    start_epoch: int,
    start_batch: int,
    stats: EpochStats | None,
) -> TrainResult:
    cfg = run.cfg
    try:
        for epoch in range(start_epoch, cfg.schedule.epochs):
            run.stop.check(run.device)  # a signal during set-up or validation
            loader.dataset.set_epoch(epoch)
            sampler.set_epoch(epoch, start=start_batch * cfg.data.batch_size)
            loader.generator.manual_seed(cfg.runtime.seed + epoch)  # worker seeds of this epoch
            train_m = train_one_epoch(run, loader, epoch=epoch, start_batch=start_batch, stats=stats)
            stats = None
            if train_m.pop("clips") == 0 and start_batch < run.batches_per_epoch:
                raise NoDataError(_no_training_data(train_m["skipped"], epoch))
            last = epoch + 1 == cfg.schedule.epochs
            val_m = _validate(run, val_loader) if (epoch + 1) % cfg.eval_every == 0 or last else {}
            _end_epoch(run, epoch, train_m, val_m)
            run.position, start_batch = (epoch + 1, 0), 0
    except KeyboardInterrupt as err:
        raise _save_interrupted(run, err) from None
    _plot(run)
    if cfg.plots and run.info.is_main:
        run.task.report(run.out_dir, run.history)  # the task's own pictures (e.g. an error curve)
    out = run.out_dir
    return TrainResult(
        out_dir=out,
        epochs_done=cfg.schedule.epochs,
        global_step=run.global_step,
        best_top1=run.best,
        last_checkpoint=out / "last.safetensors",
        best_checkpoint=(out / "best.safetensors") if (out / "best.safetensors").is_file() else None,
        history=run.history,
        skipped=sorted({s for h in run.history for s in h["skipped"]}),
        best_metric=run.task.best_metric,
    )


# ----------------------------------------------------------------------------- one epoch


def train_one_epoch(
    run: Run, loader: DataLoader, *, epoch: int, start_batch: int = 0, stats: EpochStats | None = None
) -> dict[str, Any]:
    """One pass over this epoch's batches from `start_batch` on; returns rank-reduced train metrics.

    `stats` continues the running sums of an epoch resumed part-way (see `resume_point`).
    """
    cfg, model = run.cfg, run.train_model
    stats = run.stats = stats or EpochStats()
    seconds_before = stats.seconds
    accum, steps = cfg.optim.accum_steps, run.batches_per_epoch
    model.train()
    bar = progress(
        total=steps,
        initial=start_batch,
        desc=f"epoch {epoch + 1}/{cfg.schedule.epochs}",
        disable=not (cfg.progress and run.info.is_main),
    )
    tic, window_clips, window_tic = time.perf_counter(), 0, time.perf_counter()
    for batch_idx, batch in enumerate(loader, start=start_batch):
        if batch_idx >= steps:
            break
        stats.skipped += list(batch.get("skipped", []))
        empty = run.task.is_empty(batch)  # every item of this batch failed to load
        if (
            run.info.world_size > 1
        ):  # all ranks skip together, or the others wait in DDP's all-reduce for ever
            empty = D.any_rank(empty, run.device)
        if empty:
            continue
        boundary = (batch_idx + 1) % accum == 0 or batch_idx + 1 == steps
        ddp = run.ddp_module()
        sync = ddp.no_sync() if ddp is not None and not boundary else contextlib.nullcontext()
        with sync:
            with run.autocast():
                step = run.task.training_step(model, batch, run.device)
            loss = step.loss
            _check_finite(run, loss, epoch, batch_idx)
            (loss / accum).backward()
        stats.add(step)
        window_clips += step.items * run.info.world_size
        bar.update(1)
        if not boundary:
            continue
        lr = _optimizer_step(run)
        run.position = (epoch, batch_idx + 1)
        if run.global_step % max(cfg.log_every_steps, 1) == 0 and cfg.log_every_steps:
            rate = window_clips / max(time.perf_counter() - window_tic, 1e-9)
            run.logger.step(run.global_step, {"loss": float(loss.detach()), "lr": lr, "clips_per_s": rate})
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", lr=f"{lr:.2e}", clips_s=f"{rate:.1f}")
            window_clips, window_tic = 0, time.perf_counter()
        stats.seconds = seconds_before + time.perf_counter() - tic
        if cfg.ckpt_every_steps and run.global_step % cfg.ckpt_every_steps == 0 and batch_idx + 1 < steps:
            write_checkpoint(run, "last.safetensors", epoch=epoch, step_in_epoch=batch_idx + 1)
        run.stop.check(run.device)  # a stop signal on any rank: every rank stops after this step
    bar.close()
    stats.seconds = seconds_before + time.perf_counter() - tic
    return stats.reduced(run.device, run.task)


def _check_finite(run: Run, loss: torch.Tensor, epoch: int, batch_idx: int) -> None:
    """Stop every rank together when any rank's loss is NaN / inf; the last checkpoint stays as it was."""
    value = float(loss.detach())
    if not D.any_rank(not math.isfinite(value), run.device):
        return
    kept = (
        f"the last good checkpoint {run.last_good} was kept"
        if run.last_good
        else "no checkpoint was written yet"
    )
    raise NonFiniteLossError(
        f"loss is {value} at optimiser step {run.global_step} (epoch {epoch}, batch {batch_idx}); training "
        f"stopped and {kept}. Hints: lower optim.lr, enable optim.clip_grad_norm (e.g. 5), add "
        "schedule.warmup_iters, or check the data for broken inputs."
    )


def _optimizer_step(run: Run) -> float:
    """Scheduled lr, gradient clipping, step, zero_grad; returns the lr used."""
    lr = set_lr(run.optimizer, lr_factor(run.global_step, run.cfg.schedule, run.steps_per_epoch))
    if run.cfg.optim.clip_grad_norm > 0:
        nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.optim.clip_grad_norm)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    run.global_step += 1
    return lr


def _validate(run: Run, val_loader: DataLoader | None) -> dict[str, Any]:
    if val_loader is None:
        return {}
    try:
        return run.task.validate(
            run.eval_model, val_loader, device=run.device, amp=run.amp, progress=run.cfg.progress
        )
    except NoDataError as err:  # stop before this epoch's checkpoints: an untrained "best" is no result
        message = str(err).replace("evaluation:", "validation:", 1)
        raise NoDataError(f"{message} (no checkpoint was written for this epoch)") from None


def _end_epoch(run: Run, epoch: int, train_m: dict, val_m: dict) -> None:
    """Epoch row in metrics.csv / TensorBoard, console summary, last / best checkpoints."""
    lr = run.optimizer.param_groups[0]["lr"]
    skipped = sorted(set(train_m.pop("skipped")) | set(val_m.pop("val_skipped", [])) | set(run.task.missing))
    row = {**train_m, **val_m, "lr": lr, "num_skipped": len(skipped)}
    run.history.append({"epoch": epoch + 1, **row, "skipped": skipped})
    run.logger.epoch(epoch + 1, row, run.global_step)
    summary = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float))
    run.logger.info(f"epoch {epoch + 1}/{run.cfg.schedule.epochs}: {summary}")
    if skipped:
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        run.logger.info(f"  skipped {len(skipped)} unreadable videos: {', '.join(skipped[:10])}{more}")
    value, task = val_m.get(run.task.best_metric), run.task
    is_best = (
        value is not None
        and math.isfinite(value)
        and (run.best is None or (value > run.best if task.higher_is_better else value < run.best))
    )
    if is_best:
        run.best = value
    write_checkpoint(run, "last.safetensors", epoch=epoch + 1, step_in_epoch=0, metrics=row)
    if is_best:
        write_checkpoint(run, "best.safetensors", epoch=epoch + 1, step_in_epoch=0, metrics=row)


# ----------------------------------------------------------------------------- checkpoints and resume


def write_checkpoint(
    run: Run, name: str, *, epoch: int, step_in_epoch: int, metrics: dict | None = None
) -> Path:
    """Rank 0 writes ``out_dir/name`` (barriers on both sides so no rank reads a half-written state)."""
    path = run.out_dir / name
    bad = [n for n, p in run.model.named_parameters() if not torch.isfinite(p).all()]
    if run.ema is not None:
        bad += [f"(average) {n}" for n, p in run.eval_model.named_parameters() if not torch.isfinite(p).all()]
    if bad:  # never overwrite a good checkpoint with a broken state
        raise NonFiniteLossError(
            f"weights {bad[:5]} became NaN/inf by optimiser step {run.global_step}; {name} was not written "
            f"(the last good checkpoint is {run.last_good}). Lower optim.lr or enable optim.clip_grad_norm."
        )
    rngs = D.all_gather_objects(capture_rng())  # every rank's dropout / augmentation streams
    samplers = D.all_gather_objects({"rank": run.info.rank, "batches_done": step_in_epoch})
    sums = run.stats.summed(run.device) if step_in_epoch and run.stats is not None else {}
    D.barrier()
    if run.info.is_main:
        weights_only = name == "best.safetensors"  # for inference; resuming reads last.safetensors
        ckpt = Checkpoint(
            model=_weights(run.eval_model.state_dict(), run.cfg.best_dtype if weights_only else "float32"),
            config=config_to_dict(run.cfg),
            class_names=run.task.class_names(),
            task_state=run.task.state(),
            epoch=epoch,
            step_in_epoch=step_in_epoch,
            global_step=run.global_step,
            optimizer=None if weights_only else run.optimizer.state_dict(),
            scheduler={"name": run.cfg.schedule.name, "global_step": run.global_step},
            rng=None if weights_only else rngs[0],
            rank_rngs=[] if weights_only else rngs[1:],
            sampler={
                "seed": run.cfg.runtime.seed,
                "epoch": epoch,
                "world_size": run.info.world_size,
                "batch_size": run.cfg.data.batch_size,
                "batches_done": step_in_epoch,
                "ranks": samplers,
            },
            best_metric=run.best,
            metrics=metrics or {},
            epoch_sums={} if weights_only else sums,
            flow=run.flow,
            trained=run.model.state_dict() if run.ema is not None and not weights_only else None,
        )
        save_checkpoint(path, ckpt)
    D.barrier()
    if name == "last.safetensors":
        run.last_good = path
    return path


def _weights(state: dict[str, torch.Tensor], dtype: str) -> dict[str, torch.Tensor]:
    """`state` with its floating-point tensors cast to `dtype` (integer buffers as they are)."""
    if dtype == "float32":
        return state
    to = getattr(torch, dtype)
    return {k: v.to(to) if v.is_floating_point() else v for k, v in state.items()}


def resume_point(run: Run) -> tuple[int, int, EpochStats | None]:
    """Load ``cfg.resume`` into the run; returns (epoch, batches already done in it, this rank's running
    sums of that epoch or None).

    Every rank reads the checkpoint from its own disk; the ranks first agree that they all see the same
    file (`agree_on_checkpoint`), so a run folder that is not shared between nodes stops the job with one
    line instead of mixing a resumed model with fresh ones.
    """
    resume = run.cfg.resume
    path = run.out_dir / "last.safetensors" if resume == "auto" else Path(resume)
    if not agree_on_checkpoint(path, run.info, run.device):
        if run.info.is_main:  # rows of a run killed before its first checkpoint
            runfolder.trim_logs(run.out_dir, epochs=0, steps=0)
        return 0, 0, None
    ckpt = load_checkpoint(path)
    if ckpt.optimizer is None:
        raise CheckpointError(
            f"{path} holds weights only (a best.safetensors); resume from last.safetensors in the same folder"
        )
    stored_batch = ckpt.sampler.get("batch_size", run.cfg.data.batch_size)
    if stored_batch != run.cfg.data.batch_size:
        raise ConfigError(
            f"data.batch_size: {path} was trained with batch size {stored_batch}, this run asks for "
            f"{run.cfg.data.batch_size}; resume with data.batch_size={stored_batch} (another size would "
            "change the epoch's batches and the schedule)"
        )
    if ckpt.step_in_epoch and ckpt.sampler.get("world_size", 1) != run.info.world_size:
        raise ValueError(
            f"{path} stopped mid-epoch with world size {ckpt.sampler.get('world_size')}; resume it with the "
            f"same number of processes (now {run.info.world_size})"
        )
    load_model_state(run.model, ckpt.trained or ckpt.model, source=str(path))
    if run.ema is not None and ckpt.trained is not None:  # the average goes on from where it was
        load_model_state(run.eval_model, ckpt.model, source=str(path))
        run.ema.n_averaged.fill_(ckpt.global_step)
    # (without a stored average, the next step starts one from the resumed weights)
    run.optimizer.load_state_dict(ckpt.optimizer)
    run.global_step, run.best, run.last_good = ckpt.global_step, ckpt.best_metric, path
    _restore_rank_rng(run, ckpt)
    if run.info.is_main:  # rows logged after this checkpoint would be written again
        runfolder.trim_logs(run.out_dir, epochs=ckpt.epoch, steps=ckpt.global_step)
    run.logger.info(
        f"resumed from {path}: epoch {ckpt.epoch}, batch {ckpt.step_in_epoch}, step {ckpt.global_step}"
    )
    sums = ckpt.epoch_sums if ckpt.step_in_epoch and ckpt.epoch_sums else None
    stats = (EpochStats.from_sums(sums) if run.info.is_main else EpochStats()) if sums else None
    return ckpt.epoch, ckpt.step_in_epoch, stats


def _restore_rank_rng(run: Run, ckpt: Checkpoint) -> None:
    """This rank's generators as they were when the checkpoint was written (dropout masks continue)."""
    rank, stored = run.info.rank, [ckpt.rng, *ckpt.rank_rngs] if ckpt.rng is not None else []
    if rank < len(stored) and len(stored) == run.info.world_size:
        restore_rng(stored[rank])
    elif ckpt.rng is not None:  # another world size (an epoch boundary): fresh, reproducible streams
        seed_everything(run.cfg.runtime.seed + 1000 * rank + ckpt.global_step)


# ----------------------------------------------------------------------------- the end of a run


def _no_training_data(skipped: list[str], epoch: int) -> str:
    from vidrec.engine.evaluate import _nothing_read

    return f"{_nothing_read('training', skipped)} (epoch {epoch + 1}; no checkpoint was written for it)"


def _save_interrupted(run: Run, err: KeyboardInterrupt) -> KeyboardInterrupt:
    """Ctrl-C or a stop signal: a resumable last.safetensors at the last optimiser step; returns what to
    raise, whose line says where and how to resume. After `StopRequest.check` every rank stopped at the
    same step and rank 0 writes; a bare KeyboardInterrupt (anywhere, e.g. a second Ctrl-C) is saved by one
    process only: under torchrun the other ranks may already be gone (the last checkpoint stays)."""
    signum, agreed = interrupt.signum_of(err), getattr(err, "agreed", False)
    epoch, batches = run.position
    if run.info.enabled and not agreed:
        return err
    path = run.last_good  # at an epoch's start it holds that point already (or nothing was trained)
    try:
        if batches:
            path = write_checkpoint(run, "last.safetensors", epoch=epoch, step_in_epoch=batches)
    except NonFiniteLossError:
        return err
    how = interrupt.describe(signum)
    line = f"{how} before the first training step; nothing to resume"
    if path is not None:  # (the run folder's config.yaml is not an input `vidrec train` takes: the command)
        line = (
            f"{how} at epoch {epoch + 1}, batch {batches} (step {run.global_step}): {path} holds it; "
            "continue with the same command plus --resume"
        )
    return interrupt.Interrupted(signum, line if run.info.is_main else "", agreed=agreed)


def _plot(run: Run) -> None:
    """Loss / accuracy curves from metrics.csv via vidrec.visualize.plots (when available)."""
    csv = run.out_dir / "metrics.csv"
    if not (run.cfg.plots and run.info.is_main and csv.is_file()):
        return
    try:
        from vidrec.visualize.plots import plot_curves
    except ImportError:
        return
    try:
        plot_curves(csv, run.out_dir / "curves.png")
    except ValueError as err:  # e.g. no rows yet
        run.logger.info(f"no curves drawn: {err}")


__all__ = [
    "NonFiniteLossError",
    "TrainResult",
    "train",
    "train_one_epoch",
]
