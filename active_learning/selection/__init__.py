"""Selection strategies: pure functions of arrays, one registry.

>>> from active_learning.selection import STRATEGIES, Pool
>>> result = STRATEGIES.get("hybrid")(Pool(uncertainty=u, embeddings=emb), budget=500, seed=0)
>>> result.pool_rows[:3], result.reasons[0]

Strategies: ``random`` (the control), ``uncertainty``, ``coreset`` (k-center greedy seeded with
the labeled frames), ``cluster`` (FAISS k-means, most uncertain per cluster), ``balance`` (class
quotas over predicted classes) and ``hybrid`` (the default; see ``hybrid.py``).
"""

from active_learning.selection import hybrid as _hybrid  # noqa: F401  (registers "hybrid")
from active_learning.selection import strategies as _strategies  # noqa: F401  (registers the rest)
from active_learning.selection.base import (
    COMMON_PARAMS,
    DEFAULT_RARE_CLASSES,
    STRATEGIES,
    Pool,
    SelectionResult,
    strategy_params,
)
from active_learning.selection.strategies import top_uncertain

__all__ = [
    "COMMON_PARAMS",
    "DEFAULT_RARE_CLASSES",
    "STRATEGIES",
    "Pool",
    "SelectionResult",
    "select",
    "strategy_params",
    "top_uncertain",
]


def select(pool: Pool, budget: int, strategy: str = "hybrid", *, seed: int = 0, **params) -> SelectionResult:
    """Run the registered strategy ``strategy`` (unknown names list the valid ones)."""
    return STRATEGIES.get(strategy)(pool, budget, seed=seed, **params)
