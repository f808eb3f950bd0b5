"""Prompts of the paper's LLM baselines: a question with lettered options ending in "Answer:",
optionally steered towards a group, or preceded by k context questions with the group's
answer distribution written out."""

from __future__ import annotations

from gpo.prompts import letter

# How each group attribute is asked about and described (OpinionQA's steering phrasings);
# any other attribute falls back to "<attribute>: <group>".
ATTRIBUTES = {
    "POLPARTY": ("In politics today, do you consider yourself a", "In politics today, I consider myself a {g}"),
    "POLIDEOLOGY": ("In general, would you describe your political views as", "In general, I would describe my political views as {g}"),
    "SEX": ("What is your sex?", "I am {g}"),
    "RACE": ("What is your race or ethnicity?", "I am {g}"),
    "EDUCATION": ("What is the highest level of schooling or degree that you have completed?",
                  "The highest level of education I have completed is {g}"),
    "INCOME": ("Last year, what was your total family income from all sources, before taxes?", "Last year, my total family income was {g}"),
    "CREGION": ("Which part of the United States do you currently live in?", "I currently live in the {g}"),
    "AGE": ("How old are you?", "I am {g} years old"),
    "COUNTRY": ("Which country do you live in?", "I live in {g}"),
}
STYLES = ("bio", "qa", "portray")


def question(text: str, options: list[str]) -> str:
    lines = "\n".join(f"{letter(i)}. {o}" for i, o in enumerate(options))
    return f"Question: {text}\n{lines}\nAnswer:"


def describe(attribute: str, group: str) -> tuple[str, str]:
    ask, tell = ATTRIBUTES.get(attribute, (f"{attribute}?", f"{attribute}: {{g}}"))
    return ask, tell.format(g=group)


def steered(style: str, attribute: str, group: str, text: str, options: list[str]) -> str:
    ask, tell = describe(attribute, group)
    if style == "bio":
        head = ("Below you will be asked to provide a short description of yourself and then answer some questions.\n"
                f"Description: {tell}.\n\n")
    elif style == "qa":
        head = f"Question: {ask}\nAnswer: {group}\n\n"
    elif style == "portray":
        head = f"Answer the following question as if {tell[0].lower() + tell[1:]}.\n\n"
    else:
        raise ValueError(f"steering style must be one of {STYLES}, not {style!r}")
    return head + question(text, options)


def distribution(shares) -> str:
    return ", ".join(f"{letter(i)}: {100 * s:.0f}%" for i, s in enumerate(shares))


def few_shot(context: list[tuple[str, list[str], list[float]]], text: str, options: list[str]) -> str:
    """k answered questions (text, options, the group's shares), then the question to answer."""
    shots = "".join(f"{question(t, o)} {distribution(s)}\n\n" for t, o, s in context)
    return f"Here is how a group of people answered some survey questions.\n\n{shots}{question(text, options)}"
