import gzip
import json
import subprocess
import sys

import pandas as pd
import pytest


def gpo(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gpo.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_the_subcommands():
    out = gpo("--help")
    assert out.returncode == 0
    for command in ("run", "data", "embed", "train", "eval"):
        assert command in out.stdout


def test_missing_data_file_is_one_line_and_nonzero(tmp_path):
    out = gpo("data", "configs/demo.yaml", "--set", f"data.source={tmp_path}/none.jsonl.gz")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"gpo: error: {tmp_path}/none.jsonl.gz: not found "
                                               "(set data.source, or GPO_DATA_DIR for the shared data folder)"]


def test_bad_config_key_is_one_line_and_nonzero():
    out = gpo("run", "configs/synthetic.yaml", "--set", "train.stepz=3")
    assert out.returncode == 2 and "unknown key(s) ['train.stepz']" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_run_then_eval_the_saved_checkpoint(tmp_path):
    args = ["--set", f"out_dir={tmp_path}", "name=tiny", "train.steps=4", "train.eval_every=2", "eval.ks=[0,5]"]
    out = gpo("run", "configs/synthetic.yaml", *args)
    assert out.returncode == 0, out.stderr
    assert "alignment on held-out groups" in out.stdout
    run = tmp_path / "tiny"
    first = pd.read_parquet(run / "results.parquet")
    assert set(first.method) == {"gpo", "uniform", "mean", "ridge", "mixture", "logit", "kernel"} and set(first.k) == {0, 5}
    moved = run.rename(tmp_path / "moved")  # a run folder stays usable wherever it is moved
    (moved / "results.parquet").unlink()
    out = gpo("eval", str(moved))
    assert out.returncode == 0, out.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(moved / "results.parquet"), first)


def test_data_writes_the_canonical_table(tmp_path):
    out = gpo("data", "configs/synthetic.yaml", "--out", str(tmp_path / "t.parquet"))
    assert out.returncode == 0, out.stderr
    table = pd.read_parquet(tmp_path / "t.parquet")
    assert list(table.columns[:3]) == ["dataset", "qid", "question"] and len(table) == 160 * 24


def test_data_out_writes_the_table_and_its_skipped_rows_on_real_data(shared_data, tmp_path):
    out = gpo("data", "configs/demo.yaml", "--out", str(tmp_path / "t.parquet"))
    assert out.returncode == 0, out.stderr
    table, bad = pd.read_parquet(tmp_path / "t.parquet"), pd.read_csv(tmp_path / "t.bad_rows.csv")
    assert len(table) and len(bad) and list(bad.columns) == ["file", "row", "field", "reason"]
    assert f"skipped {len(bad)} malformed row(s)" in out.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.bad_rows.csv", "t.parquet"]  # no temp file left


@pytest.mark.parametrize("overrides, message", [
    (["model.d_model=100", "model.n_heads=3"], "model.d_model: expected a multiple of n_heads (3), got 100"),
    (["train.steps=-5"], "train.steps: expected at least 1, got -5"),
    (["eval.ks=[-1]"], "eval.ks: expected a list of context sizes (integers >= 0), got [-1]"),
    (["eval.ks=[100000]"], "eval.ks: 100000 context questions leave no test group anything to predict"),
    (["data.source=BROKEN"], "unreadable after line"),
])
def test_bad_settings_and_files_are_one_line_errors_before_any_work(tmp_path, overrides, message):
    broken = tmp_path / "broken.jsonl.gz"
    row = {"qkey": "Q", "question": "Q?", "options": ["a", "b"], "option_ordinal": [1, 2], "attribute": "X", "group": "g",
           "distribution": [0.5, 0.5]}
    broken.write_bytes(gzip.compress((json.dumps(row) + "\n").encode() * 100)[:-20])  # a truncated download
    overrides = [o.replace("BROKEN", str(broken)) for o in overrides]
    out = gpo("run", "configs/synthetic.yaml", "--set", f"out_dir={tmp_path}", *overrides)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and message in out.stderr, out.stderr
    assert not (tmp_path / "synthetic").exists()  # nothing written
