"""Training: components from the registry, SGD with the paper's recipe, checkpoints, resume, DDP."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler

from wsolbench.config import component_options, dataset_options, selected_hierarchy
from wsolbench.data import collate_samples
from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.events import EventLog
from wsolbench.model import WSOLModel
from wsolbench.progress import Progress
from wsolbench.registry import Registry
from wsolbench.rundir import CHECKPOINT_FILENAME
from wsolbench.runtime import Runtime, autocast, loader_workers, seed_everything
from wsolbench.specs import WSOLDataset, backbone_normalization

CHECKPOINT = CHECKPOINT_FILENAME  # the run directory layout lives in wsolbench.rundir


class TrainingDiverged(WsolbenchError):
    """The loss became NaN or infinite."""


@dataclass
class Parts:
    """Everything a run is built from: the model and the datasets by split (``"train"`` and the evaluated ones)."""

    model: WSOLModel
    datasets: dict[str, WSOLDataset]

    @property
    def train_set(self) -> WSOLDataset:
        return self.datasets["train"]

    @property
    def test_set(self) -> WSOLDataset:
        return self.datasets["test"]


def build_dataset(config: dict[str, Any], registry: Registry, split: str) -> WSOLDataset:
    """The configured dataset's ``split``; a registered hierarchy selected by ``dataset.hierarchy`` replaces its own.

    Raises:
        UsageError: The selected hierarchy's fine class count differs from the dataset's.
    """
    name = config["dataset"]["name"]
    dataset = registry.build("datasets", name, split=split, **dataset_options(config, registry))
    choice = selected_hierarchy(config["dataset"], registry)
    if choice is not None:
        hierarchy = registry.build("hierarchies", choice[0], **choice[1])
        fine, expected = hierarchy.num_classes[-1], dataset.hierarchy.num_classes[-1]
        if fine != expected:
            raise UsageError(
                f"dataset.hierarchy={choice[0]!r} has {fine} fine classes ({hierarchy.level_names[-1]}) but dataset "
                f"{name!r} has {expected}: pick a hierarchy of this dataset's classes (wsolbench list hierarchies)"
            )
        dataset.hierarchy = hierarchy
    return dataset


def build_parts(config: dict[str, Any], registry: Registry, datasets: dict[str, WSOLDataset] | None = None) -> Parts:
    """Datasets and model of a run; the model's initial weights depend only on ``config['seed']``.

    ``datasets`` (split -> dataset, ``"train"`` included) are used when given, else the train
    and test splits are built; each is set to normalise with the backbone's statistics.
    """
    datasets = (
        dict(datasets) if datasets else {split: build_dataset(config, registry, split) for split in ("train", "test")}
    )
    seed_everything(config["seed"])
    backbone_name = config["backbone"]["name"]
    backbone = registry.build("backbones", backbone_name, **component_options(config, "backbone"))
    for dataset in datasets.values():
        dataset.normalization = backbone_normalization(backbone)
    head = registry.get("heads", config["head"]["name"])
    head_factory = functools.partial(head.factory, **component_options(config, "head"))
    method = registry.build("methods", config["method"]["name"], **component_options(config, "method"))
    model = WSOLModel(backbone, head_factory, method, datasets["train"].hierarchy, backbone_name=backbone_name)
    return Parts(model, datasets)


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, split across ranks so that the union of the ranks'
    i-th batches is exactly the single-process i-th batch (DDP runs see the same data)."""

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.epoch = 0

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        return iter(order[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world_size))


