"""Knowledge distillation: a student learns from a teacher's soft labels as well as the true labels.

Each training target is the true class (one-hot) and the teacher's probabilities for the same face,
side by side in one (N, 14) array. The loss is

    weight * T^2 * KL(softmax(log p_teacher / T) || softmax(log p_student / T)) + (1 - weight) * CE(y, p_student)

(Hinton et al., 2015): at a temperature T above 1 the teacher's small probabilities, which say which
wrong classes a face resembles, carry weight; T^2 keeps the soft term's gradients on the scale of the
hard term's. The teacher's probabilities come from its soft-labels file (`fer_model.soft_labels`),
made once, so no teacher network runs while the student trains.
"""

from __future__ import annotations

import keras
import numpy as np

from fer_model.classes import CLASSES

_FLOOR = 1e-7


def distillation_targets(labels: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """(N, 14): one-hot true classes, then the teacher's probabilities."""
    return np.concatenate([keras.utils.to_categorical(labels, len(CLASSES)), teacher.astype(np.float32)], axis=1)


@keras.saving.register_keras_serializable(package="fer_model")
class DistillationLoss(keras.losses.Loss):
    def __init__(self, temperature: float = 4.0, weight: float = 0.7, label_smoothing: float = 0.0,
                 name: str = "distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature, self.weight, self.label_smoothing = float(temperature), float(weight), float(label_smoothing)

    def call(self, y_true, y_pred):
        classes = len(CLASSES)
        hard, teacher = y_true[:, :classes], y_true[:, classes:]
        hard_loss = keras.losses.categorical_crossentropy(hard, y_pred, label_smoothing=self.label_smoothing)
        soft_teacher = _soften(teacher, self.temperature)
        log_soft_student = keras.ops.log_softmax(keras.ops.log(keras.ops.clip(y_pred, _FLOOR, 1.0)) / self.temperature)
        kl = keras.ops.sum(
            soft_teacher * (keras.ops.log(keras.ops.clip(soft_teacher, _FLOOR, 1.0)) - log_soft_student), axis=-1
        )
        return self.weight * self.temperature**2 * kl + (1.0 - self.weight) * hard_loss

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature, "weight": self.weight,
                "label_smoothing": self.label_smoothing}


def _soften(probabilities, temperature: float):
    return keras.ops.softmax(keras.ops.log(keras.ops.clip(probabilities, _FLOOR, 1.0)) / temperature, axis=-1)


@keras.saving.register_keras_serializable(package="fer_model")
def true_class_accuracy(y_true, y_pred):
    """Accuracy against the one-hot half of distillation targets."""
    hard = y_true[:, : len(CLASSES)]
    return keras.ops.cast(keras.ops.argmax(hard, axis=-1) == keras.ops.argmax(y_pred, axis=-1), "float32")


def accuracy_metric() -> keras.metrics.Metric:
    """Logged as `accuracy` / `val_accuracy`, like plain training, so checkpoints and history read the same."""
    return keras.metrics.MeanMetricWrapper(true_class_accuracy, name="accuracy")
