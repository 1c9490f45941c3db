import pytest
import torch

from afr_aug.store import AdversarialStore


def rows(n, value=0):
    return torch.full((n, 1, 2, 2), value, dtype=torch.uint8) + torch.arange(
        n, dtype=torch.uint8
    ).view(n, 1, 1, 1)


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_generations_written_in_any_order_read_back(tmp_path, where):
    store = AdversarialStore("memory" if where == "memory" else tmp_path)
    for g in range(1, 4):
        store.begin(4, (1, 2, 2))
        store.write(torch.tensor([2, 3]), rows(2, 10 * g + 2))
        store.write(torch.tensor([1, 0]), rows(2, 10 * g))  # out of order
        store.finish()
        assert store.generation == g
        assert store.rows(slice(None))[:, 0, 0, 0].tolist() == [
            10 * g + 1,
            10 * g,
            10 * g + 2,
            10 * g + 3,
        ]
    if where == "disk":  # the last two files kept
        assert len(list(tmp_path.iterdir())) == 2 and store.state_dict()["rows"] is None


def test_state_moves_between_memory_and_disk_with_one_token(tmp_path):
    mem = AdversarialStore("memory")
    mem.begin(3, (1, 2, 2))
    mem.write(torch.arange(3), rows(3, 5))
    mem.finish()
    disk = AdversarialStore(tmp_path)
    disk.load_state_dict(mem.state_dict())
    assert disk.token is not None and disk.file.startswith(str(tmp_path))
    assert torch.equal(disk.rows(slice(None)), mem.rows(slice(None)))
    back = AdversarialStore("memory")
    back.load_state_dict(disk.state_dict())
    assert torch.equal(back.rows(torch.tensor([2, 0])), mem.rows(torch.tensor([2, 0])))


def test_bad_rows_and_state(tmp_path):
    store = AdversarialStore("memory")
    store.begin(2, (1, 2, 2))
    with pytest.raises(ValueError, match="uint8"):
        store.write(torch.arange(2), rows(2).float())
    with pytest.raises(ValueError, match="which is missing, not 8 bytes"):
        AdversarialStore(tmp_path).load_state_dict(
            {
                "generation": 1,
                "image_shape": (1, 2, 2),
                "num_rows": 2,
                "token": "x",
                "file": str(tmp_path / "gone.u8"),
                "rows": None,
            }
        )
    with pytest.raises(TypeError, match="directory path"):
        AdversarialStore(3)
