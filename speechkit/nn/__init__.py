"""Shared neural-network building blocks: conv stacks, transformers with KV cache, BLSTM, Res2Net/SE,
conformer and E-Branchformer blocks, conditioning.

Layouts: conv blocks take [B, C, T], sequence blocks [B, T, D]; padding masks are [B, T] booleans with
True = valid. Causal conv blocks stream through ``initial_state`` / ``step``; causal transformers
decode through ``initial_cache`` / ``step`` with an explicit :class:`KVCache`.
"""

from __future__ import annotations

from speechkit.nn.activations import Snake1d, make_activation
from speechkit.nn.attention import (
    CrossAttention,
    KVCache,
    MultiHeadAttention,
    RotaryEmbedding,
    structure_mask,
)
from speechkit.nn.conditioning import AdaptiveLayerNorm, FiLM
from speechkit.nn.conformer import ConformerBlock, ConvolutionModule
from speechkit.nn.conv import (
    ChannelLayerNorm,
    ConvDecoderStack,
    ConvEncoderStack,
    ConvNeXtBlock,
    PaddedConv1d,
    PaddedConvTranspose1d,
    ResidualUnit,
    StreamingConvBlock,
)
from speechkit.nn.ebranchformer import ConvolutionalGatingMLP, EBranchformerBlock
from speechkit.nn.feedforward import FeedForward
from speechkit.nn.masks import lengths_to_padding_mask, zero_padded
from speechkit.nn.recurrent import BLSTMContext
from speechkit.nn.res2net import (
    AttentiveStatisticsPooling,
    Res2NetConv,
    SERes2NetBlock,
    SqueezeExcitation,
    TDNNBlock,
)
from speechkit.nn.transformer import Transformer, TransformerBlock

__all__ = [
    "AdaptiveLayerNorm",
    "AttentiveStatisticsPooling",
    "BLSTMContext",
    "ChannelLayerNorm",
    "ConformerBlock",
    "ConvDecoderStack",
    "ConvEncoderStack",
    "ConvNeXtBlock",
    "ConvolutionModule",
    "ConvolutionalGatingMLP",
    "CrossAttention",
    "EBranchformerBlock",
    "FeedForward",
    "FiLM",
    "KVCache",
    "MultiHeadAttention",
    "PaddedConv1d",
    "PaddedConvTranspose1d",
    "Res2NetConv",
    "ResidualUnit",
    "RotaryEmbedding",
    "SERes2NetBlock",
    "Snake1d",
    "SqueezeExcitation",
    "StreamingConvBlock",
    "TDNNBlock",
    "Transformer",
    "TransformerBlock",
    "lengths_to_padding_mask",
    "make_activation",
    "structure_mask",
    "zero_padded",
]
