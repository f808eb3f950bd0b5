"""The LLM baselines on a random-init GPT-2-style model with a small byte-level BPE tokenizer:
correctness only (no quality claims can be made with random weights)."""


import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("peft")

from helpers import run_gpo  # noqa: E402

from gpo.config import LLMConfig, load_config  # noqa: E402
from gpo.evaluate import evaluate  # noqa: E402
from gpo.inputs import prepare  # noqa: E402
from gpo.llm.methods import LLM, make  # noqa: E402
from gpo.llm.scoring import FLOOR, letter_token_ids, option_probs  # noqa: E402


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    from gpo.data.synthetic import SyntheticWorld
    from gpo.llm.random_model import build

    table, _ = SyntheticWorld(n_questions=40, n_groups=2).build()
    return build(tmp_path_factory.mktemp("tiny-gpt2"), table["question"].unique())


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    cfg = load_config("configs/synthetic.yaml", [f"out_dir={tmp_path_factory.mktemp('runs')}"])
    return prepare(cfg)


def small(llm_dir, **kw):
    return LLM(LLMConfig(model=llm_dir, lora_steps=3, icft_steps=3, samples_per_question=10, **kw), "cpu")


def test_letters_count_with_and_without_a_leading_space(llm_dir):
    llm = small(llm_dir)
    ids = letter_token_ids(llm.tokenizer, 3)
    spellings = [{llm.tokenizer.decode([i]) for i in row} for row in ids]
    assert spellings[0] == {"A", " A"} and spellings[1] == {"B", " B"}


def test_option_probs_renormalise_over_options_and_floor_missing_letters():
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.1, 0.2], [0.25, 0.25, 0.25, 0.25]]))
    letter_ids = [[0, 3], [1], []]  # "A" has two spellings; "C" has none
    p = option_probs(logits, letter_ids, torch.tensor([3, 2]))
    assert torch.allclose(p.sum(1), torch.ones(2))
    assert p[0, 0] / p[0, 1] == pytest.approx(0.7 / 0.2)
    assert p[0, 2] == pytest.approx(FLOOR / (0.9 + FLOOR))  # a floor, not a raw logit
    assert p[1, 2] == 0 and p[1, 0] == pytest.approx(2 / 3)


def run(methods, prep, k=2, draws=1):
    test = prep.index(prep.split.test)[:3]
    return evaluate(methods, prep.points, prep.labels, prep.basis, test, prep.data.tasks, [k], draws, 0, max_targets=3)


@pytest.mark.parametrize("name", ["zero_shot", "steered", "few_shot"])
def test_prompting_baselines_give_distributions(llm_dir, prep, name):
    llm = small(llm_dir)
    method = make(name, llm, prep.data.text, prep.points, prep.basis, 2)
    results = run({name: method}, prep)
    assert results["alignment"].between(0, 1).all() and (results["n_targets"] == 3).all()


def predictions(method, prep, group):
    from gpo.evaluate import predict
    from gpo.tasks import sample_questions

    rows = torch.tensor([group])
    q = sample_questions(prep.points.available[rows], 2, 3, torch.Generator().manual_seed(1))
    return predict(method, prep.points, prep.labels, prep.basis, rows, q)


def test_lora_baselines_train_change_outputs_and_do_not_leak_across_groups(llm_dir, prep):
    llm = small(llm_dir, lora_lr=0.05)
    zero = make("zero_shot", llm, prep.data.text, prep.points, prep.basis, 2)
    sft = make("sft", llm, prep.data.text, prep.points, prep.basis, 2)
    test = prep.index(prep.split.test)
    a = predictions(sft, prep, test[0])
    assert sft.train_seconds > 0
    assert not torch.allclose(a, predictions(zero, prep, test[0]), atol=1e-4)  # the adapter trained
    predictions(sft, prep, test[1])  # another group in between
    assert torch.allclose(a, predictions(sft, prep, test[0]), atol=1e-5)  # ... leaves no trace
    reward = make("reward", llm, prep.data.text, prep.points, prep.basis, 2)
    r = predictions(reward, prep, test[0])
    sums = torch.zeros(1, len(prep.data.qids)).index_add(1, prep.points.point_question, r)
    assert set(np.round(sums[sums > 0].numpy(), 5)) == {1.0}
    assert torch.allclose(a, predictions(sft, prep, test[0]), atol=1e-5)  # adapters are separate


def test_in_context_fine_tuning_meta_trains_on_training_groups(llm_dir, prep):
    llm = small(llm_dir, lora_lr=0.05)
    few = make("few_shot", llm, prep.data.text, prep.points, prep.basis, 2)
    before = predictions(few, prep, prep.index(prep.split.test)[0])
    icft = make("icft", llm, prep.data.text, prep.points, prep.basis, 2)
    assert icft.train_seconds > 0
    assert not torch.allclose(before, predictions(icft, prep, prep.index(prep.split.test)[0]), atol=1e-4)
    assert torch.allclose(before, predictions(few, prep, prep.index(prep.split.test)[0]), atol=1e-6)


def test_cli_baseline_lands_next_to_gpo_results(llm_dir, tmp_path):
    args = ["configs/synthetic.yaml", "--set", f"out_dir={tmp_path}", "name=r", "train.steps=2", "train.eval_every=2",
            "eval.ks=[2]", "eval.draws=1", "eval.max_targets=2", f"llm.model={llm_dir}"]
    assert run_gpo("run", *args).returncode == 0
    out = run_gpo("baseline", "zero_shot", *args)
    assert out.returncode == 0, out.stderr[-2000:]
    results = pd.read_parquet(tmp_path / "r" / "results.parquet")
    assert {"gpo-paper", "mean", "llm-zero_shot"} <= set(results.method)
    assert "llm-zero_shot" in out.stdout
