"""Training of the vertebral-body network (data and augmentation in NumPy; the network and loop need PyTorch)."""
