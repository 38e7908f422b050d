"""Integrations with web frameworks: ``hueyd.contrib.django``."""
