"""A real ProcessBench row through the CLI (issue 27 item 3): the first row of Qwen/ProcessBench's
gsm8k split (id gsm8k-0, generator Qwen2-7B-Instruct, first error at step 1, Apache-2.0), shipped
as prime_jax/assets/processbench/gsm8k_public_rows.jsonl. It was rebuilt from public copies (the
problem text from Qwen2.5-Math-PRM usage examples, the four steps from a ProcessBench dataset
card); the file is in the dataset's own field order, so the CLI reads it as it reads a downloaded
split. The verifiers are random, so only the path is tested, not a score."""

import dataclasses
import json
import pathlib

import pytest
from flax import nnx

from prime_jax import processbench as cli
from prime_jax.data import load_tokenizer
from prime_jax.data.qwen_style_tokenizer import build_qwen_style_tokenizer
from prime_jax.eval.processbench import encode_record, load_processbench
from prime_jax.models import Transformer, explicit_prm_from_backbone, save_explicit_prm, save_pretrained
from prime_jax.run_dir import write_reward_model_info
from tiny_run import tiny_config
from verifier_dirs import save_base, write_explicit_prm

ROWS = pathlib.Path(cli.__file__).parent / "assets" / "processbench" / "gsm8k_public_rows.jsonl"


def test_the_public_row_parses_as_processbench_publishes_it():
    records, skipped = load_processbench(ROWS)
    assert not skipped and len(records) == 1
    (row,) = records
    assert (row.id, row.label, row.final_answer_correct, row.generator) == ("gsm8k-0", 1, False, "Qwen2-7B-Instruct")
    assert len(row.steps) == 4 and row.problem.startswith("Sue lives in a fun neighborhood.  One weekend")
    assert "\\(12 + 6 = 18\\) pink flamingos" in row.steps[1]  # the first error: 12 pink, not 18
    assert list(json.loads(ROWS.read_text())) == ["id", "generator", "problem", "steps", "final_answer_correct",
                                                  "label"]


@pytest.fixture(scope="module")
def byte_level_prm(tmp_path_factory):
    """A random explicit PRM over the offline Qwen2-style byte-level tokenizer, long enough positions
    for a GSM8K solution; its steps are joined by a blank line, as ProcessBench's evaluation does."""
    root = tmp_path_factory.mktemp("public_row")
    tokenizer = load_tokenizer(build_qwen_style_tokenizer(root / "tokenizer"))
    config = dataclasses.replace(tiny_config(tokenizer), max_position_embeddings=4096)
    base = Transformer(config, rngs=nnx.Rngs(0))
    save_pretrained(base, root / "hf", tokenizer=tokenizer)
    save_explicit_prm(explicit_prm_from_backbone(base), root / "prm" / "model", tokenizer=tokenizer)
    write_reward_model_info(root / "prm", {"kind": "explicit_prm", "step_delimiter": "\n\n"}, None)
    return root


def test_the_public_row_is_scored_at_each_of_its_four_step_ends(byte_level_prm):
    out = byte_level_prm / "out"
    assert cli.main(["--data", str(ROWS), "--explicit-prm", str(byte_level_prm / "prm"), "--batch-size", "1",
                     "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    split = results["splits"]["gsm8k_public_rows"]
    assert (split["n"], split["n_erroneous"], split["n_correct"]) == (1, 1, 0)
    assert results["verifier"]["step_delimiter"] == "\n\n" and split["acc_erroneous"] in (0.0, 1.0)


def test_a_verifier_that_cannot_read_the_text_is_refused(tmp_path, capsys):
    """The character vocabulary of the synthetic tasks has no capital letters: scoring GSM8K text
    with it would judge '<unk>' runs, so the CLI stops and names the record and the characters."""
    tokenizer = load_tokenizer("char")
    record = load_processbench(ROWS)[0][0]
    with pytest.raises(ValueError, match="record 'gsm8k-0': the verifier's tokenizer has no token for \"'\\?ABFNOST\""):
        encode_record(tokenizer, record, "\n")
    write_explicit_prm(tmp_path / "char_prm", save_base(tmp_path / "hf", tokenizer), tokenizer)
    assert cli.main(["--data", str(ROWS), "--explicit-prm", str(tmp_path / "char_prm"), "--out",
                     str(tmp_path / "out")]) == 2
    assert "gsm8k-0" in capsys.readouterr().err
