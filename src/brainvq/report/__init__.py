"""The report of a run, drawn from the run's files only: figures, the training GIF, the tuning
figures and report.html (build). Nothing here trains, evaluates, samples or loads data
(tests/test_architecture.py checks what it imports)."""
