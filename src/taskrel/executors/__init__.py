"""Executors: where the cells of an experiment grid run (placeholder for the merge).

The full module (``get_executor``, ``LocalExecutor``) comes from the experiments issue;
this branch only adds :mod:`taskrel.executors.ray_executor`.
"""
