"""Deployment files; ``deploy.grafana.generate`` writes the Grafana dashboards (``make dashboards``)."""
