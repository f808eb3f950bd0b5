import gzip
import json
import time

import numpy as np
import pandas as pd
import pytest
from helpers import run_gpo as gpo


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
    assert set(first.method) == {"gpo-paper", "gpo-paper+shrink", "uniform", "mean", "ridge", "mixture", "logit", "kernel"}
    assert set(first.k) == {0, 5}
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
    assert len(table) == 28277 and list(bad.columns) == ["file", "row", "field", "reason"]  # every row is valid
    assert "malformed" not in out.stdout and "(0 rows)" in out.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.bad_rows.csv", "t.parquet"]  # no temp file left


@pytest.mark.parametrize("overrides, message", [
    (["model.d_model=100", "model.n_heads=3"], "model.d_model: expected a multiple of n_heads (3), got 100"),
    (["train.steps=-5"], "train.steps: expected at least 1, got -5"),
    (["eval.ks=[-1]"], "eval.ks: expected a list of context sizes (integers >= 0), got [-1]"),
    (["eval.ks=[100000]"], "eval.ks: 100000 context questions leave no test group anything to predict"),
    (["data.source=BROKEN"], "unreadable after line"),
    (["data.val_fraction=0"], "data.val_fraction: expected a fraction in (0, 1): validation tasks choose checkpoints"),
])
def test_bad_settings_and_files_are_one_line_errors_before_any_work(tmp_path, overrides, message):
    broken = tmp_path / "broken.jsonl.gz"
    row = {"qkey": "Q", "question": "Q?", "options": ["a", "b"], "option_ordinal": [1, 2], "attribute": "X", "group": "g",
           "distribution": [0.5, 0.5]}
    broken.write_bytes(gzip.compress((json.dumps(row) + "\n").encode() * 100, mtime=0)[:-20])  # a truncated download
    overrides = [o.replace("BROKEN", str(broken)) for o in overrides]
    out = gpo("run", "configs/synthetic.yaml", "--set", f"out_dir={tmp_path}", *overrides)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and message in out.stderr, out.stderr
    assert not (tmp_path / "synthetic").exists()  # nothing written


@pytest.fixture(scope="module")
def surveys(tmp_path_factory):
    """A small OpinionQA survey of seven groups, four age groups answering a random 60% of its
    questions in another file, and twenty GlobalOpinionQA questions (no question in common)."""
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "opinionqa" / "group_distributions.jsonl.gz").is_file():
        pytest.skip("shared survey data not found")
    root = tmp_path_factory.mktemp("surveys")
    rows = [json.loads(line) for line in gzip.open(SHARED_DATA / "opinionqa" / "group_distributions.jsonl.gz", "rt")]
    keys = sorted({r["qkey"] for r in rows if r["group"] == "Female"})[:40]
    rng = np.random.default_rng(0)
    files = {"main.jsonl": [r for r in rows if r["qkey"] in keys and r["group"] in
                            ("Female", "Male", "Democrat", "Republican", "Liberal", "Conservative", "Moderate")],
             "ages.jsonl": [r for r in rows if r["qkey"] in keys and r["group"] in ("18-29", "30-49", "50-64", "65+")
                            and rng.random() < 0.6]}
    countries = [json.loads(line) for line in gzip.open(SHARED_DATA / "globalopinionqa" / "country_distributions.jsonl.gz", "rt")]
    files["world.jsonl"] = [r for r in countries if r["country"] in ("Japan", "Brazil")][:40]
    for name, records in files.items():
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    # MiniLM's first block (embed.layers=1): real weights at a sixth of the compute; what the tests
    # below check is the command line's transfer, which no embedding depth changes
    args = ["--set", f"out_dir={root}", "name=run", f"data.source={root / 'main.jsonl'}", "data.dataset=main", "data.groups=all",
            "train.steps=4", "train.eval_every=2", "eval.ks=[0,5]", "eval.draws=2", "embed.workers=0", "embed.layers=1",
            f"embed.cache_dir={root / 'cache'}"]
    out = gpo("run", "configs/demo.yaml", *args)
    assert out.returncode == 0, out.stderr[-2000:]
    return root


