"""Label-free segmentation of H&E histopathology images (DCGN, SSimNet) with MONAI.

Layers, each importing only the ones above it in this list (``tests/test_architecture.py`` checks it):

1. :mod:`labelfree.core`: validated reading and atomic writing of tiles, the output contract, metrics;
   :mod:`labelfree.sample`: the embedded MoNuSeg sample.
2. :mod:`labelfree.transforms` (the repository's ``transforms/`` folder): MONAI-style array/dictionary transforms,
   from stain separation to instances.
3. :mod:`labelfree.engines`: MONAI/Ignite glue (fault-tolerant folder runs, handlers, inferers).
4. this package's top level: the command line (``python -m labelfree``) and the bundle tooling
   (:mod:`labelfree.bundle_paths`, :mod:`labelfree.bundle_zip`); the bundles' ``scripts/`` and the MONAI Label app
   stand on the same level.

The benchmark harness (``bench/``) and the test fixtures (``tests/``) sit above all of them and are not installed.
"""

__version__ = "0.1.0"
