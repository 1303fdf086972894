"""Storing results: the typed trial record and its Arrow schema, the Parquet store (parts, compaction, readers, upgrades), the experiment lock."""
