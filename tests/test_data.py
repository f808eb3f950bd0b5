import gzip
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpo.config import load_config
from gpo.data import load_table
from gpo.data.schema import COLUMNS, bad_rows, make_row
from gpo.data.splits import split_groups
from gpo.data.survey import select
from gpo.data.synthetic import SyntheticWorld
from gpo.errors import ConfigError, DataError, GPOError
from gpo.inputs import load_survey


def write_release(root, answers_q1, mapping=True):
    survey = root / "human_resp" / "American_Trends_Panel_W99"
    survey.mkdir(parents=True)
    pd.DataFrame({
        "key": ["Q1_W99", "Q2_W99"],
        "question": ["Do you like it?", "How much?"],
        "references": ["['Yes', 'No', 'Refused']", "['A lot', 'Some', 'None', 'Refused']"],
        "option_ordinal": ["[1.0, 2.0]", "[1.0, 2.0, 3.0]"],
        "option_mapping": ["{1.0: 'Yes', 2.0: 'No', 99.0: 'Refused'}" if mapping else "",
                           "{1.0: 'A lot', 2.0: 'Some', 3.0: 'None', 99.0: 'Refused'}"],
    }).to_csv(survey / "info.csv")
    pd.DataFrame({"key": ["SEX"], "options": ["['Male', 'Female']"]}).to_csv(survey / "metadata.csv")
    pd.DataFrame({
        "Q1_W99": answers_q1,
        "Q2_W99": ["A lot", "Some", "None", "Refused", "Some", None],
        "SEX": ["Male", "Male", "Male", "Female", "Female", "Female"],
        "WEIGHT_W99": [1.0, 3.0, 2.0, 0.5, 1.5, 2.0],
    }).to_csv(survey / "responses.csv", index=False)
    return root


def shares(table, qid, group):
    row = table[(table.qid == qid) & (table.group == group)].iloc[0]
    return row.distribution, row.n


@pytest.mark.parametrize("answers", [
    ["Yes", "No", "Refused", "Yes", "Yes", "No"],  # answers as option text
    [1.0, 2.0, 99.0, 1.0, 1.0, 2.0],  # answers as numeric codes, mapped by info.csv
])
def test_opinionqa_release_weighted_shares_by_hand(tmp_path, answers):
    table = load_table(write_release(tmp_path, answers))
    # Q1 Male: Yes weight 1, No weight 3, refusal dropped -> 1/4, 3/4 over 2 respondents
    assert shares(table, "Q1_W99", "Male") == (pytest.approx([0.25, 0.75]), 2)
    # Q1 Female: Yes 0.5 + 1.5, No 2.0 -> 1/2, 1/2 over 3 respondents
    assert shares(table, "Q1_W99", "Female") == (pytest.approx([0.5, 0.5]), 3)
    # Q2 Male: A lot 1, Some 3, None 2 (of 6)
    assert shares(table, "Q2_W99", "Male") == (pytest.approx([1 / 6, 1 / 2, 1 / 3]), 3)
    # Q2 Female: only one non-refusal answer, "Some"
    assert shares(table, "Q2_W99", "Female") == (pytest.approx([0.0, 1.0, 0.0]), 1)
    row = table[table.qid == "Q2_W99"].iloc[0]
    assert row.options == ["A lot", "Some", "None"] and row.ordinal == [1.0, 2.0, 3.0]


def test_opinionqa_release_reports_bad_weights_and_unknown_answers(tmp_path):
    root = write_release(tmp_path, ["Yes", "Maybe", "Refused", "Yes", "Yes", "No"])
    responses = root / "human_resp" / "American_Trends_Panel_W99" / "responses.csv"
    frame = pd.read_csv(responses)
    frame.loc[0, "WEIGHT_W99"] = -1
    frame.to_csv(responses, index=False)
    table = load_table(root)
    problems = bad_rows(table)
    assert {(r.row, r.field) for r in problems.itertuples()} == {(1, "WEIGHT_W99"), (2, "Q1_W99")}
    assert "'Maybe' is not an option" in problems[problems.field == "Q1_W99"].reason.iloc[0]


def test_opinionqa_release_reports_a_code_its_option_mapping_does_not_know(tmp_path):
    root = write_release(tmp_path, [1, 2, 7, 99, 1, None])  # 7: no option; 99: a refusal; None: not asked
    problems = bad_rows(load_table(root))
    assert [(r.row, r.field, r.reason) for r in problems.itertuples()] == [(3, "Q1_W99", "answer '7.0' is not an option")]


