"""Adversarial cases on real files and real processes (issue 12): every input treated as hostile."""
