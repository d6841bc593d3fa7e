"""Write the openorca_mix example data: openorca.jsonl (answers that exist) and reviews.jsonl (for a teacher).

`openorca.jsonl` has OpenOrca's shape, written for this project: `id`, `system_prompt` (one of sixteen
system messages modeled on Orca 1's), `question` and `response`, plus `gold`, the label of the task
the question was made from (what a SlimOrca-style filter checks the response against). Every question
has one checkable answer, and every response ends with an "Answer:" line; some responses are wrong on
purpose, a few quote their own system message, and two are empty, so that the task's checks reject
some rows. `reviews.jsonl` holds short reviews for a teacher to label.

Every row comes from a template and a seeded random generator, so the files are byte-identical on
every run. Usage:

    python examples/openorca_mix/make_data.py [OUTPUT_DIR]    # default: data/ beside this file
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

SEED = 20230605  # Orca 1's arXiv month; any fixed value works
ROWS_PER_MESSAGE = 20  # 16 messages x 20 = 320 rows
WRONG_SHARE = 0.12
ECHOES = 4  # responses that quote a sentence of their own system message
EMPTY = 2

# Sixteen system messages modeled on Orca 1's (Mukherjee et al. 2023, table 2), each with the style of
# response it asks for. Orca 1's own wording, odd grammar included, is kept where it is famous.
SYSTEM_MESSAGES = [
    (
        "You are an AI assistant. Provide a detailed answer so user don't need to search outside to understand the answer.",
        "detailed",
    ),
    ("You are an AI assistant. You will be given a task. You must generate a detailed and long answer.", "detailed"),
    (
        "You are a helpful assistant, who always provide explanation. Think like you are answering to a five year old.",
        "child",
    ),
    ("You are an AI assistant that follows instruction extremely well. Help as much as you can.", "brief"),
    (
        "You are an AI assistant that helps people find information. Provide a detailed answer so user don't need to search outside to understand the answer.",
        "detailed",
    ),
    (
        "You are an AI assistant. User will you give you a task. Your goal is to complete the task as faithfully as you can. While performing the task think step-by-step and justify your steps.",
        "steps",
    ),
    (
        "You should describe the task and explain your answer. While answering a multiple choice question, first output the correct answer(s). Then explain why other answers are wrong. Think like you are answering to a five year old.",
        "child",
    ),
    ("Explain how you used the definition to come up with the answer.", "teacher"),
    (
        "You are an AI assistant. You should describe the task and explain your answer. While answering a multiple choice question, first output the correct answer(s). Then explain why other answers are wrong. You might need to use additional knowledge to answer the question.",
        "detailed",
    ),
    (
        "You are an AI assistant that helps people find information. User will you give you a question. Your task is to answer as faithfully as you can. While answering think step-by-step and justify your answer.",
        "steps",
    ),
    (
        "User will you give you a task with some instruction. Your job is follow the instructions as faithfully as you can. While answering think step-by-step and justify your answer.",
        "steps",
    ),
    (
        "You are a teacher. Given a task, you explain in simple steps what the task is asking, any guidelines it provides and how to use those guidelines to find an answer.",
        "teacher",
    ),
    (
        "You are an AI assistant, who knows every language and how to translate one language to another. Given a task, you explain in simple steps what the task is asking, any guidelines that it provides. You solve the task and show how you used the guidelines to solve the task.",
        "teacher",
    ),
    (
        "Given a definition of a task and a sample input, break the definition into small parts. Each of those parts will have some instruction. Explain their meaning by showing an example that meets the criteria in the instruction.",
        "parts",
    ),
    ("You are an AI assistant that helps people find information. Answer the question as briefly as you can.", "brief"),
    (
        "You are a careful assistant. Check the question twice before you answer, and state the final answer on its own line.",
        "brief",
    ),
]

NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana", "Ivo", "Jana", "Kofi", "Lena", "Mo", "Nia"]
THINGS = ["apples", "marbles", "stickers", "pencils", "shells", "stamps", "cards", "beads", "coins", "books"]
CAPITALS = [
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Peru", "Lima"),
    ("Kenya", "Nairobi"),
    ("Norway", "Oslo"),
    ("Egypt", "Cairo"),
    ("Canada", "Ottawa"),
    ("Chile", "Santiago"),
    ("Italy", "Rome"),
    ("Greece", "Athens"),
    ("Spain", "Madrid"),
    ("Poland", "Warsaw"),
    ("Ghana", "Accra"),
    ("Cuba", "Havana"),
    ("Nepal", "Kathmandu"),
    ("Ireland", "Dublin"),
    ("Portugal", "Lisbon"),
    ("Austria", "Vienna"),
    ("Thailand", "Bangkok"),
    ("Mexico", "Mexico City"),
]
ANIMALS = {
    "mammal": ["dolphin", "bat", "whale", "horse", "otter"],
    "bird": ["penguin", "owl", "sparrow", "ostrich", "heron"],
    "fish": ["shark", "trout", "tuna", "salmon", "eel"],
    "reptile": ["lizard", "tortoise", "cobra", "gecko", "crocodile"],
}
POSITIVE = [
    "works perfectly",
    "arrived early and looks great",
    "is the best purchase I made this year",
    "is comfortable and well made",
    "exceeded what I expected",
]
NEGATIVE = [
    "broke after two days",
    "arrived scratched and late",
    "is a waste of money",
    "stopped working within a week",
    "feels cheap and flimsy",
]
PRODUCTS = ["lamp", "kettle", "backpack", "chair", "blender", "jacket", "speaker", "umbrella"]
UNITS = [  # (question template, factor, unit from, unit to)
    ("How many minutes are in {n} hours?", 60, "hour", "minutes"),
    ("How many centimetres are in {n} metres?", 100, "metre", "centimetres"),
    ("How many grams are in {n} kilograms?", 1000, "kilogram", "grams"),
    ("How many seconds are in {n} minutes?", 60, "minute", "seconds"),
]


# ---------------------------------------------------------------- questions with one checkable answer
# Each family returns (id prefix, question, gold, a wrong answer, steps that reach the gold).


def _sum(rng: random.Random):
    a, b = rng.randint(11, 89), rng.randint(11, 89)
    return (
        "cot",
        f"What is {a} + {b}?",
        str(a + b),
        str(a + b + rng.choice([-10, -1, 1, 10])),
        [f"The question asks for the sum of {a} and {b}.", f"Adding the tens and the ones gives {a} + {b} = {a + b}."],
    )


def _word(rng: random.Random):
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    a, b = rng.randint(5, 30), rng.randint(2, 15)
    if rng.random() < 0.5:
        q = f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?"
        gold, steps = a + b, [f"{name} starts with {a} {thing}.", f"Getting {b} more means {a} + {b} = {a + b}."]
    else:
        a += b
        q = f"{name} has {a} {thing} and gives away {b}. How many {thing} does {name} have left?"
        gold, steps = a - b, [f"{name} starts with {a} {thing}.", f"Giving away {b} leaves {a} - {b} = {a - b}."]
    return "cot", q, str(gold), str(gold + rng.choice([-2, -1, 1, 2])), steps


def _capital(rng: random.Random):
    country, capital = rng.choice(CAPITALS)
    other = rng.choice([c for _, c in CAPITALS if c != capital])
    return (
        "flan",
        f"What is the capital of {country}?",
        capital,
        other,
        [f"The question asks for the capital city of {country}.", f"The seat of {country}'s government is {capital}."],
    )


def _prime(rng: random.Random):
    n = rng.choice(
        [p for p in range(31, 200) if all(p % d for d in range(2, p))]
        + [a * b for a in (3, 7, 11) for b in (11, 13, 17)]
    )
    divisor = next((d for d in range(2, n) if n % d == 0), None)
    gold = "no" if divisor else "yes"
    steps = [
        "A prime number has no divisors other than 1 and itself.",
        f"{n} = {divisor} x {n // divisor}, so it has another divisor."
        if divisor
        else f"No number from 2 to {int(n**0.5)} divides {n}.",
    ]
    return "flan", f"Is {n} a prime number? Answer yes or no.", gold, "yes" if divisor else "no", steps


def _sentiment(rng: random.Random):
    positive = rng.random() < 0.5
    product = rng.choice(PRODUCTS)
    text = f"This {product} {rng.choice(POSITIVE if positive else NEGATIVE)}."
    gold = "positive" if positive else "negative"
    return (
        "t0",
        f'Review: "{text}"\nIs the sentiment of this review positive or negative?',
        gold,
        "negative" if positive else "positive",
        [
            f"The review says the {product} {text.split(product, 1)[1].strip(' .')}.",
            f"That is a {gold} thing to say about a product.",
        ],
    )


def _choice(rng: random.Random):
    kind = rng.choice(sorted(ANIMALS))
    right = rng.choice(ANIMALS[kind])
    others = rng.sample([a for k in sorted(ANIMALS) if k != kind for a in ANIMALS[k]], 3)
    options = others + [right]
    rng.shuffle(options)
    letters = "ABCD"
    gold = letters[options.index(right)]
    wrong = rng.choice([x for x in letters if x != gold])
    q = f"Which of these animals is a {kind}?\nOptions:\n" + "\n".join(
        f"{letters[i]}) {o}" for i, o in enumerate(options)
    )
    return (
        "niv",
        q,
        gold,
        wrong,
        [f"The question asks which option is a {kind}.", f"A {right} is a {kind}; the other options are not."],
    )


def _units(rng: random.Random):
    template, factor, unit, to = rng.choice(UNITS)
    n = rng.randint(2, 9)
    return (
        "cot",
        template.format(n=n),
        str(n * factor),
        str(n * factor + factor),
        [f"One {unit} has {factor} {to}.", f"So {n} of them have {n} x {factor} = {n * factor} {to}."],
    )


def _larger(rng: random.Random):
    a = rng.randint(10, 95) / 100
    b = round(a + rng.choice([-1, 1]) * rng.randint(1, 9) / 100, 2)
    shown = [f"{a:g}", f"{b:g}"]
    gold = shown[0] if a > b else shown[1]
    return (
        "niv",
        f"Which is larger, {shown[0]} or {shown[1]}?",
        gold,
        shown[1] if gold == shown[0] else shown[0],
        ["Compare the two numbers digit by digit after the decimal point.", f"{gold} is the larger one."],
    )


FAMILIES = [_sum, _word, _capital, _prime, _sentiment, _choice, _units, _larger]


# ---------------------------------------------------------------- responses in the style each message asks for


def _response(style: str, question: str, answer: str, steps: list[str]) -> str:
    task = question.splitlines()[0]
    if style == "brief":
        return f"Answer: {answer}"
    if style == "steps":
        numbered = [f"Step {i}: {s}" for i, s in enumerate(steps, 1)]
        return "\n".join(numbered + [f"Step {len(steps) + 1}: Check the result once more.", f"Answer: {answer}"])
    if style == "child":
        return f"Let's think about it like a story. {steps[0]} {steps[1]} So the answer is {answer}.\nAnswer: {answer}"
    if style == "teacher":
        return (
            f"The task asks: {task} The guideline is to give one answer.\n"
            f"How I used it: {' '.join(steps)}\nAnswer: {answer}"
        )
    if style == "parts":
        return (
            f"Part #1: Read the question.\nUsage: {task} This names what we must find.\n"
            f"Part #2: Solve it.\nUsage: {' '.join(steps)}\nAnswer: {answer}"
        )
    return (
        f"{steps[0]} {steps[1]} This gives the final result directly, with nothing else to look up.\nAnswer: {answer}"
    )


def openorca_rows(rng: random.Random) -> list[dict]:
    messages = [i for i in range(len(SYSTEM_MESSAGES)) for _ in range(ROWS_PER_MESSAGE)]
    rng.shuffle(messages)
    n = len(messages)
    wrong = set(rng.sample(range(n), round(WRONG_SHARE * n)))
    special = rng.sample(sorted(set(range(n)) - wrong), ECHOES + EMPTY)
    echoes, empty = set(special[:ECHOES]), set(special[ECHOES:])
    counters: dict[str, int] = {}
    seen: set[str] = set()
    rows = []
    for i, message in enumerate(messages):
        system, style = SYSTEM_MESSAGES[message]
        while True:  # one row per question
            prefix, question, gold, bad, steps = rng.choice(FAMILIES)(rng)
            if question not in seen:
                break
        seen.add(question)
        response = _response(style, question, bad if i in wrong else gold, steps)
        if i in echoes:  # an answer that repeats its instruction: erasure must not let it through
            quoted = max(system.split(". "), key=len).rstrip(".")
            response = f'My instructions say: "{quoted}." So here it is.\n{response}'
        if i in empty:
            response = ""
        counters[prefix] = counters.get(prefix, 0) + 1
        rows.append(
            {
                "id": f"{prefix}.{1000 + 37 * counters[prefix] + i}",
                "system_prompt": system,
                "question": question,
                "response": response,
                "gold": gold,
            }
        )
    return rows


def review_rows(rng: random.Random, n: int = 32) -> list[dict]:
    rows = []
    for i in range(n):
        positive = i % 2 == 0
        product = PRODUCTS[i % len(PRODUCTS)]
        phrase = (POSITIVE if positive else NEGATIVE)[(i // 2) % 5]
        rows.append(
            {"id": i + 1, "review": f"The {product} {phrase}.", "label": "positive" if positive else "negative"}
        )
    rng.shuffle(rows)
    return rows


def build() -> dict[str, list[dict]]:
    rng = random.Random(SEED)
    return {"openorca": openorca_rows(rng), "reviews": review_rows(rng)}


def write(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in build().items():
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        (out / f"{name}.jsonl").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "data")
