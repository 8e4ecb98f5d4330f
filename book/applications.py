"""Data for chapter 05's applications, generated here so that nothing is downloaded, and the plots
its pages share. NumPy only: the pages turn the arrays into tensors of either framework.

- `date_pairs`: human-written dates in ten formats and their ISO forms (translation);
- `encode_chars`: character ids, padded, for the date strings;
- `review_corpus`: long reviews of filler words in which one phrase about the film decides the
  label, among phrases about other things, negation included (text classification), and
  `tokenize`, `build_vocabulary`, `encode_padded` (its preprocessing);
- `digits_split`: scikit-learn's bundled 8x8 digits, scaled to [0, 1], split train/test;
- `click_logs`: users with latent interests, their click histories and candidate items
  (recommendation);
- `seasonal_series`: a signal with a seasonal period of 24 steps plus noise, cut into windows;
- `show_curves`: learning curves of several models side by side.
The exercises' grader has its own generator (`autograder/oracle/ch05_applications.py`).
"""
from __future__ import annotations

import datetime as _dt
import re

import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "date_pairs", "encode_chars", "DATE_FORMATS", "ordinal_words",
    "review_corpus", "tokenize", "build_vocabulary", "encode_padded",
    "digits_split", "click_logs", "seasonal_series", "show_curves", "Stopwatch",
]

# --- dates ----------------------------------------------------------------------------------------
_UNITS = ["", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
          "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_ORDINAL_UNITS = ["", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
                  "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
                  "seventeenth", "eighteenth", "nineteenth"]


