"""Operations: the health/metrics endpoint, Prometheus metrics, `doctor`, the container health probe.

Kept import-light: `python -m bot.ops.probe` runs in the container's HEALTHCHECK every 30 s.
"""
