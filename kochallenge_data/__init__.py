"""kochallenge_data: synthetic Korean instruction data for the eco-challenge chatbot, checked before it ships.

The public API is imported lazily-light: nothing here imports torch, transformers or Kiwi.
"""

from __future__ import annotations

from .build import BuildConfig, BuildResult, build_dataset
from .errors import KochallengeError
from .formats import format_recommendation, parse_recommendation
from .models import Challenge, Finding, Recommendation, Record, WeeklyRecord
from .pools import Pools, load_pools
from .templates import Templates, load_templates
from .text import trim

__version__ = "0.1.0"

__all__ = [
    "BuildConfig",
    "BuildResult",
    "Challenge",
    "Finding",
    "KochallengeError",
    "Pools",
    "Recommendation",
    "Record",
    "Templates",
    "WeeklyRecord",
    "__version__",
    "build_dataset",
    "format_recommendation",
    "load_pools",
    "load_templates",
    "parse_recommendation",
    "trim",
]
