import gzip
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpo.data.jsonl import question_id
from gpo.data.opinionqa import load_opinionqa_release
from gpo.data.respondents import load_responses, responses_table
from gpo.errors import DataError, GPOError

# The official release layout: Q1 everyone, Q2 form 1 only, Q3 form 2 only (a text column, the
# others Pew's numeric codes); empty = not asked, 99 = Refused; metadata lists RELIG, which
# responses.csv lacks, and POLPARTY without "Independent", which a respondent gives.
HEADER = "QKEY,Q1_W99,Q2F1_W99,Q3F2_W99,SEX,POLPARTY,WEIGHT_W99"
GOOD = [
    "101,1,2,,Male,Democrat,1.0",
    "102,99,1,,Female,,2.0",
    "103,2,,Cats,,Republican,0.5",
    "104,1,,Refused,Male,Independent,1.5",
]


def write_survey(root, lines=GOOD, wave=99, header=HEADER):
    survey = root / "human_resp" / f"American_Trends_Panel_W{wave}"
    survey.mkdir(parents=True)
    pd.DataFrame({
        "key": [f"Q1_W{wave}", f"Q2F1_W{wave}", f"Q3F2_W{wave}"],
        "question": ["Do you like it?", "How much?", "Which one?"],
        "references": ["['Yes', 'No', 'Refused']", "['A lot', 'Some', 'None', 'Refused']", "['Cats', 'Dogs', 'Refused']"],
        "option_ordinal": ["[1.0, 2.0]", "[1.0, 2.0, 3.0]", "None"],
        "option_mapping": ["{1.0: 'Yes', 2.0: 'No', 99.0: 'Refused'}",
                           "{1.0: 'A lot', 2.0: 'Some', 3.0: 'None', 99.0: 'Refused'}",
                           "{1.0: 'Cats', 2.0: 'Dogs', 99.0: 'Refused'}"],
    }).to_csv(survey / "info.csv")
    pd.DataFrame({"key": ["SEX", "POLPARTY", "RELIG"],
                  "options": ["['Male', 'Female']", "['Republican', 'Democrat']", "['Protestant', 'Jewish']"],
                  }).to_csv(survey / "metadata.csv")
    (survey / "responses.csv").write_text("\n".join([header.replace("W99", f"W{wave}"), *lines]) + "\n")
    return survey


def problems(r):
    return [(p.row, p.field, p.reason) for p in r.problems]


def test_release_decodes_codes_and_texts_refusals_and_two_forms(tmp_path):
    survey = write_survey(tmp_path)
    r = load_responses(tmp_path)
    assert r.dataset == "opinionqa" and r.problems == []
    assert r.qids == ["Q1_W99", "Q2F1_W99", "Q3F2_W99"]
    assert r.options == [["Yes", "No"], ["A lot", "Some", "None"], ["Cats", "Dogs"]]
    assert r.ordinal == [[1.0, 2.0], [1.0, 2.0, 3.0], None]
    assert r.respondents == ["101", "102", "103", "104"]
    # refused (99, "Refused"): asked, -1; an empty cell: not asked, -1
    np.testing.assert_array_equal(r.answers, [[0, 1, -1], [-1, 0, -1], [1, -1, 0], [0, -1, -1]])
    np.testing.assert_array_equal(r.asked, [[1, 1, 0], [1, 1, 0], [1, 0, 1], [1, 0, 1]])
    assert r.answers.dtype == np.int16 and r.asked.dtype == bool
    np.testing.assert_array_equal(r.weights, [1.0, 2.0, 0.5, 1.5])
    assert list(r.attributes.columns) == ["SEX", "POLPARTY"]  # metadata's keys present in responses.csv
    assert all(isinstance(t, pd.CategoricalDtype) for t in r.attributes.dtypes)
    # metadata's groups first, then the others seen; an empty cell is NaN
    assert list(r.attributes.POLPARTY.cat.categories) == ["Republican", "Democrat", "Independent"]
    assert r.attributes.POLPARTY.isna().tolist() == [False, True, False, False]
    assert r.attributes.SEX.isna().tolist() == [False, False, True, False] and r.attributes.SEX[3] == "Male"
    np.testing.assert_array_equal(r.rows, [1, 2, 3, 4])
    assert r.where(2) == f"{survey / 'responses.csv'}: row 3"
    # the same answers through the release root, its human_resp/ and the survey folder
    for path in (tmp_path / "human_resp", survey):
        np.testing.assert_array_equal(load_responses(path).answers, r.answers)


