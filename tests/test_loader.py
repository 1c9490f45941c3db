"""BalancedMixLoader / AFRLoader: the user's DataLoader wrapped for stage 1 and stage 2."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from afr_aug import AFRDataset, AFRLoader, BalancedMixLoader, CutMixBalancer, MixUpBalancer
from afr_aug.loader import MixedBatch, dataset_labels
from afr_aug.metrics import RunningAccuracy
from afr_aug.sampler import LongTailSampler

COUNTS = [24, 8, 4]


class Images(Dataset):
    """A user's own map-style dataset: float images at its own size, labels in ``.targets``."""

    def __init__(self, counts=COUNTS, size=20, targets=True):
        g = torch.Generator().manual_seed(0)
        self.labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
        self.images = torch.rand(len(self.labels), 3, size, size, generator=g)
        if targets:
            self.targets = self.labels.tolist()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


class Net(nn.Module):
    """A user's own classifier (not a CIFAR ResNet): works at any image size."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


class Counting:
    """A balanced source that counts how many batches were taken from it."""

    def __init__(self, size=20, batch=6, n=100):
        self.taken, self.size, self.batch, self.n = 0, size, batch, n

    def __iter__(self):
        for _ in range(self.n):
            self.taken += 1
            yield torch.ones(self.batch, 3, self.size, self.size), torch.full((self.batch,), 2)


def loader_of(data, **kw):
    return DataLoader(data, batch_size=6, shuffle=False, drop_last=True, **kw)


def test_stage1_mixes_with_class_balanced_batches():
    data = Images()
    mixed = BalancedMixLoader(loader_of(data), CutMixBalancer(p=1.0))
    assert isinstance(mixed.balanced.sampler, LongTailSampler)
    drawn = torch.zeros(3)
    for epoch in range(20):
        mixed.set_epoch(epoch)
        for batch in mixed:
            assert (isinstance(batch, MixedBatch) and batch.lam < 1.0) or batch.lam == 1.0
            drawn += torch.bincount(batch.y_b, minlength=3)
    share = drawn / drawn.sum()
    assert torch.all((share - 1 / 3).abs() < 0.06), share  # balanced, not 24:8:4


def test_unmixed_batches_pass_through_and_no_balanced_batch_is_fetched():
    data, source = Images(), Counting()
    user = loader_of(data)
    mixed = BalancedMixLoader(user, CutMixBalancer(p=0.0), balanced=source)
    for (x, y), batch in zip(user, mixed):
        assert torch.equal(batch.x, x) and torch.equal(batch.y_a, y) and batch.lam == 1.0
    assert source.taken == 0


def test_a_balanced_batch_is_fetched_only_for_the_batches_that_mix():
    source = Counting()
    mixed = BalancedMixLoader(loader_of(Images()), CutMixBalancer(p=0.5, seed=3), balanced=source)
    n_mixed = sum(batch.y_b is not batch.y_a for epoch in range(4) for batch in mixed)
    assert 0 < n_mixed < 4 * len(mixed)
    assert source.taken == n_mixed


def test_short_balanced_source_restarts_then_fails_clearly():
    mixed = BalancedMixLoader(loader_of(Images()), CutMixBalancer(p=1.0), balanced=Counting(n=1))
    assert sum(1 for _ in mixed) == len(mixed)  # restarted as often as needed
    tiny = BalancedMixLoader(loader_of(Images()), CutMixBalancer(p=1.0), balanced=Counting(batch=2))
    with pytest.raises(ValueError, match="smaller than the loader's"):
        next(iter(tiny))


def test_observe_counts_the_running_accuracy_against_y_a():
    torch.manual_seed(0)
    model = Net()
    mixed = BalancedMixLoader(loader_of(Images()), CutMixBalancer(p=0.5))
    expected = RunningAccuracy(3)
    for batch in mixed:
        logits = model(batch.x)
        mixed.observe(logits)
        expected.update(logits, batch.y_a)
    assert torch.equal(mixed.running.seen, expected.seen)
    assert torch.equal(mixed.running.correct, expected.correct)
    per_class, overall = mixed.accuracy()
    assert torch.allclose(per_class, expected.per_class(), equal_nan=True)
    assert overall == pytest.approx(expected.overall())
    next(iter(mixed))  # a new epoch counts afresh
    assert mixed.running.seen.sum() == 0


def test_observe_rejects_misuse():
    mixed = BalancedMixLoader(loader_of(Images()))
    with pytest.raises(RuntimeError, match="inside the loop"):
        mixed.observe(torch.zeros(6, 3))
    next(iter(mixed))
    with pytest.raises(ValueError, match="logits must be"):
        mixed.observe(torch.zeros(5, 3))


def test_transform_runs_on_both_batches_before_mixing():
    calls = []

    def transform(x):
        calls.append(len(x))
        return x * 0.5

    mixed = BalancedMixLoader(loader_of(Images()), CutMixBalancer(p=1.0), transform=transform)
    batch = next(iter(mixed))
    assert calls == [6, 6] and batch.x.max() <= 0.5


def test_set_epoch_reaches_ddp_and_balanced_samplers_and_workers_are_kept():
    data = Images()
    user = DataLoader(
        data,
        batch_size=6,
        num_workers=1,
        pin_memory=False,
        sampler=DistributedSampler(data, num_replicas=2, rank=1, shuffle=True),
    )
    mixed = BalancedMixLoader(user)
    mixed.set_epoch(7)
    assert user.sampler.epoch == 7 and mixed.balanced.sampler.epoch == 7
    assert mixed.balanced.num_workers == 1 and mixed.balanced.batch_size == 6
    assert len(mixed) == len(user)
    with pytest.raises(ValueError, match="epoch"):
        mixed.set_epoch(-1)


def test_labels_come_from_targets_through_subset_or_are_asked_for():
    data = Images()
    sub = Subset(data, [0, 30, 35])
    assert dataset_labels(sub).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="labels="):
        BalancedMixLoader(loader_of(Images(targets=False)))
    mixed = BalancedMixLoader(loader_of(Images(targets=False)), labels=data.labels)
    assert mixed.num_classes == 3
    with pytest.raises(ValueError, match="labels for a dataset"):
        BalancedMixLoader(loader_of(data), labels=data.labels[:5])
    with pytest.raises(TypeError, match="fractional values"):
        BalancedMixLoader(loader_of(data), labels=data.labels.float() + 0.5)
    assert BalancedMixLoader(loader_of(data), labels=data.labels.float()).num_classes == 3
    with pytest.raises(TypeError, match="DataLoader"):
        BalancedMixLoader([(data.images[:6], data.labels[:6])])
    with pytest.raises(TypeError, match="mixer"):
        BalancedMixLoader(loader_of(data), mixer="cutmix")
    with pytest.raises(ValueError, match="num_classes"):
        BalancedMixLoader([(data.images[:6], data.labels[:6])], balanced=Counting())


def test_state_dict_resumes_the_same_mixing():
    def run(loader, epochs):
        return [(b.lam, b.y_b.tolist()) for e in epochs for b in (loader.set_epoch(e) or loader)]

    data = Images()
    whole = BalancedMixLoader(loader_of(data), MixUpBalancer(p=0.5, seed=1))
    full = run(whole, [0, 1])
    first = BalancedMixLoader(loader_of(data), MixUpBalancer(p=0.5, seed=1))
    run(first, [0])
    state = first.state_dict()
    resumed = BalancedMixLoader(loader_of(data), MixUpBalancer(p=0.5, seed=9))
    resumed.load_state_dict(state)
    assert resumed.epoch == 1
    assert run(resumed, [1]) == full[len(full) // 2 :]
    with pytest.raises(ValueError, match="num_classes"):
        BalancedMixLoader(loader_of(data), labels=[0, 1, 2, 3] * 9).load_state_dict(state)


def afr_loader(data, model, **kw):
    images = (data.images * 255).round().to(torch.uint8)
    stage2 = AFRDataset(images, data.labels, progress=False, target_size=12)
    return AFRLoader(loader_of(data), stage2, model, **kw)


def test_afr_loader_refreshes_on_schedule_with_the_epoch_befores_accuracy(monkeypatch):
    torch.manual_seed(0)
    data, model = Images(), Net()
    before = RunningAccuracy(3)
    before.update(torch.tensor([0, 0, 2]), torch.tensor([0, 1, 2]))  # 2 / 3, class 1 wrong
    stage2 = afr_loader(data, model, refresh_every=2, running=before)
    seen = []
    real = stage2.stage2.refresh

    def spy(model, device=None, class_accuracy=None, train_accuracy=None, mix=None):
        seen.append((stage2.epoch, class_accuracy.tolist(), train_accuracy))
        return real(
            model,
            device=device,
            class_accuracy=class_accuracy,
            train_accuracy=train_accuracy,
            mix=mix,
        )

    monkeypatch.setattr(stage2.stage2, "refresh", spy)
    counted = []
    for epoch in range(5):
        stage2.set_epoch(epoch)
        for batch in stage2:
            stage2.observe(model(batch.x))
        counted.append(stage2.accuracy())
    assert [s[0] for s in seen] == [0, 2, 4] and stage2.refreshes == 3
    assert seen[0][1] == [1.0, 0.0, 1.0] and seen[0][2] == pytest.approx(2 / 3)
    assert seen[1][1] == pytest.approx(counted[1][0].tolist(), nan_ok=True)
    assert seen[1][2] == pytest.approx(counted[1][1])
    assert stage2.report.generation == 3 and stage2.refresh_seconds > 0
    # the dose is the loader's mixer's: it hands it to the refresh, the set keeps no mixer
    assert stage2.report.mix_p == stage2.mixer.p == 0.25 and not hasattr(stage2.stage2, "mixer")


def test_afr_loader_draws_from_the_refreshed_set():
    torch.manual_seed(0)
    data, model = Images(), Net()
    stage2 = afr_loader(data, model, mixer=CutMixBalancer(p=1.0), refresh_every=1)
    assert isinstance(stage2.balanced.sampler, DistributedSampler)
    assert stage2.balanced.persistent_workers is False
    assert len(stage2.balanced.dataset) == 3 * 12
    drawn = torch.zeros(3)
    for epoch in range(3):
        stage2.set_epoch(epoch)
        assert stage2.balanced.sampler.epoch == epoch
        for batch in stage2:
            assert batch.x.shape == (6, 3, 20, 20)
            drawn += torch.bincount(batch.y_b, minlength=3)
    assert drawn.min() > 0 and stage2.stage2.is_adversarial.any()


def test_afr_loader_manual_refresh_is_not_repeated_and_state_resumes(tmp_path):
    torch.manual_seed(0)
    data, model = Images(), Net()
    stage2 = afr_loader(data, model, refresh_every=2)
    stage2.refresh()
    assert not stage2.due()
    for batch in stage2:
        stage2.observe(model(batch.x))
    assert stage2.refreshes == 1 and stage2.epoch == 1
    torch.save(stage2.state_dict(), tmp_path / "state.pt")
    resumed = afr_loader(data, model, refresh_every=2)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=False))
    assert resumed.epoch == 1 and resumed.refreshes == 1 and not resumed.due()
    assert torch.equal(resumed.stage2.is_adversarial, stage2.stage2.is_adversarial)
    assert torch.equal(resumed.running.seen, stage2.running.seen)
    resumed.set_epoch(2)
    assert resumed.due()


def test_afr_loader_rejects_bad_input():
    data, model = Images(), Net()
    with pytest.raises(TypeError, match="AFRDataset"):
        AFRLoader(loader_of(data), data, model)
    with pytest.raises(ValueError, match="refresh_every"):
        afr_loader(data, model, refresh_every=0)
    with pytest.raises(TypeError, match="model"):
        afr_loader(data, "model")
    with pytest.raises(ValueError, match="classes"):
        afr_loader(data, model, running=RunningAccuracy(5))
    with pytest.raises(TypeError, match="running"):
        afr_loader(data, model, running=[0.5, 0.5, 0.5])


def test_afr_loader_takes_a_lazy_dataset_and_the_stage1_loader():
    """A user's Dataset (read lazily by AFRDataset) and the stage-1 loader's accuracy."""
    torch.manual_seed(0)
    data, model = Images(size=24), Net()
    stage1 = BalancedMixLoader(loader_of(data))
    for batch in stage1:
        stage1.observe(model(batch.x))
    stage2 = AFRLoader(
        loader_of(data), AFRDataset(data, progress=False), model, running=stage1, refresh_every=1
    )
    batch = next(iter(stage2))
    assert batch.x.shape == (6, 3, 24, 24) and stage2.refreshes == 1
    assert stage2.report.train_accuracy == pytest.approx(stage1.accuracy()[1])


def test_mixing_can_pause_without_touching_the_coin():
    source = Counting()
    mixer = CutMixBalancer(p=1.0)
    mixed = BalancedMixLoader(loader_of(Images()), mixer, balanced=source, mixing=False)
    state = mixer.state_dict()["generator"]
    assert all(b.lam == 1.0 for b in mixed) and source.taken == 0
    assert torch.equal(mixer.state_dict()["generator"], state)
    mixed.mixing = True
    assert all(b.y_b is not b.y_a for b in mixed) and source.taken == len(mixed)


def test_afr_loader_takes_the_running_accuracy_as_a_pair():
    torch.manual_seed(0)
    data, model = Images(), Net()
    stage2 = afr_loader(data, model, running=([0.5, 0.25, 1.0], 0.6))
    stage2.refresh()
    assert stage2.report.train_accuracy == pytest.approx(0.6)
    with pytest.raises(ValueError, match="class accuracies"):
        afr_loader(data, model, running=([0.5, 0.5], 0.5))


def test_afr_loader_leaves_the_refresh_to_the_caller_when_asked():
    torch.manual_seed(0)
    data, model = Images(), Net()
    stage2 = afr_loader(data, model, auto_refresh=False)
    next(iter(stage2))
    assert stage2.refreshes == 0 and stage2.due()
    stage2.refresh()
    assert stage2.refreshes == 1 and not stage2.due()


def test_the_balanced_stream_draws_every_batch_from_the_afr_set():
    torch.manual_seed(0)
    data, model = Images(), Net()
    literal = afr_loader(data, model, mixer=CutMixBalancer(p=1.0, seed=0))
    balanced = afr_loader(data, model, mixer=CutMixBalancer(p=1.0, seed=0), stream="balanced")
    assert len(balanced) == len(literal) == len(loader_of(data))  # the same budget
    bases, partners = torch.zeros(3), torch.zeros(3)
    for epoch in range(4):
        balanced.set_epoch(epoch)
        for x, y_a, y_b, lam in balanced:
            assert lam < 1.0 and x.shape[1:] == (3, 20, 20)
            bases += torch.bincount(y_a, minlength=3)
            partners += torch.bincount(y_b, minlength=3)
            balanced.observe(model(x))
    # the base images come from the class-balanced set, the partners from the long tail
    assert bases.min() / bases.max() > 0.5 and partners[2] / partners[0] < 0.5
    # the dose counts what stays of the set's images: 1 x (1 - p E[1 - lam]) x share
    share = balanced.report.total_adversarial_share
    assert balanced.report.mix_p == 1.0
    assert balanced.report.dose == pytest.approx((1 - literal.dose_mix()[1]) * share)
    with pytest.raises(ValueError, match="must not be in_batch"):
        BalancedMixLoader(loader_of(data), MixUpBalancer(p=1.0, in_batch=True), stream="balanced")
    with pytest.raises(ValueError, match="stream must be one of"):
        afr_loader(data, model, stream="uniform")
