"""Structural inspection of TIFFs: every image found, every byte accounted for, hostile bytes contained."""

from __future__ import annotations

import os
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.enums import Resampling
from rasterio.transform import from_origin

from rspolicy.errors import ProductReadError
from rspolicy.readers.tiffstruct import MAX_IMAGES, MAX_TAG_BYTES, ImageKind, TiffStructure, inspect_tiff

PROFILE: dict[str, Any] = {
    "driver": "GTiff", "width": 260, "height": 300, "count": 3, "dtype": "uint16",
    "crs": "EPSG:32650", "transform": from_origin(500000, 4000000, 0.5, 0.5),
}


def pixels(bands: int = 3, height: int = 300, width: int = 260) -> np.ndarray:
    # Never zero, so any byte of pixel data left outside the structure is visibly non-zero.
    return (np.random.default_rng(7).integers(1, 60000, (bands, height, width))).astype("uint16")


def gdal_tiff(path: Path, **creation: Any) -> Path:
    with rasterio.open(path, "w", **PROFILE, **creation) as ds:
        ds.write(pixels())
    return path


def plain_tiff(path: Path, data: np.ndarray, **options: Any) -> Path:
    tifffile.imwrite(path, data, metadata=None, **options)
    return path


def tag_of(path: Path, name: str, page: int = 0) -> tifffile.TiffTag:
    with tifffile.TiffFile(path) as tif:
        return tif.pages[page].tags[name]  # type: ignore[union-attr]


def packed(tag: tifffile.TiffTag, value: int) -> bytes:
    """One value in the tag's own field type (SHORT or LONG), little-endian as tifffile writes."""
    return struct.pack({3: "<H", 4: "<I"}[int(tag.dtype)], value)


def item(tag: tifffile.TiffTag) -> int:
    return {3: 2, 4: 4}[int(tag.dtype)]


def patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def kinds(structure: TiffStructure) -> list[tuple[str, ImageKind, int, int]]:
    return [(i.where, i.kind, i.width, i.height) for i in structure.images]


def assert_clean(structure: TiffStructure) -> None:
    assert structure.byte_exact, structure.rebuild_reasons()
    assert structure.rebuild_reasons() == ()
    assert (structure.unaccounted, structure.unknown_tags, structure.oversized_tags, structure.damage) == ((),) * 4


# --- what GDAL writes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("creation", [
    {},
    {"tiled": True, "blockxsize": 128, "blockysize": 128},
    {"tiled": True, "blockxsize": 128, "blockysize": 128, "compress": "deflate", "predictor": 2},
    {"compress": "deflate"},
    {"interleave": "band"},
    {"BIGTIFF": "YES"},
], ids=["stripped", "tiled", "tiled-deflate-predictor", "stripped-deflate", "band-interleaved", "bigtiff"])
def test_plain_gdal_geotiffs_are_byte_exact_with_one_main_image(tmp_path: Path, creation: dict[str, Any]) -> None:
    path = gdal_tiff(tmp_path / "a.tif", **creation)
    structure = inspect_tiff(path)
    assert_clean(structure)
    assert structure.bigtiff == ("BIGTIFF" in creation)
    assert structure.file_size == path.stat().st_size
    (main,) = structure.images
    assert (main.where, main.kind, main.width, main.height, main.samples, main.bits) == (
        "IFD 0", ImageKind.MAIN, 260, 300, 3, 16)
    assert main.own_georeferencing and main.ifd_index == 0


def test_gdal_internal_overviews_are_found_as_overviews(tmp_path: Path) -> None:
    path = gdal_tiff(tmp_path / "a.tif", compress="deflate")
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 4], Resampling.average)
    structure = inspect_tiff(path)
    assert_clean(structure)
    assert kinds(structure) == [("IFD 0", ImageKind.MAIN, 260, 300), ("IFD 1", ImageKind.OVERVIEW, 130, 150),
                                ("IFD 2", ImageKind.OVERVIEW, 65, 75)]
    assert [i.ifd_index for i in structure.images] == [0, 1, 2]
    assert [i.own_georeferencing for i in structure.images] == [True, False, False]


