"""Step segmentation: edge cases, exact step ends of encode_steps, and exact labels per step."""

import jax.numpy as jnp
import numpy as np
import pytest

from prime_jax.data import load_tokenizer
from prime_jax.data.steps import delimiter_ids, encode_steps, split_steps
from prime_jax.data.synthetic import exact_step_labels
from prime_jax.rewards import step_ends_from_tokens


def test_split_steps_edge_cases():
    assert split_steps("17+20=37") == ["17+20=37"]  # no delimiter: one step
    assert split_steps("a\nb\n") == ["a\n", "b\n"]  # the delimiter belongs to the step it closes
    assert split_steps("a\n\n \nb") == ["a\n", "b"]  # blank steps dropped
    assert split_steps("") == [] and split_steps("\n\n") == []
    assert split_steps("17+20=37\n37*3=1") == ["17+20=37\n", "37*3=1"]  # truncated: an unclosed last step
    assert split_steps("a<sep>b<sep>", "<sep>") == ["a<sep>", "b<sep>"]
    with pytest.raises(ValueError, match="delimiter is empty"):
        split_steps("a", "")


@pytest.mark.parametrize("text", ["17+20=37\n37*3=111\n111-15=96\n\\boxed{96}", "17+20=37\n37*3=1", "5\n", "x"])
def test_encode_steps_round_trip_with_the_char_tokenizer(text):
    tokenizer = load_tokenizer("char")
    steps = split_steps(text)
    ids, ends = encode_steps(tokenizer, steps)
    assert tokenizer.decode(ids) == text == "".join(steps)
    starts = [0] + [e + 1 for e in ends[:-1]]
    assert [tokenizer.decode(ids[s:e + 1]) for s, e in zip(starts, ends)] == steps
    # The sampled-token step ends (rewards.step_ends_from_tokens) agree, plus the row's last token.
    found = np.asarray(step_ends_from_tokens(jnp.asarray([ids]), jnp.ones((1, len(ids))),
                                             tokenizer.encode("\n", add_special_tokens=False)))[0]
    assert list(np.flatnonzero(found)) == sorted(set(ends) | {len(ids) - 1})


def test_encode_steps_closes_steps_given_without_delimiter():
    tokenizer = load_tokenizer("char")
    ids, ends = encode_steps(tokenizer, ["1+2=3", "\\boxed{3}"])  # ProcessBench lists steps bare
    assert tokenizer.decode(ids) == "1+2=3\n\\boxed{3}" and ends == [5, 8]
    assert encode_steps(tokenizer, []) == ([], [])
    with pytest.raises(ValueError, match="step 1"):
        encode_steps(tokenizer, ["a\n", ""])


def test_exact_step_labels_align_with_steps():
    response = "17+20=37\n\n37*3=110\n110-15=95\n\\boxed{95}"
    labels = exact_step_labels("arithmetic", response, "96", problem="17+20*3-15=")
    assert labels == [True, False, False, False] and len(labels) == len(split_steps(response))
    assert exact_step_labels("arithmetic", "17+20=37\n37*3=1", "96", problem="17+20*3-15=") == [True, False]
    assert exact_step_labels("countdown", "7*5=35\n35+3=38\n\\boxed{41}", "2,3,5,7:41") == [True, False, False]
    assert exact_step_labels("countdown", "7*5=35\n3*2=6\n35+6=40", "2,3,5,7:41") == [True, True, False]
    with pytest.raises(ValueError, match="ground_truth='7'"):
        exact_step_labels("arithmetic", "1", "7", problem="17+20*3-15=")
    with pytest.raises(ValueError, match="needs problem"):
        exact_step_labels("arithmetic", "1", "96")
    with pytest.raises(ValueError, match="task='gsm8k'"):
        exact_step_labels("gsm8k", "1", "96")


def test_delimiter_ids_are_the_delimiters_own_tokens_and_refuse_a_lossy_tokenizer():
    tokenizer = load_tokenizer("char")
    assert delimiter_ids(tokenizer) == (8,) and delimiter_ids(tokenizer, "\n\n") == (8, 8)
    with pytest.raises(ValueError, match="empty"):
        delimiter_ids(tokenizer, "")
    with pytest.raises(ValueError, match=r"'\|' .*does not decode back to it"):
        delimiter_ids(tokenizer, "|")  # not in the char vocabulary
