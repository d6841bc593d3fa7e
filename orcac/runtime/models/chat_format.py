"""Chat formatting for the student: its template, and token labels on the teacher's tokens only.

Training and evaluation share this module so the student is trained on exactly the token
sequence it is later prompted with: `prompt_ids` is what `orcac eval` feeds to `generate`,
and a training example is `prompt_ids + answer_ids` with labels only on `answer_ids`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from orcac.errors import OrcacError

# ChatML (Orca 2's turn format), for students without a template of their own.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")
PAD_TOKEN = "<|pad|>"

IGNORE = -100  # label of a token the loss skips


def prepare_tokenizer(tokenizer, chat_template: str = "auto") -> int:
    """Give the tokenizer a chat template and a pad token; return how many tokens were added.

    `chat_template="chatml"`, or a tokenizer with no template, gets ChatML; its turn markers
    are added as special tokens where the vocabulary lacks them. The caller must resize the
    model's embeddings when the returned count is non-zero.
    """
    added = 0
    if chat_template == "chatml" or not tokenizer.chat_template:
        missing = [t for t in CHATML_TOKENS if t not in tokenizer.get_vocab()]
        if missing:
            added += tokenizer.add_special_tokens({"additional_special_tokens": missing})
        tokenizer.chat_template = CHATML_TEMPLATE
        # Generation must stop at the end of the assistant's turn.
        tokenizer.eos_token = "<|im_end|>"
    if tokenizer.pad_token is None:
        added += tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    return added


def end_of_turn(tokenizer) -> str:
    """The token string that closes an assistant turn (where generation stops)."""
    return tokenizer.eos_token


def prompt_text(tokenizer, system: str, user: str) -> str:
    """The rendered prompt, ending with the header that opens the assistant's turn."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer, system: str, user: str) -> list[int]:
    return tokenizer(prompt_text(tokenizer, system, user), add_special_tokens=False)["input_ids"]


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]
    prompt_tokens: int
    truncated: bool  # the answer was cut to fit max_length


def encode(tokenizer, system: str, user: str, assistant: str, *, max_length: int | None = None) -> Encoded:
    """One training example: labels are IGNORE on the prompt, the token id on the answer.

    The answer's tokens are the assistant's text as the template renders it, up to and
    including the end-of-turn token (so the student learns to stop). They are tokenized
    separately from the prompt, exactly as `generate` continues a prompt.
    """
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
        {"role": "assistant", "content": assistant},
    ]
    prompt = prompt_text(tokenizer, system, user)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise OrcacError(
            "the student's chat template renders a prompt that is not a prefix of the full conversation",
            hint='set chat_template = "chatml" on the student',
        )
    answer = full[len(prompt) :]
    eot = end_of_turn(tokenizer)
    cut = answer.find(eot, answer.find(assistant) + len(assistant) if assistant else 0)
    answer = answer[: cut + len(eot)] if cut >= 0 else answer + eot  # drop what follows the turn

    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    truncated = False
    if max_length is not None and len(p_ids) + len(a_ids) > max_length:
        a_ids = a_ids[: max(0, max_length - len(p_ids))]
        truncated = True
    return Encoded(
        input_ids=p_ids + a_ids,
        labels=[IGNORE] * len(p_ids) + list(a_ids),
        prompt_tokens=len(p_ids),
        truncated=truncated,
    )


# ---- the erase message as the saved template's default system turn ---------------------------

DEFAULT_SYSTEM_MARK = (
    "{#- orcac: the erase message the student was trained with, when the caller gives no system turn -#}"
)


def erase_messages(plan) -> dict[str, list[str]]:
    """Each erase message the plan's trained tasks saw as their system turn -> those tasks,
    in the order the stages name them."""
    tasks = dict.fromkeys(t for stage in plan.train.stages for t in stage.tasks) if plan.train else {}
    out: dict[str, list[str]] = {}
    for task in tasks:
        out.setdefault(plan.erase[plan.tasks[task].erase].system, []).append(task)
    return out


def default_system(plan) -> str | None:
    """The system message a caller of the trained student gets by default: the erase message,
    when one covers every trained task; None when tasks were trained under different ones (no
    default would be right for all of them)."""
    messages = erase_messages(plan)
    return next(iter(messages)) if len(messages) == 1 else None


def with_default_system(template: str, system: str) -> str:
    """`template` that renders `system` as the system turn of a conversation that has none.

    Prepended, so the model's own template runs unchanged on a conversation that has a system
    turn: SmolLM2's own default ("You are a helpful AI assistant named SmolLM...") is then never
    reached. A JSON string literal is a Jinja string literal, whatever the message holds.
    """
    template = template.rsplit(DEFAULT_SYSTEM_MARK, 1)[-1]  # a template saved by orcac before: replace its default
    return (
        DEFAULT_SYSTEM_MARK
        + "{%- if not messages or messages[0]['role'] != 'system' -%}"
        + "{%- set messages = [{'role': 'system', 'content': "
        + json.dumps(system, ensure_ascii=False)
        + "}] + messages -%}"
        + "{%- endif -%}"
        + DEFAULT_SYSTEM_MARK
        + template
    )


def set_default_system(tokenizer, plan) -> str | None:
    """Give the tokenizer's chat template the plan's erase message as its default system turn
    (saved with the tokenizer: tokenizer_config.json and chat_template.jinja, which vLLM and
    llama.cpp read). Returns the message, or None when the plan has no single one."""
    system = default_system(plan)
    template = tokenizer.chat_template
    if system is None or not template:
        return system
    if isinstance(template, dict):  # named templates (a tool-use one beside the default): each gets it
        tokenizer.chat_template = {name: with_default_system(t, system) for name, t in template.items()}
    else:
        tokenizer.chat_template = with_default_system(template, system)
    return system
