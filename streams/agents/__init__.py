"""The agents of the stream app, one module each: :mod:`streams.agents.traffic`."""

__all__: list[str] = []
