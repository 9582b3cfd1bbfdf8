"""The paper's audio classifier: frontend, encoder, global max pooling, linear head (SPEC §9)."""
from typing import Optional

import torch
import torch.nn as nn

from . import _validate as V

__all__ = ['AudioClassifier']


class AudioClassifier(nn.Module):
    """Classifier from waveforms: ``_frontend`` -> ``_encoder`` -> ``_pool`` (global max
    pooling + flatten) -> ``_head`` (``Linear(1280, num_outputs)``, EfficientNet-b0's width).

    A 3-D frontend output (B, F, T) gets a channel axis: (B, 1, F, T).

    Args:
        num_outputs (int): number of classes.
        frontend (nn.Module, optional): waveform -> (B, [C,] F, T).
        encoder (nn.Module, optional): (B, C, F, T) -> (B, 1280, F', T').
        num_features (int, keyword-only): the head's input width, the channels the encoder
            (without an encoder: the frontend) puts out. (Default: 1280, EfficientNet-b0's,
            as the original)
    Raises:
        ValueError: in the forward, when the features' width is not ``num_features``, saying
            which to pass.
    """

    def __init__(self, num_outputs: int, frontend: Optional[nn.Module] = None,
                 encoder: Optional[nn.Module] = None, *, num_features: int = 1280):
        super().__init__()
        V.check_int('AudioClassifier', 'num_outputs', num_outputs, 1, None)
        V.check_int('AudioClassifier', 'num_features', num_features, 1, None)
        for name, value in (('frontend', frontend), ('encoder', encoder)):
            if value is not None and not callable(value):
                raise ValueError('AudioClassifier: %s must be an nn.Module (or None), got %r'
                                 % (name, value))
        self._frontend = frontend
        self._encoder = encoder
        self._pool = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self._head = nn.Linear(in_features=num_features, out_features=num_outputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        output = inputs
        if self._frontend is not None:
            output = self._frontend(output)
            if output.ndim == 3:
                output = output[:, None, :, :]
        if self._encoder:
            output = self._encoder(output)
        output = self._pool(output)
        if output.ndim != 2 or output.shape[-1] != self._head.in_features:
            source = ('the encoder (%s)' % type(self._encoder).__name__ if self._encoder
                      else 'the frontend (no encoder)')
            raise ValueError(
                'AudioClassifier: %s puts out %s channels, but _head is Linear(%d, %d); build '
                'the classifier with num_features=%s, or use an encoder ending in %d channels '
                '(the original\'s EfficientNet-b0 has 1280)'
                % (source, output.shape[-1] if output.ndim == 2 else 'shape %s' % (
                    tuple(output.shape),), self._head.in_features, self._head.out_features,
                   output.shape[-1] if output.ndim == 2 else 'C', self._head.in_features))
        return self._head(output)
