"""Loading what is to be exported: a joblib/pickle file, a TorchScript or torch.save file, `module:attr`, or .onnx.

Loading a pickle (joblib, torch.save) runs code from the file: export only files you trust.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from exporters.errors import SourceLoadError

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
TORCH_SUFFIXES = (".pt", ".pth", ".ts")

SourceKind = Literal["sklearn", "torch", "onnx"]


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    model: object
    description: str


def load_source(spec: str) -> Source:
    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from exporters.onnx_file import read_onnx_file

        return Source("onnx", read_onnx_file(path), path.name)
    if path.exists() or suffix in PICKLE_SUFFIXES + TORCH_SUFFIXES:
        if not path.is_file():
            raise SourceLoadError(f"source file {path} does not exist")
        if suffix in TORCH_SUFFIXES:
            return _classify(_load_torch_file(path), path.name)
        return _classify(_load_pickle(path), path.name)
    if ":" in spec:
        return _classify(_load_attribute(spec), spec)
    raise SourceLoadError(f"{spec!r} is neither a file (.joblib, .pkl, .pt, .onnx) nor a module:attr spec")


def _classify(model: object, description: str) -> Source:
    if _is_torch_module(model):
        return Source("torch", model, description)
    if hasattr(model, "fit") and (hasattr(model, "predict") or hasattr(model, "transform")):
        return Source("sklearn", model, description)
    raise SourceLoadError(f"{description} holds a {type(model).__name__}, not a scikit-learn estimator or "
                          f"torch.nn.Module")


def _is_torch_module(model: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _load_pickle(path: Path) -> object:
    import joblib

    with _cwd_importable():
        try:
            return joblib.load(path)
        except (ModuleNotFoundError, AttributeError) as exc:
            raise SourceLoadError(f"{path} refers to code that cannot be imported ({exc}); run from the directory "
                                  f"that holds that code") from None
        except Exception as exc:  # unpickling raises anything
            raise SourceLoadError(f"cannot load {path} with joblib: {exc}") from None


def _load_torch_file(path: Path) -> object:
    import torch

    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception:  # not a TorchScript archive: try a pickled nn.Module (torch.save(model))
        pass
    with _cwd_importable():
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise SourceLoadError(f"{path} is neither TorchScript nor a saved nn.Module: {exc}") from None
    if isinstance(loaded, dict):
        raise SourceLoadError(f"{path} holds a state dict, not a model; export it as module:attr with a factory that "
                              f"builds the module and loads the weights")
    return loaded


def _load_attribute(spec: str) -> object:
    module_name, _, attribute = spec.partition(":")
    with _cwd_importable():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise SourceLoadError(f"cannot import {module_name!r} from {spec!r}: {exc}") from None
    target: object = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise SourceLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if isinstance(target, type) or (callable(target) and not _is_torch_module(target) and not hasattr(target, "fit")):
        try:
            target = target()
        except TypeError as exc:
            raise SourceLoadError(f"{spec} is callable but not as a zero-argument factory: {exc}") from None
    return target


@contextlib.contextmanager
def _cwd_importable() -> Iterator[None]:
    """Let pickles and module:attr specs refer to code in the working directory, as `python -m` would."""
    cwd = str(Path.cwd())
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)
