"""Write the product_qa example data: a small catalogue and customer reviews of it.

    data/products.parquet  150 products: sku, name, category, price (double), features (string)
    data/reviews.csv       400 reviews: sku, rating (1-5), text; every sku exists in products

Templates, word lists and a fixed seed; byte-identical on every run (parquet: for a given pyarrow
version). Usage:

    python examples/product_qa/make_data.py [OUTPUT_DIR]    # default: data/ beside this file
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SEED = 7
N_PRODUCTS = 150
N_REVIEWS = 400

# category: (sku prefix, {noun: ((min price, max price), features)}). Features are noun phrases
# that fit the noun, so review sentences like "The {feature} is great." read naturally.
CATALOGUE = {
    "kitchen": (
        "KIT",
        {
            "Blender": (
                (30, 160),
                ["1200 W motor", "BPA-free jar", "6-speed dial", "pulse button", "dishwasher-safe jar"],
            ),
            "Kettle": (
                (15, 90),
                ["1.7 L capacity", "auto shut-off", "keep-warm mode", "stainless steel body", "temperature presets"],
            ),
            "Toaster": (
                (20, 110),
                ["extra-wide slots", "defrost setting", "crumb tray", "bagel mode", "browning dial"],
            ),
            "Coffee Grinder": ((25, 180), ["conical burrs", "18 grind settings", "timer dial", "anti-static bin"]),
            "Air Fryer": (
                (50, 220),
                ["5 L basket", "digital display", "non-stick basket", "8 presets", "viewing window"],
            ),
        },
    ),
    "audio": (
        "AUD",
        {
            "Headphones": (
                (40, 350),
                [
                    "active noise cancelling",
                    "30-hour battery",
                    "foldable design",
                    "memory foam ear cushions",
                    "USB-C charging",
                ],
            ),
            "Earbuds": (
                (25, 250),
                ["charging case", "IPX5 water resistance", "touch controls", "transparency mode", "8-hour battery"],
            ),
            "Bluetooth Speaker": (
                (30, 200),
                ["IPX7 water resistance", "12-hour battery", "built-in microphone", "stereo pairing", "bass boost"],
            ),
            "Soundbar": ((90, 450), ["HDMI eARC input", "wireless subwoofer", "dialogue mode", "Dolby Atmos support"]),
            "Turntable": ((80, 400), ["belt drive", "built-in preamp", "USB output", "anti-skate control"]),
        },
    ),
    "outdoor": (
        "OUT",
        {
            "Tent": ((60, 320), ["two-person size", "waterproof fly", "aluminium poles", "vestibule", "2 kg weight"]),
            "Sleeping Bag": ((35, 220), ["-5 C comfort rating", "down filling", "compression sack", "two-way zip"]),
            "Hiking Backpack": (
                (40, 240),
                ["40 L capacity", "rain cover", "padded hip belt", "hydration sleeve", "ventilated back panel"],
            ),
            "Camping Stove": ((25, 140), ["piezo ignition", "wind shield", "simmer control", "folding legs"]),
            "Headlamp": ((15, 80), ["400-lumen beam", "red light mode", "rechargeable battery", "tilting head"]),
        },
    ),
    "office": (
        "OFF",
        {
            "Desk Lamp": (
                (20, 120),
                ["dimmable LED", "USB charging port", "adjustable arm", "colour temperature dial"],
            ),
            "Office Chair": (
                (90, 480),
                ["lumbar support", "memory foam seat", "adjustable armrests", "mesh back", "tilt lock"],
            ),
            "Monitor Stand": ((20, 110), ["adjustable height", "built-in USB hub", "storage drawer", "bamboo top"]),
            "Keyboard": ((30, 200), ["backlit keys", "hot-swappable switches", "wireless connection", "wrist rest"]),
            "Mouse": ((15, 130), ["ergonomic shape", "silent clicks", "adjustable DPI", "rechargeable battery"]),
        },
    ),
    "fitness": (
        "FIT",
        {
            "Yoga Mat": ((15, 110), ["non-slip surface", "6 mm padding", "carry strap", "alignment lines"]),
            "Dumbbell Set": ((40, 320), ["adjustable weight dial", "storage tray", "rubber coating", "knurled grips"]),
            "Resistance Bands": ((10, 45), ["five resistance levels", "door anchor", "padded handles", "travel pouch"]),
            "Jump Rope": ((10, 40), ["ball-bearing handles", "adjustable cable", "jump counter", "weighted handles"]),
            "Fitness Tracker": (
                (35, 260),
                ["heart-rate monitor", "7-day battery", "sleep tracking", "built-in GPS", "sweat-proof strap"],
            ),
        },
    ),
    "home": (
        "HOM",
        {
            "Vacuum Cleaner": ((60, 450), ["HEPA filter", "cordless design", "45-minute runtime", "pet hair brush"]),
            "Air Purifier": ((50, 350), ["HEPA filter", "quiet night mode", "air quality sensor", "app control"]),
            "Humidifier": ((25, 150), ["4 L tank", "quiet night mode", "auto humidity control", "essential oil tray"]),
            "Wall Clock": ((15, 90), ["silent sweep movement", "large numerals", "glass face", "oak frame"]),
            "Throw Blanket": ((20, 120), ["machine-washable fabric", "sherpa lining", "fringed edges", "soft knit"]),
        },
    ),
}
BRANDS = [
    "Northwind",
    "Brightly",
    "Corvid",
    "Alder",
    "Pebble & Co",
    "Tessera",
    "Kestrel",
    "Lumo",
    "Vantage",
    "Harbor",
    "Quill",
    "Summit",
]
MODELS = ["Pro", "Lite", "Max", "Mini", "Plus", "Air", "One", "S2", "X", "Classic"]

# Phrased so that singular and plural features ("USB output", "8 presets") both read correctly.
POSITIVE = {
    5: [
        "Absolutely love this {noun}, especially the {feat}.",
        "Best {noun} I've owned. Great {feat}, worth every cent.",
        "Five stars. The {name} is well built and I love the {feat}.",
        "Bought it as a gift and ended up getting one for myself. Really like the {feat}.",
    ],
    4: [
        "Very good {noun}. I like the {feat}, though the instructions could be clearer.",
        "Solid {noun} for the price. Nice {feat}; the packaging was a bit wasteful.",
        "Happy with the {name} overall. Handy {feat}, just a little bulkier than expected.",
        "Does what it says. Good {feat}; I'd give five stars if it came in more colours.",
    ],
}
NEUTRAL = [
    "It's an okay {noun}. Decent {feat}, but nothing special for ${price}.",
    "Mixed feelings about the {name}. No complaints about the {feat}, but it feels cheaper than it looks.",
    "Average {noun}. You get the advertised {feat}, yet I expected more at this price.",
    "Decent, not great. The {noun} works most of the time, but I rarely use the {feat}.",
]
NEGATIVE = {
    2: [
        "Disappointed with this {noun}. Problems with the {feat} started after a month.",
        "Not worth ${price}. The {feat} turned out much weaker than advertised.",
        "The {name} looks nice, but I've had constant trouble with the {feat} and support was slow to reply.",
    ],
    1: [
        "Broke within a week. Trouble with the {feat} from day one. Returning it.",
        "Terrible {noun}. Arrived damaged, and the {feat} didn't work at all.",
        "Do not buy the {name}. The {feat} failed on day one and the refund took weeks.",
    ],
}
RATING_WEIGHTS = [(5, 34), (4, 28), (3, 14), (2, 12), (1, 12)]


def products(rng: random.Random) -> list[dict]:
    cats = sorted(CATALOGUE)
    per_cat = N_PRODUCTS // len(cats)
    seen, out = set(), []
    for cat in cats:
        prefix, nouns = CATALOGUE[cat]
        n = 0
        while n < per_cat:
            noun = rng.choice(sorted(nouns))
            (lo, hi), feats = nouns[noun]
            name = f"{rng.choice(BRANDS)} {noun} {rng.choice(MODELS)}"
            if name in seen:
                continue
            seen.add(name)
            n += 1
            price = float(rng.randint(lo, hi)) - 0.01  # shop-style x.99 prices
            out.append(
                {
                    "sku": f"{prefix}-{1000 + n * 7:04d}",
                    "name": name,
                    "category": cat,
                    "price": round(price, 2),
                    "features": "; ".join(rng.sample(feats, rng.randint(3, min(4, len(feats))))),
                    "noun": noun.lower(),
                }
            )
    return out


def reviews(rng: random.Random, catalogue: list[dict]) -> list[dict]:
    ratings, weights = zip(*RATING_WEIGHTS)
    # Every product gets one review, the rest go to random products, so popularity varies.
    picks = list(catalogue) + [rng.choice(catalogue) for _ in range(N_REVIEWS - len(catalogue))]
    rng.shuffle(picks)
    out = []
    for prod in picks:
        rating = rng.choices(ratings, weights)[0]
        pool = POSITIVE.get(rating) or NEGATIVE.get(rating) or NEUTRAL
        text = rng.choice(pool).format(
            noun=prod["noun"],
            name=prod["name"],
            price=f"{prod['price']:.2f}",
            feat=rng.choice(prod["features"].split("; ")),
        )
        out.append({"sku": prod["sku"], "rating": rating, "text": text})
    return out


def build(seed: int = SEED) -> dict[str, list[dict]]:
    catalogue = products(random.Random(seed))
    return {"products": catalogue, "reviews": reviews(random.Random(seed + 1), catalogue)}


def write(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = build()
    rows = tables["products"]
    table = pa.table(
        {
            "sku": pa.array([r["sku"] for r in rows], pa.string()),
            "name": pa.array([r["name"] for r in rows], pa.string()),
            "category": pa.array([r["category"] for r in rows], pa.string()),
            "price": pa.array([r["price"] for r in rows], pa.float64()),
            "features": pa.array([r["features"] for r in rows], pa.string()),
        }
    )
    pq.write_table(table, out_dir / "products.parquet", compression="zstd")
    with open(out_dir / "reviews.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, ["sku", "rating", "text"], lineterminator="\n")
        w.writeheader()
        w.writerows(tables["reviews"])


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "data")
