"""Convert EfficientNet-Lite0's ImageNet weights into the Keras cache and prove them right.

Exit status 1 when a photograph misses its ImageNet classes or the batch-norm statistics
disagree, so an image build fails instead of shipping wrong weights.
"""

import sys

import numpy as np

from components.core.modeling.pretrained import efficientnet_lite, verify


def main() -> int:
    path = efficientnet_lite.imagenet_weights_file()
    model = efficientnet_lite.imagenet_lite0(include_top=True)
    ok = True
    for top in verify.imagenet_top5(model):
        print(
            f"{top.name}: top-5 {top.classes}, expected among them {top.hits or 'NONE'}, entropy {top.entropy:.2f} nats"
        )
        ok &= bool(top.hits)
    agreement = np.array(list(verify.batchnorm_agreement(model).values()))
    print(f"batch norm: median agreement {np.median(agreement):.3f} over {agreement.size} layers")
    ok &= bool(np.median(agreement) > verify.MIN_MEDIAN_BN_AGREEMENT)
    print(f"{path}: {'verified' if ok else 'FAILED verification'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
