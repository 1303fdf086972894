"""Analysing results: the leaderboard, statistics, comparisons across tasks and against cost, plots, the HTML report, trajectories."""
