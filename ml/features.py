"""Feature discovery and the numeric transform used by clustering (log1p, impute, standardise)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# NULL here means "never happened", which is behaviourally far away, not average.
NULL_MEANS_LONG_AGO = frozenset({"recency_days", "days_since_last_visit"})


@dataclass
class FeatureTransform:
    """Fitted on a sample; applied chunk by chunk to float32 matrices."""

    features: list[str]
    log_columns: list[str] = field(default_factory=list)
    fill: np.ndarray | None = None
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> FeatureTransform:
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(all="ignore"):
            lo = np.nanmin(np.where(np.isnan(x), np.inf, x), axis=0)
            p99 = _nanquantile(x, 0.99)
        # Non-negative columns reaching beyond 1 are counts, days or money: heavy-tailed.
        log_mask = (lo >= 0) & (p99 > 1.0)
        self.log_columns = [f for f, m in zip(self.features, log_mask, strict=True) if m]
        self._log_mask = log_mask
        x = self._log(x)
        median = _nanquantile(x, 0.5)
        high = np.nanmax(np.where(np.isnan(x), -np.inf, x), axis=0)
        fill = np.where(np.isfinite(median), median, 0.0)
        long_ago = np.array([f in NULL_MEANS_LONG_AGO for f in self.features])
        fill = np.where(long_ago & np.isfinite(high), high, fill)
        self.fill = fill
        x = np.where(np.isnan(x), fill, x)
        self.mean = x.mean(axis=0) if len(x) else np.zeros(len(self.features))
        std = x.std(axis=0) if len(x) else np.ones(len(self.features))
        self.scale = np.where(std > 1e-9, std, 1.0)
        return self

    def _log(self, x: np.ndarray) -> np.ndarray:
        x = x.copy()
        cols = np.flatnonzero(self._log_mask)
        x[:, cols] = np.log1p(np.clip(x[:, cols], 0, None))
        return x

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = self._log(np.asarray(x, dtype=np.float32))
        x = np.where(np.isnan(x), self.fill.astype(np.float32), x)
        return ((x - self.mean) / self.scale).astype(np.float32)

    def inverse_profile(self, z: np.ndarray) -> np.ndarray:
        """Standardised centroids back to the original units (for readable profiles)."""
        x = np.asarray(z, dtype=np.float64) * self.scale + self.mean
        cols = np.flatnonzero(self._log_mask)
        x[:, cols] = np.expm1(x[:, cols])
        return x


def _nanquantile(x: np.ndarray, q: float) -> np.ndarray:
    if x.shape[0] == 0:
        return np.full(x.shape[1], np.nan)
    all_nan = np.all(np.isnan(x), axis=0)
    out = np.full(x.shape[1], np.nan)
    if (~all_nan).any():
        out[~all_nan] = np.nanquantile(x[:, ~all_nan], q, axis=0)
    return out
