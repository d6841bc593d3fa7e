"""Strategy forms that tell strategies apart (issue 21): a demonstration that breaks its own
strategy's form is an error at `check`; a form that accepts another strategy's demonstration
is a warning; the "and nothing else" forms and `no_echo` say what they mean."""

from __future__ import annotations

import textwrap

import pytest

from orcac.specs.forms import FORMS, adheres, echo, followed
from orcac.specs.plan import AdherenceRule

from .helpers import run_cli

HEAD = """\
orca 1
teacher t { model = "openai/gpt-4o-mini" api_key = env("NO_SUCH_KEY") }
erase e { system = "You are helpful." }
"""

DIRECT = """\
strategy direct {
  system = "Answer in one line."
  expect = EXPECT
  demonstration {
    user      = "What is 2 + 2?"
    assistant = "Answer: 4"
  }
}
"""

STEPS = """\
strategy steps {
  system = "Think step by step."
  expect = [numbered_steps, answer_line]
  demonstration {
    user      = "What is 2 + 3 * 4?"
    assistant = \"\"\"
      1. 3 * 4 = 12.
      2. 2 + 12 = 14.
      Answer: 14
    \"\"\"
  }
}
"""

TASKS = """\
task a { from = csv("data.csv") prompt = "{{ q }}" gold = "{{ a }}" strategy = direct }
task b { from = csv("data.csv") prompt = "{{ q }}" gold = "{{ a }}" strategy = steps }
"""


def _check(tmp_path, body: str) -> tuple[int, str]:
    (tmp_path / "data.csv").write_text("q,a\nWhat is 1 + 1?,2\n")
    (tmp_path / "s.orca").write_text(HEAD + body)
    code, _, err = run_cli("check", "s.orca", cwd=tmp_path)
    assert "Traceback" not in err and "internal error" not in err, err
    return code, err


def test_a_demonstration_that_breaks_its_own_form_is_an_error_at_check(tmp_path):
    code, err = _check(tmp_path, DIRECT.replace("EXPECT", "[answer_line, min_words(3)]") + STEPS + TASKS)
    assert code == 1
    assert "s.orca:7:3: error: demonstration 1 of strategy 'direct' breaks its own form: at least 3 words\n" in err
    assert (
        "  rewrite the demonstration's answer in the form, or change the strategy's expect: "
        "the teacher copies its demonstrations, and follows(strategy) rejects this form" in err
    )


def test_forms_that_accept_each_others_demonstrations_give_the_warning(tmp_path):
    code, err = _check(tmp_path, DIRECT.replace("EXPECT", "[answer_line, max_words(40)]") + STEPS + TASKS)
    assert code == 1  # `check` fails on a warning as on an error; `plan` writes the plan and prints it
    assert err.splitlines()[0] == (
        "s.orca:6:12: warning: the forms of direct and steps do not tell them apart: "
        "direct's rules accept steps's demonstration 1"
    )
    assert "add a rule to direct's expect that steps's answers break, e.g. single_line or no_numbered_steps" in err
    assert "the forms of steps and direct" not in err  # numbered_steps rejects "Answer: 4"


def test_single_line_tells_them_apart(tmp_path):
    code, err = _check(tmp_path, DIRECT.replace("EXPECT", "[answer_line, single_line]") + STEPS + TASKS)
    assert (code, err) == (0, ""), err


def test_strategies_no_task_uses_are_not_compared(tmp_path):
    only_steps = TASKS.splitlines()[1] + "\n"
    code, err = _check(tmp_path, DIRECT.replace("EXPECT", "[answer_line, max_words(40)]") + STEPS + only_steps)
    assert code == 0 and "do not tell them apart" not in err, err


STEPS_ANSWER = "1. 3 * 4 = 12.\n2. 2 + 12 = 14.\nAnswer: 14"


def _rule(name: str) -> AdherenceRule:
    pattern, description = FORMS[name]
    return AdherenceRule(kind="regex", pattern=pattern, description=description)


