"""Chat-template encoding through a Hugging Face tokenizer (no TF, no seqio).

Prompts: `apply_chat_template(messages, add_generation_prompt=True)` rendered to text, then
tokenised without adding special tokens (the template already has them). SFT responses are
tokenised alone and end with the tokenizer's EOS; that is what the loss sees, so the model learns
to stop. Rendering to text first keeps this identical across transformers 4.x and 5.x.
"""

from __future__ import annotations

from typing import Sequence

from prime_jax.data.records import Messages, as_chat

_CHUNK = 1024


def render_prompt(tokenizer, messages: Messages) -> str:
    """The chat-templated prompt text, ending with the assistant generation marker."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat_template; use a tokenizer directory that "
                         "ships one (tokenizer_config.json or chat_template.jinja)")
    return tokenizer.apply_chat_template(as_chat(messages), add_generation_prompt=True,
                                         tokenize=False)


def encode_texts(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of many texts (batched, no special tokens added)."""
    out: list[list[int]] = []
    for start in range(0, len(texts), _CHUNK):
        chunk = list(texts[start:start + _CHUNK])
        if chunk:
            out.extend(tokenizer(chunk, add_special_tokens=False)["input_ids"])
    return out


def encode_prompts(tokenizer, all_messages: Sequence[Messages]) -> list[list[int]]:
    """Chat-templated prompt ids for each message list."""
    return encode_texts(tokenizer, [render_prompt(tokenizer, m) for m in all_messages])


def encode_responses(tokenizer, responses: Sequence[str]) -> list[list[int]]:
    """Response ids, each ending with EOS."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token_id")
    return [ids + [eos] for ids in encode_texts(tokenizer, responses)]
