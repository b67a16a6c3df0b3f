"""Model artifact tools: ``doctor`` (file-level checks), ``merge`` (safe LoRA merge) and ``fix``.

Nothing here imports torch or transformers at import time; ``merge``, ``fix`` and ``doctor --load``
import them inside the functions that need them (the ``train`` extra).
"""
