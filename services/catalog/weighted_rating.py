"""The weighted rating that ranks search results after their relevance tier: IMDb's top-list
formula, WR = v/(v+m)·R + m/(v+m)·C, where R is the movie's vote_average and v its vote_count.
A movie with few votes is pulled towards C, so three 10/10 votes do not outrank thousands of 8s.

m and C are constants, not settings: every movie's WR is computed once, at import (or by the
upgrade migration), and stored for the index that orders results, so changing either means
recomputing every movie; that is a code change that bumps SEARCH_VERSION
(services/catalog/repository.py), which the migration at start then applies. Replicas with
different settings would store values that do not compare."""

from __future__ import annotations

# The median vote_count of the TMDB top-10k file (584), rounded: a movie with as many votes as
# the typical well-known movie counts for half its own rating and half the mean.
MIN_VOTES = 500
# The mean vote_average of that file (6.62), rounded. Fixed rather than measured on the live
# catalog: a mean that moved with every import would change every stored value.
MEAN_RATING = 6.6


def weighted_rating(vote_average: float | None, vote_count: int | None) -> float:
    """A movie without votes (or without an average) is rated the mean."""
    votes = vote_count or 0
    if vote_average is None or votes <= 0:
        return MEAN_RATING
    return (votes * vote_average + MIN_VOTES * MEAN_RATING) / (votes + MIN_VOTES)
