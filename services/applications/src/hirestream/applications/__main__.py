"""`python -m hirestream.applications`: run the applications service."""

from hirestream.applications.app import ApplicationsSettings, create_app
from hirestream.shared.runtime.process import run_service

if __name__ == "__main__":
    run_service("applications", ApplicationsSettings, create_app)
