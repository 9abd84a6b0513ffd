"""torch -> ONNX export, validation, quantization and peer converters.

Installed as ltg_engine.export. Needs the `train` extra (torch, onnx).
"""
