"""Pruning: importance criteria, structure pruners, masks, regularizers and thinning."""