def test_gdal_internal_mask_and_its_overview_are_found_as_masks(tmp_path: Path) -> None:
    path = tmp_path / "masked.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **PROFILE, tiled=True,
                                                                   compress="deflate") as ds:
        ds.write(pixels())
        mask = np.full((300, 260), 255, "uint8")
        mask[:10] = 0
        ds.write_mask(mask)
        ds.build_overviews([2], Resampling.average)
    structure = inspect_tiff(path)
    assert_clean(structure)
    assert kinds(structure) == [("IFD 0", ImageKind.MAIN, 260, 300), ("IFD 1", ImageKind.MASK, 260, 300),
                                ("IFD 2", ImageKind.OVERVIEW, 130, 150), ("IFD 3", ImageKind.MASK, 130, 150)]
    assert structure.images[1].bits == 1


def test_gdal_sparse_blocks_are_not_damage(tmp_path: Path) -> None:
    path = tmp_path / "sparse.tif"
    with rasterio.open(path, "w", **PROFILE, tiled=True, blockxsize=128, blockysize=128, SPARSE_OK=True) as ds:
        ds.write(pixels()[:, :128, :128], window=((0, 128), (0, 128)))
    with tifffile.TiffFile(path) as tif:
        assert 0 in tif.pages[0].dataoffsets  # type: ignore[union-attr]  # really sparse
    assert_clean(inspect_tiff(path))


def test_cog_ghost_area_and_tile_leaders_are_unaccounted_but_not_damage(tmp_path: Path) -> None:
    path = tmp_path / "cog.tif"
    with rasterio.open(path, "w", **{**PROFILE, "driver": "COG"}, BLOCKSIZE=128) as ds:
        ds.write(pixels())
    structure = inspect_tiff(path)
    assert [i.kind for i in structure.images] == [ImageKind.MAIN, ImageKind.OVERVIEW, ImageKind.OVERVIEW]
    assert structure.damage == () and structure.unknown_tags == ()
    assert not structure.byte_exact
    ghost_offset, ghost_length = structure.unaccounted[0]
    assert ghost_offset == 8
    with open(path, "rb") as handle:
        handle.seek(8)
        assert handle.read(ghost_length).startswith(b"GDAL_STRUCTURAL_METADATA_SIZE=")


# --- images tifffile writes -----------------------------------------------------------------------------------------


def test_every_page_of_a_multipage_tiff_is_listed_with_its_size(tmp_path: Path) -> None:
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.ones((20, 30), "uint8"), metadata=None)
        tif.write(np.ones((200, 300), "uint16"), metadata=None)
    structure = inspect_tiff(path)
    assert_clean(structure)
    assert kinds(structure) == [("IFD 0", ImageKind.MAIN, 30, 20), ("IFD 1", ImageKind.PAGE, 300, 200)]
    assert [i.bits for i in structure.images] == [8, 16]
    assert [i.ifd_index for i in structure.images] == [0, 1]
    assert not any(i.own_georeferencing for i in structure.images)


def test_subifd_images_are_found(tmp_path: Path) -> None:
    path = tmp_path / "subifds.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.ones((64, 64), "uint8"), subifds=2, metadata=None)
        tif.write(np.ones((32, 32), "uint8"), subfiletype=1, metadata=None)
        tif.write(np.ones((128, 128), "uint8"), metadata=None)  # a finer image hidden as a SubIFD
    structure = inspect_tiff(path)
    assert_clean(structure)
    assert kinds(structure) == [("IFD 0", ImageKind.MAIN, 64, 64), ("IFD 0 SubIFD 0", ImageKind.OVERVIEW, 32, 32),
                                ("IFD 0 SubIFD 1", ImageKind.SUBIMAGE, 128, 128)]
    assert [i.ifd_index for i in structure.images] == [0, None, None]


# --- unaccounted bytes ----------------------------------------------------------------------------------------------


