"""The one training loop behind ``benchmarks.reproduce`` and ``benchmarks.throughput``.

Built only on afr-aug's public API. The data stay uint8 tensors on the training device and are
augmented a batch at a time (``afr_aug.augment.BatchAugment``), so a GPU is not starved by
per-image PIL transforms. Every source of randomness has its own generator whose state is
checkpointed, so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from afr_aug import AFRBalancer, CutMixBalancer, LongTailSampler, MixUpBalancer, mixed_loss
from afr_aug.augment import BatchAugment, to_device
from afr_aug.data import cifar_lt, load_cifar
from afr_aug.distributed import all_reduce_sum, barrier, get_rank, get_world_size, is_distributed
from afr_aug.decouple import retrain_classifier, tau_normalize
from afr_aug.losses import BalancedSoftmaxLoss, LDAMLoss, LogitAdjustedLoss, adjust_logits, drw_weights
from afr_aug.metrics import evaluate
from afr_aug.mixing import effective_class_counts
from afr_aug.models import resnet32

# The paper's Table 1 rows (the default grid of the paper presets and of device_table.sh)
PAPER_METHODS = ("ce", "ce_drw", "ldam_drw", "bs", "bs_cmo", "bs_cmo_ft", "afr")
STAGE1_METHODS = ("ce", "ce_drw", "ldam_drw", "la", "bs", "bs_cmo", "bs_cmo_eff")
STAGE2_METHODS = ("bs_cmo_ft", "afr")
CMO_METHODS = ("bs_cmo", "bs_cmo_eff")
# Rows made from another method's finished model without training its features (issue 10):
# post-hoc logit adjustment, tau-normalisation and cRT. {row: the run it starts from}
DERIVED_METHODS = {"ce_posthoc": "ce", "bs_cmo_posthoc": "bs_cmo", "bs_cmo_tau": "bs_cmo",
                   "bs_cmo_crt": "bs_cmo", "afr_tau": "afr"}
# Every row, in report order
ALL_METHODS = ("ce", "ce_posthoc", "ce_drw", "ldam_drw", "la", "bs", "bs_cmo", "bs_cmo_eff",
               "bs_cmo_posthoc", "bs_cmo_tau", "bs_cmo_crt", "bs_cmo_ft", "afr", "afr_tau")
TRAINED_METHODS = STAGE1_METHODS + STAGE2_METHODS
CIFAR_MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclass
class Schedule:
    """Optimiser and schedule of one run (paper §4.1; milestones as fractions of ``epochs``)."""

    epochs: int = 200
    stage2_epochs: int = 50
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    warmup_epochs: int = 5
    milestones: Sequence[float] = (0.8, 0.9)       # x0.01 after 160/200, x0.0001 after 180/200
    # Stage 2 (fine-tuning; the paper gives no learning rate): cosine from 0.01 to 0 over the
    # stage-2 epochs, the same for AFR and its control. A tenth of stage 1's peak keeps the
    # converged stage-1 features while leaving room to learn from the new set.
    stage2_lr: float = 0.01
    cmo_p: float = 0.5                              # CMO mixing probability
    # CMO mixes while cmo_off_epochs < epoch < epochs - cmo_off_epochs (0-based), as the CMO
    # code's `3 < epoch < epochs - 3`: not in the first 4 and the last 3 epochs
    cmo_off_epochs: int = 3
    # The CMO code raises the learning rate once per epoch during warm-up, lr * (epoch + 1) / 5;
    # "iteration" ramps it per step instead (smoother, what this loop did before issue 9)
    warmup_per: str = "epoch"
    mix: str = "cutmix"                             # stage-2 mixer: cutmix | mixup
    mix_p: float = 0.25                             # stage-2 mixing probability
    refresh_every: int = 10                         # AFR adversarial refresh period (epochs)
    attack_share: float = 0.5
    # Issue 10's baselines. la: the logit-adjusted loss's temperature (1: Balanced Softmax up to
    # rounding, Menon et al.'s best on CIFAR-LT). *_tau: the tau of tau-normalisation (Kang et
    # al. pick it on a validation split, which CIFAR-LT lacks; 1 gives unit-norm class weights).
    # bs_cmo_crt: classifier re-training epochs and peak learning rate (cosine to 0), Kang et
    # al.'s 10 epochs; the re-initialised classifier starts from scratch, so stage 1's peak.
    la_tau: float = 1.0
    tau: float = 1.0
    crt_epochs: int = 10
    crt_lr: float = 0.1
    max_iters: Optional[int] = None                 # cap on iterations per epoch (smoke runs)
    eval_every: int = 10

    def milestone_epochs(self) -> List[int]:
        return [int(round(f * self.epochs)) for f in self.milestones]

    def lr_at(self, epoch: int, step: int, steps_per_epoch: int, stage: int) -> float:
        """Learning rate at ``step`` of ``epoch`` (0-based) of ``stage`` (1 or 2)."""
        if stage == 2:
            t = (epoch + step / max(steps_per_epoch, 1)) / max(self.stage2_epochs, 1)
            return 0.5 * self.stage2_lr * (1 + math.cos(math.pi * min(t, 1.0)))
        if epoch < self.warmup_epochs:
            if self.warmup_per == "epoch":
                return self.lr * (epoch + 1) / self.warmup_epochs
            return self.lr * (epoch * steps_per_epoch + step + 1) / (self.warmup_epochs * steps_per_epoch)
        m1, m2 = self.milestone_epochs()
        return self.lr * (0.0001 if epoch >= m2 else 0.01 if epoch >= m1 else 1.0)


def worker_env(threads: int) -> dict:
    """Environment for a benchmark worker process: unbuffered output, its own thread count, and
    this repository on the path so ``python -m benchmarks.*`` resolves from any directory."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # holds benchmarks/
    return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads),
                PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"cpu ({cpu}, {torch.get_num_threads()} threads)"


