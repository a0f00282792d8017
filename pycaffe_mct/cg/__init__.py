"""The emulated Sunway core group: spec, plans, scheduler, accounting, profile, timing.

Layers use only ``ops``; everything else here is how those ops map onto one
SW26010 core group and what that mapping would cost.
"""
