"""The reference web host (``secmod serve``): client area, admin area and JSON API."""
