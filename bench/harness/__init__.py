"""Benchmark harness: the papers' comparison tables and figures for our bundles and the classic baselines.

``python -m bench.harness compare --images DIR --labels DIR --methods ssimnet,dcgn,otsu_ws,kmeans,gmm --seeds 5
--out OUT`` (see :func:`bench.harness.compare.compare`).
"""