def make_train_loader(parts: Parts, config: dict[str, Any], runtime: Runtime) -> DataLoader:
    """Shuffled, drop-last batches of ``train.batch_size / world_size`` images per rank."""
    batch_size = config["train"]["batch_size"]
    if batch_size % runtime.world_size:
        raise UsageError(f"train.batch_size={batch_size} must be divisible by the {runtime.world_size} processes")
    if len(parts.train_set) < batch_size:
        raise UsageError(
            f"the training split has {len(parts.train_set)} images, fewer than train.batch_size={batch_size}, "
            "so not one batch would be trained: lower --batch-size or add training images"
        )
    sampler = EpochSampler(len(parts.train_set), config["seed"], runtime.rank, runtime.world_size)
    return DataLoader(
        parts.train_set,
        batch_size=batch_size // runtime.world_size,
        sampler=sampler,
        drop_last=True,
        num_workers=loader_workers(config["train"]["workers"], runtime),
        pin_memory=runtime.device.type == "cuda",
        collate_fn=collate_samples,
        worker_init_fn=functools.partial(_seed_worker, config["seed"]),
        persistent_workers=False,
    )


def _seed_worker(seed: int, worker_id: int) -> None:
    seed_everything(seed * 1000 + worker_id + torch.initial_seed() % 1000)


def make_optimizer(model: WSOLModel, config: dict[str, Any]) -> torch.optim.SGD:
    """SGD (Nesterov momentum 0.9, weight decay 5e-4): backbone at ``lr``, heads at ``lr * head_lr_mult``."""
    train = config["train"]
    body, heads = model.parameter_groups()
    return torch.optim.SGD(
        [{"params": body, "lr": train["lr"]}, {"params": heads, "lr": train["lr"] * train["head_lr_mult"]}],
        lr=train["lr"],
        momentum=train["momentum"],
        nesterov=train["nesterov"] and train["momentum"] > 0,
        weight_decay=train["weight_decay"],
    )


def learning_rate_factor(epoch: int, config: dict[str, Any]) -> float:
    """Step decay: ``lr_decay`` to the power of the number of ``lr_decay_epochs`` passed."""
    passed = sum(epoch >= milestone for milestone in config["train"]["lr_decay_epochs"])
    return config["train"]["lr_decay"] ** passed


def set_epoch_learning_rate(optimizer: torch.optim.Optimizer, epoch: int, config: dict[str, Any]) -> None:
    factor = learning_rate_factor(epoch, config)
    base = config["train"]["lr"]
    for group, multiplier in zip(optimizer.param_groups, (1.0, config["train"]["head_lr_mult"])):
        group["lr"] = base * multiplier * factor


def save_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, config_hash: str
) -> None:
    """Write the state after ``epoch`` completed epochs atomically (temp file + rename)."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "torch_rng": torch.get_rng_state(),
        "config_hash": config_hash,
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, config_hash: str) -> int:
    """Restore model, optimizer and RNG state; return the number of completed epochs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable checkpoint gets the same advice
        raise WsolbenchError(
            f"checkpoint {str(path)!r} cannot be read ({type(error).__name__}): delete it and re-run without --resume"
        ) from None
    if state.get("config_hash") != config_hash:
        raise WsolbenchError(
            f"checkpoint {str(path)!r} belongs to a different config: re-run with the original config or without --resume"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["epoch"])


def train_step(
    model: WSOLModel,
    wrapped: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    amp: bool = False,
) -> dict[str, torch.Tensor]:
    """One SGD step on a batch; returns the method's loss terms, detached, on the device.

    No host-device synchronisation: the caller checks the loss for NaN/inf when it reads
    it (every ``train.log_every`` steps and at the epoch end). ``wrapped`` is ``model``
    itself or its DistributedDataParallel wrapper.
    """
    images, targets = model.method.prepare_batch(images, labels)
    with autocast(images.device, amp):
        terms = model.loss(wrapped(images, targets), targets)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(terms["loss"]).backward()
    scaler.step(optimizer)
    scaler.update()
    return {name: value.detach() for name, value in terms.items()}


