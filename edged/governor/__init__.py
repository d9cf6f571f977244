"""The governor: which variant, at what fps, and why. Its decision is a pure function of its inputs."""
