"""Networks shared by the models: convolutional encoder/decoder, UNet, time embeddings."""

from elbolab.nets.conv import CONV_PRESETS, ConvDecoder, ConvEncoder, conv_preset, downsamples_for

__all__ = ["CONV_PRESETS", "ConvDecoder", "ConvEncoder", "conv_preset", "downsamples_for"]
