"""The Faust stream-processing app of FlowOps (workers, agents, tables).

It is built from :mod:`flowops.config` settings; the agents arrive with the streaming
pipeline. Nothing here is imported by the CLI until a ``streams`` command runs.
"""

__all__: list[str] = []