def test_bytes_appended_after_the_structure_are_unaccounted(tmp_path: Path) -> None:
    path = gdal_tiff(tmp_path / "a.tif")
    size = path.stat().st_size
    with open(path, "ab") as handle:
        handle.write(b"\x01" * 1000)
    structure = inspect_tiff(path)
    assert structure.unaccounted == ((size, 1000),)
    assert structure.damage == () and not structure.byte_exact
    (reason,) = structure.rebuild_reasons()
    assert f"1000 bytes after the end of the TIFF structure (from offset {size})" in reason


def test_a_large_appended_image_is_unaccounted_without_being_read(tmp_path: Path) -> None:
    path = gdal_tiff(tmp_path / "a.tif")
    size = path.stat().st_size
    with open(path, "ab") as handle:
        handle.truncate(size + 8 * 1024 * 1024)  # zeros, but too many to read: counted unread
    assert inspect_tiff(path).unaccounted == ((size, 8 * 1024 * 1024),)


def test_appended_zero_padding_holds_nothing(tmp_path: Path) -> None:
    path = gdal_tiff(tmp_path / "a.tif")
    with open(path, "ab") as handle:
        handle.write(bytes(3))
    assert_clean(inspect_tiff(path))


def shortened_first_strip(path: Path, data: np.ndarray, by: int) -> tuple[int, int]:
    """Make the first strip claim ``by`` fewer bytes: its tail becomes a hole. Returns the hole."""
    plain_tiff(path, data, rowsperstrip=4)
    offsets, counts = tag_of(path, "StripOffsets"), tag_of(path, "StripByteCounts")
    first_offset, first_count = int(offsets.value[0]), int(counts.value[0])
    patch(path, counts.valueoffset, packed(counts, first_count - by))
    return first_offset + first_count - by, by


def test_a_non_zero_hole_inside_the_file_is_unaccounted(tmp_path: Path) -> None:
    path = tmp_path / "hole.tif"
    hole = shortened_first_strip(path, pixels(1, 40, 50)[0], 16)
    structure = inspect_tiff(path)
    assert structure.unaccounted == (hole,)
    assert structure.damage == () and not structure.byte_exact
    (reason,) = structure.rebuild_reasons()
    assert f"16 bytes at offset {hole[0]}" in reason


def test_a_zero_hole_inside_the_file_is_padding(tmp_path: Path) -> None:
    data = pixels(1, 40, 50)[0]
    data[3, -8:] = 0  # the last 16 bytes of the first 4-row strip
    shortened_first_strip(tmp_path / "pad.tif", data, 16)
    assert_clean(inspect_tiff(tmp_path / "pad.tif"))


# --- tags -----------------------------------------------------------------------------------------------------------


def test_tags_outside_the_allow_list_are_unknown(tmp_path: Path) -> None:
    path = plain_tiff(tmp_path / "tags.tif", np.ones((8, 8), "uint8"), extratags=[
        (700, 1, 20, b"<x:xmpmeta>........", True),  # XMP
        (34675, 7, 8, b"ICCprof!", True),  # ICC profile
        (65000, 4, 1, 7, True),  # private
    ])
    structure = inspect_tiff(path)
    assert structure.unknown_tags == ("IFD 0 tag 700 (XMP)", "IFD 0 tag 34675 (InterColorProfile)", "IFD 0 tag 65000")
    assert structure.damage == () and structure.unaccounted == () and not structure.byte_exact
    assert "3 tag(s) outside the known TIFF/GeoTIFF/GDAL tags" in structure.rebuild_reasons()[0]


def test_oversized_known_text_tag_is_reported(tmp_path: Path) -> None:
    path = plain_tiff(tmp_path / "big.tif", np.ones((8, 8), "uint8"), description="x" * (MAX_TAG_BYTES + 10))
    structure = inspect_tiff(path)
    assert structure.oversized_tags == (f"IFD 0 tag 270 (ImageDescription) ({MAX_TAG_BYTES + 11} bytes)",)
    assert structure.unknown_tags == () and not structure.byte_exact


