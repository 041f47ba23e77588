"""Files that grow by appended lines (bench records, calibration data): what an interruption leaves, and damage."""

import json

import pytest

from biglittle.errors import BigLittleError
from biglittle.files import append_jsonl, read_jsonl


def test_a_line_cut_short_by_an_interruption_is_dropped_from_the_file(tmp_path):
    path = tmp_path / "records.jsonl"
    append_jsonl(path, {"id": 1})
    append_jsonl(path, {"id": 2})
    with path.open("a") as fh:
        fh.write('{"id": 3, "tex')  # killed while writing
    assert read_jsonl(path, required=("id",)) == [{"id": 1}, {"id": 2}]
    assert path.read_text() == '{"id": 1}\n{"id": 2}\n'  # appending goes on from a clean line
    append_jsonl(path, {"id": 3})
    assert [r["id"] for r in read_jsonl(path)] == [1, 2, 3]


@pytest.mark.parametrize(
    "bad_line",
    ["not json at all", "[1, 2]", json.dumps({"other": 1})],
    ids=["not JSON", "not an object", "missing a required key"],
)
def test_a_damaged_complete_line_is_refused_with_a_count(tmp_path, bad_line):
    path = tmp_path / "records.jsonl"
    path.write_text('{"id": 1}\n' + bad_line + "\n" + '{"id": 2}\n' + bad_line + "\n")
    with pytest.raises(BigLittleError, match=r"records.jsonl: 2 line\(s\) are not JSON records .*first: line 2.*; fix"):
        read_jsonl(path, required=("id",), remedy="fix it")
    assert path.read_text().count("\n") == 4  # nothing dropped: damage is the user's to look at


def test_no_file_is_no_records(tmp_path):
    assert read_jsonl(tmp_path / "missing.jsonl") == []
