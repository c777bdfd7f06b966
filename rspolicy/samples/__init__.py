"""Writers of synthetic products modelled field for field on real ones.

Used by ``sample_data/generate.py``, the tests and the benchmarks. They
write small files shaped like real GF, GF-3, FY, HY and CBERS deliveries so
that every reader can be exercised without distributing real imagery.
"""
