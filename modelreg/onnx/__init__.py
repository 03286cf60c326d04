"""ONNX (onnxruntime and friends): the ``onnx`` exporter (``exporter``), streamable with explicit state.

Nothing in modelreg's core imports it: the exporter is found through its entry point, like any plugin.
"""