@pytest.mark.parametrize("line, field, reason", [
    ("105,7,1,,Male,Democrat,1.0", "Q1_W99", "answer code 7 is not in option_mapping"),
    ("105,1,,Fish,Male,Democrat,1.0", "Q3F2_W99", "answer 'Fish' is not an option"),
    ("101,2,1,,Male,Democrat,1.0", "QKEY", "duplicate of row 1"),
    (",1,1,,Male,Democrat,1.0", "QKEY", "missing respondent id"),
    ("105,99,99,,Female,Democrat,1.0", "QKEY", "no answer to any question (2 asked)"),
    ("105,1,1,,Male,Democrat,-1", "WEIGHT_W99", "negative weight -1"),
    ("105,1,1,,Male,Democrat,", "WEIGHT_W99", "missing weight"),
    ("105,1,1,,Male,Democrat,heavy", "WEIGHT_W99", "weight 'heavy' is not a number"),
    ("105,1,1,,Male,Democrat,inf", "WEIGHT_W99", "infinite weight"),
])
def test_release_reports_a_bad_row_and_skips_or_stops(tmp_path, line, field, reason):
    survey = write_survey(tmp_path, GOOD + [line])
    r = load_responses(tmp_path)
    assert problems(r) == [(5, field, reason)] and all(p.file == str(survey / "responses.csv") for p in r.problems)
    answer_only = field.startswith("Q") and field != "QKEY"  # a bad answer drops the answer, not the respondent
    assert len(r.respondents) == (5 if answer_only else 4)
    if answer_only:
        assert r.asked[4].sum() == 2 and (r.answers[4] >= 0).sum() == 1
    with pytest.raises(DataError) as e:
        load_responses(tmp_path, on_bad_rows="error")
    assert str(e.value) == f"{survey / 'responses.csv'}: row 5: field '{field}': {reason}"


@pytest.mark.parametrize("cell, answer, reported", [("No", 1, []), ("Banana", -1, [(1, "Q1_W99", "answer 'Banana' is not an option")])])
def test_one_text_cell_among_codes_costs_that_cell_only(tmp_path, cell, answer, reported):
    """A question column of codes with one text in it: an option's text is read as that option,
    any other text is that cell's problem alone; the codes (refusals included) still decode."""
    lines = [GOOD[0].replace("101,1,", f"101,{cell},", 1), *GOOD[1:]]
    write_survey(tmp_path, lines)
    r = load_responses(tmp_path)
    assert problems(r) == reported
    np.testing.assert_array_equal(r.answers[:, 0], [answer, -1, 1, 0])  # 102 refused (99), 103 "No" (2), 104 "Yes" (1)


def test_a_zero_weight_is_kept_with_a_warning_and_all_zero_is_one_line(tmp_path, caplog):
    zero = lambda line: line.rsplit(",", 1)[0] + ",0"  # noqa: E731
    write_survey(tmp_path / "one", [zero(GOOD[0]), *GOOD[1:]])
    r = load_responses(tmp_path / "one")
    assert r.weights.tolist() == [0.0, 2.0, 0.5, 1.5] and r.problems == []
    assert "1 respondent(s) weighted 0: tasks like any other, counted in no survey-weighted share or mean" in caplog.text
    write_survey(tmp_path / "all", [zero(line) for line in GOOD])
    with pytest.raises(DataError, match=r"every respondent's survey weight is 0, so no weighted share or mean is defined"):
        load_responses(tmp_path / "all")


def test_release_missing_weight_column_or_no_valid_respondent_is_one_line_error(tmp_path):
    survey = write_survey(tmp_path / "a", header=HEADER.replace(",WEIGHT_W99", ""),
                          lines=[line.rsplit(",", 1)[0] for line in GOOD])
    with pytest.raises(DataError, match=r"responses\.csv: missing column\(s\) \['WEIGHT_W99'\]$"):
        load_responses(survey)
    survey = write_survey(tmp_path / "b", lines=["101,99,,Refused,Male,Democrat,1", "102,,99,,Male,Democrat,x"])
    with pytest.raises(DataError, match=r"American_Trends_Panel_W99: no valid respondents \(2 malformed; e\.g\. .*row 2: "
                                        r"field 'WEIGHT_W99': weight 'x' is not a number\)$"):
        load_responses(survey)


