"""common.io.check_manifest: a restart re-checks only new or changed files; a damaged manifest is ignored."""
import os

import pytest

from common.io import data_check, pixel_budget
from common.io.check_manifest import CheckManifest


def _folder(tmp_path, count=6):
    from PIL import Image

    paths = []
    for i in range(count):
        path = str(tmp_path / f"img_{i}.png")
        Image.new("RGB", (8 + i, 5), (i, 0, 0)).save(path)
        paths.append(path)
    return paths


def _counting(calls):
    def inspect(path):
        calls.append(path)
        return data_check.inspect_image(path)
    return inspect


def test_second_check_reuses_every_verdict_and_rechecks_changed_files(tmp_path):
    paths = _folder(tmp_path)
    open(paths[0], "wb").write(b"not an image")
    manifest, calls = CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path)), []
    first = manifest.check(paths, _counting(calls))
    assert len(calls) == 6 and first[0][0] == "not a JPEG/PNG/GIF/BMP/WebP image" and first[3] == (None, (11, 5))
    calls.clear()
    assert CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path)).check(paths, _counting(calls)) == first
    assert calls == []
    with open(paths[2], "r+b") as f:  # truncated: a new size
        f.truncate(30)
    new = str(tmp_path / "new.png")
    open(new, "wb").write(b"")
    manifest = CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path))
    again = manifest.check(paths + [new], _counting(calls))
    assert sorted(calls) == sorted([paths[2], new]) and (manifest.reused, manifest.checked) == (5, 2)
    assert again[2][0].startswith("truncated PNG") and again[6][0] == "empty file (0 bytes)"


def test_another_pixel_budget_or_a_damaged_manifest_checks_everything(tmp_path, caplog):
    paths = _folder(tmp_path, 3)
    manifest = CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path))
    manifest.check(paths)
    pixel_budget.set_max_pixels(30)  # 8x5 = 40 pixels
    try:
        calls = []
        verdicts = CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path)).check(paths, _counting(calls))
        assert len(calls) == 3 and "above the 0 MP budget" in verdicts[0][0]
    finally:
        pixel_budget.set_max_pixels(None)
    manifest.check(paths)  # written again under the default budget
    with open(manifest.path, "r+b") as f:
        f.seek(70)  # inside the first file's line: fields that are no numbers
        f.write(b"\xff\t\xfe\tx\t\t1\t1\n")
    calls = []
    CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path)).check(paths, _counting(calls))
    assert len(calls) == 3 and "unreadable" in caplog.text


def test_no_cache_dir_keeps_nothing_and_an_unwritable_one_only_warns(tmp_path, caplog):
    paths = _folder(tmp_path, 2)
    assert CheckManifest.for_source(None, str(tmp_path)).check(paths) == [(None, (8, 5)), (None, (9, 5))]
    blocked = tmp_path / "file"
    blocked.write_text("x")  # a file where the workspace folder should be
    verdicts = CheckManifest.for_source(str(blocked), str(tmp_path)).check(paths)
    assert verdicts[1] == (None, (9, 5)) and "not written" in caplog.text


@pytest.mark.parametrize("name", ["tab\there.png", "line\nbreak.png"])
def test_a_path_with_a_tab_or_line_break_is_always_checked(tmp_path, name):
    paths = _folder(tmp_path, 1)
    odd = str(tmp_path / name)
    os.link(paths[0], odd)
    CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path)).check([odd, paths[0]])
    calls = []
    CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path)).check([odd, paths[0]], _counting(calls))
    assert calls == [odd]


def _counting_stat(monkeypatch):
    from common.io import check_manifest

    calls = []
    real = check_manifest._stat
    monkeypatch.setattr(check_manifest, "_stat", lambda path: calls.append(path) or real(path))
    return calls


def test_an_unchanged_listing_reads_and_stats_only_the_unusable_files(tmp_path, monkeypatch):
    paths = _folder(tmp_path)
    open(paths[1], "wb").write(b"not an image")
    CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path)).check_listing(paths)
    stats, calls = _counting_stat(monkeypatch), []
    manifest = CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path))
    problems = manifest.check_listing(paths, _counting(calls))
    assert problems[1] == "not a JPEG/PNG/GIF/BMP/WebP image" and problems.count(None) == 5
    assert calls == [] and stats == [paths[1]] and (manifest.reused, manifest.checked) == (6, 0)


def test_a_changed_listing_checks_new_files_and_fixed_ones_and_forgets_removed_ones(tmp_path, monkeypatch):
    paths = _folder(tmp_path)
    good = open(paths[0], "rb").read()
    open(paths[1], "wb").write(b"not an image")
    CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path)).check_listing(paths)
    open(paths[1], "wb").write(good)  # fixed in place
    new = str(tmp_path / "new.png")
    open(new, "wb").write(b"")
    listing = paths[1:] + [new]  # paths[0] removed
    stats, calls = _counting_stat(monkeypatch), []
    manifest = CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path))
    problems = manifest.check_listing(listing, _counting(calls))
    assert calls == [paths[1], new] and problems == [None] * 5 + ["empty file (0 bytes)"]
    assert paths[0] not in open(manifest.path).read() and (manifest.reused, manifest.checked) == (4, 2)
    assert sorted(set(stats)) == sorted([paths[1], new])  # the usable files are not stat'ed
    calls.clear()
    assert CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path)).check_listing(
        listing, _counting(calls)) == problems and calls == []


def test_a_usable_file_rewritten_in_place_keeps_its_verdict_until_the_cache_is_deleted(tmp_path):
    """The documented trade-off of check_listing: training skips and counts such a file if it no longer decodes."""
    paths = _folder(tmp_path, 2)
    CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path)).check_listing(paths)
    open(paths[0], "wb").write(b"damaged in place")
    assert CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path)).check_listing(paths) == [None, None]
    import shutil

    shutil.rmtree(tmp_path / "ws" / "data_cache")
    assert CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path)).check_listing(paths)[0] is not None


def test_a_listed_path_with_a_tab_is_always_checked_and_a_non_utf8_name_is_stored(tmp_path):
    paths = _folder(tmp_path, 1)
    odd, raw = str(tmp_path / "tab\there.png"), os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), b"\xff.png"))
    os.link(paths[0], odd)
    os.link(paths[0], raw)
    listing = [odd, raw, paths[0]]
    CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path)).check_listing(listing)
    calls = []
    manifest = CheckManifest.for_source(str(tmp_path / "ws"), str(tmp_path))
    assert manifest.check_listing(listing, _counting(calls)) == [None] * 3 and calls == [odd]
