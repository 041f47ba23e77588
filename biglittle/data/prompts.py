"""Prompt templates per task: the model's chat template when it has one, else a plain form."""

from __future__ import annotations

from ..errors import BigLittleError

SYSTEM = "You are a careful assistant. Follow the instruction exactly and reply with the answer only."

INSTRUCTIONS = {
    "translation": (
        "Translate the following German sentence into English. Reply with the English "
        "translation only, as one sentence, without quotes, notes or explanations.\n\n"
        "German: {source}"
    ),
    "summarization": (
        "Here is the description of a software package. Summarize it in one short sentence of "
        "at most 10 words that says what the package is, in the style of a Debian package "
        'synopsis (for example "GNU Bourne Again SHell" or "Perl module for reading CSV files"). '
        "Reply with the summary only.\n\nDescription:\n{source}"
    ),
    "code": (
        "Complete the following Python function. Reply with the complete function, its imports included, "
        "in one Python code block, without tests or usage examples.\n\n```python\n{source}\n```"
    ),
}

PLAIN = {
    "translation": "Translate German to English:\nGerman: {source}\nEnglish:",
    "summarization": "Summarize in one sentence: {source}\nSummary:",
    "code": "{source}",  # HumanEval's prompt as it is: a base model continues the function's body
}
VERBATIM = {"code"}  # tasks whose plain prompt must end exactly as the source does (a code prompt ends in a newline)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def build_prompt(task: str, source: str, tokenizer=None) -> str:
    """The text to feed the model for one example of `task`.

    With a tokenizer that has a chat template (instruct models), the instruction is one user
    turn rendered with ``apply_chat_template(..., add_generation_prompt=True, tokenize=False)``,
    so generation starts at the assistant's answer. Otherwise (base models, or no tokenizer) a
    plain completion form is used that ends where the answer begins.
    """
    if task not in INSTRUCTIONS:
        raise BigLittleError(f"unknown task {task!r}; choose one of: {', '.join(sorted(INSTRUCTIONS))}")
    if tokenizer is not None and has_chat_template(tokenizer):
        user = INSTRUCTIONS[task].format(source=source.strip())
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
        try:
            return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception:  # some templates (e.g. Gemma's) reject a system turn: fold it in
            merged = [{"role": "user", "content": SYSTEM + "\n\n" + user}]
            return tokenizer.apply_chat_template(merged, add_generation_prompt=True, tokenize=False)
    return PLAIN[task].format(source=source if task in VERBATIM else source.strip())
