"""Kinds of model output, one file each, behind the interface in `base`; and the one prediction
pass over the test split (`predict_test_split`) whose outputs every report uses."""

from apps.core.outputs.base import OutputKind, TestPredictions, predict_test_split
from apps.core.outputs.classification import Classification, worst_mistakes
from apps.core.outputs.forecast import Forecast, baselines
from apps.core.outputs.generation import Generation
from apps.core.outputs.language import LanguageModeling
from apps.core.outputs.translation import Translation

__all__ = ["Classification", "Forecast", "Generation", "LanguageModeling", "OutputKind",
           "TestPredictions", "Translation", "baselines", "predict_test_split", "worst_mistakes"]