# --- damage ---------------------------------------------------------------------------------------------------------


def test_a_truncated_file_is_damaged(tmp_path: Path) -> None:
    path = gdal_tiff(tmp_path / "a.tif")
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    structure = inspect_tiff(path)
    assert len(structure.images) == 1 and not structure.byte_exact
    assert any("extend beyond the end of the file" in line for line in structure.damage)


def test_a_strip_offset_beyond_the_end_of_the_file_is_damage(tmp_path: Path) -> None:
    path = plain_tiff(tmp_path / "a.tif", pixels(1, 40, 50)[0], rowsperstrip=4)
    offsets = tag_of(path, "StripOffsets")
    patch(path, offsets.valueoffset + item(offsets) * 3, packed(offsets, path.stat().st_size + 100))
    (line,) = inspect_tiff(path).damage
    assert "1 of 10 strips extend beyond the end of the file (first: strip 3" in line


def test_offset_zero_with_bytes_is_damage(tmp_path: Path) -> None:
    path = plain_tiff(tmp_path / "a.tif", pixels(1, 40, 50)[0], rowsperstrip=4)
    offsets = tag_of(path, "StripOffsets")
    patch(path, offsets.valueoffset + item(offsets), packed(offsets, 0))
    (line,) = inspect_tiff(path).damage
    assert "1 strip(s) have offset 0 but hold 400 bytes" in line


def test_a_strip_count_that_does_not_fit_the_image_is_damage(tmp_path: Path) -> None:
    path = plain_tiff(tmp_path / "a.tif", pixels(1, 40, 50)[0], rowsperstrip=4)
    rows = tag_of(path, "RowsPerStrip")
    patch(path, rows.valueoffset, packed(rows, 8))
    (line,) = inspect_tiff(path).damage
    assert "10 strip offsets and 10 byte counts for a 50 x 40 image that needs 5" in line


def test_an_ifd_loop_neither_hangs_nor_repeats(tmp_path: Path) -> None:
    path = tmp_path / "loop.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.ones((8, 8), "uint8"), metadata=None)
        tif.write(np.ones((8, 8), "uint8"), metadata=None)
    with tifffile.TiffFile(path) as tif:
        first, second = tif.pages[0].offset, tif.pages[1].offset
        tags = len(tif.pages[1].tags)
    patch(path, second + 2 + 12 * tags, struct.pack("<I", first))  # IFD 1's next pointer back to IFD 0
    structure = inspect_tiff(path)
    assert len(structure.images) == 2
    assert structure.damage == (f"IFD loop: IFD 2 points back to the IFD at offset {first}",)


def test_a_next_ifd_beyond_the_end_of_the_file_is_damage(tmp_path: Path) -> None:
    path = plain_tiff(tmp_path / "a.tif", np.ones((8, 8), "uint8"))
    with tifffile.TiffFile(path) as tif:
        ifd, tags = tif.pages[0].offset, len(tif.pages[0].tags)
    patch(path, ifd + 2 + 12 * tags, struct.pack("<I", 10**6))
    assert inspect_tiff(path).damage == ("IFD 1: its IFD at offset 1000000 lies beyond the end of the file",)


def test_too_many_images_is_damage_not_a_long_walk(tmp_path: Path) -> None:
    path = tmp_path / "many.tif"
    with tifffile.TiffWriter(path) as tif:
        for _ in range(MAX_IMAGES + 5):
            tif.write(np.zeros((1, 1), "uint8"), metadata=None)
    structure = inspect_tiff(path)
    assert len(structure.images) == MAX_IMAGES
    assert f"too many images (more than {MAX_IMAGES} IFDs)" in structure.damage


