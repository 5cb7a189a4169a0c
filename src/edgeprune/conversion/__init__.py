"""Export: PyTorch -> one self-contained ONNX file (+ OpenVINO IR), parity-checked, with provenance inside.

Entry points: :func:`edgeprune.jobs.export.export_model` (``edgeprune export``) and
:func:`edgeprune.jobs.evaluate.evaluate_exported` (``edgeprune eval model.onnx|model.xml``). The ONNX,
ONNX Runtime and OpenVINO packages are optional (``pip install 'edgeprune[export]'``) and imported only
when a step needs them.
"""
