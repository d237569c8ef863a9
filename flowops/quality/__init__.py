"""Model quality: labels joined to predictions, realised and estimated performance.

Pure pieces, each with no I/O but the join's own store, so the stream worker can drive
them when it joins labels (see ``docs/quality.md`` for what is wired and what is not):

* :mod:`flowops.quality.join`: :class:`LabelJoin`, labels to predictions by request id
  in either order within ``max_delay``, memory-bounded with a crash-safe spill store;
* :mod:`flowops.quality.metrics`: realised classification and regression metrics as
  mergeable window counts, with confidence intervals;
* :mod:`flowops.quality.drop`: a performance drop against the reference, as a finding;
* :mod:`flowops.quality.cbpe`: confidence-based performance estimation for binary
  classifiers before their labels arrive;
* :mod:`flowops.quality.upload`: ``flowops labels send``'s reading and sending.
"""

__all__: list[str] = []
