"""Suites: the benchmark of record. A suite file fixes workloads (task, model, update budget, evaluation,
selection metric, validation target, seeds) and rulesets; ``rnnbench suite`` validates it, runs methods on it
(:mod:`suite.suites.compile` turns it into ordinary manifests), scores results against a reference store
(:mod:`suite.suites.score`) and writes a static leaderboard site (:mod:`suite.suites.site`)."""
