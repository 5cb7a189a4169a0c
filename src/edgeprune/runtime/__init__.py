"""Inference runtimes behind one small interface (OpenVINO, ONNX Runtime, PyTorch), model-file detection and the
metadata an exported file carries: what both export (parity checks) and bench (measurement) stand on.
"""