def test_two_surveys_are_concatenated_with_ids_named_by_survey(tmp_path):
    write_survey(tmp_path, wave=98)
    w99 = write_survey(tmp_path, GOOD[:2], wave=99)
    r = load_responses(tmp_path)
    assert r.respondents[3:] == ["American_Trends_Panel_W98/104", "American_Trends_Panel_W99/101",
                                 "American_Trends_Panel_W99/102"]
    assert len(r.qids) == 6 and r.qids == sorted(r.qids)
    w98 = np.array([q.endswith("_W98") for q in r.qids])
    assert not r.asked[:4, ~w98].any() and not r.asked[4:, w98].any()  # each respondent only its wave's questions
    assert r.where(5) == f"{w99 / 'responses.csv'}: row 2"


# The per-respondent CSV: rows 1-3 are good; each case appends a bad row 4 (and row 5).
CSV_HEADER = "respondent,qid,question,options,answer,ordinal,weight,SEX"
CSV_GOOD = [
    "a,Q1,Like?,\"['Yes', 'No']\",Yes,\"[1, 2]\",1,Male",
    "a,Q2,Pick?,\"['Cats', 'Dogs']\",Cats,,1,Male",
    "b,Q1,Like?,\"['Yes', 'No']\",No,\"[1, 2]\",2,Female",
]


def write_csv(path, lines, header=CSV_HEADER):
    text = "\n".join([header, *lines]) + "\n"
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        path.write_text(text)
    return path


def test_csv_decodes_answers_refusals_weights_and_attributes(tmp_path):
    path = write_csv(tmp_path / "panel.csv.gz", [
        "a,Do you like it?,\"['Yes', 'No', 'Refused']\",No,\"[1, 2]\",2.0,Male",
        "a,Pick one,\"[\"\"Cats\"\", \"\"Dogs\"\"]\",Cats,,2.0,Male",  # JSON quoting: the same options
        "b,Do you like it?,\"[\"\"Yes\"\", \"\"No\"\", \"\"Refused\"\"]\",Refused,\"[1.0, 2.0]\",0.5,",
        "b,Pick one,\"['Cats', 'Dogs']\",Dogs,,0.5,",
        "c,Pick one,\"['Cats', 'Dogs']\",,,1,Female",  # an empty answer: asked, not answered
        "c,Do you like it?,\"['Yes', 'No']\",Yes,\"[1, 2]\",1,Female",
        "d,Pick one,\"['Cats', 'Dogs']\",Cats,,3,Male",
    ], header="respondent,question,options,answer,ordinal,weight,SEX")
    r = load_responses(path)
    assert r.dataset == "panel" and r.problems == []
    like, pick = question_id("Do you like it?", ["Yes", "No"]), question_id("Pick one", ["Cats", "Dogs"])
    assert r.qids == sorted([like, pick])
    k = r.qids.index(like)
    assert r.options[k] == ["Yes", "No"] and r.ordinal[k] == [1.0, 2.0] and r.ordinal[1 - k] is None
    assert r.questions[k] == "Do you like it?"
    assert r.respondents == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(r.answers[:, [k, 1 - k]], [[1, 0], [-1, 1], [0, -1], [-1, 0]])
    np.testing.assert_array_equal(r.asked[:, [k, 1 - k]], [[1, 1], [1, 1], [1, 1], [0, 1]])
    np.testing.assert_array_equal(r.weights, [2.0, 0.5, 1.0, 3.0])
    np.testing.assert_array_equal(r.rows, [1, 3, 5, 7])
    assert list(r.attributes.columns) == ["SEX"] and list(r.attributes.SEX.cat.categories) == ["Female", "Male"]
    assert r.attributes.SEX.isna().tolist() == [False, True, False, False]
    # without a weight column every weight is 1
    plain = write_csv(tmp_path / "plain.csv", ["a,Pick one,\"['Cats', 'Dogs']\",Cats"], header="respondent,question,options,answer")
    assert load_responses(plain).weights.tolist() == [1.0]


