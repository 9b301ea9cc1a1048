"""How candidate movies are scored, ranked and explained: plain functions of their inputs, so the
same candidates, votes and catalog always give the same list.

score = 0.7 * WR / 10 + 0.2 * popularity / (popularity + POPULARITY_HALF) + 0.1 * affinity

- WR is IMDb's weighted rating, v / (v + m) * R + m / (v + m) * C: R the movie's vote_average,
  v its vote_count, C the catalog's mean vote_average and m the minimum vote count
  (RECOMMENDATIONS_MIN_VOTES): a movie rated by few voters is pulled towards the mean.
- Popularity is TMDB's unbounded figure, squashed into [0, 1) without depending on the other
  candidates (half way at POPULARITY_HALF).
- affinity is in [0, 1]: how strongly the movie's genres are among those of the movies the user
  up-voted (the best of its genres, relative to the user's most up-voted genre).

Ties, to the sixth decimal, go by _id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

WEIGHT_RATING, WEIGHT_POPULARITY, WEIGHT_AFFINITY = 0.7, 0.2, 0.1
POPULARITY_HALF = 20.0


@dataclass(frozen=True)
class Signals:
    mean_vote_average: float  # C
    min_votes: int  # m
    liked_genres: Mapping[str, int]  # genre -> up-voted movies that have it
    wanted_genres: tuple[str, ...] = ()  # the criteria's genres, for the reasons


def weighted_rating(rating: float, votes: int, mean: float, min_votes: int) -> float:
    if votes + min_votes <= 0:
        return mean
    return votes / (votes + min_votes) * rating + min_votes / (votes + min_votes) * mean


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else 0.0


def affinity(genres: Iterable[str], liked: Mapping[str, int]) -> float:
    top = max(liked.values(), default=0)
    if top <= 0:
        return 0.0
    return max((liked.get(g, 0) for g in genres), default=0) / top


def reasons(movie: Mapping[str, Any], signals: Signals) -> list[str]:
    genres = list(movie.get("genre") or [])
    said = [f"genre {g}" for g in genres if g in signals.wanted_genres]
    liked = [g for g in genres if signals.liked_genres.get(g, 0) > 0]
    if liked:
        said.append(f"like movies you upvoted ({', '.join(liked)})")
    votes = int(_number(movie.get("vote_count")))
    said.append(f"rated {_number(movie.get('vote_average')):.1f} by {votes:,} voters")
    popularity = _number(movie.get("popularity"))
    if popularity >= POPULARITY_HALF:
        said.append(f"popular ({popularity:,.1f})")
    return said


def score(movie: Mapping[str, Any], signals: Signals) -> float:
    wr = weighted_rating(_number(movie.get("vote_average")),
                         int(_number(movie.get("vote_count"))),
                         signals.mean_vote_average, signals.min_votes)
    popularity = max(0.0, _number(movie.get("popularity")))
    value = (WEIGHT_RATING * wr / 10 + WEIGHT_POPULARITY * popularity /
             (popularity + POPULARITY_HALF) + WEIGHT_AFFINITY *
             affinity(movie.get("genre") or [], signals.liked_genres))
    return round(value, 6)


def rank(candidates: Iterable[Mapping[str, Any]], signals: Signals, limit: int
         ) -> list[dict[str, Any]]:
    """The best `limit` candidates, each with its score and reasons."""
    scored = [{**movie, "score": score(movie, signals), "reasons": reasons(movie, signals)}
              for movie in candidates]
    scored.sort(key=lambda m: (-m["score"], str(m["_id"])))
    return scored[:limit]
