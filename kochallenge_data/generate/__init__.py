"""The generator: requests and profiles in, challenges chosen by fit, records rendered.

``selection`` says how a challenge is chosen; ``requests`` composes free-text messages from facets;
``feedback`` builds weekly records and the feedback that covers them; ``sampler`` turns them into records;
``draws`` spells the ``random.Random`` draws of the inner loops for speed, with the same results.
"""

from .sampler import Candidate, Sampler, capacity, pool_to_grow

__all__ = ["Candidate", "Sampler", "capacity", "pool_to_grow"]