def test_eval_transfers_a_trained_run_to_named_groups_of_another_survey(surveys):
    out = gpo("eval", str(surveys / "run"), "--data", str(surveys / "ages.jsonl"), "--set", "data.test_groups=[18-29, 65+]")
    assert out.returncode == 0, out.stderr[-2000:]
    results = pd.read_parquet(surveys / "run" / "transfer-ages" / "results.parquet")
    test = results[results.role == "test"]
    assert set(test.task) == {"18-29", "65+"} and set(test.dataset) == {"ages"}
    assert set(test.method) == {"gpo[kernel]", "gpo[kernel]+shrink", "uniform", "mean", "ridge", "mixture", "logit", "kernel"}
    split = json.loads((surveys / "run" / "split.json").read_text())
    assert set(results[results.role == "val"].task) == set(split["val"])  # the run's own validation groups
    assert test.alignment.notna().all() and (test.n_targets > 0).all()
    assert (surveys / "run" / "results.parquet").is_file()  # the run's own results stay as they were
    # the same transfer again: the same numbers; with other test groups: refused, nothing overwritten
    before = (surveys / "run" / "transfer-ages" / "results.parquet").read_bytes()
    again = gpo("eval", str(surveys / "run"), "--data", str(surveys / "ages.jsonl"), "--set", "data.test_groups=[18-29, 65+]")
    assert again.returncode == 0, again.stderr[-2000:]
    other = gpo("eval", str(surveys / "run"), "--data", str(surveys / "ages.jsonl"), "--set", "data.test_groups=[18-29]")
    assert other.returncode == 2 and "holds a transfer made with other settings" in other.stderr and "--out DIR" in other.stderr
    assert (surveys / "run" / "transfer-ages" / "results.parquet").read_bytes() == before
    elsewhere = gpo("eval", str(surveys / "run"), "--data", str(surveys / "ages.jsonl"), "--set", "data.test_groups=[18-29]",
                    "--out", str(surveys / "young"))
    young = pd.read_parquet(surveys / "young" / "results.parquet")
    assert elsewhere.returncode == 0 and set(young[young.role == "test"].task) == {"18-29"}
    # a --data file that is not there: one line, no folder made
    missing = gpo("eval", str(surveys / "run"), "--data", str(surveys / "nowhere.jsonl"), "--set", "data.test_groups=[18-29]")
    assert missing.returncode == 2 and "--data " in missing.stderr and "no such file" in missing.stderr
    assert not (surveys / "run" / "transfer-nowhere").exists()


def test_transfer_to_a_survey_without_common_questions_predicts_the_training_groups_from_the_questions(surveys):
    out = gpo("eval", str(surveys / "run"), "--data", str(surveys / "world.jsonl"),
              "--set", "data.test_groups=[Japan]", "data.require_ordinal=false")
    assert out.returncode == 0, out.stderr[-2000:]
    said = [line for line in out.stderr.splitlines() if "100% of the test groups' answers are to questions no training group" in line]
    assert len(said) == 1 and "predicted by a ridge from the option embeddings (alpha" in said[0]  # the run's own choice
    results = pd.read_parquet(surveys / "run" / "transfer-world" / "results.parquet")
    ran = results[results.score.notna() & (results.role == "test")]
    assert set(ran.method) == {"gpo[kernel]", "gpo[kernel]+shrink", "uniform", "mean", "ridge", "mixture", "logit", "kernel"}
    missing = gpo("eval", str(surveys / "run"), "--data", str(surveys / "world.jsonl"))
    assert missing.returncode == 2 and "data.test_groups: expected the test groups of data.test_source" in missing.stderr


