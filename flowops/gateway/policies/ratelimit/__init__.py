"""Rate limits: the limiter a route holds (:mod:`.limiter`, with its settings), the
pieces every store shares (:mod:`.base`), and the stores: this process's memory
(:mod:`.memory_store`), memory shared by the workers (:mod:`.shared_store`), Redis
(:mod:`.redis_store`). A new store is one module over :class:`.base.BucketStore`.
"""
