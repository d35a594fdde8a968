"""Studies: accuracy tables and searches over methods, T and thresholds, built on the api (not part of
the compiler or its runtimes)."""
