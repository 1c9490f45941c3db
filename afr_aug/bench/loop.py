"""The one training loop behind ``afr_aug.bench.reproduce``, ``afr_aug.bench.throughput`` and
``afr_aug.bench.plan``: a run's state, one epoch of training, the AFR refresh and evaluation.

The loop is the first user of the public wrappers, as the README teaches them: one
``afr_aug.BalancedMixLoader`` (stage 1) or ``afr_aug.AFRLoader`` (stage 2) per run, built once,
over the run's long-tailed batches, with its running accuracy read through ``accuracy()`` and
its state saved with ``state_dict()`` (``afr_aug.bench.checkpoints``). Every other source of
randomness has its own generator whose state is checkpointed too, so a resumed run repeats an
uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from afr_aug import (
    AFRDataset,
    AFRLoader,
    BalancedMixLoader,
    CutMixBalancer,
    Embedder,
    LongTailSampler,
    MixUpBalancer,
    mixed_loss,
)
from afr_aug.augment import BatchAugment, to_device
from afr_aug.distributed import all_reduce_sum, get_rank, get_world_size, is_distributed
from afr_aug.losses import drw_weights
from afr_aug.metrics import evaluate
from afr_aug.refresh_report import RefreshReport

from .clock import CLOCK, running_time
from .data import Data, sampler_batches, test_batches
from .factories import (
    logit_scale,
    make_criterion,
    make_mixer,
    make_model,
    make_optimizer,
    make_stage2_set,
)
from .methods import DERIVED_METHODS, TRAINED_METHODS, Method
from .methods import method as method_entry
from .schedule import Schedule
from .speed import Speed


@dataclass
class Run:
    """Everything that changes during a run and is checkpointed each epoch."""

    method: str
    seed: int
    schedule: Schedule  # a stage-1 run's: with its row's recipe filled in
    data: Data
    device: torch.device
    model: torch.nn.Module | None = None  # new_run() sets this and the others below
    ddp: torch.nn.Module | None = None  # the DistributedDataParallel wrapper under torchrun
    optimizer: torch.optim.Optimizer | None = None
    criterion: torch.nn.Module | None = None
    augment: BatchAugment | None = None
    order: torch.Generator | None = None
    sampler: LongTailSampler | None = None  # CMO's balanced draw
    loader: BalancedMixLoader | None = None  # the run's one loader (AFRLoader in stage 2)
    stage: int = 1
    epoch: int = 0  # epochs completed in the current stage
    seconds: float = 0.0  # training time (no evaluation), a paused process's stop left out
    clock: str = CLOCK  # how ``seconds`` was timed (a run recorded before CLOCK: "wall")
    images_seen: int = 0
    history: list[dict] = field(default_factory=list)
    class_accuracy: list[float] | None = None  # running training accuracy, last epoch
    train_accuracy: float | None = None
    speed: Speed | None = None
    compiled: Callable[..., Any] | None = None  # torch.compile'd forward (--compile)
    embedder: Embedder | None = None  # for a loss that needs the embedding (IB)

    @property
    def total_epochs(self) -> int:
        return self.schedule.stage2_epochs if self.stage == 2 else self.schedule.epochs

    @property
    def entry(self) -> Method:
        """The run's row in the registry (``afr_aug.bench.methods``)."""
        return method_entry(self.method)

    @property
    def mixer(self):
        assert self.loader is not None  # new_run() built it
        return self.loader.mixer

    @property
    def stage2(self) -> AFRDataset | None:
        """The stage-2 set (stage-2 runs)."""
        return getattr(self.loader, "stage2", None)