def test_opinionqa_release_missing_weight_column_is_one_clear_error(tmp_path):
    root = write_release(tmp_path, ["Yes"] * 6)
    responses = root / "human_resp" / "American_Trends_Panel_W99" / "responses.csv"
    pd.read_csv(responses).drop(columns="WEIGHT_W99").to_csv(responses, index=False)
    with pytest.raises(DataError, match=r"responses\.csv: missing column\(s\) \['WEIGHT_W99'\]"):
        load_table(root)


def write_jsonl(path, records):
    with gzip.open(path, "wt") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def oqa(qkey="Q1", group="Democrat", options=("Yes", "No"), dist=(0.4, 0.6), ordinal=(1, 2), attribute="POLPARTY"):
    return {"qkey": qkey, "question": f"{qkey}?", "options": list(options), "option_ordinal": list(ordinal),
            "attribute": attribute, "group": group, "distribution": list(dist), "n": 10}


def test_jsonl_reports_each_malformed_row_and_skips_it(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl.gz", [
        oqa(),
        oqa(group="Republican", dist=(0.5, 0.2, 0.3)),  # 2: length mismatch
        oqa(group="Independent", dist=(-0.1, 1.1)),  # 3: negative share
        oqa(group="Other", dist=(float("nan"), 1.0)),  # 4: NaN share
        oqa(group="Male", dist=(0.3, 0.3)),  # 5: sum 0.6
        oqa(group="Female", options=(), dist=()),  # 6: no options
        oqa(group=""),  # 7: empty group
        "{not json",  # 8
        oqa(group="Republican", dist=(0.301, 0.7)),  # 9: rounding, renormalised
        oqa(),  # 10: duplicate of row 1
        oqa(group="Asian", options=("Yes", "Nope")),  # 11: options differ from row 1
    ])
    table = load_table(path)
    assert sorted(table.group) == ["Democrat", "Republican"]
    assert table[table.group == "Republican"].distribution.iloc[0] == pytest.approx([0.301 / 1.001, 0.7 / 1.001])
    problems = bad_rows(table)
    assert problems.row.tolist() == [2, 3, 4, 5, 6, 7, 8, 10, 11]
    assert (problems.file == str(path)).all()
    reasons = dict(zip(problems.row, problems.field + ": " + problems.reason))
    assert reasons[2] == "distribution: 2 options but 3 shares"
    assert reasons[3] == reasons[4] == "distribution: negative or NaN share"
    assert reasons[5] == "distribution: shares sum to 0.6000, not 1"
    assert reasons[6] == "options: no options"
    assert reasons[7] == "group: empty or unknown group"
    assert reasons[8].startswith("json: not valid JSON")
    assert reasons[10].startswith("group: duplicate of row 1")
    assert reasons[11].startswith("options: differ from row 1")


def test_jsonl_options_that_are_huge_numbers_load_as_text(tmp_path):
    path = tmp_path / "big.jsonl.gz"
    write_jsonl(path, [oqa(options=(10**400, 2), dist=(0.5, 0.5)), oqa(group="Republican", options=(10**400, 2), dist=(0.4, 0.6))])
    assert load_table(path)["options"].iloc[0] == [str(10**400), "2"]


