"""The Faust stream-processing app of FlowOps: one worker per ``flowops streams worker``.

* :mod:`streams.app`: the Faust app built from settings (``build_app``);
* :mod:`streams.agents.traffic`: reads ``flowops.traffic`` in batches, drives the
  monitors, publishes alerts and dead letters, checkpoints their state;
* :mod:`streams.monitors`: what a batch does to a partition's monitors (no I/O);
* :mod:`streams.state`: the monitors' changelog topic; :mod:`streams.references`: the
  reference-profile table; :mod:`streams.publish`: the producer; :mod:`streams.metrics`;
* :mod:`streams.worker`: running a worker until Ctrl-C.

Nothing here is imported by the CLI until a ``streams`` command runs (Faust is heavy).
``docs/streaming.md`` explains the design and its measurements.
"""

__all__: list[str] = []
