"""Set-ups that connect mfotel to other services outside the collector (one folder per service)."""
