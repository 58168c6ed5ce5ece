"""common.io.json_stream: the same values as json.load, item by item, across chunk borders; errors name the file."""
import io
import json

import pytest

from common.io import json_stream


def _read(text, stream, chunk):
    out = {}
    for key, value in json_stream.top_level(io.StringIO(text), "f.json", stream=stream):
        out[key] = list(value) if isinstance(value, json_stream.ListItems) else value
    return out


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_equals_json_load_whatever_the_chunk(monkeypatch, chunk):
    monkeypatch.setattr(json_stream, "CHUNK", chunk)
    doc = {"info": {"a": [1, 2.5e3, "x,]}\"", None, True]}, "images": [{"id": i, "n": "é" * i} for i in range(9)],
           "annotations": [], "n": 12345678901234567890, "f": -0.0001e-7, "t": False, "s": "\u2603"}
    text = json.dumps(doc, ensure_ascii=False, indent=chunk % 3 or None)
    assert _read(text, ("images", "annotations", "n"), chunk) == doc  # "n" is no list: read whole


def test_keys_come_in_file_order_and_an_unread_list_is_skipped(monkeypatch):
    monkeypatch.setattr(json_stream, "CHUNK", 5)
    text = json.dumps({"annotations": [{"a": 1}] * 50, "images": [1, 2], "z": {}})
    keys = [key for key, _ in json_stream.top_level(io.StringIO(text), "f.json", stream=("annotations",))]
    assert keys == ["annotations", "images", "z"]


def test_a_value_bigger_than_a_chunk_is_read_whole(monkeypatch):
    monkeypatch.setattr(json_stream, "CHUNK", 16)
    big = {"annotations": [{"segmentation": [[float(i) for i in range(5000)]]}]}
    assert _read(json.dumps(big), ("annotations",), 16) == big


@pytest.mark.parametrize("text,where", [
    ('{"a": [1, 2', "expected ',' or ']' in a list"), ('{"a" 1}', "expected ':'"), ("[1]", "expected '{'"),
    ('{"a": [1 2]}', "expected ',' or ']'"), ('{"a": 1} x', "extra data"), ('{"a": 1,}', "not valid JSON"),
    ('{"a": {"b": }', "not valid JSON"), ("", "expected '{'")])
def test_malformed_json_is_one_error_naming_the_file(text, where):
    with pytest.raises(ValueError, match="f.json is not valid JSON") as info:
        _read(text, ("a",), 4)
    assert where in str(info.value) and "at character" in str(info.value)
