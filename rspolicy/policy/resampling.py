"""How a policy wants pixels degraded (shared by both policy schemas)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resampling:
    """How a policy wants pixels degraded.

    Attributes
    ----------
    method
        ``area-average``.
    sar_complex
        Single-look complex SAR: ``intensity`` (mean of |z|^2) or ``coherent`` (complex mean).
    sar_detected
        Detected SAR: ``amplitude`` (averaged in power, returned as amplitude) or ``intensity``.
    """

    method: str
    sar_complex: str
    sar_detected: str
