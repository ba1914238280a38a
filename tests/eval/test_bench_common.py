"""eval/bench/_common.py: the table, the JSON file and the exit status every benchmark script ends with, and the
videos of a synthetic split."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def common(load_script):
    return load_script("eval/bench/_common.py")


def test_print_table_aligns_each_column_as_asked(common, capsys):
    common.print_table(["model", "s"], [["a", 1.5], ["b", "2"]], "lr")
    assert capsys.readouterr().out == "| model | s |\n|---|---:|\n| a | 1.5 |\n| b | 2 |\n"
    with pytest.raises(ValueError, match="one 'l' or 'r' per column"):
        common.print_table(["model", "s"], [], "l")


def test_write_json_makes_the_folder_and_skips_without_a_path(common, tmp_path):
    path = tmp_path / "new" / "out.json"
    common.write_json(path, {"rows": [1]}, indent=None)
    assert path.read_text() == '{"rows": [1]}\n'
    common.write_json(None, {"rows": [1]})  # no --json: nothing written, no error
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["new", "out.json"]


def test_run_cli_turns_bad_input_into_one_line_and_status_2(common, capsys):
    def run(args):
        raise FileNotFoundError(f"{args} not found")

    assert common.run_cli(run, "data/x") == 2
    assert capsys.readouterr().err == "error: data/x not found\n"
    assert common.run_cli(lambda args: None, None) == 0


def test_synth_videos_reads_metadata_and_names_a_missing_file(common, tmp_path):
    with pytest.raises(FileNotFoundError, match="no .mp4 videos in"):
        common.synth_videos(tmp_path, 0)
    for k in range(3):
        (tmp_path / f"v{k}.mp4").write_bytes(b"")
        (tmp_path / f"v{k}.json").write_text(json.dumps({"id": k}))
    assert [meta["id"] for _, meta in common.synth_videos(tmp_path, 2)] == [0, 1]  # the first `limit`, sorted
    with pytest.raises(FileNotFoundError, match=r"v0\.npz not found"):
        common.synth_videos(tmp_path, 0, (".json", ".npz"))


def test_synth_videos_names_a_record_that_is_not_json(common, tmp_path):
    (tmp_path / "v0.mp4").write_bytes(b"")
    (tmp_path / "v0.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"v0\.json is not valid JSON"):
        common.synth_videos(tmp_path, 0)
