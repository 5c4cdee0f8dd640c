"""Writes reviews.csv: short English movie reviews composed from hand-written phrases.

Each review combines an opening, one to three sentences about aspects of the film (some negated,
some mixed: "despite X, Y"), and a verdict, with the overall sentiment as its label. Train and test
draw from the same phrases but never repeat a review. Run from the repo root:
`python data/reviews/write_reviews.py` (seeded: it writes the same file every time).
"""

import csv
import random
from pathlib import Path

SUBJECTS = ["The film", "This movie", "The sequel", "The director's latest", "This thriller",
            "The comedy", "This drama", "The remake", "This adaptation", "The documentary",
            "This animated feature", "The horror flick", "This romance", "The western",
            "This biopic", "The musical", "The crime story", "This science fiction epic"]
ASPECTS = ["acting", "plot", "soundtrack", "pacing", "cinematography", "dialogue", "ending",
           "characters", "visual effects", "script", "score", "lead performance", "humour",
           "editing", "story", "cast", "direction", "set design"]
GOOD = ["brilliant", "moving", "gripping", "superb", "delightful", "heartfelt", "clever",
        "stunning", "memorable", "charming", "wonderful", "excellent", "sharp", "beautiful",
        "funny", "powerful", "fresh", "thrilling", "touching", "masterful"]
BAD = ["dull", "clumsy", "tedious", "forgettable", "bland", "incoherent", "lifeless",
       "predictable", "boring", "painful", "awful", "weak", "messy", "flat", "lazy", "tiresome",
       "shallow", "confusing", "cheap", "dreadful"]
POSITIVE_VERDICTS = ["I would happily watch it again.", "Highly recommended.",
                     "One of the best films this year.", "Go and see it.",
                     "I loved every minute.", "A real treat.", "Worth every penny.",
                     "I left the cinema smiling.", "Easily a favourite of mine now.",
                     "Do not miss it."]
NEGATIVE_VERDICTS = ["Skip this one.", "A waste of two hours.", "I want my money back.",
                     "I nearly fell asleep.", "Not worth your time.", "I regret watching it.",
                     "Avoid it.", "I walked out before the end.", "A real disappointment.",
                     "I cannot recommend it."]


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _aspect_sentence(rng: random.Random, positive: bool) -> str:
    aspect = rng.choice(ASPECTS)
    good, bad = rng.choice(GOOD), rng.choice(BAD)
    forms = ([f"The {aspect} was {good}.", f"The {aspect} was not {bad} at all.",
              f"Despite {_a(bad)} {rng.choice(ASPECTS)}, the {aspect} was {good}.",
              f"I never found the {aspect} {bad}.", f"The {aspect} felt {good} throughout.",
              f"The {aspect} is {good}, and it never feels {bad}."]
             if positive else
             [f"The {aspect} was {bad}.", f"The {aspect} was not {good} at all.",
              f"Despite {_a(good)} {rng.choice(ASPECTS)}, the {aspect} was {bad}.",
              f"I never found the {aspect} {good}.", f"The {aspect} felt {bad} throughout.",
              f"The {aspect} is {bad}, and it never feels {good}."])
    return rng.choice(forms)


def review(rng: random.Random, positive: bool) -> str:
    opening = f"{rng.choice(SUBJECTS)} is {rng.choice(GOOD if positive else BAD)}."
    body = [_aspect_sentence(rng, positive) for _ in range(rng.randint(1, 3))]
    verdict = rng.choice(POSITIVE_VERDICTS if positive else NEGATIVE_VERDICTS)
    return " ".join([opening, *body, verdict])


def main(path: Path = Path(__file__).with_name("reviews.csv"), per_class: int = 250) -> None:
    rng = random.Random(2026)
    seen, rows = set(), []
    for split, count in (("train", int(per_class * 0.8)), ("test", per_class - int(per_class * 0.8))):
        for label in ("positive", "negative"):
            written = 0
            while written < count:
                text = review(rng, label == "positive")
                if text not in seen:
                    seen.add(text)
                    rows.append((split, label, text))
                    written += 1
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "label", "text"])
        writer.writerows(rows)


if __name__ == "__main__":
    main()
