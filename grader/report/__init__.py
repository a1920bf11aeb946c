"""The one results model of a grading and the writers that render it."""
