"""Write the cautious_reasoner example data: arithmetic.jsonl, false_belief.csv, sentiment.parquet.

Every row is built from a template and a seeded random generator, so the files are byte-identical
on every run (parquet: for a given pyarrow version). Usage:

    python examples/cautious_reasoner/make_data.py [OUTPUT_DIR]    # default: data/ beside this file
"""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20231120  # Orca 2's arXiv month; any fixed value works
N_ROWS = 300

# ---------------------------------------------------------------- shared vocabulary
PEOPLE = [
    ("Mia", "she"),
    ("Liam", "he"),
    ("Ava", "she"),
    ("Noah", "he"),
    ("Zoe", "she"),
    ("Omar", "he"),
    ("Priya", "she"),
    ("Kenji", "he"),
    ("Lucia", "she"),
    ("Mateo", "he"),
    ("Hana", "she"),
    ("Tariq", "he"),
    ("Ella", "she"),
    ("Jonas", "he"),
    ("Amara", "she"),
    ("Diego", "he"),
    ("Freya", "she"),
    ("Samir", "he"),
    ("Nora", "she"),
    ("Leo", "he"),
    ("Ines", "she"),
    ("Kofi", "he"),
    ("Maya", "she"),
    ("Felix", "he"),
    ("Chloe", "she"),
    ("Ravi", "he"),
    ("Sofia", "she"),
    ("Ben", "he"),
    ("Yara", "she"),
    ("Owen", "he"),
    ("Lena", "she"),
    ("Sam", "he"),
]


# ---------------------------------------------------------------- arithmetic
# Countable things a child could plausibly have, buy or share.
THINGS = [
    "apples",
    "marbles",
    "stickers",
    "pencils",
    "cookies",
    "books",
    "stamps",
    "shells",
    "cards",
    "balloons",
    "oranges",
    "crayons",
    "coins",
    "toy cars",
    "beads",
    "eggs",
    "cupcakes",
    "buttons",
    "flowers",
    "strawberries",
    "blocks",
    "candles",
    "rocks",
    "muffins",
]
GAIN = ["buys", "gets", "finds", "picks up", "is given", "wins"]
LOSE = [("gives", "to {friend}"), ("loses", "at the park"), ("eats", "")]  # "eats" only for food
FOOD = {"apples", "cookies", "oranges", "cupcakes", "strawberries", "muffins", "eggs"}
HOLDERS = {"boxes": "box", "bags": "bag", "jars": "jar", "packs": "pack", "baskets": "basket", "trays": "tray"}


def _lose_phrase(rng: random.Random, thing: str, friend: str) -> tuple[str, str]:
    options = [p for p in LOSE if p[0] != "eats" or thing in FOOD]
    verb, tail = rng.choice(options)
    if verb == "loses" and thing in FOOD:
        verb, tail = "gives", "to {friend}"
    tail = tail.format(friend=friend)
    return verb, tail


