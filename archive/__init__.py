"""Archive scale: segment a folder, list or glob of fundus photographs as a Ray Data pipeline (an actor pool
of Predictors, each reading, segmenting and writing one input at a time), resumable, with one table row per
input. Ray is an optional extra (``pip install fundus-edge[ray]``) imported only here; the runtime stays free
of it."""
