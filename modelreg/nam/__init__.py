"""Target Neural Amp Modeler: the ``nam`` exporter (``.nam`` files) and NAM's C++ engine in the loop."""
