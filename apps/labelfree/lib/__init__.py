"""MONAI Label app code: tile reading and contours, bundle set-up, label-free infer and train tasks."""