def _arith_problem(rng: random.Random) -> tuple[str, str, int]:
    """One word problem: (question, expression, answer). The expression keeps the numbers in the
    order the question states them, so a test can recompute the answer independently.

    Small numbers, and mostly one step: the 135M teacher gets such a problem right only now and
    then (one sampled answer in five to ten, by the temperature), which is what the demo's
    rejection sampling needs: with several samples per problem, some right answer turns up for
    many problems, and only right answers become records. Harder problems it practically never solves."""
    (name, pron), (friend, _) = rng.sample(PEOPLE, 2)
    Pron = pron.capitalize()
    thing = rng.choice(THINGS)
    kind = rng.choice(["add", "add", "sub", "sub", "mul", "div", "add_sub", "sub_add"])
    if kind == "add":
        a, b = rng.randint(1, 8), rng.randint(1, 5)
        verb = rng.choice(GAIN)
        more = "more" if verb != "is given" else "more by " + friend
        q = f"{name} has {a} {thing} and {verb} {b} {more}. How many {thing} does {name} have now?"
        return q, f"{a} + {b}", a + b
    if kind == "sub":
        a = rng.randint(3, 10)
        b = rng.randint(1, a - 1)
        verb, tail = _lose_phrase(rng, thing, friend)
        tail = f" {tail}" if tail else ""
        q = f"{name} had {a} {thing}. {Pron} {verb} {b}{tail}. How many {thing} does {name} have left?"
        return q, f"{a} - {b}", a - b
    if kind == "mul":
        a, b = rng.randint(2, 4), rng.randint(2, 5)
        holder = rng.choice(sorted(HOLDERS))
        q = (
            f"{name} has {a} {holder} of {thing}. Each of the {holder} holds {b} {thing}. "
            f"How many {thing} does {name} have in total?"
        )
        return q, f"{a} * {b}", a * b
    if kind == "div":
        b, k = rng.randint(2, 4), rng.randint(2, 5)
        a = b * k
        q = f"{name} shares {a} {thing} equally among {b} friends. How many {thing} does each friend get?"
        return q, f"{a} / {b}", k
    if kind == "add_sub":
        a, b = rng.randint(2, 8), rng.randint(1, 5)
        c = rng.randint(1, a + b - 1)
        verb, tail = _lose_phrase(rng, thing, friend)
        tail = f" {tail}" if tail else ""
        q = (
            f"{name} has {a} {thing}. {Pron} {rng.choice(GAIN)} {b} more, then {verb} {c}{tail}. "
            f"How many {thing} does {name} have now?"
        )
        return q, f"{a} + {b} - {c}", a + b - c
    # sub_add
    a = rng.randint(3, 10)
    b = rng.randint(1, a - 1)
    c = rng.randint(1, 5)
    q = (
        f"There are {a} {thing} on the table. {name} takes away {b} of them, and later "
        f"{friend} puts {c} more on the table. How many {thing} are on the table now?"
    )
    return q, f"{a} - {b} + {c}", a - b + c


def arithmetic_problems(rng: random.Random) -> list[dict]:
    """Rows with the structured expression kept (the written file drops it)."""
    seen, out = set(), []
    while len(out) < N_ROWS:
        q, expr, ans = _arith_problem(rng)
        if q in seen:
            continue
        seen.add(q)
        out.append({"id": f"arith-{len(out) + 1:04d}", "question": q, "answer": str(ans), "expr": expr})
    return out


# ---------------------------------------------------------------- false belief
# Small things fit in any container; large ones only in the large containers.
SMALL_OBJECTS = ["marble", "key", "watch", "ring", "coin", "cookie", "toy car", "chocolate bar"]
LARGE_OBJECTS = [
    "ball",
    "scarf",
    "apple",
    "book",
    "sandwich",
    "hairbrush",
    "teddy bear",
    "glove",
    "pencil case",
    "phone",
]
# No container name is a substring of another, so the answer is unambiguous in the story.
LARGE_CONTAINERS = [
    "basket",
    "box",
    "drawer",
    "cupboard",
    "backpack",
    "suitcase",
    "bucket",
    "hamper",
    "crate",
    "bag",
    "chest",
    "wardrobe",
    "cabinet",
]
SMALL_CONTAINERS = ["jar", "tin", "envelope", "vase", "teapot"]
CONTAINERS = LARGE_CONTAINERS + SMALL_CONTAINERS
PLACES = [
    "kitchen",
    "bedroom",
    "living room",
    "classroom",
    "garage",
    "office",
    "garden shed",
    "playroom",
    "attic",
    "hallway",
]
LEAVE = [
    "{a} leaves the {place} to go for a walk.",
    "{a} goes outside to play.",
    "{a} leaves to answer the phone in another room.",
    "{a} goes to the shop.",
    "{a} steps out to take out the trash.",
    "{a} goes out to run an errand.",
]
MOVE_UNSEEN = [
    "While {a} is away, {b} takes the {obj} out of the {c1} and puts it in the {c2}.",
    "While {a} is gone, {b} moves the {obj} from the {c1} to the {c2}.",
    "Then {b}, alone in the {place}, hides the {obj} in the {c2}.",
]
RETURN = ["Later, {a} comes back.", "{a} returns to the {place}.", "A little later {a} comes back in."]
MOVE_SEEN = [
    "{a} watches as {b} takes the {obj} out of the {c1} and puts it in the {c2}.",
    "Before leaving, {a} sees {b} move the {obj} from the {c1} to the {c2}.",
]
# A control with the same shape as the false-belief story; only the last sentence differs.
TOLD = ["{b} tells {a} that the {obj} is now in the {c2}.", '{b} says to {a}: "I moved the {obj} to the {c2}."']
QUESTIONS = [
    "Where will {a} look for the {obj}?",
    "Where will {a} look for the {obj} first?",
    "Where does {a} think the {obj} is?",
]
# True-belief controls make up about a third, so "always answer the first container" fails.
P_CONTROL = 0.3


