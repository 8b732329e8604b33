"""Tools that measure the core: the workload simulator and the quality report (apart from what they measure)."""