def test_jsonl_error_policy_stops_at_the_first_bad_row(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl.gz", [oqa(), oqa(group="R", dist=(0.2,))])
    with pytest.raises(DataError, match=r"d\.jsonl\.gz: row 2: field 'distribution': 2 options but 1 shares"):
        load_table(path, on_bad_rows="error")


def test_jsonl_wrong_fields_and_missing_file_are_one_line_errors(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl.gz", [{"question": "q", "answers": []}])
    with pytest.raises(DataError, match="row 1: expected OpinionQA fields") as e:
        load_table(path)
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="not found"):
        load_table(tmp_path / "nope.jsonl.gz")
    missing_field = write_jsonl(tmp_path / "m.jsonl.gz", [{"qkey": "Q", "question": "q"}])
    with pytest.raises(DataError, match=r"missing field\(s\) \['options'"):
        load_table(missing_field)


def test_globalopinionqa_csv(tmp_path):
    path = tmp_path / "goqa.csv"
    pd.DataFrame({
        "question": ["Is X good?", "Is Y good?"],
        "selections": ["defaultdict(<class 'list'>, {'France': [0.25, 0.75], 'Japan': [0.5, 0.4]})",
                       "{'France': [0.1, 0.2, 0.7]}"],
        "options": ["['Yes', 'No']", "['A', 'B', 'C']"],
        "source": ["GAS", "WVS"],
    }).to_csv(path, index=False)
    table = load_table(path)
    assert sorted(zip(table.question, table.group)) == [("Is X good?", "France"), ("Is Y good?", "France")]
    assert table.iloc[0].distribution == pytest.approx([0.25, 0.75])
    assert table.iloc[0].ordinal is None and table.iloc[0].attribute == "COUNTRY"
    problems = bad_rows(table)
    assert problems.row.tolist() == [1] and problems.field.iloc[0] == "distribution (Japan)"


def test_globalopinionqa_csv_wrong_columns(tmp_path):
    path = tmp_path / "goqa.csv"
    pd.DataFrame({"question": ["q"], "answers": ["x"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"goqa\.csv: missing column\(s\) \['selections', 'options'\]"):
        load_table(path)


def test_select_aligns_points_and_marks_missing_answers(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl.gz", [
        oqa("Q1", "A", dist=(0.4, 0.6), attribute="X"), oqa("Q1", "B", dist=(0.1, 0.9), attribute="X"),
        oqa("Q2", "A", options=("a", "b", "c"), dist=(0.2, 0.3, 0.5), ordinal=(1, 2, 3), attribute="X"),
    ])
    table = load_table(path)
    full = select(table, ["A", "B"], require_all_groups=True)
    assert full.qids == ["Q1"] and np.allclose(full.y, [[0.4, 0.6], [0.1, 0.9]])
    partial = select(table, ["A", "B"], require_all_groups=False)
    assert partial.question_points.tolist() == [[0, 1, -1], [2, 3, 4]]
    assert partial.available.tolist() == [[True, True], [True, False]]
    assert np.isnan(partial.y[1, 2:]).all()
    with pytest.raises(DataError, match=r"unknown group\(s\) \['C'\]"):
        select(table, ["A", "C"])


def test_ambiguous_group_names_get_their_attribute():
    table = pd.DataFrame({"attribute": ["RACE", "POLPARTY", "SEX"], "group": ["Other", "Other", "Male"]})
    from gpo.data.survey import group_labels
    assert group_labels(table).tolist() == ["RACE:Other", "POLPARTY:Other", "Male"]


def test_split_is_seeded_disjoint_and_keeps_extra_groups_in_training():
    groups = [f"g{i}" for i in range(17)]
    a = split_groups(groups, 0.4, 0.25, seed=3, extra_train=["x1", "x2"])
    assert a == split_groups(groups, 0.4, 0.25, seed=3, extra_train=["x1", "x2"])
    assert len(a.val) == 2 and len(a.test) == 10 and a.train[-2:] == ["x1", "x2"]
    assert not set(a.train) & set(a.val) and not set(a.val) & set(a.test) and not set(a.train) & set(a.test)
    assert a != split_groups(groups, 0.4, 0.25, seed=4)
    with pytest.raises(ConfigError):
        split_groups(groups[:2], 0.4, 0.25, seed=0)


def test_synthetic_world_is_seeded_and_groups_differ():
    t1, f1 = SyntheticWorld(n_questions=20, n_groups=5, seed=1).build()
    t2, f2 = SyntheticWorld(n_questions=20, n_groups=5, seed=1).build()
    pd.testing.assert_frame_equal(t1, t2)
    assert np.array_equal(f1, f2)
    data = select(t1, "all")
    assert f1.shape == (data.n_points, 32)
    spread = np.nanstd(data.y, axis=0).mean()
    assert spread > 0.05  # groups answer differently, so context carries information


def test_shared_opinionqa_and_globalopinionqa(shared_data):
    table = load_table(shared_data / "opinionqa" / "group_distributions.jsonl.gz")
    data = select(table, "paper17", require_ordinal=True)
    # GPO.md's 668 questions on a full scale, and 11 with an option off the scale ("Not sure"), kept
    assert (len(data.qids), len(data.tasks)) == (679, 17) and len(bad_rows(table)) == 0
    assert sum(np.isnan(o).any() for o in data.ordinal) == 11
    assert np.allclose(np.nansum(data.y, 1), len(data.qids), atol=1e-3)
    goqa = load_table(shared_data / "globalopinionqa" / "country_distributions.jsonl.gz")
    assert len(bad_rows(goqa)) == 18  # the upstream malformed rows (data/README.md)
    countries = select(goqa, "paper14", require_all_groups=False)
    assert len(countries.tasks) == 14 and countries.available.sum(1).min() >= 60


# Whatever bytes a data file holds, a loader answers with a clean GPOError or a valid table.
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
rows = st.one_of(
    json_values,
    st.fixed_dictionaries({"qkey": json_values, "question": json_values, "options": json_values, "attribute": json_values,
                           "option_ordinal": json_values, "group": json_values, "distribution": json_values}),
    st.builds(lambda o: oqa(**o), st.fixed_dictionaries({}, optional={
        "options": st.lists(st.text(max_size=3), max_size=3), "dist": st.lists(st.floats(-1, 2), max_size=3),
        "ordinal": st.lists(st.integers(0, 3) | st.none(), max_size=3), "group": st.text(max_size=3)})),
)


def loads_or_fails_cleanly(path):
    try:
        table = load_table(path)
    except GPOError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    assert list(table.columns) == COLUMNS and len(table)
    for dist in table.distribution:
        assert abs(sum(dist) - 1) < 1e-6 and min(dist) >= 0


@settings(max_examples=60)
@given(st.lists(rows, max_size=6), st.booleans())
def test_any_json_rows_load_or_fail_with_one_line(tmp_path_factory, records, gz):
    path = tmp_path_factory.mktemp("j") / ("d.jsonl.gz" if gz else "d.jsonl")
    opener = gzip.open if gz else open
    with opener(path, "wt") as f:
        for r in records:
            f.write(json.dumps(r, allow_nan=True) + "\n")
    loads_or_fails_cleanly(path)


@settings(max_examples=80)
@given(st.binary(max_size=300), st.sampled_from(["d.jsonl", "d.jsonl.gz", "d.csv", "d.parquet", "release"]), st.booleans())
def test_any_bytes_load_or_fail_with_one_line(tmp_path_factory, data, name, valid_start):
    root = tmp_path_factory.mktemp("b")
    if name == "release":  # the official OpinionQA layout with one of its files replaced by the bytes
        path = write_release(root, ["Yes", "No", "Refused", "Yes", "Yes", "No"])
        survey = path / "human_resp" / "American_Trends_Panel_W99"
        target = survey / ["info.csv", "metadata.csv", "responses.csv"][len(data) % 3]
        target.write_bytes(target.read_bytes()[: len(data)] + data if valid_start else data)
    else:
        path = root / name
        if name == "d.jsonl.gz" and valid_start:  # a gzip stream cut short, or with junk after it
            good = gzip.compress((json.dumps(oqa()) + "\n").encode() * 5, mtime=0)
            data = good[: len(data) % len(good)] + data
        path.write_bytes(data)
    loads_or_fails_cleanly(path)


def test_unreadable_files_are_one_line_errors(tmp_path):
    truncated = tmp_path / "t.jsonl.gz"
    truncated.write_bytes(gzip.compress((json.dumps(oqa()) + "\n").encode() * 50, mtime=0)[:-30])
    binary = tmp_path / "b.jsonl"
    binary.write_bytes(b"\x89PNG\r\n" + bytes(range(128, 256)) * 4)
    not_gzip = tmp_path / "n.jsonl.gz"
    not_gzip.write_text(json.dumps(oqa()) + "\n")
    numbers = tmp_path / "x.jsonl"
    numbers.write_text("3\n" + json.dumps(oqa()) + "\n")
    with pytest.raises(DataError, match=r"t\.jsonl\.gz: unreadable after line \d+ \(EOFError"):
        load_table(truncated)
    with pytest.raises(DataError, match=r"b\.jsonl: no valid rows \(\d+ malformed; e\.g\. .*b\.jsonl: row 1: field 'json': not UTF-8 text"):
        load_table(binary)
    with pytest.raises(DataError, match=r"n\.jsonl\.gz: unreadable after line 0 \(BadGzipFile"):
        load_table(not_gzip)
    table = load_table(numbers)  # a row that is a number, not an object, is one bad row
    assert bad_rows(table).to_dict("records") == [{"file": str(numbers), "row": 1, "field": "json", "reason": "a JSON int, not an object"}]


def test_named_roles_take_exactly_their_groups_and_the_rest_is_drawn():
    groups = [f"g{i}" for i in range(10)]
    split = split_groups(groups, 0.4, 0.25, seed=1, test=["x1", "x2"])
    assert split.test == ["x1", "x2"] and sorted(split.train + split.val) == groups and len(split.val) == 2
    split = split_groups(groups, 0.4, 0.25, seed=1, test=["x1"], train=["g0", "g1", "g2", "g3"])
    assert split.test == ["x1"] and len(split.val) == 1 and sorted(split.train + split.val) == ["g0", "g1", "g2", "g3"]
    split = split_groups(groups, 0.4, 0.25, seed=1, val=["g9"])
    assert split.val == ["g9"] and "g9" not in split.train + split.test and len(split.test) == 5
    with pytest.raises(ConfigError, match="share"):
        split_groups(groups, 0.4, 0.25, seed=1, test=["g1"], train=["g1"])
    with pytest.raises(ConfigError, match="no validation group"):
        split_groups([], 0.4, 0.25, seed=1, test=["x1"], train=[])
    # naming no role draws the same split as not passing the roles at all
    assert split_groups(groups, 0.4, 0.25, seed=3) == split_groups(groups, 0.4, 0.25, seed=3, test=[], val=[], train=[])


def roles_world():
    """Groups a..f answer every question; "new1" and "new2" (another attribute) only some."""
    rows = []
    for q in range(12):
        for g in "abcdef":
            rows.append(oqa(f"Q{q:02d}", g, dist=(0.3, 0.7), attribute="X"))
        for g, answered in (("new1", range(0, 12, 2)), ("new2", range(0, 12, 3))):
            if q in answered:
                rows.append(oqa(f"Q{q:02d}", g, dist=(0.6, 0.4), attribute="Y"))
    return pd.DataFrame([make_row("t", r["qkey"], r["question"], r["options"], r["option_ordinal"], r["attribute"],
                                  r["group"], r["distribution"], r["n"]) for r in rows])


def survey(table, *overrides):
    return load_survey(load_config(None, ["data.source=t.jsonl", *overrides]), table)


def test_training_groups_keep_their_own_questions_and_test_groups_the_evaluation_questions():
    table = roles_world()
    table = table[~((table.group == "a") & table.qid.isin(["Q00", "Q01"]))]  # "a" skipped two questions
    table = pd.concat([table, pd.DataFrame([make_row("t", "Q99", "q?", ["y", "n"], [1, 2], "X", g, [0.5, 0.5], 9)
                                            for g in "bc"])])  # a question only "b" and "c" answered
    data, split, _ = survey(table, "data.groups=[a, b, c, d, e, f]", "data.test_groups=[b, c]", "data.val_groups=[d]")
    answered = dict(zip(data.tasks, data.available.sum(1)))
    assert split.test == ["b", "c"] and split.val == ["d"] and sorted(split.train) == ["a", "e", "f"]
    # evaluation questions: answered by all six ("a" skipped Q00, Q01; only b, c answered Q99)
    assert answered["b"] == answered["c"] == answered["d"] == 10
    assert answered["e"] == 12 and answered["a"] == 10  # training groups: every question they answered


def test_test_groups_of_another_attribute_are_named_and_an_empty_group_is_an_error():
    table = roles_world()
    data, split, _ = survey(table, "data.groups=[a, b, c, d, e, f]", "data.test_groups=[new1, new2]",
                            "data.require_all_groups=false")
    assert split.test == ["new1", "new2"] and len(split.train) + len(split.val) == 6
    assert dict(zip(data.tasks, data.available.sum(1)))["new2"] == 4
    with pytest.raises(DataError, match=r"group\(s\) \['new2'\] answered none of the kept questions"):
        survey(table[~((table.group == "new2"))].pipe(lambda t: pd.concat(
            [t, pd.DataFrame([make_row("t", "Q77", "q?", ["y", "n", "z"], None, "Y", "new2", [0.2, 0.3, 0.5], 9)])])),
            "data.groups=[a, b, c, d, e, f]", "data.test_groups=[new1, new2]", "data.require_all_groups=false")


def test_sparse_test_groups_keep_a_seeded_share_of_their_answers():
    table = roles_world()
    full, split, _ = survey(table, "data.groups=[a, b, c, d, e, f]", "data.train_fraction=0.5")
    sparse, same, _ = survey(table, "data.groups=[a, b, c, d, e, f]", "data.train_fraction=0.5", "data.test_answer_fraction=0.3")
    assert same == split
    n = dict(zip(sparse.tasks, sparse.available.sum(1)))
    assert all(n[g] == round(0.3 * 12) for g in split.test) and all(n[g] == 12 for g in split.train + split.val)
    again, _, _ = survey(table, "data.groups=[a, b, c, d, e, f]", "data.train_fraction=0.5", "data.test_answer_fraction=0.3")
    assert np.array_equal(again.available, sparse.available)


def test_letters_only_moves_the_option_wording_into_the_question():
    from gpo.data.transforms import options_as_letters

    table = options_as_letters(roles_world())
    row = table.iloc[0]
    assert row.options == ["A", "B"] and row.question.endswith("Options:\nA. Yes\nB. No")