def new_run(
    method: str,
    seed: int,
    schedule: Schedule,
    data: Data,
    device,
    init_state: dict | None = None,
    speed: Speed | None = None,
) -> Run:
    """A fresh run; stage-2 methods start from ``init_state`` (a finished stage-1 checkpoint).
    A stage-1 run trains with its row's recipe (``schedule.recipe``: paper or authors)."""
    if method not in TRAINED_METHODS:
        raise ValueError(
            f"unknown method {method!r}; choose from {', '.join(TRAINED_METHODS)} "
            f"(the rows {', '.join(DERIVED_METHODS)} come from derive_model)"
        )
    entry = method_entry(method)
    if entry.stage == 1:
        schedule = schedule.for_stage1(entry)
    device = torch.device(device)
    torch.manual_seed(seed)
    run = Run(method=method, seed=seed, schedule=schedule, data=data, device=device)
    run.speed = (speed or Speed()).resolved(device)
    run.model = make_model(data, device, entry)
    if run.speed.channels_last:
        run.model = run.model.to(memory_format=torch.channels_last)
    run.criterion = make_criterion(entry, data, device, schedule)
    run.order = torch.Generator().manual_seed(seed)
    run.stage = entry.stage
    if run.stage == 1:
        _stage1(run, entry)
        lr = schedule.lr
    else:
        if init_state is None:
            raise ValueError(
                f"{method} fine-tunes a finished stage-1 model: init_state is required"
            )
        _stage2(run, entry, init_state)
        lr = schedule.stage2_lr
    if is_distributed():
        run.ddp = torch.nn.parallel.DistributedDataParallel(
            run.model, device_ids=[device.index] if device.type == "cuda" else None
        )
    run.optimizer = make_optimizer(run.model.parameters(), lr, schedule, device)
    if run.speed.compile:
        run.compiled = torch.compile(run.ddp if run.ddp is not None else run.model)
    return run


def _stage1(run: Run, entry: Method) -> None:
    """The stage-1 loader: the long-tailed batches, mixed by the row's mixer (CMO's with a
    class-balanced draw; Remix and mixup with the batch itself)."""
    s, data, seed = run.schedule, run.data, run.seed
    heavy = s.augment == "autoaugment_cutout"
    run.augment = BatchAugment(crop=True, flip=True, auto_augment=heavy, cutout=heavy, seed=seed)
    if entry.mixer == "cmo":
        run.sampler = LongTailSampler(data.y_train.cpu(), exponent=1.0, seed=seed)
    mixer = make_mixer(entry, data, s, seed) or CutMixBalancer(p=0.5)
    batches = _LongTailedBatches(run)
    run.loader = BalancedMixLoader(
        batches,
        mixer,
        balanced=_BalancedBatches(run, len(batches)),
        num_classes=data.num_classes,
        transform=run.augment,
        seed=seed,
        mixing=entry.mixer is not None,
    )


def _stage2(run: Run, entry: Method, init_state: dict) -> None:
    """The stage-2 loader: the long-tailed batches, CutMixed (or MixUped) with the stage-2 set,
    which AFR refreshes; it starts from the stage-1 model and its running accuracy."""
    s, data, seed = run.schedule, run.data, run.seed
    assert run.model is not None and run.speed is not None  # new_run() set them
    run.model.load_state_dict(init_state["model"])
    run.class_accuracy = init_state.get("class_accuracy")
    run.train_accuracy = init_state.get("train_accuracy")
    run.augment = BatchAugment(crop=True, flip=True, seed=seed)
    mixer = {"cutmix": CutMixBalancer, "mixup": MixUpBalancer}[s.mix](p=s.mix_p, seed=seed)
    stage2 = make_stage2_set(
        entry, data, s, run.model, seed, autocast=torch.bfloat16 if run.speed.amp else None
    )
    batches = _LongTailedBatches(run)
    running = None if run.class_accuracy is None else (run.class_accuracy, run.train_accuracy)
    run.loader = AFRLoader(
        batches,
        stage2,
        run.model,
        mixer,
        refresh_every=s.refresh_every,
        running=running,
        auto_refresh=False,
        seed=seed,
        balanced=_BalancedBatches(run, len(batches)),
        transform=run.augment,
        stream=entry.stage2_stream,
    )


def _mixing_on(run: Run) -> bool:
    """CMO mixes only inside its window (not its first and last epochs); the other stage-1
    mixers (Remix, mixup) every epoch; stage 2 always."""
    s = run.schedule
    if run.entry.mixer == "cmo":
        return s.cmo_off_epochs < run.epoch < s.epochs - s.cmo_off_epochs
    return run.stage == 2 or run.entry.mixer is not None


