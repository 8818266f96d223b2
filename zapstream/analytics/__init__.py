"""Analytics over the sink's DuckDB file: the report and the Parquet export (docs/analytics.md)."""
