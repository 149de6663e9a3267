"""Reasoning steps of a response: one segmentation for labelling, training and scoring.

A response is cut after every occurrence of ``delimiter`` (default a newline, the synthetic
tasks' one-operation-per-line format); the delimiter belongs to the step it closes, and the text
after the last delimiter is the last step (a text without the delimiter is one step). A step
whose text without its delimiter is whitespace only (a blank line) carries no reasoning and is
dropped, as the synthetic tasks' exact labels skip blank lines, so ``"".join(steps)`` is the text
minus its blank steps. A truncated response simply ends in an unclosed last step.

``encode_steps`` tokenises each step's text and its delimiter separately and concatenates the
pieces, so a step ends exactly on the last token of its delimiter even with BPE tokenizers that
would merge a newline with its neighbours. Step ends of SAMPLED token sequences (what a policy
wrote, tokenised its own way) come from ``prime_jax.rewards.step_ends_from_tokens`` given the
delimiter's ids (``delimiter_ids``, the one place a delimiter is tokenised); on ids written by
``encode_steps`` it marks the same positions (plus the row's last token).
"""

from __future__ import annotations

from collections.abc import Sequence


def split_steps(text: str, delimiter: str = "\n") -> list[str]:
    """The steps of ``text``: ``step_j = piece_j + delimiter`` for every piece but the last, where
    ``pieces = text.split(delimiter)``, then the last piece; blank steps dropped (module docstring)."""
    if not delimiter:
        raise ValueError("split_steps: delimiter is empty")
    pieces = text.split(delimiter)
    steps = [piece + delimiter for piece in pieces[:-1]] + [pieces[-1]]
    return [step for step in steps if step.removesuffix(delimiter).strip()]


def delimiter_ids(tokenizer, delimiter: str = "\n") -> tuple[int, ...]:
    """The token ids of ``delimiter`` alone (no special tokens): what ``step_ends_from_tokens``
    matches in sampled responses. Raises if it encodes to nothing or does not decode back to
    itself (a tokenizer that loses the delimiter cannot end steps on it)."""
    if not delimiter:
        raise ValueError("delimiter_ids: the step delimiter is empty")
    ids = tuple(int(i) for i in tokenizer.encode(delimiter, add_special_tokens=False))
    if not ids or tokenizer.decode(list(ids)) != delimiter:
        raise ValueError(f"the tokenizer encodes the step delimiter {delimiter!r} as {list(ids)}, which does "
                         "not decode back to it: steps could not end on it")
    return ids


def encode_steps(tokenizer, steps: Sequence[str], delimiter: str = "\n") -> tuple[list[int], list[int]]:
    """``(token_ids, step_end_positions)`` of the steps, delimiter tokens included.

    Step j is ``ids(content_j)`` then ``ids(delimiter)`` where ``content_j`` is the step without a
    trailing delimiter; every step but the last is closed by the delimiter (steps may be given with
    it, as ``split_steps`` returns them, or without, as ProcessBench lists them), the last one only
    if it was given with it. ``step_end_positions[j]`` is the index of step j's last token.
    """
    if not delimiter:
        raise ValueError("encode_steps: delimiter is empty")
    closing_ids = list(delimiter_ids(tokenizer, delimiter))
    contents = [step.removesuffix(delimiter) for step in steps]
    content_ids = tokenizer(contents, add_special_tokens=False)["input_ids"] if contents else []
    token_ids: list[int] = []
    ends: list[int] = []
    for j, (step, ids) in enumerate(zip(steps, content_ids)):
        token_ids += ids
        if j < len(steps) - 1 or step.endswith(delimiter):
            token_ids += closing_ids
        if len(token_ids) == (ends[-1] + 1 if ends else 0):
            raise ValueError(f"encode_steps: step {j} ({step!r}) encodes to no tokens")
        ends.append(len(token_ids) - 1)
    return token_ids, ends