# --- not a TIFF -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [
    b"",
    b"\x00" * 100,
    b"this is not an image at all, only words\n" * 20,
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x00\x00\x00\x00:~\x9bU",
    b"II*\x00\xff\xff\xff\x7f",  # first IFD far beyond the end
    b"MM\x00+\x00\x08\x00\x00",  # a BigTIFF header cut short
], ids=["empty", "zeros", "text", "png", "ifd-beyond-eof", "short-bigtiff"])
def test_what_is_not_a_tiff_is_a_product_read_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.tif"
    path.write_bytes(content)
    with pytest.raises(ProductReadError) as caught:
        inspect_tiff(path)
    assert caught.value.path == str(path) and "\n" not in caught.value.problem


def test_a_missing_file_is_a_product_read_error(tmp_path: Path) -> None:
    with pytest.raises(ProductReadError, match="cannot be read"):
        inspect_tiff(tmp_path / "absent.tif")


# --- hostile bytes --------------------------------------------------------------------------------------------------


def _seed_tiff() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "seed.tif"
        with tifffile.TiffWriter(path) as tif:
            tif.write(np.arange(96, dtype="uint8").reshape(8, 12), subifds=1, metadata=None, rowsperstrip=2,
                      extratags=[(33550, 12, 3, (0.5, 0.5, 0.0), True)])
            tif.write(np.ones((4, 6), "uint8"), subfiletype=1, metadata=None)
            tif.write(np.ones((16, 16), "uint16"), tile=(16, 16), metadata=None)
        return path.read_bytes()


SEED = _seed_tiff()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(st.tuples(st.integers(0, len(SEED) - 1), st.integers(0, 255)), min_size=1, max_size=12),
    cut=st.one_of(st.none(), st.integers(0, len(SEED))),
    tail=st.binary(max_size=16),
)
def test_random_mutations_give_a_structure_or_a_product_read_error(
        tmp_path: Path, edits: list[tuple[int, int]], cut: int | None, tail: bytes) -> None:
    data = bytearray(SEED)
    for position, value in edits:
        data[position] = value
    data = data[:cut] + tail if cut is not None else data + tail
    path = tmp_path / "mutant.tif"
    path.write_bytes(bytes(data))
    started = time.perf_counter()
    try:
        structure = inspect_tiff(path)
    except ProductReadError as exc:
        assert exc.path == str(path) and "\n" not in exc.problem
    else:
        assert structure.file_size == len(data)
        assert structure.byte_exact == (structure.rebuild_reasons() == ())
        assert all(offset >= 0 and length > 0 and offset + length <= len(data)
                   for offset, length in structure.unaccounted)
    assert time.perf_counter() - started < 1.0


# --- speed on full-size scenes --------------------------------------------------------------------------------------


def sparse_scene(path: Path, width: int, height: int, tile: int | None) -> Path:
    """A classic TIFF shaped like a full scene (uint16, one band) whose pixel area is a sparse hole of zeros."""
    if tile:
        blocks = -(-width // tile) * -(-height // tile)
        block_bytes = tile * tile * 2
        layout = [(322, 3, 1, tile), (323, 3, 1, tile)]
        offsets_tag, counts_tag = 324, 325
    else:
        blocks, block_bytes = height, width * 2
        layout = [(278, 4, 1, 1)]
        offsets_tag, counts_tag = 273, 279
    entries = sorted([(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 16), (259, 3, 1, 1), (262, 3, 1, 1),
                      (277, 3, 1, 1), (offsets_tag, 4, blocks, None), (counts_tag, 4, blocks, None), *layout])
    ifd_size = 2 + 12 * len(entries) + 4
    offsets_at = 8 + ifd_size
    counts_at = offsets_at + 4 * blocks
    data_at = counts_at + 4 * blocks
    offsets = data_at + block_bytes * np.arange(blocks, dtype="<u4")
    counts = np.full(blocks, block_bytes, "<u4")
    ifd = struct.pack("<H", len(entries))
    for code, kind, count, value in entries:
        pointer = {offsets_tag: offsets_at, counts_tag: counts_at}.get(code, value)
        ifd += struct.pack("<HHI", code, kind, count) + (
            struct.pack("<HH", pointer, 0) if kind == 3 else struct.pack("<I", pointer))
    ifd += struct.pack("<I", 0)
    with open(path, "wb") as handle:
        handle.write(b"II*\x00" + struct.pack("<I", 8) + ifd + offsets.tobytes() + counts.tobytes())
        handle.truncate(data_at + blocks * block_bytes)
    return path


@pytest.mark.parametrize(("width", "height", "tile", "blocks"), [
    (29200, 27620, None, 27620),
    (30000, 30000, 256, 118 * 118),
], ids=["stripped-29200x27620", "tiled-30000x30000"])
def test_a_full_size_scene_inspects_in_milliseconds(tmp_path: Path, width: int, height: int, tile: int | None,
                                                    blocks: int) -> None:
    path = sparse_scene(tmp_path / "scene.tif", width, height, tile)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages[0].dataoffsets) == blocks  # type: ignore[union-attr]
    structure = inspect_tiff(path)
    assert_clean(structure)
    assert kinds(structure) == [("IFD 0", ImageKind.MAIN, width, height)]
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        inspect_tiff(path)
        timings.append(time.perf_counter() - started)
    # About 2 ms on a workstation; the bound leaves room for a loaded CI runner.
    assert min(timings) < 0.05, timings