def test_default_and_shipped_configs_are_found_from_any_folder(tmp_path):
    out = gpo("data", "configs/synthetic.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "synthetic: 160 questions" in out.stdout


def test_a_data_file_in_place_of_a_config_is_read_as_data(tmp_path):
    from gpo.data.synthetic import SyntheticWorld

    table, _ = SyntheticWorld(n_questions=6, n_groups=3).build()
    records = table.rename(columns={"qid": "qkey", "ordinal": "option_ordinal"}).to_dict("records")
    with gzip.open(tmp_path / "survey.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    out = gpo("data", str(tmp_path / "survey.jsonl.gz"), "--out", str(tmp_path / "t.parquet"))
    assert out.returncode == 0, out.stderr
    assert "survey: 6 questions, 18 (question, group) rows, 3 groups" in out.stdout
    assert len(pd.read_parquet(tmp_path / "t.parquet")) == 18


def test_a_per_respondent_csv_in_place_of_a_config_is_read_as_respondents(tmp_path):
    from gpo.data.synthetic import SyntheticRespondents

    r, _, _ = SyntheticRespondents(n_respondents=100, n_questions=60).build()  # about 48 answers each: more than k = 20
    who, question = np.nonzero(r.asked)
    answer = r.answers[who, question]
    pd.DataFrame({"respondent": np.array(r.respondents)[who], "question": np.array(r.questions)[question],
                  "options": [json.dumps(r.options[q]) for q in question],
                  "answer": [r.options[q][a] if a >= 0 else "" for q, a in zip(question, answer)]}
                 ).to_csv(tmp_path / "panel.csv.gz", index=False)
    out = gpo("data", str(tmp_path / "panel.csv.gz"))
    assert out.returncode == 0, out.stderr[-2000:]
    questions = int(r.asked.any(0).sum())
    assert out.stdout.startswith(f"panel: {questions} questions, {4 * questions} points, 100 respondents"), out.stdout
    assert "malformed" not in out.stdout
    grouped = gpo("data", str(tmp_path / "panel.csv.gz"), "--set", "data.unit=group", "data.groups=paper17")  # --set wins
    assert grouped.returncode == 2, grouped.stderr


@pytest.mark.parametrize("name, content, message", [
    # mtime 0: a timestamp in the test id differs between xdist workers collecting a second apart
    ("c.yaml.gz", gzip.compress(b"name: x\n", mtime=0), "not a YAML config file (binary or not UTF-8 text)"),
    ("c.json", b'{"a": 1}\n{"b": 2}\n', "not valid YAML at line 2, column 1"),
    ("c.yaml", b"train: [1, 2\n", "not valid YAML at line 2"),
])
def test_a_config_that_is_not_yaml_is_one_line(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    out = gpo("run", str(tmp_path / name))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, out.stderr


TINY = ["--set", "name=tiny", "train.steps=4", "train.eval_every=2", "eval.ks=[5]", "eval.draws=1"]


def test_a_rerun_with_other_model_settings_is_refused_before_anything_is_written(tmp_path):
    out = gpo("run", "configs/synthetic.yaml", *TINY, f"out_dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    run = tmp_path / "tiny"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    out = gpo("run", "configs/synthetic.yaml", *TINY, f"out_dir={tmp_path}", "model.d_model=32")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "a run made with other settings: model.d_model (64 there, 32 now)" in out.stderr and "--set name=" in out.stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"} == before
    again = gpo("run", "configs/synthetic.yaml", *TINY, f"out_dir={tmp_path}", "eval.ks=[0,5]")  # evaluation may change
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("damage, named", [(lambda t: t[:t.index("synthetic_respondents")] + 'x: "cut', "not valid YAML"),
                                           (lambda t: t[:t.index("\ntrain:") + 1], "no train, eval, llm"),
                                           (lambda t: "", "no name, out_dir, data")])
def test_a_damaged_run_record_is_named_as_damaged(tmp_path, damage, named):
    out = gpo("run", "configs/synthetic.yaml", *TINY, f"out_dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    record = tmp_path / "tiny" / "config.yaml"
    record.write_text(damage(record.read_text()))
    out = gpo("run", "configs/synthetic.yaml", *TINY, f"out_dir={tmp_path}")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert f"{record}: " in out.stderr and named in out.stderr and "the run record is damaged" in out.stderr, out.stderr


def test_a_second_run_in_a_busy_run_folder_is_refused_naming_the_holder(tmp_path, lock_holder):
    with lock_holder(tmp_path / "tiny") as pid:
        out = gpo("run", "configs/synthetic.yaml", *TINY, f"out_dir={tmp_path}")
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"gpo: error: {tmp_path / 'tiny'}: this run folder is in use by another process (pid {pid}); wait for it to finish, "
        "or use another folder"]
    assert not (tmp_path / "tiny" / "config.yaml").exists()


def test_every_group_of_another_survey_can_be_tested_even_when_named_like_the_runs_own(surveys):
    """Groups of the other survey named like the run's training or validation groups are labelled
    by survey; "all" means every group of the other survey."""
    rows = [json.loads(line) for line in (surveys / "main.jsonl").read_text().splitlines()]
    again = [{**r, "distribution": r["distribution"][::-1]} for r in rows if r["group"] in ("Female", "Male", "Democrat")]
    (surveys / "again.jsonl").write_text("".join(json.dumps(r) + "\n" for r in again))
    out = gpo("eval", str(surveys / "run"), "--data", str(surveys / "again.jsonl"), "--set", "data.test_groups=all")
    assert out.returncode == 0, out.stderr[-2000:]
    results = pd.read_parquet(surveys / "run" / "transfer-again" / "results.parquet")
    assert set(results[results.role == "test"].task) == {"again/Female", "again/Male", "again/Democrat"}
    split = json.loads((surveys / "run" / "split.json").read_text())
    assert set(results[results.role == "val"].task) == set(split["val"])


@pytest.mark.parametrize("command", [["embed", "configs/demo.yaml", "--set", "embed.layers=1"],
                                     ["sweep", "tune/studies/opinionqa.yaml", "--smoke-test", "--set"]])
def test_an_address_where_no_ray_answers_is_one_line_within_seconds(tmp_path, monkeypatch, command):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    started = time.monotonic()
    out = gpo(*command, f"embed.cache_dir={tmp_path}" if command[0] == "embed" else f"storage={tmp_path}")
    assert out.returncode == 2 and "RAY_ADDRESS=127.0.0.1:1: no Ray cluster answers there" in out.stderr, out.stderr[-2000:]
    assert out.stderr.count(": error: ") == 1 and time.monotonic() - started < 60
