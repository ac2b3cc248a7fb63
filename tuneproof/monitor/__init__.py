"""Monitoring: compare what a released model sees in production with what it was validated on."""
