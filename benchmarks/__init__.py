"""The project's benchmarks: ``python -m benchmarks [--quick] [--json] [--check] [NAME...]``.

Each benchmark module also runs alone as a script (``python benchmarks/<module>.py``).
"""
