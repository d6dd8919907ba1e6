"""Data layer: the lead/event contract, readers, the simulator and the store."""
