"""Eurus-2-RL rows: validation, math suffix, malformed rows skipped and counted (no seqio)."""

import json

import pyarrow as pa
import pyarrow.parquet as pq

from prime_jax.data import MATH_SUFFIX, DataStats, load_eurus_records, parse_eurus_row
from prime_jax.data.records import MalformedRow

SYSTEM = {"role": "system", "content": "think step by step"}
CODE_TESTS = json.dumps({"inputs": ["1\n"], "outputs": ["2\n"]})


def row(user="what is 6*7?", ability="math", gt="42", system=True, **over):
    out = {"data_source": "numina_olympiads",
           "prompt": ([SYSTEM] if system else []) + [{"role": "user", "content": user}],
           "ability": ability, "reward_model": {"style": "rule", "ground_truth": gt},
           "extra_info": {"split": "train", "index": 0}}
    out.update(over)
    return out


def valid_rows():
    return [row(), row(user="add 1 and 1" + MATH_SUFFIX, gt="2", system=False),
            row(user="print n+1", ability="code", gt=CODE_TESTS)]


def malformed_parquet_rows():
    return [row(ability="physics"), row(gt=None), row(prompt=[]),
            row(ability="code", gt="not json"),
            row(prompt=[{"role": "assistant", "content": "hi"}]), row(gt="  ")]


def write_jsonl(path, rows, extra_lines=()):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        for line in extra_lines:
            f.write(line + "\n")
    return path


def write_parquet(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


JSONL_JUNK = ["{broken json", "[1, 2, 3]", json.dumps({"ability": "math"}),
              json.dumps(row(reward_model="42")),
              json.dumps(row(prompt=[{"role": "user"}])),
              json.dumps(row(prompt=json.dumps([{"role": "user", "content": "5+5?"}])))]


def test_valid_rows_normalised():
    first, suffixed, code = [parse_eurus_row(r) for r in valid_rows()]
    assert first.messages[0] == ("system", "think step by step")
    assert first.messages[-1] == ("user", "what is 6*7?" + MATH_SUFFIX)
    assert suffixed.messages[-1][1].count(MATH_SUFFIX) == 1  # not appended twice
    assert code.messages[-1][1] == "print n+1" and code.ground_truth == CODE_TESTS
    assert (first.ability, first.ground_truth) == ("math", "42")
    assert first.data_source == "numina_olympiads"
    assert parse_eurus_row(row(gt=7)).ground_truth == "7"


def test_jsonl_skips_and_counts(tmp_path):
    path = write_jsonl(tmp_path / "rl.jsonl", valid_rows() + malformed_parquet_rows(), JSONL_JUNK)
    stats = DataStats()
    records = load_eurus_records(path, stats)
    # the last junk line stores the prompt as a JSON string: accepted
    assert len(records) == 4 and records[-1].messages[-1][1].startswith("5+5?")
    assert stats.rows_read == 3 + 6 + 6 and stats.rows_kept == 4
    assert stats.skipped_malformed == 11
    assert stats.skip_reasons["not_an_object"] == 2 and stats.skip_reasons["bad_ability"] == 1
    assert stats.skip_reasons["bad_prompt"] == 2
    assert json.loads(json.dumps(stats.as_dict()))["skipped_malformed"] == 11


def test_parquet_skips_and_counts(tmp_path):
    path = write_parquet(tmp_path / "rl.parquet", valid_rows() + malformed_parquet_rows())
    stats = DataStats()
    records = load_eurus_records(path, stats)
    assert [r.ground_truth for r in records] == ["42", "2", CODE_TESTS]
    assert stats.skipped_malformed == 6 and stats.rows_read == 9
    assert set(stats.skip_reasons) == {"bad_ability", "bad_ground_truth", "bad_prompt",
                                       "bad_code_tests", "no_user_message"}


def test_directory_of_files(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", valid_rows())
    write_parquet(tmp_path / "b.parquet", valid_rows())
    assert len(load_eurus_records(tmp_path)) == 6
    assert len(load_eurus_records(tmp_path, limit=4)) == 4


def test_malformed_reason_attribute():
    try:
        parse_eurus_row({"prompt": "x"})
    except MalformedRow as e:
        assert e.reason == "bad_ability"
