"""Turn trained models (scikit-learn, PyTorch, existing .onnx files) into checked store versions.

Kept import-light on purpose: torch and skl2onnx load only when their exporter is used. Entry points live in
exporters.publish (export_sklearn, export_torch, export_onnx_file, load_source).
"""
