"""GPO prompts: one per (question, option), split into a per-question prefix and a per-option suffix.

The prefix (instruction, question, lettered options, the answer cue) is the same for every
option of a question; the suffix is the option being embedded ("B. Somewhat safe"). A
causal LM's states over the prefix do not depend on the suffix, which extraction exploits.
Chat models get the instruction as a user turn and the option as the start of their reply.
"""

from __future__ import annotations

import hashlib
import string

INSTRUCTION = "Answer the following question by picking ONE of the given options"
LETTERS = string.ascii_uppercase


def letter(i: int) -> str:
    return LETTERS[i] if i < 26 else LETTERS[i // 26 - 1] + LETTERS[i % 26]


def question_block(question: str, options: list[str]) -> str:
    lines = "\n".join(f"{letter(i)}. {o}" for i, o in enumerate(options))
    return f"{question}\n\nOptions:\n{lines}"


def gpo_prompt(question: str, options: list[str], tokenizer=None) -> tuple[str, list[str]]:
    """(prefix, suffixes): the question's shared prefix and one suffix per option."""
    user = f"{INSTRUCTION}\n\n{question_block(question, options)}"
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        prefix = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
    else:
        prefix = f"{user}\n\nAnswer: "
    return prefix, [f"{letter(i)}. {o}" for i, o in enumerate(options)]


TEMPLATES = {"gpo": gpo_prompt}


def template_digest(name: str) -> str:
    """Changes whenever the template's wording does, so cached embeddings are never reused wrongly."""
    probe = TEMPLATES[name]("Q?", ["a", "b"])
    return hashlib.sha1(repr((name, INSTRUCTION, probe)).encode()).hexdigest()[:12]
