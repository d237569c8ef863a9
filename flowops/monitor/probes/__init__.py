"""The probes of the monitoring agent, one module per kind of target."""
