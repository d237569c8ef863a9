"""What the gateway decides about a request beyond its route: which upstream takes it
(:mod:`~flowops.gateway.policies.balancing`), whether a failing upstream is left alone
for a while (:mod:`~flowops.gateway.policies.breaker`), whether a failure is tried again
(:mod:`~flowops.gateway.policies.retry`), and whether a caller is over its rate
(:mod:`~flowops.gateway.policies.ratelimit`).

Each policy is a small object with its settings beside it; the proxy and the upstream
pool hold them and ask them, and none of them does I/O of its own but the rate limits'
shared stores.
"""
