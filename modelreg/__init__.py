"""modelreg: a declarative registry for small real-time neural networks.

Read a ``registry.toml``, build and load each model, check it, export it
(RTNeural JSON, ONNX, plugins) and prove the exports behave like the source.

``import modelreg`` is cheap: it does not import torch (nor numpy). Heavier
modules load on first use of the names that need them.
"""

from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:
    from .errors import (
        ArtifactError,
        CheckpointError,
        ExportError,
        MissingDependencyError,
        ModelRegError,
        PluginError,
        Problem,
        RegistryError,
        ToolchainError,
        UnknownModelError,
        UsageError,
    )
    from .registry import Registry, find_registry, load_registry
    from .spec import LayerSpec, ModelSpec
    from .builder import RealtimeModel
    from .checkpoint import init_checkpoint
    from .exporting import ArtifactResult, ExportReport, export, export_all
    from .rtneural.runtime import RTNeuralModel, check_rtneural, load_rtneural
    from .parity import compare_parity
    from .latency import latency_window
    from .plugins import Exporter, Parity, available_exporters, get_exporter, register_exporter
    from .report import CheckResult, ModelReport, ValidationReport
    from .validation import validate, validate_all
    from .html_report import render_report, write_report
    from .rtneural.importing import ImportResult, import_rtneural
    from .nam.importing import NAMImportResult, import_nam

# Every public name is resolved on first access: ``import modelreg`` runs no
# import but this file's (pytest loads modelreg.pytest_plugin, and with it this
# package, in every run of every project that installs modelreg).
_LAZY = {
    **dict.fromkeys(("ArtifactError", "CheckpointError", "ExportError", "MissingDependencyError", "ModelRegError",
                     "PluginError", "Problem", "RegistryError", "ToolchainError", "UnknownModelError", "UsageError"),
                     "errors"),
    "Registry": "registry",
    "find_registry": "registry",
    "load_registry": "registry",
    "LayerSpec": "spec",
    "ModelSpec": "spec",
    "validate": "validation",
    "validate_all": "validation",
    "ValidationReport": "report",
    "ModelReport": "report",
    "CheckResult": "report",
    "init_checkpoint": "checkpoint",
    "export": "exporting",
    "export_all": "exporting",
    "ExportReport": "exporting",
    "ArtifactResult": "exporting",
    "load_rtneural": "rtneural.runtime",
    "check_rtneural": "rtneural.runtime",
    "RTNeuralModel": "rtneural.runtime",
    "Exporter": "plugins",
    "Parity": "plugins",
    "available_exporters": "plugins",
    "get_exporter": "plugins",
    "register_exporter": "plugins",
    "compare_parity": "parity",
    "latency_window": "latency",
    "RealtimeModel": "builder",
    "render_report": "html_report",
    "write_report": "html_report",
    "import_rtneural": "rtneural.importing",
    "ImportResult": "rtneural.importing",
    "import_nam": "nam.importing",
    "NAMImportResult": "nam.importing",
}

__all__ = [
    "ArtifactError",
    "ArtifactResult",
    "CheckResult",
    "CheckpointError",
    "ExportError",
    "ExportReport",
    "Exporter",
    "ImportResult",
    "LayerSpec",
    "MissingDependencyError",
    "ModelRegError",
    "ModelReport",
    "ModelSpec",
    "NAMImportResult",
    "Parity",
    "PluginError",
    "Problem",
    "RTNeuralModel",
    "RealtimeModel",
    "Registry",
    "RegistryError",
    "ToolchainError",
    "UnknownModelError",
    "UsageError",
    "ValidationReport",
    "__version__",
    "available_exporters",
    "check_rtneural",
    "compare_parity",
    "export",
    "export_all",
    "find_registry",
    "get_exporter",
    "import_nam",
    "import_rtneural",
    "init_checkpoint",
    "latency_window",
    "load_registry",
    "load_rtneural",
    "register_exporter",
    "render_report",
    "validate",
    "validate_all",
    "write_report",
]


def __getattr__(name: str) -> object:
    from importlib import import_module  # here, not at the top: the namespace stays the public API

    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelreg' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    # The public API and the module's own dunders; not the submodules that Python
    # sets as attributes once imported (modelreg.errors, ...), nor private helpers.
    return sorted(set(__all__) | {name for name in globals() if name.startswith("__") and name.endswith("__")})


del TYPE_CHECKING
