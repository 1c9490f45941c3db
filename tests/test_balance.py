import pytest
import torch

from afr_aug import AFRBalancer, IntraClassSplitter
from afr_aug.models import resnet32

COUNTS = [40, 12, 5]


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(COUNTS)])
    images = torch.randint(0, 256, (len(labels), 3, 32, 32), generator=g, dtype=torch.uint8)
    return images, labels


def test_before_refresh_is_class_balanced_oversampling():
    images, labels = data()
    b = AFRBalancer(images, labels, progress=False)
    assert b.class_sizes().tolist() == [40, 40, 40]
    assert not b.is_adversarial.any()
    for c, n in enumerate(COUNTS):  # every original appears at least once
        src = b.item_index[b.item_labels == c]
        assert set(src.tolist()) == set(torch.nonzero(labels == c).flatten().tolist())


def test_refresh_equal_counts_and_requested_share():
    torch.manual_seed(0)
    images, labels = data()
    model = resnet32(num_classes=3)
    b = AFRBalancer(images, labels, attack_share=0.5, progress=False, batch_size=16,
                    splitter=IntraClassSplitter(threshold=0.8, adaptive=False))
    split = b.refresh(model)
    assert b.class_sizes().tolist() == [40, 40, 40]
    for c in range(3):
        majority = len(split.majority_indices(c))
        adv_c = int((b.is_adversarial & (b.item_labels == c)).sum())
        assert adv_c == round(0.5 * majority)
        # attacked images are majority images of their own class
        src = b.adversarial_source[b.item_index[b.is_adversarial & (b.item_labels == c)]]
        assert (labels[src] == c).all() and not split.minority_mask[src].any()
    # adversarial images are stored compactly and stay within 3/255 of their source
    assert b.adversarial.dtype == torch.uint8
    diff = (b.adversarial.int() - images[b.adversarial_source].int()).abs()
    assert 0 < diff.max() <= 3


def test_items_and_batches_agree_and_mode_kept():
    images, labels = data()
    model = resnet32(num_classes=3).train()
    b = AFRBalancer(images, labels, progress=False)
    b.refresh(model)
    assert model.training
    idx = torch.tensor([0, 5, len(b) - 1, int(torch.nonzero(b.is_adversarial)[0])])
    batch, lab = b.get_batch(idx)
    for k, i in enumerate(idx.tolist()):
        img, y = b[i]
        assert y == int(lab[k]) and torch.allclose(img, batch[k].float() / 255)
    assert img.dtype == torch.float32 and 0 <= img.min() and img.max() <= 1


def test_state_dict_round_trip():
    images, labels = data()
    a = AFRBalancer(images, labels, progress=False, seed=1)
    a.refresh(resnet32(num_classes=3))
    b = AFRBalancer(images, labels, progress=False, seed=2)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.get_batch(torch.arange(len(a)))[0], b.get_batch(torch.arange(len(b)))[0])


def test_dataset_input_and_target_size():
    images, labels = data()
    ds = [(images[i].float() / 255, int(labels[i])) for i in range(len(labels))]
    b = AFRBalancer(ds, progress=False, target_size=10)
    assert b.class_sizes().tolist() == [10, 10, 10]
    assert torch.equal(b.images, images)


def test_bad_input():
    images, labels = data()
    with pytest.raises(ValueError, match="labels are required"):
        AFRBalancer(images)
    with pytest.raises(ValueError, match="labels has 3 entries, images 57"):
        AFRBalancer(images, labels[:3])
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        AFRBalancer(images[0], labels)
    with pytest.raises(ValueError, match="attack_share"):
        AFRBalancer(images, labels, attack_share=1.5)
    with pytest.raises(ValueError, match=r"float images must be in \[0, 1\]"):
        AFRBalancer(images.float(), labels)
    with pytest.raises(ValueError, match="NaN"):
        AFRBalancer(torch.full((2, 3, 4, 4), float("nan")), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        AFRBalancer(images, labels, num_classes=2)
