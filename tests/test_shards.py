"""The one rule for what a set of cutout shards holds (survey, cutout side), shared by
training, the catalog build and the evaluation; and JPEG headers read as decode reads them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from imagefixtures import make_blob_shards, solid_jpeg

from hicatalog.cutouts.decode import ImageDecodeError, decode_jpeg, read_jpeg_header
from hicatalog.cutouts.shards import probe_cutouts, write_shard
from hicatalog.schemas import SchemaError


def test_probe_reads_survey_and_most_common_side(tmp_path):
    files = make_blob_shards(str(tmp_path / "a"), 30, size=48, rows_per_shard=10, corrupt=4)
    geo = probe_cutouts(files)
    assert (geo.survey, geo.side_px) == ("sdss", 48)


def _shard(path, surveys, side=32):
    n = len(surveys)
    table = pa.table({
        "object_id": [f"x{i}" for i in range(n)], "ra": np.zeros(n), "dec": np.zeros(n),
        "z": pa.nulls(n, pa.float64()), "survey": surveys,
        "image": pa.array([solid_jpeg(side)] * n, pa.binary()),
    })
    return write_shard(table, str(path), "part", 0)


def test_mixed_surveys_are_refused_with_counts(tmp_path):
    files = [_shard(tmp_path / "a", ["sdss"] * 3), _shard(tmp_path / "b", ["legacy"] * 2)]
    with pytest.raises(SchemaError, match=r"mix surveys \{'legacy': 2, 'sdss': 3\}"):
        probe_cutouts(files)


def test_unknown_survey_is_refused(tmp_path):
    with pytest.raises(SchemaError, match=r"\['hsc'\] are not one of"):
        probe_cutouts([_shard(tmp_path / "a", ["hsc"])])


def test_no_readable_image_is_a_clear_error(tmp_path):
    n = 3
    table = pa.table({
        "object_id": ["a", "b", "c"], "ra": np.zeros(n), "dec": np.zeros(n),
        "z": pa.nulls(n, pa.float64()), "survey": ["sdss"] * n,
        "image": pa.array([b"", b"junk", solid_jpeg(8)[:10]], pa.binary()),
    })
    f = write_shard(table, str(tmp_path), "part", 0)
    with pytest.raises(SchemaError, match="no readable square JPEG among the first 3"):
        probe_cutouts([f])


@pytest.mark.parametrize(
    ("data", "expected", "status"),
    [(b"", None, "empty_image"), (b"GIF89a...", None, "not_jpeg"),
     (solid_jpeg(20, height=10), 20, "wrong_size"), (solid_jpeg(16, "L"), None, "grayscale"),
     (solid_jpeg(16, "CMYK"), None, "bad_mode")],
)
def test_header_statuses_match_decode(data, expected, status):
    for fn in (lambda: read_jpeg_header(data, expected), lambda: decode_jpeg(data, expected)):
        with pytest.raises(ImageDecodeError) as info:
            fn()
        assert info.value.status == status


def test_header_size_without_decoding():
    assert read_jpeg_header(solid_jpeg(40, height=24)) == (40, 24)
