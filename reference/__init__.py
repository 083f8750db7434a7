"""NumPy-only reference of Qwen2.5-VL's image pipeline and vision tower.

Imports numpy and the standard library only. Decoding image files (Pillow)
lives in :mod:`reference.io`, which nothing else here imports.
"""
