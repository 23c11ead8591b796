"""Running a shield unattended: the daemon's duties and metrics."""
