"""The reference code's protocol as settings (configs/paper-reference.yaml): int() splits with
the test groups validating, one question order per batch or per draw shared by every task, the
mean over (group, question) pairs; and the protocol a result row names."""

import pandas as pd
import pytest
import torch

from gpo.config import load_config
from gpo.data.splits import REFERENCE_VALIDATION, split_groups
from gpo.evaluate import mean_and_worst
from gpo.tasks import sample_questions

GROUPS = [f"g{i}" for i in range(17)]


def test_the_reference_split_floors_and_carves_out_no_validation():
    reference = split_groups(GROUPS, 0.4, 0.25, seed=0, rounding="floor", validation=REFERENCE_VALIDATION)
    assert (len(reference.train), len(reference.test)) == (6, 11) and reference.val == reference.test  # int(6.8) = 6
    project = split_groups(GROUPS, 0.4, 0.25, seed=0)
    assert (len(project.train), len(project.val), len(project.test)) == (5, 2, 10)  # round(6.8) = 7 seen, 2 validating
    honest = split_groups(GROUPS, 0.4, 0.25, seed=0, rounding="floor")
    assert (len(honest.train), len(honest.val), len(honest.test)) == (4, 2, 11) and not set(honest.val) & set(honest.test)


def test_shared_orders_give_tasks_that_answered_alike_the_same_context():
    available = torch.ones(6, 30, dtype=torch.bool)
    available[5, :10] = False  # a task that did not answer the first ten questions
    g = torch.Generator().manual_seed(0)
    one = sample_questions(available, 4, None, g, shared=1)
    assert all(torch.equal(one.ctx[0], one.ctx[r]) for r in range(1, 5))
    assert not torch.equal(one.ctx[0], one.ctx[5]) and (one.ctx[5] >= 10).all()  # the same order, its own questions
    per_draw = sample_questions(available[:4], 4, None, g, shared=2)  # rows: task 0 draw 0, task 0 draw 1, task 1 draw 0, ...
    assert torch.equal(per_draw.ctx[0], per_draw.ctx[2]) and torch.equal(per_draw.ctx[1], per_draw.ctx[3])
    assert not torch.equal(per_draw.ctx[0], per_draw.ctx[1])
    own = sample_questions(available[:4], 4, None, g)
    assert len({tuple(c.tolist()) for c in own.ctx}) == 4  # each task its own draw


def test_the_pooled_mean_weighs_each_group_by_its_questions():
    rows = pd.DataFrame({"method": "m", "k": 5, "task": ["a", "b"], "score": [0.5, 1.0], "n_targets": [2, 6]})
    assert mean_and_worst(rows).loc[0, "mean"] == pytest.approx(0.75)  # a mean of group means
    assert mean_and_worst(rows, aggregate="pairs").loc[0, "mean"] == pytest.approx((2 * 0.5 + 6 * 1.0) / 8)


def test_a_config_names_the_protocol_it_follows():
    assert load_config("configs/paper-reference.yaml").protocol == "reference"
    assert load_config("configs/paper-reference.yaml", ["data.validation=carved"]).protocol == \
        "reference except data.validation=carved"
    assert load_config("configs/paper.yaml").protocol == "project"
    assert load_config("configs/demo.yaml", ["eval.draws=1"]).protocol == "project except eval.draws=1"
    # GlobalOpinionQA: the reference draws each country its own context and orders each task's questions
    on_countries = ["data.require_all_groups=false", "train.question_order=task", "eval.contexts=per-task"]
    assert load_config("configs/paper-reference.yaml", on_countries).protocol == "reference"
    assert load_config("configs/paper-reference.yaml", on_countries[:1]).protocol == \
        "reference except train.question_order=batch, eval.contexts=shared"
