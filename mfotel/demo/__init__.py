"""The example flow ``mfotel demo`` runs."""
