"""The lab's images: Docker set-up, recipes (images/*.yml), offline builds with mmdebstrap, VM launch lines."""
