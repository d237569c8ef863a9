"""What following the shared variant weights costs a request of a split route.

Each request of a route with variants now calls ``SplitSync.sync``: one read of the
board's 8-byte generation, compared with the one last read. The anchor is what the proxy
did for such a request already: ``Split.point`` (a BLAKE2b hash of the route and a sticky
caller) and ``Split.choose``. Beside them, what a worker pays once after a change: the
overrides read again under the process-shared lock and the splits made anew (20 routes
of 2 variants, one of them changed).
"""

from __future__ import annotations

from _harness import best_of, usage

from flowops.config import load_settings
from flowops.gateway.config import gateway_settings
from flowops.gateway.split import Split
from flowops.gateway.weights import SplitSync, VariantWeights, WeightBoard

CALLS = 200_000
ROUTES = 20


class _Route:
    def __init__(self, settings: object, split: Split[str]) -> None:
        self.settings = settings
        self.split = split


def main() -> None:
    usage(__doc__)
    routes = [
        {
            "name": f"r{i}",
            "prefix": f"/m/r{i}",
            "variants": [
                {"name": "a", "weight": 9, "upstreams": ["http://127.0.0.1:1"]},
                {"name": "b", "weight": 1, "upstreams": ["http://127.0.0.1:2"]},
            ],
        }
        for i in range(ROUTES)
    ]
    config = gateway_settings(load_settings(overrides={"gateway": {"routes": routes}}))
    states = [_Route(r, Split([("a", 9.0), ("b", 1.0)])) for r in config.routes]
    board = WeightBoard()
    weights = VariantWeights(board, lambda: config, lambda event: None)
    sync = SplitSync(board)
    sync.sync(states, force=True)  # type: ignore[arg-type]
    split = states[0].split

    def synced() -> None:
        for _ in range(CALLS):
            sync.sync(states)  # type: ignore[arg-type]

    def chosen() -> None:
        for _ in range(CALLS):
            split.choose(Split.point("r0", "caller-123"))

    def after_a_change() -> None:
        sync.sync(states, force=True)  # type: ignore[arg-type]

    weights.set("r0", "b", 0.0, by="key:bench", reason="bench")
    per_sync = best_of(synced) / CALLS
    per_choice = best_of(chosen) / CALLS
    reread = best_of(after_a_change, repeat=50)
    print(f"sync, nothing changed:      {per_sync * 1e9:8.1f} ns a request")
    print(f"point + choose (anchor):    {per_choice * 1e9:8.1f} ns a request")
    print(f"ratio sync / anchor:        {per_sync / per_choice:8.3f}")
    print(f"re-read after a change:     {reread * 1e6:8.1f} us once a worker ({ROUTES} routes)")


if __name__ == "__main__":
    main()
