"""Public checks' stored expectations: computing, storing, reading them, and the secret
challenges added on the instructor's side."""
