"""The verbs: prune, train, evaluate, export, bench, sensitivity — each resolves model and data and runs one job.

Everything above this layer (the CLI, the demo, sweeps and agents) reaches the machinery through these calls;
``edgeprune.prune(...)`` and friends at the package root are these functions.
"""
