"""Benchmark loaders: one small file per benchmark format, each turning raw rows into `Example`s."""
