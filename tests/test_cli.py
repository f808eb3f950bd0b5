import subprocess
import sys

import pandas as pd


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
