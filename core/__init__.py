"""The core layer: validated reading and atomic writing of tiles (:mod:`~labelfree.core.imageio`), the output
contract (:mod:`~labelfree.core.writer`, :mod:`~labelfree.core.overlay`) and the metrics
(:mod:`~labelfree.core.metrics`). It imports nothing else of this project; everything else may import it."""