@dataclass
class Data:
    """A long-tailed training set and the test set as uint8 NCHW tensors on one device."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_counts: List[int]
    classes: List[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)


def _nchw(data: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2).contiguous()


def load_data(dataset: str, root=None, imbalance_ratio: float = 100, seed: int = 0,
              device="cpu", train_fraction: Optional[float] = None,
              test_limit: Optional[int] = None, pack=None, download: bool = False) -> Data:
    """CIFAR-10/100-LT as tensors, from the CIFAR folder or from a ``benchmarks.pack`` file
    (``pack``). ``train_fraction`` (each class keeps that share, at least 2 images, so the
    long-tailed shape stays) and ``test_limit`` shrink it for smoke runs."""
    if pack is not None:
        x_tr, y_tr, x_te, y_te, classes = _from_pack(pack, dataset, imbalance_ratio, seed)
    else:
        name = {"cifar10-lt": "cifar10", "cifar100-lt": "cifar100"}.get(dataset, dataset)
        try:
            train = cifar_lt(name, root=root, imbalance_ratio=imbalance_ratio, seed=seed,
                             download=download)
            test = load_cifar(name, root=root, train=False, download=download)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{e} From the command line: --data-root FOLDER, --download "
                                    "(needs internet), or --data PACK.") from None
        x_tr, y_tr = _nchw(train.data), torch.tensor(train.targets)
        x_te, y_te, classes = _nchw(test.data), torch.tensor(test.targets), list(train.classes)
    keep = torch.arange(len(y_tr))
    if train_fraction is not None:
        members = [torch.nonzero(y_tr == c).flatten() for c in range(len(classes))]
        keep = torch.cat([m[:max(2, math.ceil(len(m) * train_fraction))] for m in members])
    if test_limit is not None:
        g = torch.Generator().manual_seed(0)
        pick = torch.randperm(len(y_te), generator=g)[:test_limit].sort().values
        x_te, y_te = x_te[pick], y_te[pick]
    y = y_tr[keep]
    return Data(name=dataset, x_train=x_tr[keep].to(device), y_train=y.to(device),
                x_test=x_te.to(device), y_test=y_te.to(device),
                class_counts=torch.bincount(y, minlength=len(classes)).tolist(),
                classes=classes)


def _from_pack(path, dataset: str, imbalance_ratio: float, seed: int):
    from .pack import read_pack

    arrays, meta = read_pack(path)
    want = {"dataset": dataset, "imbalance_ratio": float(imbalance_ratio)}
    got = {"dataset": meta.get("dataset"), "imbalance_ratio": float(meta.get("imbalance_ratio", -1))}
    if want != got or seed != 0:
        raise ValueError(f"{path} packs {got}, but this run asks for {want} (split seed {seed}); "
                         "write a matching pack with python -m benchmarks.pack")
    return (torch.from_numpy(arrays["x_train"]), torch.from_numpy(arrays["y_train"]),
            torch.from_numpy(arrays["x_test"]), torch.from_numpy(arrays["y_test"]),
            list(meta["classes"]))


def make_model(data: Data, device, method: str = "") -> torch.nn.Module:
    """ResNet32 with CIFAR normalisation inside (attacks then see [0, 1] images); LDAM gets
    the cosine classifier its margins and scale assume."""
    mean, std = CIFAR_MEAN_STD.get(data.name.replace("-lt", ""), CIFAR_MEAN_STD["cifar10"])
    return resnet32(num_classes=data.num_classes, normalize=(mean, std),
                    normed_classifier=method == "ldam_drw").to(device)


def cmo_prior(data: Data, schedule: "Schedule") -> torch.Tensor:
    """The label mass per class CMO's mixed stream carries (``effective_class_counts``)."""
    return effective_class_counts(data.class_counts, p=schedule.cmo_p,
                                  image_size=tuple(data.x_train.shape[-2:]))


