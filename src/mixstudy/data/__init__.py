"""The data sets (sources, verification, the manifest), the subset draws, and the subset on the
device with its augmentation."""
