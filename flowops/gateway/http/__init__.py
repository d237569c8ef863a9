"""The gateway's HTTP layer: the server side that clients talk to
(:mod:`~flowops.gateway.http.listener`), the client side that talks to upstreams
(:mod:`~flowops.gateway.http.client`), the deadlines both keep
(:mod:`~flowops.gateway.http.deadline`) and their TLS (:mod:`~flowops.gateway.http.tls`).

Nothing here knows routes, callers or policies: the proxy (:mod:`flowops.gateway.proxy`)
joins the two sides.
"""