@pytest.mark.parametrize("lines, field, reason", [
    (["b,Q2,Pick?,\"['Cats', 'Dogs']\",Fish,,2,Female"], "answer", "answer 'Fish' is not an option of question Q2"),
    (["b,Q2,Pick?,\"['Cats', 'Dogs', 'Fish']\",Cats,,2,Female"], "options", "differs from row 2 of question Q2"),
    (["b,Q2,Choose?,\"['Cats', 'Dogs']\",Cats,,2,Female"], "question", "differs from row 2 of question Q2"),
    (["b,Q2,Pick?,\"['Cats', 'Dogs']\",Cats,\"[1, 2]\",2,Female"], "ordinal", "differs from row 2 of question Q2"),
    (["b,Q2,Pick?,\"['Cats', 'Dogs'\",Cats,,2,Female"], "options", "not a JSON or Python list literal: \"['Cats', 'Dogs'\""),
    (["b,Q2,Pick?,,Cats,,2,Female"], "options", "missing options"),
    (["b,Q2,Pick?,\"['Cats', 'Cats']\",Cats,,2,Female"], "options", "two options have the same text"),
    (["b,Q2,Pick?,\"['Cats', 'Dogs']\",Cats,\"[1,\",2,Female"], "ordinal", "not a JSON or Python list literal: '[1,'"),
    (["b,Q2,Pick?,\"['Cats', 'Dogs']\",Cats,\"[1, 2, 3]\",2,Female"], "ordinal", "2 options but 3 ordinal values"),
    (["a,Q1,Like?,\"['Yes', 'No']\",No,\"[1, 2]\",1,Male"], "respondent", "duplicate of row 1 (respondent a, question Q1)"),
    (["b,Q2,Pick?,\"['Cats', 'Dogs']\",Cats,,5,Female"], "weight", "differs from row 3 of respondent b"),
    (["b,Q2,Pick?,\"['Cats', 'Dogs']\",Cats,,2,Male"], "SEX", "differs from row 3 of respondent b"),
    (["b,,Pick?,\"['Cats', 'Dogs']\",Cats,,2,Female"], "qid", "missing qid"),
    ([",Q2,Pick?,\"['Cats', 'Dogs']\",Cats,,2,Female"], "respondent", "missing respondent id"),
    (["c,Q1,Like?,\"['Yes', 'No']\",Yes,\"[1, 2]\",-1,Male", "c,Q2,Pick?,\"['Cats', 'Dogs']\",Cats,,-1,Male"],
     "weight", "negative weight -1"),
    (["c,Q1,Like?,\"['Yes', 'No']\",Yes,\"[1, 2]\",heavy,Male"], "weight", "weight 'heavy' is not a number"),
    (["c,Q1,Like?,\"['Yes', 'No']\",Yes,\"[1, 2]\",,Male"], "weight", "missing weight"),
    (["c,Q1,Like?,\"['Yes', 'No']\",Refused,\"[1, 2]\",1,Male", "c,Q2,Pick?,\"['Cats', 'Dogs']\",,,1,Male"],
     "respondent", "no answer to any question (2 asked)"),
])
def test_csv_reports_a_bad_row_and_skips_or_stops(tmp_path, lines, field, reason):
    path = write_csv(tmp_path / "d.csv", CSV_GOOD + lines)
    r = load_responses(path)
    assert problems(r) == [(4, field, reason)] and r.problems[0].file == str(path)
    assert r.respondents[:2] == ["a", "b"]
    if field == "answer":  # the answer is dropped; the question was still put to the respondent
        assert r.asked[1].all() and r.answers[1].tolist() == [1, -1]
    with pytest.raises(DataError) as e:
        load_responses(path, on_bad_rows="error")
    assert str(e.value) == f"{path}: row 4: field '{field}': {reason}"


def test_csv_missing_columns_corrupt_gzip_and_no_valid_respondent_are_one_line_errors(tmp_path):
    missing = write_csv(tmp_path / "m.csv", ["a,Q?,\"['Yes']\""], header="respondent,question,options")
    with pytest.raises(DataError, match=r"m\.csv: missing column\(s\) \['answer'\]$"):
        load_responses(missing)
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(write_csv(tmp_path / "whole.csv.gz", CSV_GOOD * 50).read_bytes()[:-30])
    with pytest.raises(DataError, match=r"cut\.csv\.gz: unreadable \("):
        load_responses(cut)
    refused = write_csv(tmp_path / "r.csv", ["a,Q1,Like?,\"['Yes', 'No']\",Refused,,1,Male"])
    with pytest.raises(DataError, match=r"r\.csv: no valid respondents \(1 malformed; e\.g\. .*row 1: field 'respondent': "
                                       r"no answer to any question \(1 asked\)\)$"):
        load_responses(refused)
    with pytest.raises(DataError, match=r"x\.txt: unknown per-respondent format"):
        load_responses(write_csv(tmp_path / "x.txt", CSV_GOOD))


