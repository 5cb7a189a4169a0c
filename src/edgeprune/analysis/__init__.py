"""Model analysis: summaries (MACs, parameters), sparsity tables, sensitivity analysis and pictures."""
