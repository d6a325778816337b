"""Inference preparation: batch norm folded into the convolutions, channels-last memory.

Folding uses the running statistics (eval mode), so the folded network computes the same
function as the trained one in eval mode (to float rounding) with two fewer layers per block.
Channels-last lets oneDNN (CPU) and cuDNN pick their faster convolution kernels.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from npgd_recon.model import NeuralPGD


def fold_batchnorm(model: NeuralPGD) -> NeuralPGD:
    """A copy of ``model`` (eval mode) with every BN merged into the convolution before it."""
    folded = copy.deepcopy(model).eval()
    for block in folded.prox.blocks:
        block.conv1 = fuse_conv_bn_eval(block.conv1, block.bn1)
        block.conv2 = fuse_conv_bn_eval(block.conv2, block.bn2)
        block.bn1, block.bn2 = nn.Identity(), nn.Identity()
    return folded


def prepare_for_inference(model: NeuralPGD) -> NeuralPGD:
    """BN folded and weights in channels-last layout; for ``torch.inference_mode`` use only."""
    return fold_batchnorm(model).to(memory_format=torch.channels_last)
