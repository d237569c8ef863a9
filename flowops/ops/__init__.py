"""Operations: OCI image builds (:mod:`flowops.ops.build`), a model project's CI gate
(:mod:`flowops.ops.gate`) and Kubernetes deploys (:mod:`flowops.ops.deploy`).

Each module is imported only by the command that uses it, so ``flowops --help`` never
pays for kubernetes-asyncio.
"""
