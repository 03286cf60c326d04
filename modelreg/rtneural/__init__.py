"""RTNeural (https://github.com/jatinchowdhury18/RTNeural), everything modelreg knows of it.

- ``format``: RTNeural JSON both ways (torch state dict <-> RTNeural layout);
- ``runtime``: the numpy reference runtime that reads and runs those files;
- ``exporter``: the ``rtneural`` exporter (models/NAME.json);
- ``header``: the ``rtneural-cpp`` exporter (models/cpp/NAME.h, the compile-time ModelT);
- ``cpp``: RTNeural's own C++ engine in the loop (toolchain, cached runner, C++ checks);
- ``runner.cpp``: the C++ program ``cpp`` compiles against the user's RTNeural checkout;
- ``importing``: ``modelreg import FILE.json`` (an RTNeural file -> registry entry + checkpoint).

Each layer kind's RTNeural layout lives with the kind (:mod:`modelreg.layers`); this
package holds the format-wide machinery. Nothing in modelreg's core imports it: the
exporters are found through their entry points, like any plugin.
"""
