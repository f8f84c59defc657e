"""One local Ray with 2 CPUs for the in-process tests (runs join it rather than starting their
own). Tests skip, saying why, where the extra ``camlens[ray]`` is not installed."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def local_ray():
    ray = pytest.importorskip("ray", reason="pip install 'camlens[ray]' (the test command installs it)")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()
