"""MONAI-style transforms for label-free H&E segmentation."""
