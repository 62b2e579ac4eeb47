"""What one image may cost, in a module of its own so the CLI's parser reads it without importing OpenCV."""

# The decoded-pixel cap by default: 40 MP is above every fundus camera we know of (the largest sensors are
# about 24 MP; DRIVE is 0.33 MP, STARE 0.28 MP) and keeps one image's cost near 1 GiB (docs/serving.md).
DEFAULT_MAX_PIXELS = 40_000_000
