"""onnxgate: the command line, a thin shell over modelstore, exporters and gateway."""
from __future__ import annotations

__version__ = "0.1.0"
