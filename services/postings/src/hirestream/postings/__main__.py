"""`python -m hirestream.postings`: run the postings service."""

from hirestream.postings.app import PostingsSettings, create_app
from hirestream.shared.runtime.process import run_service

if __name__ == "__main__":
    run_service("postings", PostingsSettings, create_app)
