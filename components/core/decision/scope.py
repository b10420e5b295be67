"""Out of scope: how far an image's features are from the nearest training image's.

The cosine distance from the image's ImageNet features (decision/features.py) to its nearest
neighbour among the train split's (Sun et al., "Out-of-distribution detection with deep nearest
neighbors", ICML 2022): no assumption about the shape of the distribution, which a Mahalanobis
distance makes (compared side by side in docs/referral.md). The limit is the
validation images' ``1 - false_flag_rate`` quantile, so a stated small share of in-scope images
is flagged. The score is reported as distance / limit: above 1 is out of scope.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEIGHBOUR = 1  # the k-th nearest training image
CHUNK = 512  # query rows per matrix product: bounded memory for a large batch


def normalised(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, np.float32)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


@dataclass
class ScopeModel:
    reference: np.ndarray  # (n, d) float32: the train split's features, unit length
    limit: float  # cosine distance at the validation quantile
    false_flag_rate: float

    @classmethod
    def fit(cls, train_features: np.ndarray, val_features: np.ndarray, false_flag_rate: float) -> "ScopeModel":
        if not 0 < false_flag_rate < 0.5:
            raise ValueError(f"false_flag_rate must be in (0, 0.5), got {false_flag_rate}")
        if len(train_features) < NEIGHBOUR + 1 or len(val_features) < 2:
            raise ValueError(
                f"the out-of-scope detector needs at least {NEIGHBOUR + 1} train and 2 validation "
                f"images, got {len(train_features)} and {len(val_features)}"
            )
        model = cls(normalised(train_features), 1.0, false_flag_rate)
        model.limit = max(float(np.quantile(model.distances(val_features), 1 - false_flag_rate, method="higher")), 1e-6)
        return model

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Cosine distance to the k-th nearest training image, per row of ``features``."""
        query = normalised(features)
        out = np.empty(len(query), np.float64)
        for i in range(0, len(query), CHUNK):
            sims = query[i : i + CHUNK] @ self.reference.T
            out[i : i + CHUNK] = 1.0 - np.sort(sims, axis=1)[:, -NEIGHBOUR]
        return out

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Distance over the limit: 1.0 is the refusal boundary, higher is less like the training images."""
        return self.distances(features) / self.limit
