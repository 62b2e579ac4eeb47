"""From a bench record to a self-testing deploy bundle: pick, pack, selftest."""
