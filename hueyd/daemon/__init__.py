"""Daemon-side plumbing: master, workers, scheduler, and systemd integration."""
