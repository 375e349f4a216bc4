"""secmod's pytest plugin (entry point ``pytest11``): fixtures for module authors."""