def false_belief_stories(rng: random.Random) -> list[dict]:
    """Rows with the structured fields kept: kind ('false' | 'true'), first and second container."""
    seen, out = set(), []
    while len(out) < N_ROWS:
        (a, _), (b, _) = rng.sample(PEOPLE, 2)
        obj = rng.choice(SMALL_OBJECTS + LARGE_OBJECTS)
        c1, c2 = rng.sample(CONTAINERS if obj in SMALL_OBJECTS else LARGE_CONTAINERS, 2)
        place = rng.choice(PLACES)
        f = dict(a=a, b=b, obj=obj, c1=c1, c2=c2, place=place)
        control = rng.random() < P_CONTROL
        opening = rng.choice(
            [
                "{a} and {b} are in the {place}.",
                "{a} and {b} are playing in the {place}.",
                "{a} and {b} are tidying the {place}.",
            ]
        ).format(**f)
        put = rng.choice(
            [
                "{a} puts the {obj} in the {c1}.",
                "{a} places the {obj} inside the {c1}.",
                "{a} hides the {obj} in the {c1}.",
            ]
        ).format(**f)
        unseen = [
            opening,
            put,
            rng.choice(LEAVE).format(**f),
            rng.choice(MOVE_UNSEEN).format(**f),
            rng.choice(RETURN).format(**f),
        ]
        if not control:
            parts, answer = unseen, c1
        elif rng.random() < 0.5:
            parts, answer = unseen + [rng.choice(TOLD).format(**f)], c2
        else:
            seen_move = rng.choice(MOVE_SEEN).format(**f)
            parts = [opening, put, seen_move]
            if seen_move.startswith("Before leaving"):
                parts += [rng.choice(LEAVE).format(**f), rng.choice(RETURN).format(**f)]
            answer = c2
        story = " ".join(parts)
        question = rng.choice(QUESTIONS).format(**f)
        if story + question in seen:
            continue
        seen.add(story + question)
        out.append(
            {
                "id": f"tom-{len(out) + 1:04d}",
                "story": story,
                "question": question,
                "answer": answer,
                "kind": "true" if control else "false",
                "c1": c1,
                "c2": c2,
            }
        )
    return out


