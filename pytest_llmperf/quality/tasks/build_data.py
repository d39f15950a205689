"""Regenerate the built-in task data (deterministic):
``python -m pytest_llmperf.quality.tasks.build_data``.

Every item was written for this project: arithmetic generated from a seeded RNG, and word
facts (antonyms, capitals, categories, counting, plurals, colours) from the lists below.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent

ARITH_SHOTS = "3 + 4 = 7\n12 + 5 = 17\n20 + 31 = 51\n9 - 3 = 6\n"

ANTONYMS = [
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("up", "down"), ("day", "night"),
    ("happy", "sad"), ("open", "closed"), ("light", "dark"), ("old", "young"),
    ("wet", "dry"), ("hard", "soft"), ("full", "empty"), ("early", "late"), ("rich", "poor"),
    ("strong", "weak"), ("tall", "short"), ("thick", "thin"), ("loud", "quiet"),
    ("clean", "dirty"), ("high", "low"), ("win", "lose"), ("buy", "sell"), ("push", "pull"),
    ("inside", "outside"), ("first", "last"), ("true", "false"), ("love", "hate"),
    ("good", "bad"), ("near", "far"), ("begin", "end"),
    ("left", "right"), ("north", "south"), ("east", "west"), ("cheap", "expensive"),
    ("safe", "dangerous"), ("sweet", "sour"), ("friend", "enemy"), ("question", "answer"),
    ("asleep", "awake"),
]
CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Japan", "Tokyo"), ("China", "Beijing"), ("Russia", "Moscow"), ("Egypt", "Cairo"),
    ("Greece", "Athens"), ("Portugal", "Lisbon"), ("Austria", "Vienna"),
    ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Ireland", "Dublin"),
    ("Poland", "Warsaw"), ("Canada", "Ottawa"), ("Kenya", "Nairobi"), ("Peru", "Lima"),
    ("Thailand", "Bangkok"), ("Finland", "Helsinki"), ("Hungary", "Budapest"),
    ("Denmark", "Copenhagen"), ("Argentina", "Buenos Aires"), ("Mexico", "Mexico City"),
    ("South Korea", "Seoul"),
]
CATEGORIES = {
    "an animal": ["dog", "cat", "horse", "lion", "rabbit", "elephant", "tiger", "sheep"],
    "a fruit": ["apple", "banana", "orange", "pear", "grape", "cherry", "lemon", "mango"],
    "a color": ["red", "blue", "green", "yellow", "purple", "brown", "pink"],
    "a tool": ["hammer", "saw", "screwdriver", "wrench", "drill", "shovel"],
    "a vehicle": ["car", "bus", "train", "bicycle", "truck", "airplane"],
}
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
           "eighteen", "nineteen", "twenty"]
PLURALS = [
    ("mouse", "mice"), ("child", "children"), ("foot", "feet"), ("tooth", "teeth"),
    ("man", "men"), ("woman", "women"), ("goose", "geese"), ("person", "people"),
    ("box", "boxes"), ("city", "cities"), ("knife", "knives"), ("leaf", "leaves"),
    ("baby", "babies"), ("bus", "buses"), ("wolf", "wolves"), ("dish", "dishes"),
    ("story", "stories"), ("glass", "glasses"), ("party", "parties"), ("life", "lives"),
]
COLOURS = [
    ("grass", "green"), ("the sky on a clear day", "blue"), ("snow", "white"),
    ("coal", "black"), ("a ripe banana", "yellow"), ("a ripe tomato", "red"),
    ("an orange", "orange"), ("milk", "white"), ("blood", "red"), ("a lemon", "yellow"),
    ("the sun", "yellow"), ("a crow", "black"), ("chocolate", "brown"),
    ("a strawberry", "red"), ("a cloud", "white"),
]
COLOUR_WORDS = ["green", "blue", "white", "black", "yellow", "red", "orange", "brown"]


def arith(rng: random.Random, n: int = 150) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    seen: set[tuple[int, str, int]] = set()
    while len(items) < n:
        a, b = rng.randint(0, 60), rng.randint(0, 40)
        op = "+" if rng.random() < 0.7 else "-"
        if op == "-" and b > a:
            a, b = b, a
        if (a, op, b) in seen:
            continue
        seen.add((a, op, b))
        value = a + b if op == "+" else a - b
        items.append({"id": len(items), "input": f"{ARITH_SHOTS}{a} {op} {b} =",
                      "target": str(value)})
    return items


def _mc(rng: random.Random, prompt: str, answer: str, pool: list[str]) -> dict[str, object]:
    distractors = rng.sample(sorted({p for p in pool if p != answer}), 3)
    choices = [answer, *distractors]
    rng.shuffle(choices)
    return {"input": prompt, "choices": choices, "gold": choices.index(answer)}


def words(rng: random.Random) -> list[dict[str, object]]:
    items = []
    ant_pool = [w for pair in ANTONYMS for w in pair]
    for a, b in ANTONYMS:
        items.append(_mc(rng, f"The opposite of {a} is", b, ant_pool))
        items.append(_mc(rng, f"The opposite of {b} is", a, ant_pool))
    cap_pool = [c for _, c in CAPITALS]
    items += [_mc(rng, f"The capital city of {country} is", city, cap_pool)
              for country, city in CAPITALS]
    cat_pool = list(CATEGORIES)
    for cat, members in CATEGORIES.items():
        for m in members:
            article = "An" if m[0] in "aeiou" else "A"
            items.append(_mc(rng, f"{article} {m} is", cat, cat_pool))
    for i in range(len(NUMBERS) - 1):
        items.append(_mc(rng, f"The number that comes after {NUMBERS[i]} is",
                         NUMBERS[i + 1], NUMBERS))
    plural_pool = [p for _, p in PLURALS]
    items += [_mc(rng, f"The plural of {s} is", p, plural_pool) for s, p in PLURALS]
    items += [_mc(rng, f"The usual colour of {thing} is", colour, COLOUR_WORDS)
              for thing, colour in COLOURS]
    rng.shuffle(items)  # any prefix (a limit) mixes the kinds of fact
    for i, item in enumerate(items):
        item["id"] = i
    return items


def write(name: str, items: list[dict[str, object]]) -> None:
    with (HERE / f"{name}.jsonl").open("w") as fh:
        for item in items:
            fh.write(json.dumps(item, sort_keys=True) + "\n")


if __name__ == "__main__":
    write("llmperf_arith", arith(random.Random(6)))
    write("llmperf_words", words(random.Random(6)))
