"""Lava processes of spikeport's own, used only to record results.

They live alone in this folder because Lava's compiler imports every module in the folder of a
process class while it looks for process models.
"""
