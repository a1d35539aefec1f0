"""The drivers: the sync loop (generations), the async loop (no barrier) and the vectorized
loop (whole populations as arrays), and what they share: the controller that applies steering
at safe points, the report tailer and the early-stopping rules it runs."""