def make_criterion(method: str, data: Data, device, schedule: "Schedule",
                   mixing: bool = True) -> torch.nn.Module:
    """The loss of ``method``; bs_cmo_eff's Balanced Softmax uses CMO's effective prior while
    CMO mixes (``mixing``) and the plain counts in the epochs it does not."""
    counts = data.class_counts
    if method in ("ce", "ce_drw"):
        return torch.nn.CrossEntropyLoss().to(device)
    if method == "ldam_drw":
        return LDAMLoss(counts).to(device)
    if method == "la":
        return LogitAdjustedLoss(counts, tau=schedule.la_tau).to(device)
    if method == "bs_cmo_eff" and mixing:
        return BalancedSoftmaxLoss(cmo_prior(data, schedule)).to(device)
    return BalancedSoftmaxLoss(counts).to(device)


def rank_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000):
    """This rank's share of ``(x, y)`` as ``(float images, labels, index)`` batches: the form
    ``IntraClassSplitter.embed`` and ``evaluate`` gather back over the ranks."""
    mine = torch.arange(get_rank(), len(y), get_world_size())
    for idx in mine.split(batch_size):
        dev_idx = to_device(idx, x.device)
        yield x[dev_idx].float().div_(255), y[dev_idx], idx


def test_batches(data: Data, batch_size: int = 1000):
    return rank_batches(data.x_test, data.y_test, batch_size)


def train_batches(data: Data, batch_size: int = 1000):
    """The clean (unaugmented) training images, for embedding passes."""
    return rank_batches(data.x_train, data.y_train, batch_size)


@dataclass
class Speed:
    """How the loop runs, not what it computes: none of these change the method.

    ``amp``: bf16 autocast for the training forward (the loss is computed in fp32); default on
    CUDA only, since on a CPU it must first be shown to train as well as fp32 (issue 9).
    ``channels_last``: NHWC model and inputs, faster convolutions on CPU (fp32 334 vs 226
    img/s for ResNet32 on this project's 2-core Xeon) and on tensor cores. ``compile``:
    torch.compile the training forward; opt-in until measured faster on the device at hand.
    The AFR refresh (embedding and attack) and evaluation stay fp32."""

    amp: Optional[bool] = None
    channels_last: bool = True
    compile: bool = False

    def resolved(self, device: torch.device) -> "Speed":
        return Speed(amp=device.type == "cuda" if self.amp is None else self.amp,
                     channels_last=self.channels_last, compile=self.compile)


