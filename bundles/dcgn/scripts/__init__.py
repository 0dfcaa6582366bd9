"""DCGN bundle code: the MobileNetV2-UNet, the Gaussian-mixture loss, label-free class naming, the engine glue."""
