"""speechkit_rt: the torch-free runtime for speechkit bundles. Imports numpy (and onnxruntime) only."""

__version__ = "0.1.0"
