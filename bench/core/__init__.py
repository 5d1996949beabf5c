"""What methods/, datasets/ and codebooks/ may import from bench: errors, the registry base, atomic
file writes, cache paths and the uint8 image boundary. Nothing here imports the rest of bench."""
