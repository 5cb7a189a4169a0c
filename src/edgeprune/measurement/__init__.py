"""Benchmarking: backends (OpenVINO, ONNX Runtime, PyTorch) behind one registry and one measurement protocol.

Entry point: :func:`edgeprune.jobs.bench.bench_model` (``edgeprune bench``), which returns the JSON object
documented in ``docs/benchmark-json.md``; :func:`edgeprune.measurement.result.comparable` says whether two results
may be compared.
"""
