"""DCGN network: a MobileNetV2 encoder (written here, no torchvision) with the official DCGN U-Net decoder.

Encoder: MobileNetV2 (Sandler et al. 2018), width 1.0. The module tree mirrors torchvision's ``mobilenet_v2``
(``features.0`` stem, ``features.1``–``features.17`` inverted residual blocks, each with a ``conv`` sequence), so a
local ImageNet state dict of that model loads by name with :meth:`MobileNetV2UNet.load_encoder_weights`; nothing is
downloaded. The 1280-channel head (``features.18``) and the classifier are not used.

Skip taps, as in the official TensorFlow code (Keras layer names; Keras block k is ``features[k + 1]`` here):
``block_1_expand_relu`` (H/2, 96 ch), ``block_3_expand_relu`` (H/4, 144), ``block_6_expand_relu`` (H/8, 192),
``block_13_expand_relu`` (H/16, 576), and ``block_16_expand_relu`` (H/32, 960) as the bottleneck.

Decoder: four blocks of nearest ×2 upsampling → 3×3 conv → BatchNorm → ReLU at 256/128/64/32 channels, each followed
by concatenation with the next skip tap, then a K-channel block (upsample → 3×3 conv). The official code ends that
last block with BatchNorm + ReLU too (``final_bn_relu=True``), which makes the softmax act on non-negative values.
The network returns K-channel logits; the softmax is applied by the loss and the post-processing. He initialisation.
"""

from __future__ import annotations

import os

import torch
from torch import nn

__all__ = ["MobileNetV2UNet", "NearestUpConv2d", "TAPS"]

# (expansion t, output channels c, repeats n, first stride s) of MobileNetV2
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
#: Keras block index of every tap (the expand-ReLU6 output of that block), shallow to deep
TAPS = (1, 3, 6, 13, 16)


