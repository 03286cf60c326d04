"""The built-in exporters. They are registered through the ``modelreg.exporters``
entry-point group in pyproject.toml, exactly like third-party plugins."""