def ordinal_words(day: int) -> str:
    """1 -> 'first', 21 -> 'twenty-first', 30 -> 'thirtieth'."""
    if day < 20:
        return _ORDINAL_UNITS[day]
    tens = {2: "twenty", 3: "thirty"}[day // 10]
    if day % 10 == 0:
        return tens[:-1] + "ieth"
    return f"{tens}-{_ORDINAL_UNITS[day % 10]}"


def _month(d):
    return d.strftime("%B").lower()


DATE_FORMATS = {
    "sat, 21 nov 2026": lambda d: d.strftime("%a, %d %b %Y").lower(),
    "21/11/26": lambda d: d.strftime("%d/%m/%y"),
    "11-21-2026": lambda d: d.strftime("%m-%d-%Y"),
    "november 21, 2026": lambda d: f"{_month(d)} {d.day}, {d.year}",
    "21 november 2026": lambda d: f"{d.day} {_month(d)} {d.year}",
    "saturday 21 nov 2026": lambda d: d.strftime("%A %d %b %Y").lower(),
    "2026.11.21": lambda d: d.strftime("%Y.%m.%d"),
    "21.11.2026": lambda d: d.strftime("%d.%m.%Y"),
    "november twenty-first 2026": lambda d: f"{_month(d)} {ordinal_words(d.day)} {d.year}",
    "the 21st of november, 2026": lambda d: f"the {d.day}{_suffix(d.day)} of {_month(d)}, {d.year}",
}


def _suffix(day):
    return "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def date_pairs(rng, n):
    """n (human-written, ISO) pairs: dates uniform over 1950-2049, formats uniform. Two-digit years
    mean 1950-2049 (50-99 -> 19xx, 00-49 -> 20xx), so every source has exactly one ISO answer."""
    start, days = _dt.date(1950, 1, 1).toordinal(), (_dt.date(2049, 12, 31) - _dt.date(1950, 1, 1)).days + 1
    formats = list(DATE_FORMATS.values())
    pairs = []
    for _ in range(n):
        d = _dt.date.fromordinal(start + int(rng.integers(days)))
        pairs.append((formats[int(rng.integers(len(formats)))](d), d.isoformat()))
    return pairs


def encode_chars(strings, alphabet, length, start=None):
    """Strings -> (n, length) int ids into `alphabet` (0 = padding), and the mask (n, length).
    With `start`, each row begins with that id (a decoder's input)."""
    ids = np.zeros((len(strings), length), np.int64)
    for i, s in enumerate(strings):
        row = ([start] if start is not None else []) + [alphabet.index(c) for c in s]
        ids[i, :len(row)] = row[:length]
    return ids, ids > 0


# --- text -----------------------------------------------------------------------------------------
FILLER = ("the a this that movie plot actor actors scene scenes story music ending camera was is "
          "were it i we they saw watched felt thought with and but of in on at for about really quite "
          "very long short old new cast director script").split()
OTHER_SUBJECTS = "popcorn seats parking tickets snacks weather".split()


def review_corpus(rng, n, min_words=80, max_words=120, distractors=6):
    """n (text, label) reviews: filler words with `1 + distractors` short phrases at random places,
    each a subject then 'good', 'bad', 'not good' or 'not bad'. Exactly one phrase is about the
    'film' (the word appears nowhere else) and decides the label: 1 for 'film good' and 'film not
    bad'. The others are about something else ('popcorn not good', 'seats bad', ...) and decide
    nothing, so the words good, bad and not are no clue by themselves. Phrases sit in 4-word slots
    that never overlap."""
    texts, labels = [], []
    for _ in range(n):
        words = list(rng.choice(FILLER, int(rng.integers(min_words, max_words + 1))))
        slots = rng.choice((len(words) - 1) // 4, 1 + distractors, replace=False) * 4 + 1
        for k, slot in enumerate(slots):                     # slot 0 holds the deciding phrase
            good, negated = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
            subject = "film" if k == 0 else str(rng.choice(OTHER_SUBJECTS))
            phrase = [subject] + (["not"] if negated else []) + ["good" if good else "bad"]
            words[slot:slot + len(phrase)] = phrase
            if k == 0:
                labels.append(int(good != negated))
        texts.append(" ".join(words).capitalize() + ".")
    return texts, np.array(labels, np.int64)


def tokenize(text):
    """Lower case, words and punctuation as separate tokens: 'Not bad.' -> ['not', 'bad', '.']."""
    return re.findall(r"[a-z0-9']+|[^\sa-z0-9']", text.lower())


def build_vocabulary(token_lists, min_count=1):
    """{'<pad>': 0, '<unk>': 1, then words by decreasing count (ties alphabetical)}."""
    counts = {}
    for tokens in token_lists:
        for t in tokens:
            counts[t] = counts.get(t, 0) + 1
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return {"<pad>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(words)}}


def encode_padded(token_lists, vocabulary, length):
    """(ids (n, length) int64, mask (n, length) bool): unknown words -> <unk>, cut or padded with <pad>."""
    ids = np.zeros((len(token_lists), length), np.int64)
    for i, tokens in enumerate(token_lists):
        row = [vocabulary.get(t, 1) for t in tokens][:length]
        ids[i, :len(row)] = row
    return ids, ids > 0


# --- images ---------------------------------------------------------------------------------------
def digits_split(seed=0, test_fraction=0.25):
    """scikit-learn's bundled 8x8 digits (1797 images, no download): (x_train (n, 8, 8, 1) in [0, 1],
    y_train, x_test, y_test), a stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    return train_test_split(images, digits.target.astype(np.int64), test_size=test_fraction,
                            random_state=seed, stratify=digits.target)


# --- recommendation -------------------------------------------------------------------------------
def click_logs(rng, n_users, kinds=6, items_per_kind=30, history=20, interests=2):
    """Users with `interests` favourite kinds among `kinds`; each history holds items of the user's
    kinds (80 %) and random items (20 %), padded to `history` (lengths 8..history). One candidate per
    user: clicked with probability 0.9 when its kind is a favourite, 0.1 otherwise; half the
    candidates are of a favourite kind.
    Returns dict(history (n, history) item ids, mask (n, history), candidate (n,), label (n,),
    kind_of (items,), favourite (n, kinds) bool). Item 0 is padding; items 1.. are grouped by kind."""
    n_items = kinds * items_per_kind + 1
    kind_of = np.concatenate([[-1], np.repeat(np.arange(kinds), items_per_kind)])
    out = {k: [] for k in ("history", "mask", "candidate", "label", "favourite")}
    for _ in range(n_users):
        liked = rng.choice(kinds, interests, replace=False)
        length = int(rng.integers(8, history + 1))
        own = rng.random(length) < 0.8
        item_kinds = np.where(own, rng.choice(liked, length), rng.integers(0, kinds, length))
        items = 1 + item_kinds * items_per_kind + rng.integers(0, items_per_kind, length)
        row = np.zeros(history, np.int64)
        row[:length] = items
        kind = int(rng.choice(liked)) if rng.random() < 0.5 else int(rng.choice(np.setdiff1d(np.arange(kinds), liked)))
        favourite = np.isin(np.arange(kinds), liked)
        out["history"].append(row)
        out["mask"].append(row > 0)
        out["candidate"].append(1 + kind * items_per_kind + int(rng.integers(items_per_kind)))
        out["label"].append(int(rng.random() < (0.9 if favourite[kind] else 0.1)))
        out["favourite"].append(favourite)
    logs = {k: np.array(v) for k, v in out.items()}
    logs["kind_of"] = kind_of
    logs["n_items"] = n_items
    return logs


# --- time series ----------------------------------------------------------------------------------
def seasonal_series(rng, length, period=24, noise=0.2, window=48):
    """A series = a fixed random seasonal shape of `period` steps (repeated) + a slow sine trend +
    Gaussian noise, cut into (windows (n, window), next values (n,)). Only the value one period
    back says much about the next one: the shape is random, not a sine."""
    shape = rng.standard_normal(period)
    t = np.arange(length)
    series = shape[t % period] + 0.5 * np.sin(2 * np.pi * t / (7.3 * period)) + noise * rng.standard_normal(length)
    series = series.astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(series[:-1], window)
    return series, windows.copy(), series[window:].copy()


# --- plots and timing -----------------------------------------------------------------------------
def show_curves(ax, curves, ylabel, title="", xlabel="epoch"):
    """Learning curves: {label: values per epoch}, one line each."""
    for style, (label, values) in zip(["o-", "s--", "^-", "v--", "D-", "x--"], curves.items()):
        ax.plot(np.arange(1, len(values) + 1), values, style, markersize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return ax


class Stopwatch:
    """`with Stopwatch() as clock: ...` then `clock.seconds`: wall-clock time of a block."""

    def __enter__(self):
        import time
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import time
        self.seconds = time.perf_counter() - self._start
        return False


# Keras warns when a subclassed model is built by its first call, which is how the pages build them.
import warnings  # noqa: E402

warnings.filterwarnings("ignore", message=r".*does not have a `build\(\)` method implemented.*")