class _ConvBNReLU6(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class _Stem(_ConvBNReLU6):
    """The first convolution; returns ``(out, out)`` so that every encoder stage has the same call signature."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        for layer in self:
            x = layer(x)
        return x, x


class _InvertedResidual(nn.Module):
    """MobileNetV2 block; returns ``(output, expansion output)`` (the latter is what the decoder taps)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = [] if expand == 1 else [_ConvBNReLU6(cin, hidden, 1)]
        layers += [
            _ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x
        first = x
        i = 0
        for layer in self.conv:  # a plain loop (not slicing) keeps the block scriptable for ckpt_export
            h = layer(h)
            if i == 0:
                first = h
            i += 1
        return (x + h if self.use_res else h), first


class NearestUpConv2d(nn.Conv2d):
    """Nearest ×2 upsampling followed by a 3×3 convolution (padding 1), computed without the upsampled tensor.

    On the ×2 grid every output pixel sees a 3×3 window of which two rows and two columns are copies of the same
    input pixel, so each of the four output phases is a 2×2 convolution of the input with summed taps. One 2×2
    convolution with ``4 × out_channels`` filters over the once-padded input gives all four; they are interleaved
    by slicing. The result equals ``conv3x3(upsample_nearest(x))`` up to float rounding (tested) with 16/36 of the
    multiply-adds and no 4×-sized intermediate, which is what makes a 512² training step fit in a second on two
    CPU cores. Parameters are those of the plain ``nn.Conv2d(in, out, 3, padding=1)``, so checkpoints are the same.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 3, padding=1, bias=bias)
        # row (or column) taps of the 3×3 kernel that fall on input offsets (−1, 0) for phase 0 and (0, +1) for
        # phase 1; a non-persistent buffer, so checkpoints hold only the 3×3 weights
        fold = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
        self.register_buffer("fold", fold, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w = x.shape[0], x.shape[2], x.shape[3]
        fold = self.fold.to(self.weight.dtype)  # (phase, 2 taps, 3 taps)
        kernel = torch.einsum("ari,bsj,ocij->abocrs", fold, fold, self.weight)  # (phase_r, phase_c, out, in, 2, 2)
        cout = self.out_channels
        kernel = kernel.reshape(4 * cout, self.in_channels, 2, 2)
        bias: torch.Tensor | None = None
        own_bias = self.bias  # a local, so that TorchScript can refine the Optional
        if own_bias is not None:
            bias = own_bias.repeat(4)
        y = nn.functional.conv2d(nn.functional.pad(x, [1, 1, 1, 1]), kernel, bias)  # (b, 4·out, h+1, w+1)
        y = y.view(b, 2, 2, cout, h + 1, w + 1)
        rows: list[torch.Tensor] = []
        for a in range(2):
            cols = [y[:, a, 0, :, a : a + h, 0:w], y[:, a, 1, :, a : a + h, 1 : 1 + w]]
            rows.append(torch.stack(cols, dim=-1))
        return torch.stack(rows, dim=3).reshape(b, cout, 2 * h, 2 * w)  # (b, out, h, 2, w, 2) interleaved


class _UpBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, bn_relu: bool = True):
        layers: list[nn.Module] = [NearestUpConv2d(cin, cout)]
        if bn_relu:
            layers += [nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class MobileNetV2UNet(nn.Module):
    """MobileNetV2-UNet of DCGN (Nan et al., IEEE TMI 2022).

    Args:
        in_channels: input channels (3 for RGB).
        out_channels: K, the number of mixture components / classes.
        final_bn_relu: end the last block with BatchNorm + ReLU before the softmax, as the official code does.
        decoder_channels: channels of the four decoder blocks (official: 256, 128, 64, 32).
        pretrained_path: optional local file with ImageNet MobileNetV2 weights (a torchvision-layout state dict);
            see :meth:`load_encoder_weights`.

    Input ``(B, in_channels, H, W)`` with H and W multiples of 32; output ``(B, K, H, W)`` logits.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 2,
        final_bn_relu: bool = False,
        decoder_channels: tuple[int, int, int, int] = (256, 128, 64, 32),
        pretrained_path: str | None = None,
    ):
        super().__init__()
        features: list[nn.Module] = [_Stem(in_channels, 32, 3, 2)]
        cin = 32
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                features.append(_InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        # only the expansion of the last block (Keras block 16) feeds the decoder; its depthwise and projection
        # would be parameters without gradients, so they are not built (the official model has 4.91 M parameters
        # with K = 3, and so does this one)
        last = features[-1]
        last.conv = nn.Sequential(last.conv[0])
        last.use_res = False
        self.features = nn.ModuleList(features)  # not Sequential: stages return (output, expansion) pairs
        self.skip_blocks = list(TAPS[:-1])  # the last tap is the bottleneck itself
        skip_ch = [96, 144, 192, 576]  # expand widths of Keras blocks 1, 3, 6, 13
        d1, d2, d3, d4 = decoder_channels
        self.up1 = _UpBlock(960, d1)
        self.up2 = _UpBlock(d1 + skip_ch[3], d2)
        self.up3 = _UpBlock(d2 + skip_ch[2], d3)
        self.up4 = _UpBlock(d3 + skip_ch[1], d4)
        self.head = _UpBlock(d4 + skip_ch[0], out_channels, bn_relu=final_bn_relu)
        self._init_weights()
        if pretrained_path:
            self.load_encoder_weights(pretrained_path)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def load_encoder_weights(self, path: str | os.PathLike) -> list[str]:
        """Load ImageNet MobileNetV2 weights from a local torchvision-layout state dict (``features.*`` keys; a
        ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper is accepted). The head (``features.18``) and classifier
        are skipped.

        Returns:
            the encoder keys that were loaded.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: the file does not hold MobileNetV2 encoder weights of matching shapes.
        """
        if not os.path.isfile(path):
            raise FileNotFoundError(f"MobileNetV2 weights not found: {path}")
        sd = torch.load(path, map_location="cpu", weights_only=True)
        for wrapper in ("state_dict", "model"):
            if isinstance(sd, dict) and wrapper in sd and isinstance(sd[wrapper], dict):
                sd = sd[wrapper]
        own = self.features.state_dict()
        picked = {k[len("features.") :]: v for k, v in sd.items() if k.startswith("features.") and k[9:] in own}
        bad = [k for k, v in picked.items() if v.shape != own[k].shape]
        if not picked or bad or len(picked) != len(own):
            missing = sorted(set(own) - set(picked))[:5]
            raise ValueError(
                f"{path} does not match the MobileNetV2 encoder (missing e.g. {missing}, wrong shapes {bad[:5]})"
            )
        self.features.load_state_dict(picked)
        return sorted("features." + k for k in picked)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 32 != 0 or x.shape[-2] % 32 != 0:
            raise ValueError("height and width must be multiples of 32, got " + str(x.shape[-2:]))
        taps: list[torch.Tensor] = []
        h = x
        k = -1  # Keras block index: features[k + 1] is Keras block k, features[0] the stem
        for stage in self.features:
            h, expanded = stage(h)
            if k in self.skip_blocks:
                taps.append(expanded)
            k += 1
        # the last stage is Keras block 16 cut after its expansion: its output is the bottleneck
        y = self.up1(h)
        y = self.up2(torch.cat([y, taps[3]], dim=1))
        y = self.up3(torch.cat([y, taps[2]], dim=1))
        y = self.up4(torch.cat([y, taps[1]], dim=1))
        return self.head(torch.cat([y, taps[0]], dim=1))
