import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "hybrid",
    max_examples=int(os.environ.get("HYBRID_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    # The same examples on every run, so a green run on one machine is green in CI; HYBRID_HYPOTHESIS_EXPLORE=1
    # draws new ones (and `make fuzz` explores the parser with a coverage-guided fuzzer).
    derandomize=os.environ.get("HYBRID_HYPOTHESIS_EXPLORE") != "1",
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("hybrid")