def add_speed_args(parser) -> None:
    """--amp/--no-amp, --channels-last/--no-channels-last, --compile (see :class:`Speed`)."""
    import argparse

    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast for training (default: on for CUDA, off on CPU)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="NHWC memory format (default: on)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training forward")


def speed_from(args) -> Speed:
    return Speed(amp=args.amp, channels_last=args.channels_last, compile=args.compile)


def make_optimizer(params, lr: float, s: "Schedule", device: torch.device) -> torch.optim.Optimizer:
    """SGD with the fused CUDA kernel on a GPU (one launch for all parameters), foreach on CPU."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.SGD(params, lr=lr, momentum=s.momentum, weight_decay=s.weight_decay, **fast)


@dataclass
class Run:
    """Everything that changes during a run and is checkpointed each epoch."""

    method: str
    seed: int
    schedule: Schedule
    data: Data
    device: torch.device
    model: torch.nn.Module = None
    ddp: Optional[torch.nn.Module] = None  # the DistributedDataParallel wrapper under torchrun
    optimizer: torch.optim.Optimizer = None
    criterion: torch.nn.Module = None
    augment: BatchAugment = None
    order: torch.Generator = None
    mixer: object = None
    sampler: Optional[LongTailSampler] = None
    balancer: Optional[AFRBalancer] = None
    stage: int = 1
    epoch: int = 0                      # epochs completed in the current stage
    seconds: float = 0.0                # training time (no evaluation)
    images_seen: int = 0
    history: List[Dict] = field(default_factory=list)
    class_accuracy: Optional[List[float]] = None   # running training accuracy, last epoch
    train_accuracy: Optional[float] = None
    speed: "Speed" = None
    compiled: Optional[torch.nn.Module] = None     # torch.compile'd forward (--compile)

    @property
    def total_epochs(self) -> int:
        return self.schedule.stage2_epochs if self.stage == 2 else self.schedule.epochs


def new_run(method: str, seed: int, schedule: Schedule, data: Data, device,
            init_state: Optional[dict] = None, speed: Optional[Speed] = None) -> Run:
    """A fresh run; stage-2 methods start from ``init_state`` (a finished ``bs_cmo`` checkpoint)."""
    if method not in TRAINED_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(TRAINED_METHODS)} "
                         f"(the rows {', '.join(DERIVED_METHODS)} come from derive_model)")
    device = torch.device(device)
    torch.manual_seed(seed)
    run = Run(method=method, seed=seed, schedule=schedule, data=data, device=device)
    run.speed = (speed or Speed()).resolved(device)
    run.model = make_model(data, device, method)
    if run.speed.channels_last:
        run.model = run.model.to(memory_format=torch.channels_last)
    run.criterion = make_criterion(method, data, device, schedule)
    run.order = torch.Generator().manual_seed(seed)
    run.stage = 2 if method in STAGE2_METHODS else 1
    if run.stage == 1:
        run.augment = BatchAugment(crop=True, flip=True, auto_augment=True, cutout=True, seed=seed)
        if method in CMO_METHODS:
            run.sampler = LongTailSampler(data.y_train.cpu(), alpha=1.0, seed=seed)
            run.mixer = CutMixBalancer(p=schedule.cmo_p, seed=seed)
        lr = schedule.lr
    else:
        if init_state is None:
            raise ValueError(f"{method} fine-tunes a finished bs_cmo model: init_state is required")
        run.model.load_state_dict(init_state["model"])
        run.class_accuracy = init_state.get("class_accuracy")
        run.train_accuracy = init_state.get("train_accuracy")
        run.augment = BatchAugment(crop=True, flip=True, seed=seed)
        mixer_cls = {"cutmix": CutMixBalancer, "mixup": MixUpBalancer}[schedule.mix]
        run.mixer = mixer_cls(p=schedule.mix_p, seed=seed)
        # The control gets the same balanced set, only never refreshed: plain over-sampling.
        run.balancer = AFRBalancer(data.x_train.cpu(), data.y_train.cpu(),
                                   num_classes=data.num_classes,
                                   attack_share=schedule.attack_share, seed=seed, progress=True)
        lr = schedule.stage2_lr
    if is_distributed():
        run.ddp = torch.nn.parallel.DistributedDataParallel(
            run.model, device_ids=[device.index] if device.type == "cuda" else None)
    run.optimizer = make_optimizer(run.model.parameters(), lr, schedule, device)
    if run.speed.compile:
        run.compiled = torch.compile(run.ddp if run.ddp is not None else run.model)
    return run


def _mixing_on(run: Run) -> bool:
    s = run.schedule
    if run.method in CMO_METHODS:
        return s.cmo_off_epochs < run.epoch < s.epochs - s.cmo_off_epochs
    return run.stage == 2


def _sampler_batches(sampler: LongTailSampler, epoch: int, n_batches: int, batch_size: int):
    """``[n_batches, batch_size]`` indices of ``sampler``'s draw for ``epoch`` (repeated if short)."""
    sampler.set_epoch(epoch)
    draw = sampler.global_draw()
    need = n_batches * batch_size
    return draw.repeat(math.ceil(need / len(draw)))[:need].view(n_batches, batch_size)