class _LongTailedBatches:
    """The epoch's long-tailed batches of the in-memory training set: what a shuffled
    ``DataLoader`` gives a user, but indexed on the device. The order goes to the device once
    per epoch; a step then copies only its indices, so the host never waits for the GPU.
    Under DDP every rank draws the same global batches and keeps its slice of each."""

    def __init__(self, run: Run):
        self.run = run

    def __len__(self) -> int:
        s, n = self.run.schedule, len(self.run.data.y_train)
        batches = -(-n // s.batch_size)
        return batches if s.max_iters is None else min(batches, s.max_iters)

    def __iter__(self):
        run, rank, world = self.run, get_rank(), get_world_size()
        order = to_device(torch.randperm(len(run.data.y_train), generator=run.order), run.device)
        for idx in order.split(run.schedule.batch_size)[: len(self)]:
            idx = idx[rank::world]
            yield run.data.x_train[idx], run.data.y_train[idx]


class _BalancedBatches:
    """The epoch's balanced batches, taken in order only when the mixer's coin says mix: the
    ``LongTailSampler``'s draw (stage 1, CMO) or the stage-2 set's items (uint8, from
    ``AFRDataset.get_batch``)."""

    def __init__(self, run: Run, n_batches: int):
        self.run, self.n_batches = run, n_batches

    def __iter__(self):
        run, rank, world = self.run, get_rank(), get_world_size()
        size = run.schedule.batch_size
        if run.sampler is not None:  # indices on the training device, one copy per epoch
            rows = to_device(
                sampler_batches(run.sampler, run.epoch, self.n_batches, size), run.device
            )
            for row in rows:
                row = row[rank::world]
                yield run.data.x_train[row], run.data.y_train[row]
            return
        stage2 = run.stage2  # the stage-2 set lives on the CPU
        assert stage2 is not None  # no sampler: a stage-2 run
        g = torch.Generator().manual_seed(run.seed * 100003 + run.epoch)
        rows = torch.randint(len(stage2), (self.n_batches, size), generator=g)
        for row in rows:
            row = row[rank::world]
            xb, yb = stage2.get_batch(row)
            yield to_device(xb, run.device), to_device(yb, run.device)


def start_epoch(run: Run) -> BalancedMixLoader:
    """The run's loader, pointed at the current epoch (its mixing switched on or off)."""
    assert run.loader is not None  # new_run() built it
    run.loader.mixing = _mixing_on(run)
    run.loader.set_epoch(run.epoch)
    return run.loader


def maybe_refresh(run: Run, progress: bool = True) -> RefreshReport | None:
    """AFR: regenerate the adversarial images at the start of every ``refresh_every``-th epoch
    (``AFRLoader``'s schedule); returns the refresh's report."""
    if not run.entry.refreshes:
        return None
    loader = start_epoch(run)
    assert isinstance(loader, AFRLoader) and run.stage2 is not None  # a refreshing row
    if not loader.due():
        return None
    run.stage2.progress = progress
    return loader.refresh()


def _reweight_drw(run: Run) -> None:
    """DRW: a row with ``drw`` weighs its loss with this epoch's class weights
    (``afr_aug.losses.drw_weights``: all ones until the recipe's ``drw_from``)."""
    s = run.schedule
    if s.drw_from is None or run.stage != 1:
        return
    assert run.criterion is not None  # new_run() set it
    run.criterion.weight = drw_weights(
        run.data.class_counts, run.epoch, start_epoch=s.at(s.drw_from)
    ).to(run.device)


def _forward(run: Run, net, x: torch.Tensor):
    """The logits, and the embedding where the loss needs it (IB: ``needs_embedding``)."""
    if getattr(run.criterion, "needs_embedding", False):
        if run.embedder is None or run.embedder.model is not net:
            run.embedder = Embedder(net)
        logits, embedding = run.embedder(x)
        return logits, (embedding.float(),)
    return net(x), ()


def _end_epoch(run: Run, loss_sum: torch.Tensor, n_img: int, seconds: float) -> dict:
    """Record the epoch's running accuracy (the loader's, summed over the ranks) and its loss
    (one host sync, after the loop) on ``run`` and count the epoch done; the epoch's stats."""
    assert run.loader is not None  # new_run() built it
    acc, overall = run.loader.accuracy()
    loss_sum, n_img = all_reduce_sum(
        torch.stack([loss_sum.cpu().double(), torch.tensor(float(n_img), dtype=torch.float64)])
    ).tolist()
    n_img = int(n_img)
    run.seconds += seconds
    run.images_seen += n_img
    run.class_accuracy = acc.tolist()
    run.train_accuracy = 0.0 if overall != overall else overall
    run.epoch += 1
    return {
        "epoch": run.epoch,
        "loss": loss_sum / max(n_img, 1),
        "train_acc": run.train_accuracy,
        "seconds": seconds,
        "img_per_s": n_img / max(seconds, 1e-9),
        "mix": run.loader.mix_stats(),  # what the balanced (stage-2) set put into the batches
    }


def train_epoch(run: Run, progress: bool = True) -> dict:
    """One epoch over the long-tailed set; returns running loss/accuracy and timing."""
    from tqdm.auto import tqdm

    s, d, dev = run.schedule, run.data, run.device
    _reweight_drw(run)
    loader = start_epoch(run)
    if run.entry.loss == "bs_eff":
        run.criterion = make_criterion(run.entry, d, dev, s, mixing=loader.mixing)
    set_epoch = getattr(run.criterion, "set_epoch", None)
    if set_epoch is not None:  # a loss switched on part-way (IB)
        set_epoch(run.epoch)
    assert run.criterion is not None and run.augment is not None and run.speed is not None
    assert run.model is not None and run.optimizer is not None  # new_run() set them
    # the augmentation is reseeded per (seed, stage, epoch, rank) so a resumed epoch repeats
    run.augment.generator.manual_seed(
        ((run.seed * 1009 + run.stage) * 100003 + run.epoch) * 64 + get_rank()
    )
    net = run.compiled or (run.ddp if run.ddp is not None else run.model)
    fmt = torch.channels_last if run.speed.channels_last else torch.contiguous_format
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bool(run.speed.amp))
    run.model.train()
    loss_sum, n_img = torch.zeros((), device=dev), 0
    start = running_time()
    for step, (x, y_a, y_b, lam) in enumerate(
        tqdm(
            loader,
            desc=f"{run.method} s{run.stage} ep{run.epoch + 1}/{run.total_epochs}",
            disable=not progress,
            leave=False,
        )
    ):
        for group in run.optimizer.param_groups:
            group["lr"] = s.lr_at(run.epoch, step, len(loader), run.stage)
        with autocast:
            logits, extra = _forward(run, net, x.contiguous(memory_format=fmt))
        if extra:
            loss = run.criterion(logits.float(), y_a, *extra)  # no mixing with IB
        else:
            loss = mixed_loss(run.criterion, logits.float(), y_a, y_b, lam)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        loader.observe(logits)  # on the device, read once after the epoch: no host sync per step
        with torch.no_grad():
            loss_sum += loss.detach() * len(y_a)
        n_img += len(y_a)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return _end_epoch(run, loss_sum, n_img, running_time() - start)


def evaluate_run(run: Run) -> dict:
    assert run.model is not None  # new_run() set it
    return evaluate_model(run.model, run.data, run.device, logit_scale(run.method))


def evaluate_model(model: torch.nn.Module, data: Data, device, scale: float = 1.0) -> dict:
    """The test-set numbers of ``model``; ``scale``: :func:`~.factories.logit_scale` of its row
    (calibration of a cosine classifier)."""
    batch = 5000 if torch.device(device).type == "cuda" else 1000
    return evaluate(
        model,
        test_batches(data, batch),
        num_classes=data.num_classes,
        class_counts=data.class_counts,
        device=device,
        progress=False,
        logit_scale=scale,
    )
