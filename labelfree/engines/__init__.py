"""The engine layer: what MONAI/Ignite workflows need beyond MONAI itself. Folder runs that survive bad tiles
(:mod:`~labelfree.engines.runs`), Ignite handlers (:mod:`~labelfree.engines.handlers`) and inferers
(:mod:`~labelfree.engines.inferers`). It imports the core and the transforms, never the command line, the bundle
tooling or the benchmark."""
