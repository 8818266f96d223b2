"""Matching short chat messages against word lists: accent- and case-insensitive, with
typo tolerance from difflib (stdlib; no rapidfuzz, no model).

Users write "OLÁ!!", "ola", "horario?" and "horaroi" for the same things; everything is
compared after `normalize`, which folds case, drops accents and keeps letters and digits.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from functools import lru_cache

_NON_WORD = re.compile(r"[^0-9a-z]+")
MIN_FUZZY_LEN = 4
"""Shorter words are not fuzzy-matched: "oi"/"ai" or "pix"/"fix" are one edit apart."""
MAX_TOKENS = 64
"""Fuzzy matching is quadratic in words; a long message is judged on its first words."""


def normalize(text: str) -> str:
    """'Olá, BOM-dia!' -> 'ola bom dia'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NON_WORD.sub(" ", bare).strip()


def has_phrase(normalized: str, phrase: str) -> bool:
    """Whole words only: 'oi' is in 'oi tudo bem', not in 'coisa'."""
    return bool(phrase) and f" {phrase} " in f" {normalized} "


def count_phrases(normalized: str, phrases: Iterable[str]) -> int:
    return sum(1 for p in phrases if has_phrase(normalized, p))


@lru_cache(maxsize=1 << 16)
def similarity(candidate: str, phrase: str, cutoff: float) -> float:
    """difflib's ratio, or 0.0 below `cutoff` (its cheap upper bounds skip most pairs).

    Cached: chat vocabulary repeats ("quero", "saber", "obrigado"), so after warm-up most
    word/keyword pairs cost a dictionary lookup instead of a few microseconds."""
    matcher = difflib.SequenceMatcher(None, candidate, phrase, autojunk=False)
    if matcher.real_quick_ratio() < cutoff or matcher.quick_ratio() < cutoff:
        return 0.0
    ratio = matcher.ratio()
    return ratio if ratio >= cutoff else 0.0


def fuzzy_score(normalized: str, phrases: Iterable[str], cutoff: float = 0.0) -> float:
    """The best similarity of any phrase to a run of as many words in the text, or 0.0
    when none reaches `cutoff`."""
    words = normalized.split()[:MAX_TOKENS]
    best = 0.0
    for phrase in phrases:
        if len(phrase) < MIN_FUZZY_LEN:
            continue
        n = phrase.count(" ") + 1
        for i in range(max(len(words) - n + 1, 0)):
            candidate = " ".join(words[i : i + n]) if n > 1 else words[i]
            if abs(len(candidate) - len(phrase)) <= 3:
                best = max(best, similarity(candidate, phrase, cutoff))
    return best


def detect_language(
    normalized: str, words: Mapping[str, Iterable[str]], *, current: str | None, default: str
) -> str:
    """The language whose marker words appear most; on a tie (often: "ok", "👍", a
    number) keep the one the session already speaks, so one word does not flip it."""
    tokens = normalized.split()
    sets = {lang: set(ws) for lang, ws in words.items()}
    scores = {lang: sum(1 for t in tokens if t in ws) for lang, ws in sets.items()}
    ranked = sorted(scores.values(), reverse=True)
    if ranked and ranked[0] > 0 and (len(ranked) == 1 or ranked[0] > ranked[1]):
        return max(scores, key=lambda lang: scores[lang])
    return current or default
