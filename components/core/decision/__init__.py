"""The decision policy: what the project answers about an image, and when it refers instead.

A model's p(malignant) is not the decision. The policy, fitted in training on held-out data and
stored with the model, turns an image into ``benign``, ``malignant`` or ``refer``:

1. out of scope (``refer``, reason ``out_of_scope``): plain image checks a person can read
   (:mod:`.image_checks`), then the distance of the image's ImageNet features to the nearest
   training image's (:mod:`.scope`, :mod:`.features`) above a limit set on validation images;
2. uncertain (``refer``, reason ``uncertain``): the class-conditional split-conformal prediction
   set (:mod:`.conformal`) is not exactly the class the threshold gives;
3. otherwise the threshold's label.

:mod:`.policy` fits, stores, loads and applies it; every consumer (predictor, server, smoke
test, the pipeline's evaluation, batch scoring) calls :func:`policy.DecisionPolicy.decide`.
"""

from components.core.decision.policy import (  # noqa: F401
    DECISION_FILE,
    MONITORING_FILE,
    OOD_FILE,
    POLICY_FILES,
    REFER,
    Decision,
    DecisionPolicy,
    PolicyError,
    reason_text,
)
