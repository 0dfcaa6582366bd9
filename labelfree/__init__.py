"""Label-free segmentation of H&E histopathology images (DCGN, SSimNet) with MONAI.

Modules: :mod:`labelfree.imageio` (validated reading, atomic writing), :mod:`labelfree.metrics` (Dice, AJI, AJI+,
PQ, NMI as MONAI metrics), :mod:`labelfree.synthetic` (synthetic H&E tiles with exact instances),
:mod:`labelfree.pseudolabel` (the stain → FCM → contour → instances pipeline), :mod:`labelfree.baselines`,
:mod:`labelfree.overlay`, and :mod:`labelfree.transforms` (MONAI-style array/dictionary transforms).
"""

__version__ = "0.1.0"
