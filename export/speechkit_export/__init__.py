"""speechkit's exporters: torch models -> ONNX / Core ML graphs, quantised, written as self-describing bundles.

Lives in ``export/`` (the SDK installs it as ``speechkit_export``); the bundles it writes are read by the
torch-free runtime in ``mobile/`` (``speechkit_rt``), which owns the bundle format.
"""
