"""Running a sweep: the trial matrix, Ray Tune orchestration, driver callbacks, the trial and its context, W&B, the environment record, plugin shipping."""
