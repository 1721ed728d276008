"""Batch graph detectors (issue 9): one SQL code per detector, run on DuckDB in-process or on Spark.

`run.run_detectors` runs them over Parquet edge tables (`export.export` writes them from the store,
`generate.generate_graph` writes a synthetic graph with planted truth); each returns `finding.Finding`s.
"""
