"""Archive scale: segment a folder, list or glob of fundus photographs as a Ray Data pipeline (read in
tasks, segment in an actor pool of Predictors, write in tasks), resumable, with one table row per input.
Ray is an optional extra (``pip install fundus-edge[ray]``) imported only here; the runtime stays free of
it."""