def _balanced_indices(run: Run, n_batches: int, batch_size: int) -> torch.Tensor:
    """``[n_batches, batch_size]`` indices into the balanced source for this epoch: on the
    training device for the sampler (one copy per epoch), on the CPU for the stage-2 set
    (which lives there)."""
    if run.sampler is not None:
        return to_device(_sampler_batches(run.sampler, run.epoch, n_batches, batch_size), run.device)
    g = torch.Generator().manual_seed(run.seed * 100003 + run.epoch)
    return torch.randint(len(run.balancer), (n_batches, batch_size), generator=g)


def maybe_refresh(run: Run, progress: bool = True) -> Optional[object]:
    """AFR: regenerate the adversarial images at the start of every ``refresh_every``-th epoch."""
    if run.method != "afr" or run.epoch % run.schedule.refresh_every != 0:
        return None
    run.balancer.progress = progress
    return run.balancer.refresh(run.model, device=run.device, class_accuracy=run.class_accuracy,
                                train_accuracy=run.train_accuracy)


def train_epoch(run: Run, progress: bool = True) -> Dict:
    """One epoch over the long-tailed set; returns running loss/accuracy and timing."""
    from tqdm.auto import tqdm

    s, d, dev = run.schedule, run.data, run.device
    if run.method in ("ce_drw", "ldam_drw"):
        w = drw_weights(d.class_counts, run.epoch, start_epoch=s.milestone_epochs()[0]).to(dev)
        if run.method == "ce_drw":
            run.criterion = torch.nn.CrossEntropyLoss(weight=w)
        else:
            run.criterion.weight = w
    # the epoch's order goes to the device once; a step then copies only its random draws
    # (pinned, non-blocking): the host never waits for the GPU inside the loop
    order = to_device(torch.randperm(len(d.y_train), generator=run.order), dev).split(s.batch_size)
    if s.max_iters is not None:
        order = order[:s.max_iters]
    mixing = run.mixer is not None and _mixing_on(run)
    if run.method == "bs_cmo_eff":
        run.criterion = make_criterion(run.method, d, dev, s, mixing=mixing)
    bal = _balanced_indices(run, len(order), s.batch_size) if mixing else None
    # Under DDP every rank draws the same global batches and keeps its slice of each; the
    # augmentation is reseeded per (seed, stage, epoch, rank) so a resumed epoch repeats.
    rank, world = get_rank(), get_world_size()
    run.augment.generator.manual_seed(((run.seed * 1009 + run.stage) * 100003 + run.epoch) * 64 + rank)
    net = run.compiled or (run.ddp if run.ddp is not None else run.model)
    fmt = torch.channels_last if run.speed.channels_last else torch.contiguous_format
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=run.speed.amp)
    run.model.train()
    # running metrics stay on the device and are read once, after the epoch: no host sync per step
    correct = torch.zeros(d.num_classes, device=dev)
    seen = torch.zeros(d.num_classes, device=dev)
    loss_sum, n_img = torch.zeros((), device=dev), 0
    start = time.perf_counter()
    for step, idx in enumerate(tqdm(order, desc=f"{run.method} s{run.stage} ep{run.epoch + 1}/{run.total_epochs}",
                                    disable=not progress, leave=False)):
        bidx = bal[step][: len(idx)][rank::world] if mixing else None
        idx = idx[rank::world]
        x, y = run.augment(d.x_train[idx]), d.y_train[idx]
        y_b, lam = y, 1.0
        # the coin first: a balanced batch the mixer would discard is neither fetched nor
        # augmented (CMO mixes half the batches, stage 2 a quarter)
        if mixing and run.mixer.decide():
            if run.balancer is not None:
                xb, yb = run.balancer.get_batch(bidx)
                xb, yb = to_device(xb, dev), to_device(yb, dev)
            else:
                xb, yb = d.x_train[bidx], d.y_train[bidx]
            x, y, y_b, lam = run.mixer(x, y, run.augment(xb), yb)
        for group in run.optimizer.param_groups:
            group["lr"] = s.lr_at(run.epoch, step, len(order), run.stage)
        with autocast:
            logits = net(x.contiguous(memory_format=fmt))
        loss = mixed_loss(run.criterion, logits.float(), y, y_b, lam)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        with torch.no_grad():
            hit = (logits.argmax(1) == y).float()
            correct.index_add_(0, y, hit)
            seen.index_add_(0, y, torch.ones_like(hit))
            loss_sum += loss.detach() * len(y)
        n_img += len(y)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    correct, seen = all_reduce_sum(correct), all_reduce_sum(seen)
    loss_sum, n_img = all_reduce_sum(torch.stack([loss_sum.cpu().double(),
                                                  torch.tensor(float(n_img), dtype=torch.float64)])).tolist()
    n_img = int(n_img)
    run.seconds += seconds
    run.images_seen += n_img
    acc = (correct / seen.clamp(min=1)).cpu()
    acc[seen.cpu() == 0] = float("nan")
    run.class_accuracy = acc.tolist()
    run.train_accuracy = float(correct.sum() / seen.sum().clamp(min=1))
    run.epoch += 1
    return {"epoch": run.epoch, "loss": loss_sum / max(n_img, 1), "train_acc": run.train_accuracy,
            "seconds": seconds, "img_per_s": n_img / max(seconds, 1e-9)}