def train(
    parts: Parts,
    config: dict[str, Any],
    runtime: Runtime,
    run_dir: Path,
    *,
    config_hash: str,
    resume: bool,
    progress: Progress,
) -> None:
    """Train ``parts.model`` for ``train.epochs`` epochs, checkpointing after each.

    With ``resume``, training continues from ``run_dir/checkpoint.pt``; since the data order,
    augmentation and dropout draw from seeded generators restored with the checkpoint, a
    resumed run ends with the same weights as an uninterrupted one. Loss terms, learning
    rates and throughput go to TensorBoard under ``run_dir/tensorboard`` (:mod:`wsolbench.events`).
    """
    model = parts.model.to(runtime.device)
    if config["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    checkpoint = run_dir / CHECKPOINT
    start = load_checkpoint(checkpoint, model, optimizer, config_hash) if resume and checkpoint.exists() else 0
    if start:
        progress.message("resumed", epoch=start, checkpoint=str(checkpoint))
    wrapped: nn.Module = DistributedDataParallel(model) if runtime.distributed else model
    loader = make_train_loader(parts, config, runtime)
    use_amp = bool(config["amp"])
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=use_amp and runtime.device.type == "cuda")
    step = functools.partial(train_step, model, wrapped, optimizer, scaler, amp=use_amp)
    epochs = config["train"]["epochs"]
    with EventLog(run_dir, enabled=runtime.is_main) as events:
        for epoch in range(start, epochs):
            loader.sampler.epoch = epoch
            set_epoch_learning_rate(optimizer, epoch, config)
            wrapped.train()
            progress.start_epoch(epoch, epochs, len(loader))
            mean_loss = _train_epoch(step, loader, epoch, config, runtime, run_dir, progress, events, optimizer)
            progress.end_epoch(loss=round(mean_loss, 5))
            if runtime.is_main:
                save_checkpoint(checkpoint, model, optimizer, epoch + 1, config_hash)
            if runtime.distributed:
                torch.distributed.barrier()


def _train_epoch(
    step: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
    loader: DataLoader,
    epoch: int,
    config: dict[str, Any],
    runtime: Runtime,
    run_dir: Path,
    progress: Progress,
    events: EventLog,
    optimizer: torch.optim.Optimizer,
) -> float:
    """One epoch of ``step`` over ``loader``; the epoch's mean loss.

    The loss terms stay on the device; every ``train.log_every`` batches (and at the last)
    their window means are read once, checked for NaN/inf and logged.
    """
    log_every = config["train"]["log_every"]
    epoch_terms, window = TermSums(), TermSums()
    for index, batch in enumerate(loader):
        images = batch.images.to(runtime.device, non_blocking=True)
        if config["channels_last"]:
            images = images.contiguous(memory_format=torch.channels_last)
        terms = step(images, batch.labels.to(runtime.device, non_blocking=True))
        epoch_terms.add(terms)
        window.add(terms)
        logged = None
        if (index + 1) % log_every == 0 or index + 1 == len(loader):
            logged = window.means()
            _check_finite(logged, epoch, index, window.count, run_dir)
            window = TermSums()
            global_step = epoch * len(loader) + index + 1
            events.scalars("loss", logged, global_step)
            events.scalars("lr", {f"group{i}": g["lr"] for i, g in enumerate(optimizer.param_groups)}, global_step)
            events.scalars("throughput", {"img_per_s": progress.images_per_second()}, global_step)
        progress.step(index, len(batch.image_ids) * runtime.world_size, logged["loss"] if logged else None)
    return epoch_terms.means().get("loss", float("nan"))


class TermSums:
    """Loss terms summed on the device over steps, read (one synchronisation) as means."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for name, value in terms.items():
            value = value.float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()
        self.count += 1

    def means(self) -> dict[str, float]:
        """Per-term mean over the steps added (NaN or inf when a step's term was)."""
        if not self.sums:
            return {}
        values = torch.stack(list(self.sums.values())).cpu().tolist()
        return {name: value / self.count for name, value in zip(self.sums, values)}


def _check_finite(means: dict[str, float], epoch: int, index: int, window: int, run_dir: Path) -> None:
    if math.isfinite(means["loss"]):
        return
    first = index + 2 - window
    raise TrainingDiverged(
        f"loss is not finite at epoch {epoch + 1}, batches {first}-{index + 1}: lower train.lr or check the data; "
        f"the last good checkpoint ({'epoch ' + str(epoch) if epoch else 'none yet'}) is kept in {run_dir}"
    )