def test_a_first_image_flagged_as_overview_is_damage(tmp_path: Path) -> None:
    path = plain_tiff(tmp_path / "a.tif", np.ones((8, 8), "uint8"), subfiletype=1)
    structure = inspect_tiff(path)
    assert [i.kind for i in structure.images] == [ImageKind.OVERVIEW]
    assert structure.damage == ("IFD 0: the first image of the file is flagged overview, not full resolution",)


def test_a_tag_with_an_absurd_count_is_damage_and_not_read(tmp_path: Path) -> None:
    path = plain_tiff(tmp_path / "a.tif", np.ones((8, 8), "uint8"))
    width = tag_of(path, "ImageWidth")
    patch(path, width.offset + 4, struct.pack("<I", 0x3FFFFFFF))  # count of ImageWidth values
    damage = inspect_tiff(path).damage
    assert any("tag 256 (ImageWidth) data" in line and "lies outside the file" in line for line in damage)


def test_a_fifo_or_folder_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    with pytest.raises(ProductReadError, match="not a regular file"):
        inspect_tiff(fifo)
    with pytest.raises(ProductReadError):
        inspect_tiff(tmp_path)


def test_gdal_rewriting_compressed_blocks_in_place_leaves_old_pixels_unaccounted(tmp_path: Path) -> None:
    path = gdal_tiff(tmp_path / "a.tif", compress="deflate", tiled=True, blockxsize=128, blockysize=128)
    with rasterio.open(path, "r+") as ds:  # recompressed blocks that grew move to the end; old ones stay
        ds.write(np.random.default_rng(1).integers(0, 65535, (3, 300, 260)).astype("uint16"))
    structure = inspect_tiff(path)
    assert structure.damage == () and structure.unknown_tags == ()
    assert structure.unaccounted and all(offset + length < structure.file_size
                                         for offset, length in structure.unaccounted)
    assert "may hold old data" in structure.rebuild_reasons()[0]


def test_a_tag_given_twice_is_damage(tmp_path: Path) -> None:
    path = plain_tiff(tmp_path / "a.tif", np.ones((8, 8), "uint8"), rowsperstrip=8)
    patch(path, tag_of(path, "RowsPerStrip").offset, struct.pack("<H", 277))
    assert "IFD 0: tag 277 (SamplesPerPixel) appears twice" in inspect_tiff(path).damage


def test_a_tag_of_unknown_field_type_is_damage(tmp_path: Path) -> None:
    path = plain_tiff(tmp_path / "a.tif", np.ones((8, 8), "uint8"))
    patch(path, tag_of(path, "Compression").offset + 2, struct.pack("<H", 99))
    assert "IFD 0: tag 259 (Compression) has unknown field type 99" in inspect_tiff(path).damage
