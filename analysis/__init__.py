"""Analysis: aggregate study results across base models, fit scaling laws, plot, report."""
