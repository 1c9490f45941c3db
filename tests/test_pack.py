"""benchmarks.pack: a lossless, checksummed data file that reproduce --data reads."""

import numpy as np
import pytest
import torch
from conftest import cifar10_root, needs_cifar10

from afr_aug.bench import pack, pack_format
from afr_aug.bench.data import DataError, load_data


def test_image_codec_is_lossless_on_edge_values():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(5, 3, 7, 9), dtype=np.uint8)
    x[0] = 0
    x[1] = 255
    x[2, :, ::2] = 255  # the largest jumps between neighbours
    res = pack_format.encode_images(x)
    assert res.dtype == np.uint8 and res.shape == x.shape
    assert np.array_equal(pack_format.decode_images(res), x)
    # a smooth image gives mostly-zero residuals: that is where the compression comes from
    smooth = np.tile(np.arange(32, dtype=np.uint8), (1, 3, 32, 1))
    assert (pack_format.encode_images(smooth)[..., 1:, 1:] == 0).all()


def test_single_channel_and_bad_input():
    x = np.arange(2 * 1 * 4 * 4, dtype=np.uint8).reshape(2, 1, 4, 4)
    assert np.array_equal(pack_format.decode_images(pack_format.encode_images(x)), x)
    with pytest.raises(ValueError, match="uint8"):
        pack_format.encode_images(x.astype(np.float32))


def test_pack_round_trip_checksum_and_damage(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 256, (6, 3, 8, 8), dtype=np.uint8),
        "y_train": np.array([0, 0, 0, 1, 1, 2]),
        "x_test": rng.integers(0, 256, (3, 3, 8, 8), dtype=np.uint8),
        "y_test": np.array([2, 1, 0]),
    }
    path = tmp_path / "d.afrpack"
    digest = pack_format.write_pack(path, arrays, {"dataset": "toy"})
    assert digest == pack_format.file_sha256(path) and len(digest) == 64
    got, meta = pack_format.read_pack(path)
    assert meta == {"dataset": "toy"}
    for k in arrays:
        assert np.array_equal(got[k], arrays[k])
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0xFF  # flip bits in the last stream
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="damaged"):
        pack_format.read_pack(path)
    (tmp_path / "other").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not an afr-aug data pack"):
        pack_format.read_pack(tmp_path / "other")


@needs_cifar10
def test_cifar10_lt_pack_equals_the_folder_and_fits(cifar10_lt_pack):
    out = cifar10_lt_pack
    assert out.stat().st_size <= 50e6
    a = load_data("cifar10-lt", cifar10_root())
    b = load_data("cifar10-lt", pack=out)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, key), getattr(b, key))
    assert a.class_counts == b.class_counts and a.classes == b.classes
    with pytest.raises(DataError, match="cifar100-lt"):
        load_data("cifar100-lt", pack=out)


def test_command_line_prints_the_sha256(tmp_path, capsys, monkeypatch):
    arrays = {
        "x_train": np.zeros((4, 3, 4, 4), np.uint8),
        "y_train": np.array([0, 0, 0, 1]),
        "x_test": np.zeros((2, 3, 4, 4), np.uint8),
        "y_test": np.array([0, 1]),
    }

    def fake_pack(dataset, out, root, ratio, download):
        assert (dataset, ratio, download) == ("cifar100-lt", 50.0, True)
        return pack_format.write_pack(out, arrays, {"dataset": dataset})

    monkeypatch.setattr(pack, "pack_dataset", fake_pack)
    out = tmp_path / "p.afrpack"
    assert (
        pack.main(
            ["--dataset", "cifar100-lt", "--imbalance-ratio", "50", "--download", "--out", str(out)]
        )
        == 0
    )
    assert pack_format.file_sha256(out) in capsys.readouterr().out


def test_missing_data_names_the_flags(tmp_path):
    with pytest.raises(DataError, match="--download"):
        load_data("cifar10-lt", tmp_path / "nothing-here")
