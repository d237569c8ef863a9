"""Balancing: which of a route's available upstreams gets the next request
(``routes[].balancing``), one module a policy over one protocol
(:class:`~flowops.gateway.policies.balancing.base.Balancer`):

``round_robin`` (:mod:`.round_robin`)
    each in turn.
``weighted`` (:mod:`.weighted`)
    smooth weighted round robin, as nginx does it.
``least_request`` (:mod:`.least_request`)
    the power of two random choices (:mod:`.two_choices`) by requests in flight.
``ewma`` (:mod:`.ewma`)
    peak-EWMA latency times requests in flight, by two random choices.

A new policy is its module, its name in
:data:`~flowops.gateway.policies.balancing.base.BalancingPolicy` and its line in
:data:`~flowops.gateway.policies.balancing.registry.MAKERS`.
"""
