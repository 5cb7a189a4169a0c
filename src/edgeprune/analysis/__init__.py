"""Model analysis: summaries (MACs, parameters), sparsity tables and, later, sensitivity."""
