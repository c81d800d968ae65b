"""Temperature scaling: make a model's confidence match how often it is right.

One scalar T divides the log-probabilities before the softmax; it leaves every
prediction's ranking (and so accuracy and F1) unchanged. T is fitted on validation
data (PublicTest) by minimising the negative log-likelihood, and baked into the
served model as a final `TemperatureScaling` layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from scipy.optimize import minimize_scalar

ECE_BINS = 15
_EPSILON = 1e-7


@keras.saving.register_keras_serializable(package="fer_model")
class TemperatureScaling(keras.layers.Layer):
    """softmax(log(p) / T) for probabilities p: T > 1 softens, T < 1 sharpens."""

    def __init__(self, temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)

    def call(self, probabilities):
        logits = keras.ops.log(keras.ops.clip(probabilities, _EPSILON, 1.0))
        return keras.ops.softmax(logits / self.temperature, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature}


def rescale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """NumPy twin of TemperatureScaling, for fitting and for undoing a baked-in temperature."""
    logits = np.log(np.clip(probabilities, _EPSILON, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], _EPSILON, 1.0))))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the NLL of ``labels`` under rescaled ``probabilities``."""
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(rescale(probabilities, float(np.exp(log_t))), labels),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
    )
    return float(np.exp(result.x))


@dataclass(frozen=True)
class ReliabilityBins:
    edges: np.ndarray  # (bins + 1,)
    confidence: np.ndarray  # mean confidence per bin (nan where empty)
    accuracy: np.ndarray  # accuracy per bin (nan where empty)
    counts: np.ndarray


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> ReliabilityBins:
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, weights=confidence, minlength=bins) / counts
        accuracy = np.bincount(which, weights=correct.astype(float), minlength=bins) / counts
    return ReliabilityBins(edges, mean_confidence, accuracy, counts)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Count-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    if len(labels) == 0:
        return 0.0
    table = reliability_bins(probabilities, labels, bins)
    filled = table.counts > 0
    gaps = np.abs(table.accuracy[filled] - table.confidence[filled])
    return float(np.sum(gaps * table.counts[filled]) / len(labels))


def cross_fitted_probabilities(probabilities: np.ndarray, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each half rescaled with the temperature fitted on the other half: an honest 'after' on data used for fitting."""
    order = np.random.default_rng(seed).permutation(len(labels))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    result = np.empty_like(probabilities)
    for fit_on, apply_to in (halves, halves[::-1]):
        result[apply_to] = rescale(probabilities[apply_to], fit_temperature(probabilities[fit_on], labels[fit_on]))
    return result


def calibration_summary(raw: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Fit T on (raw, labels) and report ECE and NLL before, after, and cross-fitted after."""
    temperature = fit_temperature(raw, labels)
    calibrated = rescale(raw, temperature)
    crossed = cross_fitted_probabilities(raw, labels)
    return {
        "temperature": temperature,
        "ece_before": expected_calibration_error(raw, labels),
        "ece_after": expected_calibration_error(calibrated, labels),
        "ece_after_cross_fitted": expected_calibration_error(crossed, labels),
        "nll_before": negative_log_likelihood(raw, labels),
        "nll_after": negative_log_likelihood(calibrated, labels),
        "n": int(len(labels)),
        "bins": ECE_BINS,
    }


def baked_temperature(model: keras.Model) -> float:
    """The temperature of the model's final TemperatureScaling layer, 1.0 when it has none."""
    last = model.layers[-1]
    return last.temperature if isinstance(last, TemperatureScaling) else 1.0


def without_temperature(model: keras.Model) -> keras.Model:
    """The network's uncalibrated probabilities: the model minus a final TemperatureScaling layer."""
    if not isinstance(model.layers[-1], TemperatureScaling):
        return model
    return keras.Model(model.input, model.layers[-2].output, name=model.name)


def with_temperature(model: keras.Model, temperature: float) -> keras.Model:
    """The same network with its output rescaled by ``temperature`` (replacing any earlier one)."""
    network = without_temperature(model)
    scaled = TemperatureScaling(temperature, name="temperature")(network.output)
    return keras.Model(network.input, scaled, name=model.name)