def test_responses_table_lists_every_asked_answer_and_survives_parquet(tmp_path):
    r = load_responses(write_survey(tmp_path))
    table = responses_table(r)
    assert len(table) == r.asked.sum()
    assert table.respondent.tolist()[:2] == ["101", "101"] and table.qid.tolist()[:2] == ["Q1_W99", "Q2F1_W99"]
    answered = table.option >= 0
    expected = [r.options[r.qids.index(q)][o] for q, o in zip(table.qid[answered], table.option[answered])]
    assert table.answer[answered].tolist() == expected and table.answer[~answered].isna().all()
    assert table.weight.tolist() == [1.0, 1.0, 2.0, 2.0, 0.5, 0.5, 1.5, 1.5]
    table.to_parquet(tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert isinstance(back.answer.dtype, pd.CategoricalDtype)
    pd.testing.assert_frame_equal(back.astype({c: object for c in ("respondent", "qid", "answer")}),
                                  table.astype({c: object for c in ("respondent", "qid", "answer")}))


W41 = "opinionqa/human_resp/American_Trends_Panel_W41"
COMPARED = ["OPTIMIST_W41", "ELDFINANCEF1_W41", "GOVPRIOkF2_W41", "HARASS5_W41", "SSMONEY_W41"]


def test_real_w41_respondents_and_the_group_loader_decode_alike(shared_data, tmp_path):
    folder = shared_data / W41
    if not (folder / "responses.csv").is_file():
        pytest.skip(f"{folder / 'responses.csv'} not found")
    r = load_responses(folder)
    assert len(r.respondents) == 2524 and len(r.qids) == 90 and r.problems == []
    per_respondent = r.asked.sum(axis=1)  # 59 common questions, 13 or 14 of one form, 0-4 by skip logic
    assert per_respondent.min() == 72 and per_respondent.max() == 77
    form1 = r.asked[:, ["F1" in q for q in r.qids]].any(axis=1)
    form2 = r.asked[:, ["F2" in q for q in r.qids]].any(axis=1)
    assert (form1 ^ form2).all() and form1.sum() == 1249 and form2.sum() == 1275
    assert ((r.answers >= 0) <= r.asked).all() and (r.asked & (r.answers < 0)).sum() == 3124  # the 99s
    assert abs(r.weights.mean() - 1) < 1e-6
    assert r.attributes.POLPARTY.isna().sum() == 30 and "Living with a partner" in r.attributes.MARITAL.cat.categories

    # The group loader over the same responses.csv, trimmed to a few questions and one attribute
    trimmed = tmp_path / "American_Trends_Panel_W41"
    trimmed.mkdir()
    info = pd.read_csv(folder / "info.csv")
    info[info.key.isin(COMPARED)].to_csv(trimmed / "info.csv", index=False)
    metadata = pd.read_csv(folder / "metadata.csv")
    metadata[metadata.key == "POLPARTY"].to_csv(trimmed / "metadata.csv", index=False)
    (trimmed / "responses.csv").symlink_to((folder / "responses.csv").resolve())
    groups = load_opinionqa_release(trimmed)
    democrat = (r.attributes.POLPARTY == "Democrat").to_numpy()
    for qid in COMPARED:
        q = r.qids.index(qid)
        chosen = democrat & (r.answers[:, q] >= 0)
        shares = np.bincount(r.answers[chosen, q], weights=r.weights[chosen], minlength=len(r.options[q]))
        row = groups[(groups.qid == qid) & (groups.group == "Democrat")].iloc[0]
        assert row.options == r.options[q] and row.n == chosen.sum()
        np.testing.assert_allclose(shares / shares.sum(), row.distribution, rtol=0, atol=1e-9)


CSV_COLUMNS = ["respondent", "qid", "question", "options", "answer", "ordinal", "weight", "SEX"]
cells = st.one_of(st.text(max_size=6), st.sampled_from(["", " ", "Yes", "No", "Refused", "1", "-1", "nan", "inf"]))
csv_rows = st.fixed_dictionaries({
    "respondent": st.sampled_from(["a", "b", "", " c"]) | cells,
    "qid": st.sampled_from(["Q1", "Q2", ""]),
    "question": st.sampled_from(["Like?", "Pick?", ""]),
    "options": st.sampled_from(["['Yes', 'No']", '["Yes", "No", "Refused"]', "[]", "[1, 2]", "['Yes'", "['A', 'A']",
                                "None", "[[1]]", "[10 ** 400]", ""]) | cells,
    "answer": cells,
    "ordinal": st.sampled_from(["", "[1, 2]", "[1]", "None", "[1, 'x']", "[nan, 1]"]) | cells,
    "weight": st.sampled_from(["1", "0.5", "0", "-1", "", "abc", "inf"]) | cells,
    "SEX": st.sampled_from(["Male", "Female", ""]) | cells,
})


@settings(max_examples=80)
@given(st.lists(csv_rows, max_size=8), st.sets(st.sampled_from(["qid", "ordinal", "weight", "SEX"])), st.booleans())
def test_any_csv_rows_load_or_fail_with_one_line(tmp_path_factory, rows, dropped, gz):
    path = tmp_path_factory.mktemp("c") / ("d.csv.gz" if gz else "d.csv")
    frame = pd.DataFrame(rows, columns=CSV_COLUMNS).drop(columns=list(dropped))
    frame.to_csv(path, index=False)
    try:
        r = load_responses(path)
    except GPOError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    n, q = r.answers.shape
    assert n == len(r.respondents) == len(set(r.respondents)) == len(r.weights) == len(r.attributes) == len(r.rows) > 0
    assert q == len(r.qids) == len(r.options) == len(r.ordinal) and r.qids == sorted(set(r.qids))
    sizes = np.array([len(o) for o in r.options])
    assert ((r.answers >= -1) & (r.answers < sizes)).all() and ((r.answers >= 0) <= r.asked).all()
    assert (r.answers >= 0).any(axis=1).all() and np.isfinite(r.weights).all() and (r.weights >= 0).all()
    assert all("\n" not in str(p) for p in r.problems)
    json.dumps([vars(p) for p in r.problems])  # problems are plain records


@settings(max_examples=60)
@given(st.binary(max_size=300), st.sampled_from(["d.csv", "d.csv.gz", "responses.csv", "info.csv"]), st.booleans())
def test_any_bytes_load_or_fail_with_one_line(tmp_path_factory, data, name, valid_start):
    root = tmp_path_factory.mktemp("b")
    if name.startswith(("responses", "info")):  # one file of a release folder replaced or cut and extended
        target = write_survey(root) / name
        path = root
    else:
        target = path = write_csv(root / name, CSV_GOOD)
    target.write_bytes(target.read_bytes()[: len(data)] + data if valid_start else data)
    try:
        r = load_responses(path)
    except GPOError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    assert len(r.respondents) == len(r.answers) > 0 and ((r.answers >= 0) <= r.asked).all()


def test_release_questions_that_do_not_decode_are_reported_and_the_rest_load(tmp_path):
    survey = write_survey(tmp_path)
    info = pd.read_csv(survey / "info.csv", index_col=0, keep_default_na=False)
    extra = info.iloc[[0, 1]].assign(key=["Q1_W99", "Q9_W99"])  # a key twice, a key without a column
    pd.concat([info, extra], ignore_index=True).to_csv(survey / "info.csv")
    r = load_responses(tmp_path)
    assert problems(r) == [(4, "key", "duplicate of row 1"), (0, "Q9_W99", "question column missing")]
    assert r.qids == ["Q1_W99", "Q2F1_W99", "Q3F2_W99"] and r.answers[:, 0].tolist() == [0, -1, 1, 0]


def test_a_question_of_two_surveys_with_other_options_is_dropped_from_the_later(tmp_path):
    write_survey(tmp_path)
    other = tmp_path / "human_resp" / "Other_Panel_W99"
    (tmp_path / "human_resp" / "American_Trends_Panel_W99").rename(tmp_path / "keep")
    write_survey(tmp_path)
    (tmp_path / "keep").rename(other)
    info = pd.read_csv(other / "info.csv", index_col=0, keep_default_na=False)
    info.loc[0, "references"] = "['Yes', 'No', 'Maybe', 'Refused']"
    info.loc[0, "option_mapping"] = "{1.0: 'Yes', 2.0: 'No', 3.0: 'Maybe', 99.0: 'Refused'}"
    info.to_csv(other / "info.csv")
    r = load_responses(tmp_path)
    first = tmp_path / "human_resp" / "American_Trends_Panel_W99" / "responses.csv"
    assert problems(r) == [(0, "Q1_W99", f"options differ from those of question Q1_W99 in {first}"),
                           (4, "QKEY", "no answer to any question (1 asked)")]  # Other's 104 answered only Q1
    assert r.options[0] == ["Yes", "No"] and not r.asked[4:, 0].any() and r.asked[:4, 0].all()
    assert r.respondents[3:] == ["American_Trends_Panel_W99/104", "Other_Panel_W99/101", "Other_Panel_W99/102",
                                 "Other_Panel_W99/103"]