def evaluate_run(run: Run) -> Dict:
    return evaluate_model(run.model, run.data, run.device)


# -- rows derived from a finished model (issue 10) ----------------------------------------------
class PosthocAdjusted(torch.nn.Module):
    """``model`` whose logits are shifted by ``-tau * log(class_counts)`` at inference
    (``afr_aug.losses.adjust_logits``); nothing is trained."""

    def __init__(self, model: torch.nn.Module, class_counts, tau: float = 1.0):
        super().__init__()
        self.model, self.class_counts, self.tau = model, class_counts, tau

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adjust_logits(self.model(x), self.class_counts, self.tau)


class BalancedStream:
    """The loader cRT trains on: class-balanced draws of ``LongTailSampler(alpha=1)``, crop and
    flip, as many batches per pass as an epoch of the long-tailed set (``max_iters`` caps it);
    each pass is the next epoch, and every rank draws the same batches (the classifier then
    stays identical on all ranks under torchrun)."""

    def __init__(self, data: Data, schedule: Schedule, seed: int, device):
        self.data, self.seed, self.device = data, seed, torch.device(device)
        self.batch_size = schedule.batch_size
        self.n_batches = math.ceil(len(data.y_train) / schedule.batch_size)
        if schedule.max_iters is not None:
            self.n_batches = min(self.n_batches, schedule.max_iters)
        self.sampler = LongTailSampler(data.y_train.cpu(), alpha=1.0, seed=seed)
        self.augment = BatchAugment(crop=True, flip=True, seed=seed)
        self.epoch = 0

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        batches = _sampler_batches(self.sampler, self.epoch, self.n_batches, self.batch_size)
        self.augment.generator.manual_seed(self.seed * 100003 + self.epoch)
        self.epoch += 1
        for idx in to_device(batches, self.device):
            yield self.augment(self.data.x_train[idx]), self.data.y_train[idx]


