"""The API gateway in front of model servers (`flowops gateway`).

Its rooms: :mod:`flowops.gateway.http` (the HTTP layer, server and upstream client),
:mod:`flowops.gateway.policies` (balancing, breaker, retry, rate limits), and at the
root the request path (:mod:`~flowops.gateway.app`, :mod:`~flowops.gateway.proxy`,
:mod:`~flowops.gateway.traffic`, :mod:`~flowops.gateway.shadow`) with what it uses
(routes' pools, auth, targets, forwarding, payloads, the publisher) and the process
around it (:mod:`~flowops.gateway.server`). docs/architecture.md draws the map.
"""
