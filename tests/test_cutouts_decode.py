"""Per-row decoding: every kind of bad image becomes a status, good ones decode to the size."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from imagefixtures import solid_jpeg

from hicatalog.cutouts.decode import ImageDecodeError, decode_batch, decode_jpeg, ends_with_eoi
from hicatalog.cutouts.shards import fingerprint_shards, list_shards, write_shard
from hicatalog.schemas import SchemaError


def test_good_jpeg_decodes_and_downscales():
    arr = decode_jpeg(solid_jpeg(64), expected_size=64)
    assert arr.shape == (64, 64, 3) and arr.dtype == np.uint8
    # the colour the JPEG was made of, everywhere (JPEG rounding aside), also when downscaled
    assert np.abs(arr.astype(int) - [200, 40, 10]).max() < 6
    small = decode_jpeg(solid_jpeg(64), expected_size=64, out_size=16)
    assert small.shape == (16, 16, 3) and np.abs(small.astype(int) - [200, 40, 10]).max() < 6


@pytest.mark.parametrize(
    "data,status",
    [
        (b"", "empty_image"),
        (None, "empty_image"),
        (b"GIF89a....", "not_jpeg"),
        (b"\xff\xd8" + b"\x00" * 500, "corrupt_image"),
        (solid_jpeg(64)[:300], "truncated_image"),
        (solid_jpeg(32), "wrong_size"),
        (solid_jpeg(64, mode="L"), "grayscale"),
    ],
)
def test_bad_images_get_a_status(data, status):
    with pytest.raises(ImageDecodeError) as exc:
        decode_jpeg(data, expected_size=64)
    assert exc.value.status == status


def test_end_marker_check_finds_truncated_files():
    # The GPU path sends files without the end marker to the CPU decoder for their status
    # (nvJPEG decoded a half file as "ok" on an H200).
    good = solid_jpeg(64)
    assert good[-2:] == b"\xff\xd9" and ends_with_eoi(good)
    assert not ends_with_eoi(good[: len(good) // 2]) and not ends_with_eoi(good[:-1])
    assert not ends_with_eoi(b"") and not ends_with_eoi(None)


def test_decode_batch_keeps_every_row():
    batch = decode_batch([solid_jpeg(64), b"", solid_jpeg(64)[:200], solid_jpeg(64)], 64, 16)
    assert batch.images.shape == (4, 3, 16, 16)
    assert batch.ok.tolist() == [True, False, False, True]
    assert batch.status[1] == "empty_image" and batch.error[0] is None
    assert batch.images[1].max() == 0


def test_shards_roundtrip_and_fingerprint(tmp_path):
    t = pa.table({
        "object_id": ["a", "b"], "ra": [1.0, 2.0], "dec": [0.0, 0.0], "z": [0.01, None],
        "survey": ["sdss", "sdss"], "image": pa.array([solid_jpeg(8), solid_jpeg(8)], pa.binary()),
    })
    write_shard(t, str(tmp_path / "c"), "part", 0)
    files = list_shards(str(tmp_path / "c"))
    assert len(files) == 1 and files[0].endswith("part-00000.parquet")
    fp = fingerprint_shards(files)
    write_shard(t.slice(0, 1).set_column(0, "object_id", pa.array(["c"])), str(tmp_path / "c"), "part", 1)
    assert fingerprint_shards(list_shards(str(tmp_path / "c"))) != fp
    with pytest.raises(SchemaError, match="no such file"):
        list_shards(str(tmp_path / "missing"))
    with pytest.raises(SchemaError, match="missing column 'image'"):
        write_shard(t.drop_columns(["image"]), str(tmp_path / "d"), "part", 0)