def derive_model(method: str, source_state: dict, data: Data, device, schedule: Schedule,
                 seed: int, progress: bool = False):
    """The model of a ``DERIVED_METHODS`` row made from the finished checkpoint of the run it
    starts from, and the number of images it trained on (cRT only).

    ``ce_posthoc``: CE's logits minus ``la_tau * log prior`` (Menon et al.'s post-hoc form).
    ``bs_cmo_posthoc``: BS+CMO's logits minus ``log(effective prior / counts)``: the share of
    the prior Balanced Softmax left uncorrected because CMO's mixed stream is not distributed as
    the counts. ``*_tau``: tau-normalised classifier (``schedule.tau``, bias dropped).
    ``bs_cmo_crt``: the classifier re-initialised and re-trained on :class:`BalancedStream` for
    ``crt_epochs`` with the features frozen."""
    if method not in DERIVED_METHODS:
        raise ValueError(f"unknown derived row {method!r}; choose from {', '.join(DERIVED_METHODS)}")
    device = torch.device(device)
    model = make_model(data, device, DERIVED_METHODS[method])
    model.load_state_dict(source_state["model"])
    if method.endswith("_tau"):
        return tau_normalize(model, schedule.tau), 0
    if method == "ce_posthoc":
        return PosthocAdjusted(model, data.class_counts, schedule.la_tau), 0
    if method == "bs_cmo_posthoc":
        counts = torch.tensor(data.class_counts, dtype=torch.float64)
        return PosthocAdjusted(model, cmo_prior(data, schedule) / counts), 0
    torch.manual_seed(seed)                       # the classifier's re-initialisation
    stream = BalancedStream(data, schedule, seed, device)
    retrain_classifier(model, stream, epochs=schedule.crt_epochs, lr=schedule.crt_lr,
                       momentum=schedule.momentum, weight_decay=schedule.weight_decay,
                       device=device, progress=progress)
    return model, schedule.crt_epochs * len(stream) * stream.batch_size


def evaluate_model(model: torch.nn.Module, data: Data, device) -> Dict:
    batch = 5000 if torch.device(device).type == "cuda" else 1000
    return evaluate(model, test_batches(data, batch), num_classes=data.num_classes,
                    class_counts=data.class_counts, device=device)


# -- checkpoints -------------------------------------------------------------------------------
def state_of(run: Run, done: bool = False, result: Optional[Dict] = None) -> dict:
    state = {
        "method": run.method, "seed": run.seed, "stage": run.stage, "epoch": run.epoch,
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "order": run.order.get_state(),
        "seconds": run.seconds, "images_seen": run.images_seen, "history": run.history,
        "class_accuracy": run.class_accuracy, "train_accuracy": run.train_accuracy,
        "torch_rng": torch.get_rng_state(), "done": done, "result": result,
    }
    if run.mixer is not None:
        state["mixer"] = run.mixer.state_dict()
    if run.balancer is not None:
        state["balancer"] = run.balancer.state_dict()
    return state


def restore(run: Run, state: dict) -> None:
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.order.set_state(state["order"])
    run.epoch, run.seconds, run.images_seen = state["epoch"], state["seconds"], state["images_seen"]
    run.history = list(state["history"])
    run.class_accuracy, run.train_accuracy = state["class_accuracy"], state["train_accuracy"]
    torch.set_rng_state(state["torch_rng"])
    if run.mixer is not None:
        run.mixer.load_state_dict(state["mixer"])
    if run.balancer is not None:
        run.balancer.load_state_dict(state["balancer"])


def save_atomic(state: dict, path: str) -> None:
    """Write to a temporary file, then rename: a kill mid-write leaves the old checkpoint.
    Under DDP only rank 0 writes; the others wait for it."""
    if get_rank() == 0:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        torch.save(state, tmp)
        os.replace(tmp, path)
    barrier()


def load_checkpoint(path: str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
