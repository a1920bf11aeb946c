"""The grading pipeline's stages (load, harvest, regions, files, sandbox, checks) and what runs
on both sides of the sandbox (layer traces, training loops)."""
