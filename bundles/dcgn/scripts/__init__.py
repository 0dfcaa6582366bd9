"""DCGN bundle code (work in progress): the MobileNetV2-UNet and the Gaussian-mixture loss."""