@pytest.mark.parametrize(
    ("form", "text", "holds"),
    [
        ("single_line", "Answer: 14", True),
        ("single_line", STEPS_ANSWER, False),
        ("no_numbered_steps", "Answer: 14", True),
        ("no_numbered_steps", "First, 3 * 4 is 12.\nAnswer: 14", True),
        ("no_numbered_steps", STEPS_ANSWER, False),
        ("no_numbered_steps", "Step 1: 3 * 4 = 12\nStep 2: 2 + 12 = 14\nAnswer: 14", False),
        ("numbered_steps", STEPS_ANSWER, True),
    ],
)
def test_forms_that_say_and_nothing_else(form, text, holds):
    assert adheres(text, [_rule(form)])[0] is holds


PLANTED = [
    "As instructed, the answer is 4.\nAnswer: 4",
    "Following the example above:\n1. 2 + 2 = 4\nAnswer: 4",
    "Here it is in the format you asked for.\nAnswer: 4",
    "As shown in the examples, we add.\nAnswer: 4",
    "Like the examples given, I answer in one line. Answer: 4",
    "As you instructed, Answer: 4",
    "Per your instructions, Answer: 4",
    "According to the system prompt, I must answer briefly. Answer: 4",
    "AS INSTRUCTED: 4",
]
ORDINARY = [
    "Answer: 4",
    "1. Rosa starts with 12 pencils.\n2. She gives away 5.\nAnswer: 7",
    "The soldiers moved the boxes as the captain said. Answer: 4",
    "For example, a cat is a mammal. Answer: yes",
    "The instructions on the box say to add water. Answer: water",
    "Take two tablets a day as directed on the label. Answer: two",
    "I have changed the delivery address as requested. Answer: done",
    "Ruth believes the keys are in the drawer, where she left them.\nAnswer: drawer",
]


@pytest.mark.parametrize("text", PLANTED)
def test_the_echo_check_flags_answers_that_point_at_the_hidden_prompt(text):
    assert echo(text) is not None
    assert adheres(text, [_rule("no_echo")]) == (False, ["does not refer to a prompt the student never sees"])


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_answers_pass_the_echo_check(text):
    assert echo(text) is None
    assert adheres(text, [_rule("no_echo")]) == (True, [])


def test_no_echo_rejects_an_answer_in_build_with_its_own_reason():
    from orcac.runtime.answers.checks import check_answer
    from orcac.specs.plan import CheckRule

    assert check_answer("As instructed: Answer: 4", "stop", "4", [CheckRule(kind="no_echo")]).reason == "echo"
    assert check_answer("Answer: 4", "stop", "4", [CheckRule(kind="no_echo")]).accepted
    form = [_rule("answer_line"), _rule("no_echo")]
    verdict = check_answer("As instructed.\nAnswer: 4", "stop", "4", [CheckRule(kind="follows")], form=form)
    assert verdict.reason == "echo"


def test_no_echo_is_a_check_in_accept(tmp_path):
    body = DIRECT.replace("EXPECT", "[answer_line, single_line]") + textwrap.dedent("""\
        task a { from = csv("data.csv") prompt = "{{ q }}" gold = "{{ a }}" strategy = direct accept = [contains(gold), no_echo] }
    """)
    code, err = _check(tmp_path, body)
    assert code == 0, err


def test_which_strategy_an_answer_follows():
    forms = {
        "direct": [_rule("answer_line"), _rule("single_line")],
        "steps": [_rule("numbered_steps"), _rule("answer_line")],
        "loose": [_rule("answer_line")],
        "unformed": [],
    }
    assert followed("Answer: 4", {k: forms[k] for k in ("direct", "steps", "unformed")}) == "direct"
    assert followed(STEPS_ANSWER, {k: forms[k] for k in ("direct", "steps")}) == "steps"
    assert followed("four", {k: forms[k] for k in ("direct", "steps")}) == "none"
    assert followed(STEPS_ANSWER, forms) == "several"  # steps and loose both accept it
