"""Side-by-side throughput and evaluation benchmark of kgem against PyKEEN and PyTorch-BigGraph.

Entry point: ``bench/compare_pykeen.py``. Each side runs in its own process (``python -m compare.run_<side>``)
and prints one JSON line; see ``bench/README.md``.
"""
