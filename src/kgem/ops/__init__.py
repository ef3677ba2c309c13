"""The speed machinery, apart from the models that use it: device-agnostic tensor operations, each with a torch path
that runs on any device (and a fused C path on the CPU where one pays), each tested against its plain reference.

- ``sampled``: scores against per-row sampled candidates (SDDMM forward, SpMM backward; no ``(B, K, d)`` gather),
  sparse-gradient row gathers;
- ``compare``: the comparisons of queries with keys (dot, L2, squared L2, Lp, complex moduli) in every scoring
  mode: all candidates, sampled candidates, pairs;
- ``rows``: row normalisation with a two-pass backward;
- ``multilabel``: KvsAll's binary cross-entropy without a label matrix;
- ``native``: optional fused C kernels (rank counting, distance finishing), built on first use;
- ``process``: process-level settings (threads, glibc's allocator) and cache-sized row blocks.
"""
