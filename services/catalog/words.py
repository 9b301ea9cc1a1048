"""Words as search compares them: the one normalisation that both an import (the words stored
with each movie) and a search (the words asked for) go through, so that they always agree.

A word is a run of letters and digits after folding: compatibility decomposition (NFKD, so "ﬁ"
is "fi" and "é" is "e" plus a mark), marks removed (accents, and the vowel signs of some scripts:
both sides lose them alike), case folded ("ß" is "ss"). Everything else (spaces, punctuation,
underscores, symbols) separates words."""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

# A stored word is cut to this length, and so is a searched one, so long words still match.
MAX_WORD_CHARS = 64
# A movie keeps at most this many distinct words (title words first): each is an entry in a
# multikey index, which costs time at every import. TMDB overviews have about 40.
MAX_WORDS_PER_MOVIE = 300

_WORD = re.compile(r"[^\W_]+")


@functools.cache
def _marks() -> dict[int, None]:
    """Every mark code point, to delete with str.translate: a loop over characters in Python
    cost an import about 90 µs a movie. Built once, when a text first needs it (~0.3 s)."""
    return {cp: None for cp in range(sys.maxunicode + 1)
            if unicodedata.category(chr(cp)).startswith("M")}


def fold(text: str) -> str:
    """`text` without marks and case. Decomposed again after case folding, which can give
    characters that decompose further (a dotted capital I folds to i and a combining dot).
    ASCII text has neither marks nor compatibility forms: it is only lower-cased."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return decomposed.translate(_marks())


def words(text: str) -> list[str]:
    """The words of `text` in order, repeats included, each folded and cut to
    MAX_WORD_CHARS."""
    return [w[:MAX_WORD_CHARS] for w in _WORD.findall(fold(text))]


def distinct_words(*texts: str, limit: int = MAX_WORDS_PER_MOVIE) -> list[str]:
    """The distinct words of the texts, in the order they first appear, at most `limit`."""
    seen: dict[str, None] = {}
    for text in texts:
        for word in words(text):
            seen.setdefault(word)
            if len(seen) >= limit:
                return list(seen)
    return list(seen)
