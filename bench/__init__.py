"""fundus-edge."""
