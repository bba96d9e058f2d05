// Benchmarks: see docs/benchmarks.md.
print("usage: meridian-bench ssh")
