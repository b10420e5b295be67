"""Convert the EfficientNet-Lite ImageNet weights into the Keras cache and prove them right.

``python -m components.core.modeling.pretrained [FAMILY ...]`` (default: every size). Exit
status 1 when a photograph misses its ImageNet classes or the batch-norm statistics disagree,
so an image build fails instead of shipping wrong weights.
"""

import sys

import numpy as np

from components.core.modeling.pretrained import efficientnet_lite, verify


def check(family: str) -> bool:
    """Convert one size (if not cached) and verify it at its own resolution."""
    v = efficientnet_lite.variant(family)
    path = efficientnet_lite.imagenet_weights_file(family=v)
    model = efficientnet_lite.imagenet(v, include_top=True)
    tops = verify.imagenet_top5(model, size=v.resolution)
    for top in tops:
        known = " (a known miss)" if top.name in verify.KNOWN_MISSES.get(v.family, ()) else ""
        print(
            f"{v.family} {top.name}: top-5 {top.classes}, expected among them {top.hits or 'NONE'}{known}, "
            f"entropy {top.entropy:.2f} nats"
        )
    ok = not verify.missed(tops, v.family)
    agreement = np.array(list(verify.batchnorm_agreement(model, size=v.resolution).values()))
    print(f"{v.family} batch norm: median agreement {np.median(agreement):.3f} over {agreement.size} layers")
    ok &= bool(np.median(agreement) > verify.MIN_MEDIAN_BN_AGREEMENT)
    print(f"{path}: {'verified' if ok else 'FAILED verification'}")
    return ok


def main(families: list[str]) -> int:
    results = [check(family) for family in families or efficientnet_lite.VARIANTS]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