# ---------------------------------------------------------------- sentiment
DOMAINS = {
    "product": {
        "things": [
            "blender",
            "pair of headphones",
            "backpack",
            "desk lamp",
            "phone case",
            "kettle",
            "running shoes",
            "coffee grinder",
            "keyboard",
            "water bottle",
            "vacuum cleaner",
            "rain jacket",
        ],
        "pos": [
            "works exactly as described",
            "feels solid and well made",
            "was easy to set up",
            "has held up well after weeks of daily use",
            "is quiet and efficient",
            "arrived early and well packed",
            "is worth every penny",
        ],
        "neg": [
            "broke after two weeks",
            "feels cheap and flimsy",
            "stopped working after a few uses",
            "is much louder than advertised",
            "arrived with a cracked part",
            "is not worth the money",
            "was a pain to set up",
        ],
    },
    "movie": {
        "things": [
            "thriller",
            "comedy",
            "animated film",
            "documentary",
            "sci-fi movie",
            "romance",
            "horror movie",
            "period drama",
            "superhero movie",
            "mystery",
        ],
        "pos": [
            "kept me hooked from start to finish",
            "has a clever, surprising plot",
            "features wonderful performances",
            "made me laugh out loud",
            "looks stunning on the big screen",
            "has a soundtrack I still hum",
        ],
        "neg": [
            "drags on far too long",
            "has a predictable plot",
            "wastes a talented cast",
            "has dialogue that made me cringe",
            "falls apart in the last act",
            "put me to sleep halfway through",
        ],
    },
    "restaurant": {
        "things": [
            "pizza place",
            "sushi bar",
            "diner",
            "taco stand",
            "Thai restaurant",
            "bakery",
            "steakhouse",
            "vegan cafe",
            "noodle shop",
            "brunch spot",
        ],
        "pos": [
            "serves fresh, flavorful food",
            "has friendly and attentive staff",
            "has generous portions at fair prices",
            "has a cozy atmosphere",
            "got our order out quickly",
            "has desserts worth the trip",
        ],
        "neg": [
            "served our food cold",
            "has rude and slow staff",
            "charges too much for tiny portions",
            "was dirty and noisy",
            "made us wait an hour for a table",
            "got our order wrong twice",
        ],
    },
}
OPEN = {
    "pos": [
        "I loved this {thing}.",
        "What a great {thing}!",
        "This {thing} is fantastic.",
        "Really happy with this {thing}.",
        "Five stars for this {thing}.",
        "This {thing} exceeded my expectations.",
    ],
    "neg": [
        "I was disappointed by this {thing}.",
        "What a letdown of a {thing}.",
        "This {thing} is terrible.",
        "Really unhappy with this {thing}.",
        "One star for this {thing}.",
        "This {thing} fell short of my expectations.",
    ],
}
CLOSE = {
    "pos": [
        "Highly recommended.",
        "I would happily go back.",
        "Would buy again.",
        "I'm telling all my friends.",
        "A real gem.",
        "",
    ],
    "neg": [
        "Avoid it.",
        "I won't be back.",
        "I want my money back.",
        "Save yourself the trouble.",
        "Not recommended.",
        "",
    ],
}
# The back-half of the sentence follows the first aspect, so mixed signals never appear.
JOIN = {
    "pos": ["It {a1} and {a2}.", "It {a1}, and it also {a2}.", "It {a1}. Plus, it {a2}."],
    "neg": ["It {a1} and {a2}.", "It {a1}, and on top of that it {a2}.", "It {a1}. Worse, it {a2}."],
}


def sentiment_reviews(rng: random.Random) -> list[dict]:
    seen, out = set(), []
    labels = ["positive", "negative"] * (N_ROWS // 2)
    rng.shuffle(labels)
    for label in labels:
        pol = "pos" if label == "positive" else "neg"
        while True:
            domain = DOMAINS[rng.choice(sorted(DOMAINS))]
            thing = rng.choice(domain["things"])
            a1, a2 = rng.sample(domain[pol], 2)
            parts = [
                rng.choice(OPEN[pol]).format(thing=thing),
                rng.choice(JOIN[pol]).format(a1=a1, a2=a2),
                rng.choice(CLOSE[pol]),
            ]
            review = " ".join(p for p in parts if p)
            if review not in seen:
                break
        seen.add(review)
        out.append({"id": f"sent-{len(out) + 1:04d}", "review": review, "label": label})
    return out


# ---------------------------------------------------------------- writing
def build(rng_seed: int = SEED) -> dict[str, list[dict]]:
    """All three tables, with the structured helper fields the test uses to check gold answers."""
    return {
        "arithmetic": arithmetic_problems(random.Random(rng_seed)),
        "false_belief": false_belief_stories(random.Random(rng_seed + 1)),
        "sentiment": sentiment_reviews(random.Random(rng_seed + 2)),
    }


def write(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = build()
    with open(out_dir / "arithmetic.jsonl", "w", encoding="utf-8", newline="\n") as fh:
        for r in tables["arithmetic"]:
            fh.write(json.dumps({k: r[k] for k in ("id", "question", "answer")}, ensure_ascii=False) + "\n")
    with open(out_dir / "false_belief.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["id", "story", "question", "answer"])
        for r in tables["false_belief"]:
            w.writerow([r["id"], r["story"], r["question"], r["answer"]])
    rows = tables["sentiment"]
    table = pa.table({k: pa.array([r[k] for r in rows], pa.string()) for k in ("id", "review", "label")})
    pq.write_table(table, out_dir / "sentiment.parquet", compression="zstd")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "data")
