"""Word search over the catalog: what a search asks for, and the reads that answer it.

A movie matches when its title or overview holds every word searched (services/catalog/words.py
says what a word is). Neither database offers what is wanted on both: the embedded one has no
text index, and MongoDB's `$text` drops stop words and ranks poorly. So each movie stores its
distinct words (`words`: title and overview; `title_words`: the title's), in multikey indexes
that end with the relevance order. One word drives each read, an equality on the array that the
index seeks to; the others are checked on what it finds (a second stage, see
MovieRepository.find_page). The driving word is the longest, as the likeliest to be rare: "the
godfather" reads the movies with "godfather", not those with "the".

Without a sort field, results are ranked by relevance, in two tiers: movies with every word in
the title, then those with some only in the overview; within a tier, the weighted rating (best
first), then _id. Each tier is one read on its index, in that order, so a page reads the title
tier and, once it is exhausted, the overview tier. A page token holds (tier, weighted rating,
_id) of the page's last movie."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from services.catalog.words import words
from services.common.errors import InvalidArgument

MAX_SEARCH_CHARS = 200
MAX_SEARCH_WORDS = 10
TITLE_TIER, OVERVIEW_TIER = 0, 1
# The order within a tier, which the search indexes hold (services/catalog/repository.py).
RELEVANCE_SORT = [("weighted_rating", -1), ("_id", 1)]


@dataclass(frozen=True)
class SearchTerms:
    """The distinct words searched, sorted: one search however it was spelled."""

    words: tuple[str, ...]

    @property
    def driver(self) -> str:
        """The word that drives every read: the longest, the alphabetically last of equals."""
        return max(self.words, key=lambda w: (len(w), w))

    @property
    def others(self) -> list[str]:
        driver = self.driver
        return [w for w in self.words if w != driver]

    def digest(self) -> str:
        """A short fixed-length name of the search, for page tokens: the words themselves
        could make a token too long."""
        raw = json.dumps(self.words).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


def parse_search(text: str) -> SearchTerms:
    """The words of a `search` parameter; InvalidArgument naming it when there are none, more
    than MAX_SEARCH_WORDS, or the text is longer than MAX_SEARCH_CHARS."""
    if len(text) > MAX_SEARCH_CHARS:
        raise InvalidArgument(f"search must be at most {MAX_SEARCH_CHARS} characters "
                              f"(got {len(text)})")
    if not text.strip():
        raise InvalidArgument("search must not be empty")
    found = words(text)
    if not found:
        raise InvalidArgument("search must contain letters or digits: words are compared "
                              "without punctuation")
    if len(found) > MAX_SEARCH_WORDS:
        raise InvalidArgument(f"search must have at most {MAX_SEARCH_WORDS} words "
                              f"(got {len(found)})")
    return SearchTerms(tuple(sorted(set(found))))


def matching(terms: SearchTerms, filters: dict[str, Any]
             ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Every match, in any order: (the indexed first filter, the rest to check, if any)."""
    rest = {"words": {"$all": terms.others}} if terms.others else None
    return {**filters, "words": terms.driver}, rest


def tier_filters(terms: SearchTerms, which: int, filters: dict[str, Any]
         ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The matches of one relevance tier: (the indexed first filter, the rest to check)."""
    if which == TITLE_TIER:
        rest = {"title_words": {"$all": terms.others}} if terms.others else None
        return {**filters, "title_words": terms.driver}, rest
    first, others = matching(terms, filters)
    not_in_title = {"$nor": [{"title_words": {"$all": list(terms.words)}}]}
    return first, {**(others or {}), **not_in_title}


def relevance_after(weighted_rating: float, last_id: str) -> list[dict[str, Any]]:
    """The movies after (weighted_rating, last_id) in RELEVANCE_SORT within a tier, as
    segments read one after the other, each a plain equality or range that the index seeks
    to (no $or): the rest of this rating, then every lower one. Every movie search can find
    has a weighted rating (it is written with its words), so there are no nulls."""
    return [{"weighted_rating": weighted_rating, "_id": {"$gt": last_id}},
            {"weighted_rating": {"$lt": weighted_rating}}]
