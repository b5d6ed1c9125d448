import os

from hypothesis import HealthCheck, settings

# "dev" keeps local runs quick; CI sets HYPOTHESIS_PROFILE=ci for more examples per property.
settings.register_profile("dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
