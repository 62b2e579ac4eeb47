"""Cross-entropy + soft Dice on the vessel channel.

Dice comes from ``paddleseg.models.losses``. PaddleSeg 2.8's CrossEntropyLoss fails on Paddle 3.3.1
without class weights (it multiplies a float32 mask by ``ones_like`` of the int64 label, which
Paddle 3's type promotion rejects), so cross-entropy is Paddle's own ``nn.CrossEntropyLoss``.
"""

from __future__ import annotations


def build_loss(dice_weight: float = 0.5):
    import paddle.nn as nn
    from paddleseg.models.losses import DiceLoss

    ce = nn.CrossEntropyLoss(axis=1)
    # Class weights [0, 2]: paddleseg averages Dice over classes, so this is Dice of vessels alone.
    dice = DiceLoss(weight=[0.0, 2.0])

    def loss(logits, labels):
        value = ce(logits, labels.unsqueeze(1))
        if dice_weight > 0:
            value = value + dice_weight * dice(logits, labels.clone())  # DiceLoss edits labels in place
        return value

    return loss


def distill_loss(student_logits, teacher_logits):
    """Pixel-wise KL divergence from the teacher's class probabilities to the student's (temperature
    1), averaged over pixels: the student learns the teacher's soft vessel maps, thin-vessel
    uncertainty included, besides the hard labels."""
    import paddle.nn.functional as F

    p_t = F.softmax(teacher_logits, axis=1)
    return (
        (p_t * (F.log_softmax(teacher_logits, axis=1) - F.log_softmax(student_logits, axis=1)))
        .sum(axis=1)
        .mean()
    )


def logits_of_probability(p, eps: float = 1e-6):
    """Two-class logits whose softmax is (1 - p, p) for a vessel probability map p (N x H x W): a
    teacher given as probabilities (an ensemble's mean, precomputed maps) enters ``distill_loss``."""
    import paddle

    p = paddle.clip(p, eps, 1.0 - eps)
    return paddle.stack([paddle.log(1.0 - p), paddle.log(p)], axis=1)
